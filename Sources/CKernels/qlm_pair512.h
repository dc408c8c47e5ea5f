// AVX-512 prefill tiles and few-token kernels for the 32-weight ggml block types whose AVX-512 dot
// kernels keep q4_0's frame (q5_0, q5_1, iq4_nl): two blocks per 512-bit register. Internal; x86
// only; included after qlm_simd.h.
//
// Packed activation row ("q8u", made once per token by qlm_matmul from the q8a row): per pair of
// blocks 2p, 2p+1, 192 bytes: the 64 codes + 128 (a ^ 0x80, unsigned), the scales d[2p] x 8 then
// d[2p+1] x 8, and the sums s[2p], s[2p+1] (an odd last block: its half, the rest zero). A register
// then holds an even block in its low half and the odd block in its high half: the dot kernel's
// acc[r][0] and acc[r][1] side by side. The weights are signed codes w (q5_0: q - 16, q5_1: q,
// iq4_nl: the codebook value), so per lane the dot kernel's integer is dpbusd(a + 128, w) started
// at -128 * sum(w) (exact: vpdpbusd does not saturate); the scale product bh2f(d_w) * d_a and the
// FMA are the dot kernel's, the min term (q5_1) m_w * s_a per parity is multiply then add, and the
// result is hsum8(low + high) (+ (sm0 + sm1)). Every output is bit-identical to the type's
// AVX-512 dot kernel, and so to its AVX2 kernels.
//
// Before these the AVX-512 path ran the AVX2 1 row x 4 tokens tile: 8 vector ops per 32 weights
// and token; here 4 per 64 weights and token (dpbusd, scale product, convert, FMA), the weight
// pair's unpacking shared by the tile's 4 tokens.
#ifndef QLM_PAIR512_H
#define QLM_PAIR512_H
#include "qlm_simd.h"
#if QLM_X86

#define P512_PAIR 192
static inline size_t p512_size(int64_t n) { return (size_t)((n + 2 * QLM_QK - 1) / (2 * QLM_QK)) * P512_PAIR; }
QLM_AVX512_TARGET static inline void p512_pack(const void *act, int64_t n, void *packed) {
    qlm_pack_q8a_pairs(act, n, packed, P512_PAIR, 1);
}

// The nibbles of blocks b, b+1 (16 bytes each): low 128 bits = low nibbles (elements 0..15),
// next 128 = high nibbles (16..31), then the same for block b+1 (unpack_nibbles' order, twice).
QLM_AVX512_TARGET QLM_INLINE __m512i p512_nibbles(const uint8_t *qs0, const uint8_t *qs1) {
    const __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs0))),
                                         _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs1)), 1);
    return _mm512_and_si512(_mm512_srlv_epi64(x, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4)), _mm512_set1_epi8(0x0F));
}
// -128 * sum(w) per int32 lane (4 weights each).
QLM_AVX512_TARGET QLM_INLINE __m512i p512_wc(__m512i w) {
    return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), w));
}
QLM_AVX512_TARGET QLM_INLINE __m256i p512_wc256(__m256i w) {
    return _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), w));
}
// The two blocks' scales: d_b x 8, then d_{b+1} x 8.
QLM_AVX512_TARGET QLM_INLINE __m512 p512_dw(const uint16_t *d0, const uint16_t *d1) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(bh2f_avx512(d0)), bh2f_avx512(d1), 1);
}

// One token's step over a weight pair (w, wc, dw) at packed pair q; IS(x): the integer lanes as
// the dot kernel scales them (iq4_xs: times the sub-block scales), or x.
#define P512_STEP(acc, w, wc, dw, q, IS)                                                           \
    acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_load_ps((const float *)((q) + 64))),            \
                          _mm512_cvtepi32_ps(IS(_mm512_dpbusd_epi32(wc, _mm512_load_si512((const void *)(q)), w))), acc);
// A last even block: the low halves only (acc[r][0] of the dot kernel).
#define P512_TSTEP(acc, w, wc, dw, q, IS)                                                          \
    {                                                                                              \
        const __m256i is_ = IS(_mm256_dpbusd_epi32(wc, _mm256_load_si256((const __m256i *)(q)), w)); \
        const __m256 lo_ = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_load_ps((const float *)((q) + 64))), \
                                           _mm256_cvtepi32_ps(is_), _mm512_castps512_ps256(acc));   \
        acc = _mm512_insertf32x8(acc, lo_, 0);                                                     \
    }
// Min terms (q5_1): lanes 0 and 1 of sm are the dot kernel's sm[0] and sm[1].
#define P512_MIN(sm, mw, q) sm = _mm_add_ps(sm, _mm_mul_ps(mw, _mm_castpd_ps(_mm_load_sd((const double *)((q) + 128)))));
#define P512_TMIN(sm, mw, q) sm = _mm_add_ss(sm, _mm_mul_ss(mw, _mm_load_ss((const float *)((q) + 128))));
#define P512_NOMIN(sm, mw, q)
#define P512_SUM(acc) hsum8_avx512(_mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1)))
#define P512_SUMMIN(acc, sm) (P512_SUM(acc) + (_mm_cvtss_f32(sm) + _mm_cvtss_f32(_mm_movehdup_ps(sm))))
#define P512_SUMNOMIN(acc, sm) P512_SUM(acc)
#define P512_IS(x) (x)
#define P512_PF32(wr, b) ((wr) + (b)) // the block at b (32-weight block types)

// F: the type's name; WT its block type. WPAIR(wr, b): statements defining the pair's signed codes
// `const __m512i w`, `const __m512 dw` and (for MIN types) `const __m128 mw` = [m_b, m_{b+1}, ., .];
// WTAIL(wr, b) the same for one block (`__m256i w`, `__m256 dw`, `__m128 mw` = [m_b, ...]).
// MIN, TMIN, SUM: P512_MIN, P512_TMIN, P512_SUMMIN for a type with a min term, else the NOMIN forms.
// IS, TIS: the integer post-ops of P512_STEP / P512_TSTEP (P512_IS: none). PFA(wr, b): the weight
// bytes of block b, prefetched ahead (P512_PF32 for the 32-weight block types).
// Defines tile_F_avx512z (NR rows x 4 tokens, qlm_tile_fn) and few_F_avx512 (qlm_few_fn).
#define P512_NT 4
#define P512_FAMILY(F, WT, NR, WPAIR, WTAIL, MIN, TMIN, SUM, IS, TIS, PFA)                                       \
QLM_AVX512_TARGET static void tile_##F##_avx512z(int64_t n, const void *w_, size_t rs, const void *act_, size_t as, \
                                                 float *Y, int64_t ldy) {                          \
    const char *w8 = (const char *)w_, *act = (const char *)act_;                                  \
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;                                                  \
    __m512 acc[NR][P512_NT];                                                                       \
    __m128 sm[NR][P512_NT];                                                                        \
    for (int r = 0; r < NR; r++)                                                                   \
        for (int t = 0; t < P512_NT; t++) { acc[r][t] = _mm512_setzero_ps(); sm[r][t] = _mm_setzero_ps(); } \
    (void)sm;                                                                                      \
    int64_t b = 0;                                                                                 \
    for (; b + 1 < nb; b += 2) {                                                                   \
        const char *pp = act + b / 2 * P512_PAIR;                                                  \
        for (int r = 0; r < NR; r++) {                                                             \
            const WT *wr = (const WT *)(w8 + r * rs);                                              \
            WPAIR(wr, b)                                                                           \
            const __m512i wc = p512_wc(w);                                                         \
            for (int t = 0; t < P512_NT; t++) { P512_STEP(acc[r][t], w, wc, dw, pp + t * as, IS) MIN(sm[r][t], mw, pp + t * as) } \
        }                                                                                          \
    }                                                                                              \
    if (b < nb) {                                                                                  \
        const char *pp = act + b / 2 * P512_PAIR;                                                  \
        for (int r = 0; r < NR; r++) {                                                             \
            const WT *wr = (const WT *)(w8 + r * rs);                                              \
            WTAIL(wr, b)                                                                           \
            const __m256i wc = p512_wc256(w);                                                      \
            for (int t = 0; t < P512_NT; t++) { P512_TSTEP(acc[r][t], w, wc, dw, pp + t * as, TIS) TMIN(sm[r][t], mw, pp + t * as) } \
        }                                                                                          \
    }                                                                                              \
    for (int t = 0; t < P512_NT; t++)                                                              \
        for (int r = 0; r < NR; r++) Y[t * ldy + r] = SUM(acc[r][t], sm[r][t]);                    \
}                                                                                                  \
P512_FEW_FN(F, WT, 1, WPAIR, WTAIL, MIN, TMIN, SUM, IS, TIS, PFA) P512_FEW_FN(F, WT, 2, WPAIR, WTAIL, MIN, TMIN, SUM, IS, TIS, PFA) \
P512_FEW_FN(F, WT, 3, WPAIR, WTAIL, MIN, TMIN, SUM, IS, TIS, PFA) P512_FEW_FN(F, WT, 4, WPAIR, WTAIL, MIN, TMIN, SUM, IS, TIS, PFA) \
P512_FEW_FN(F, WT, 5, WPAIR, WTAIL, MIN, TMIN, SUM, IS, TIS, PFA) P512_FEW_FN(F, WT, 6, WPAIR, WTAIL, MIN, TMIN, SUM, IS, TIS, PFA) \
P512_FEW_FN(F, WT, 7, WPAIR, WTAIL, MIN, TMIN, SUM, IS, TIS, PFA) P512_FEW_FN(F, WT, 8, WPAIR, WTAIL, MIN, TMIN, SUM, IS, TIS, PFA) \
FEW_DISPATCH(few_##F##_avx512, QLM_AVX512_TARGET)

// Few-token kernel: one weight row (one contiguous stream), each weight pair unpacked once for
// all NT tokens.
#define P512_FEW_FN(F, WT, NT, WPAIR, WTAIL, MIN, TMIN, SUM, IS, TIS, PFA)                                       \
QLM_AVX512_TARGET static void few_##F##_avx512_##NT(int64_t n, const void *w_, const void *act_, size_t as, float *Y, int64_t ldy) { \
    const WT *wr = (const WT *)w_;                                                                 \
    const char *act = (const char *)act_;                                                          \
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;                                                  \
    __m512 acc[NT];                                                                                \
    __m128 sm[NT];                                                                                 \
    for (int t = 0; t < NT; t++) { acc[t] = _mm512_setzero_ps(); sm[t] = _mm_setzero_ps(); }       \
    (void)sm;                                                                                      \
    int64_t b = 0;                                                                                 \
    for (; b + 1 < nb; b += 2) {                                                                   \
        PF((const char *)PFA(wr, b) + QLM_PF_DIST);                                               \
        WPAIR(wr, b)                                                                               \
        const __m512i wc = p512_wc(w);                                                             \
        const char *pp = act + b / 2 * P512_PAIR;                                                  \
        for (int t = 0; t < NT; t++) { P512_STEP(acc[t], w, wc, dw, pp + t * as, IS) MIN(sm[t], mw, pp + t * as) } \
    }                                                                                              \
    if (b < nb) {                                                                                  \
        WTAIL(wr, b)                                                                               \
        const __m256i wc = p512_wc256(w);                                                          \
        const char *pp = act + b / 2 * P512_PAIR;                                                  \
        for (int t = 0; t < NT; t++) { P512_TSTEP(acc[t], w, wc, dw, pp + t * as, TIS) TMIN(sm[t], mw, pp + t * as) } \
    }                                                                                              \
    for (int t = 0; t < NT; t++) Y[t * ldy] = SUM(acc[t], sm[t]);                                  \
}

// The table entries of a type with these kernels on the AVX-512 path (AVX2: its FEW2 tile and
// few-token kernel).
#define P512_ROW_KERNELS(F, NR)                                                                    \
    .tile = {[QLM_PATH_AVX2] = {few_##F##_tile, 1, FEW2_NT}, [QLM_PATH_AVX512] = {tile_##F##_avx512z, NR, P512_NT}}, \
    .few = {[QLM_PATH_AVX2] = few_##F, [QLM_PATH_AVX512] = few_##F##_avx512},                     \
    P512_PACK
#define P512_PACK .pack = {[QLM_PATH_AVX512] = {p512_pack, p512_size, 0}},

#endif
#endif
