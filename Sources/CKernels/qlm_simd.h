// SIMD helpers the type files share (quantizers and dot kernels). Internal. Everything here
// is static inline or a macro, so each type file gets its own copy under its own target attributes.
// Included after qlm_internal.h by files compiled with `#pragma clang fp contract(off)`.
#ifndef QLM_SIMD_H
#define QLM_SIMD_H
#include "qlm_internal.h"

#pragma clang fp contract(off)

// ---- scalar code helpers -------------------------------------------------------------------
// q8 codes: round(x / d) (roundf: half away from zero), clamped to [-127, 127]; d == 0 -> 0.
// (The clamp and the d == 0 guard only matter for blocks whose d is a float denormal.)
static inline float q8_code(float x, float d) {
    if (d == 0.0f) return 0.0f;
    return fminf(fmaxf(roundf(x / d), -127.0f), 127.0f);
}
// q4 codes: min(15, (int8)v) with v = x*id + 8.5 (q4_0) or (x-m)*id + 0.5 (q4_1); v is clamped
// to [0, 15] first (NaN -> 0) so that a denormal d (id = inf) stays defined. Same result otherwise.
static inline int8_t q4_code(float v) { return (int8_t)fminf(fmaxf(v, 0.0f), 15.0f); }

// A multi-row dot (qlm_dotn_fn) out of a one-row scalar dot fn(n, row, act).
#define SCALAR_DOTN(name, fn, wt, at)                                                            \
    static void name(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) { \
        for (int r = 0; r < nr; r++) out[r] = fn(n, (const wt *)((const char *)w + r * rs), (const at *)act); \
    }

// Prefill tile shapes (rows x tokens): AVX-512 tiles 2 x 4, AVX2 tiles 1 x 4 (FEW2_NT).
#define TILE_NR 2
#define TILE_NT 4
#define FEW2_NT 4

#if QLM_X86
// ---- AVX-512 quantizer helpers (bit-identical to the scalar formulas) -----------------------
QLM_AVX512_TARGET QLM_INLINE __m512 round_away512(__m512 p) {
    const __m512 t = _mm512_roundscale_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 diff = _mm512_sub_ps(p, t); // exact
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(diff), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 one = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(_mm512_set1_ps(1.0f)),
        _mm512_and_si512(_mm512_castps_si512(p), _mm512_set1_epi32((int)0x80000000u))));
    return _mm512_mask_add_ps(t, up, t, one);
}

QLM_AVX512_TARGET QLM_INLINE __m512i q8_codes512(__m512 v, float d) {
    if (d == 0.0f) return _mm512_setzero_si512();
    const __m512 q = round_away512(_mm512_div_ps(v, _mm512_set1_ps(d)));
    return _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f)));
}
// max(v, 0) returns 0 for NaN (second operand), like fmaxf(v, 0).
QLM_AVX512_TARGET QLM_INLINE __m512i q4_codes512(__m512 v) {
    return _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(15.0f)));
}

// ---- AVX2 quantizer helpers ----------------------------------------------------------------
QLM_AVX2_TARGET QLM_INLINE __m256 abs256(__m256 v) {
    return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
}
QLM_AVX2_TARGET QLM_INLINE float hmax256(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
QLM_AVX2_TARGET QLM_INLINE float hmin256(__m256 v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
QLM_AVX2_TARGET QLM_INLINE __m256 round_away256(__m256 p) {
    const __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 up = _mm256_cmp_ps(abs256(_mm256_sub_ps(p, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(p, _mm256_set1_ps(-0.0f)));
    return _mm256_add_ps(t, _mm256_and_ps(up, one));
}
// 32 int32 codes (4 x 8, in element order) -> 32 int8.
QLM_AVX2_TARGET QLM_INLINE void store_i8x32(int8_t *dst, __m256i i0, __m256i i1, __m256i i2, __m256i i3) {
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    _mm256_storeu_si256((__m256i *)dst, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}
// 16 nibble pairs (c0: elements 0..7, c1: 8..15, each already q[j] | q[j+16] << 4) -> 16 bytes.
QLM_AVX2_TARGET QLM_INLINE void store_u8x16(uint8_t *dst, __m256i c0, __m256i c1) {
    const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(c0, c1), 0xD8);
    _mm_storeu_si128((__m128i *)dst, _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
}

#define LOAD4(x) const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24)

QLM_AVX2_TARGET static inline void q8_codes_avx2(const float *x, float d, __m256i q[4]) {
    if (d == 0.0f) { q[0] = q[1] = q[2] = q[3] = _mm256_setzero_si256(); return; }
    LOAD4(x);
    const __m256 vd = _mm256_set1_ps(d), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
#define Q8C(v) _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(round_away256(_mm256_div_ps(v, vd)), lo), hi))
    q[0] = Q8C(v0); q[1] = Q8C(v1); q[2] = Q8C(v2); q[3] = Q8C(v3);
#undef Q8C
}
QLM_AVX2_TARGET QLM_INLINE __m256i q4_codes256(__m256 v) {
    return _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(15.0f)));
}
QLM_AVX2_TARGET static inline float amax_avx2(const float *x) {
    LOAD4(x);
    return hmax256(_mm256_max_ps(_mm256_max_ps(abs256(v0), abs256(v1)), _mm256_max_ps(abs256(v2), abs256(v3))));
}


// ---- dot-kernel helpers ----------------------------------------------------------------------
// Fixed-order horizontal sum of 8 floats (same on both SIMD paths).
#define HSUM8_BODY(v)                                                        \
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1); \
    lo = _mm_add_ps(lo, hi);                                                 \
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));                              \
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));                                \
    return _mm_cvtss_f32(lo);
QLM_AVX2_TARGET QLM_INLINE float hsum8_avx2(__m256 v) { HSUM8_BODY(v) }
QLM_AVX512_TARGET QLM_INLINE float hsum8_avx512(__m256 v) { HSUM8_BODY(v) }

// fp16 at p converted and broadcast to 8 lanes (vpbroadcastw + vcvtph2ps).
QLM_AVX2_TARGET QLM_INLINE __m256 bh2f_avx2(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_set1_epi16((short)*p));
}
QLM_AVX512_TARGET QLM_INLINE __m256 bh2f_avx512(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_set1_epi16((short)*p));
}

// 16 bytes of nibbles -> 32 codes: low half = low nibbles (elements 0..15), high half = high
// nibbles (16..31). Broadcast load, shift the upper 128 bits right by 4, mask.
#define UNPACK_NIBBLES_BODY                                                                        \
    const __m256i x = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));           \
    return _mm256_and_si256(_mm256_srlv_epi64(x, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0F));
QLM_AVX2_TARGET QLM_INLINE __m256i unpack_nibbles_avx2(const uint8_t *qs) { UNPACK_NIBBLES_BODY }
QLM_AVX512_TARGET QLM_INLINE __m256i unpack_nibbles_avx512(const uint8_t *qs) { UNPACK_NIBBLES_BODY }

// 32 bits -> 32 bytes: byte j = 0xFF where bit j of m is set, else 0 (each byte picks its byte of
// m, then tests its bit). q5_0's fifth bits (one qh word per block) and q5_0x8's chunk masks.
QLM_AVX2_TARGET QLM_INLINE __m256i bytemask32_avx2(uint32_t m) {
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)m),
                                          _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

// int32 lanes of (u8 x s8) products, lane i = bytes 4i..4i+3.
QLM_AVX2_TARGET QLM_INLINE __m256i dot_us_avx2(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
QLM_AVX512_TARGET QLM_INLINE __m256i dot_us_avx512(__m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}

#ifndef QLM_PF_DIST
#define QLM_PF_DIST 512
#endif
#define PF(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)

// Specialize the kernels on a constant row count (no per-row branches in the block loop).
#define NR_DISPATCH(F, P, TGT)                                                                        \
TGT static void dotn_##F##_##P(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) { \
    switch (nr) {                                                                                 \
    case 4: k_##F##_##P(n, w, rs, act, out, 4); break;                                            \
    case 3: k_##F##_##P(n, w, rs, act, out, 3); break;                                            \
    case 2: k_##F##_##P(n, w, rs, act, out, 2); break;                                            \
    default: k_##F##_##P(n, w, rs, act, out, 1); break;                                           \
    }                                                                                             \
}

// The few-token kernel of a type (qlm_few_fn) from its specializations F##_1 ... F##_8 on a
// constant token count (accumulators in registers).
#define FEW_DISPATCH(F, TGT)                                                                          \
TGT static void F(int64_t n, const void *w, const void *act, size_t as, float *Y, int64_t ldy, int nt) { \
    static void (*const k[QLM_FEW_MAX + 1])(int64_t, const void *, const void *, size_t, float *, int64_t) = { \
        NULL, F##_1, F##_2, F##_3, F##_4, F##_5, F##_6, F##_7, F##_8};                              \
    k[nt](n, w, act, as, Y, ldy);                                                                 \
}

// ---- quantized kernels, stamped for both paths ----------------------------------------------
// Each row keeps two float accumulators: even blocks go to acc0, odd blocks to acc1 (two
// independent FMA chains, so a single streaming row is not bound by FMA latency); the row's
// result is hsum8(acc0 + acc1) (+ sm0 + sm1 for Q4_1). Up to 4 rows share the activation loads.
#define QK_BEGIN(T)                                                                               \
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;                                                  \
    const qlm_block_q8a *a = (const qlm_block_q8a *)act;                                          \
    const T *wr[4];                                                                               \
    __m256 acc[4][2];                                                                             \
    float sm[4][2] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}};                                            \
    (void)sm;                                                                                     \
    for (int r = 0; r < 4; r++) {                                                                 \
        wr[r] = (const T *)((const char *)w + (r < nr ? r : 0) * rs);                             \
        acc[r][0] = _mm256_setzero_ps(); acc[r][1] = _mm256_setzero_ps();                         \
    }
// Block loop unrolled by two so the accumulator index is a constant (registers, not stack).
#define QK_LOOP(BODY)                                                                             \
    int64_t b = 0;                                                                                \
    for (; b + 1 < nb; b += 2) { BODY(b, 0) BODY(b + 1, 1) }                                      \
    if (b < nb) { BODY(b, 0) }
#define QK_END(P)                                                                                 \
    for (int r = 0; r < nr; r++)                                                                  \
        out[r] = hsum8_##P(_mm256_add_ps(acc[r][0], acc[r][1])) + (sm[r][0] + sm[r][1]);

// AVX-512: fixed-order horizontal sum of 16 floats.
QLM_AVX512_TARGET QLM_INLINE float hsum16_avx512(__m512 v) {
    return hsum8_avx512(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}


// ---- prefill tiles ----------------------------------------------------------------------------
// AVX-512 tiles are in the type files (q8_0: 4 rows x 4 tokens on 512-bit registers; q4_0, q4_1:
// 2 rows x 4 tokens, TILE_NR x TILE_NT). Each output is bit-identical to the type's dot kernel:
// the same integer lanes, the same float steps, the same even/odd accumulators.

// AVX2 few-token kernels (qlm_few_fn): 1 weight row x NT = 1..4 tokens, two accumulators per
// token (16 ymm registers: 8 accumulators + the row's state), each weight block loaded and
// unpacked once for all NT tokens; more tokens go in groups of 4 over the same row, which is
// in L1 by then (a SmolLM2 row is 612 bytes of q8_0), so the weights still stream from memory
// once per product. Before these, T = 2, 3 ran the dot kernel per token over 4 interleaved rows
// and T = 5..7 added such a pass after the 4-token tile: the weights were read twice.
// The integer lanes are those of the type's AVX2 dot kernel (q8_0: sign trick; q4_0: the lanes
// of its -8*sum(a) offset, formed by the sign trick on c - 8; q4_1: unsigned nibbles plus the
// min term m_w * s_a per parity, multiply then add), with the same scale product and FMA order
// and the same even/odd accumulators, so every output
// is bit-identical to the dot kernel: hsum8(acc0 + acc1) + (sm0 + sm1). The prefill tile is the
// 4-token kernel. PREP_ROW(bb) sets the block's weight registers, PAIR the int32 lanes of token
// av, MINT(t, k) adds a type's per-token float term (empty for q8_0, q4_0).
#define FEW2_BODY(PREP_ROW, PAIR, MINT, bb, k)                                                     \
    {                                                                                              \
        PF((const char *)(wr + (bb)) + QLM_PF_DIST);                                               \
        PREP_ROW(bb)                                                                               \
        const __m256 dw = bh2f_avx2(&wr[bb].d);                                                    \
        for (int t = 0; t < NT; t++) {                                                             \
            const qlm_block_q8a *ab = (const qlm_block_q8a *)(act + t * as) + (bb);                \
            const __m256i av = _mm256_loadu_si256((const __m256i *)ab->qs);                        \
            const __m256i is = PAIR;                                                               \
            acc[t][k] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(ab->d)), _mm256_cvtepi32_ps(is), acc[t][k]); \
            MINT(t, k)                                                                             \
        }                                                                                          \
    }
#define FEW2_FN(NAME, NT_, WT, PREP_ROW, PAIR, MINT)                                               \
QLM_AVX2_TARGET static void NAME##_##NT_(int64_t n, const void *w, const void *act_, size_t as, float *Y, int64_t ldy) { \
    enum { NT = NT_ };                                                                             \
    const char *act = (const char *)act_;                                                          \
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;                                                  \
    const WT *wr = (const WT *)w;                                                                  \
    const __m256i ones = _mm256_set1_epi16(1), eight = _mm256_set1_epi8(8);                        \
    (void)ones; (void)eight;                                                                       \
    __m256 acc[NT][2];                                                                             \
    float sm[NT][2];                                                                               \
    for (int t = 0; t < NT; t++) { acc[t][0] = acc[t][1] = _mm256_setzero_ps(); sm[t][0] = sm[t][1] = 0.0f; } \
    int64_t b = 0;                                                                                 \
    for (; b + 1 < nb; b += 2) { FEW2_BODY(PREP_ROW, PAIR, MINT, b, 0) FEW2_BODY(PREP_ROW, PAIR, MINT, b + 1, 1) } \
    if (b < nb) { FEW2_BODY(PREP_ROW, PAIR, MINT, b, 0) }                                          \
    for (int t = 0; t < NT; t++) Y[t * ldy] = hsum8_avx2(_mm256_add_ps(acc[t][0], acc[t][1])) + (sm[t][0] + sm[t][1]); \
}
#define FEW2_NONE(t, k)
// NAME: the few-token kernel (groups of up to 4 tokens per row); NAME##_tile: the prefill tile
// (1 row x 4 tokens, qlm_tile_fn).
#define FEW2_FAMILY(NAME, WT, PREP_ROW, PAIR, MINT)                                                \
FEW2_FN(NAME, 1, WT, PREP_ROW, PAIR, MINT) FEW2_FN(NAME, 2, WT, PREP_ROW, PAIR, MINT)              \
FEW2_FN(NAME, 3, WT, PREP_ROW, PAIR, MINT) FEW2_FN(NAME, 4, WT, PREP_ROW, PAIR, MINT)              \
QLM_AVX2_TARGET static void NAME(int64_t n, const void *w, const void *act, size_t as, float *Y, int64_t ldy, int nt) { \
    static void (*const k[5])(int64_t, const void *, const void *, size_t, float *, int64_t) = {   \
        NULL, NAME##_1, NAME##_2, NAME##_3, NAME##_4};                                             \
    for (int t0 = 0; t0 < nt; t0 += 4)                                                             \
        k[nt - t0 < 4 ? nt - t0 : 4](n, w, (const char *)act + (size_t)t0 * as, as, Y + t0 * ldy, ldy); \
}                                                                                                  \
QLM_AVX2_TARGET static void NAME##_tile(int64_t n, const void *w, size_t rs, const void *act, size_t as, float *Y, int64_t ldy) { \
    (void)rs;                                                                                      \
    NAME##_4(n, w, act, as, Y, ldy);                                                               \
}

// A q8a activation row packed for the AVX-512 pair kernels (q8_0's "q8p", the 32-weight types'
// "p512"): per pair of blocks 2p, 2p+1, `pair` bytes: the 64 codes + 128 (a ^ 0x80, unsigned), the
// block scales d[2p] x 8 then d[2p+1] x 8 (an odd last block: its half, the rest zero) and, when
// `sums`, the two block sums s[2p], s[2p+1] after them.
QLM_AVX512_TARGET QLM_INLINE void qlm_pack_q8a_pairs(const void *act, int64_t n, void *packed, size_t pair, int sums) {
    const qlm_block_q8a *a = (const qlm_block_q8a *)act;
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    char *p = (char *)packed;
    const __m256i c80 = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b += 2, p += pair) {
        const int odd = b + 1 < nb;
        _mm256_store_si256((__m256i *)p, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)a[b].qs), c80));
        _mm256_store_si256((__m256i *)(p + 32), odd ? _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)a[b + 1].qs), c80)
                                                    : _mm256_setzero_si256());
        _mm256_store_ps((float *)(p + 64), _mm256_set1_ps(a[b].d));
        _mm256_store_ps((float *)(p + 96), odd ? _mm256_set1_ps(a[b + 1].d) : _mm256_setzero_ps());
        if (sums) {
            const float s2[2] = {a[b].s, odd ? a[b + 1].s : 0.0f};
            memcpy(p + 128, s2, sizeof s2);
        }
    }
}
#endif

#endif
