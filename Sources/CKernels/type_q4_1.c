// q4_1: 32-weight blocks, fp16 scale d = (max - min) / 15 and fp16 min m, 4-bit codes
// (docs/format.md). Pairs with q8a activations (their s = d_a * sum(qs) gives the min term).
// Vectorized quantizers are bit-identical to the scalar one.
#include "qlm_simd.h"

#pragma clang fp contract(off)

static size_t q4_1_row_size(int64_t n) { return (size_t)((n + QLM_QK - 1) / QLM_QK) * sizeof(qlm_block_q4_1); }

// ---- quantizers ------------------------------------------------------------------------------
static void q4_1_block_scalar(const float *x, void *bv) {
    qlm_block_q4_1 *b = (qlm_block_q4_1 *)bv;
    float min = x[0], max = x[0];
    for (int j = 1; j < QLM_QK; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    min += 0.0f; max += 0.0f; // canonical +0 (SIMD min/max may pick either signed zero)
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = qlm_f2h(d);
    b->m = qlm_f2h(min);
    for (int j = 0; j < QLM_QK / 2; j++) {
        const float x0 = (x[j] - min) * id, x1 = (x[j + 16] - min) * id;
        const int8_t q0 = q4_code(x0 + 0.5f), q1 = q4_code(x1 + 0.5f);
        b->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

#if QLM_X86
QLM_AVX512_TARGET static void q4_1_block_avx512(const float *x, void *bv) {
    qlm_block_q4_1 *b = (qlm_block_q4_1 *)bv;
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float min = _mm512_reduce_min_ps(_mm512_min_ps(v0, v1)) + 0.0f;
    const float max = _mm512_reduce_max_ps(_mm512_max_ps(v0, v1)) + 0.0f;
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = qlm_f2h(d);
    b->m = qlm_f2h(min);
    const __m512 vid = _mm512_set1_ps(id), h = _mm512_set1_ps(0.5f), vm = _mm512_set1_ps(min);
    const __m512i q0 = q4_codes512(_mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v0, vm), vid), h));
    const __m512i q1 = q4_codes512(_mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v1, vm), vid), h));
    _mm_storeu_si128((__m128i *)b->qs, _mm512_cvtepi32_epi8(_mm512_or_si512(q0, _mm512_slli_epi32(q1, 4))));
}

QLM_AVX2_TARGET static void q4_1_block_avx2(const float *x, void *bv) {
    qlm_block_q4_1 *b = (qlm_block_q4_1 *)bv;
    LOAD4(x);
    const float min = hmin256(_mm256_min_ps(_mm256_min_ps(v0, v1), _mm256_min_ps(v2, v3))) + 0.0f;
    const float max = hmax256(_mm256_max_ps(_mm256_max_ps(v0, v1), _mm256_max_ps(v2, v3))) + 0.0f;
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = qlm_f2h(d);
    b->m = qlm_f2h(min);
    const __m256 vid = _mm256_set1_ps(id), h = _mm256_set1_ps(0.5f), vm = _mm256_set1_ps(min);
#define Q41(v) q4_codes256(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, vm), vid), h))
    store_u8x16(b->qs, _mm256_or_si256(Q41(v0), _mm256_slli_epi32(Q41(v2), 4)),
                _mm256_or_si256(Q41(v1), _mm256_slli_epi32(Q41(v3), 4)));
#undef Q41
}
#endif

static void q4_1_quantize_row(int32_t path, const float *x, void *dst, int64_t n) {
    qlm_block_fn f = q4_1_block_scalar;
#if QLM_X86
    if (path == QLM_PATH_AVX512) f = q4_1_block_avx512;
    else if (path == QLM_PATH_AVX2) f = q4_1_block_avx2;
#endif
    (void)path;
    qlm_quantize_blocks(f, sizeof(qlm_block_q4_1), x, dst, n);
}

static void q4_1_dequantize_row(const void *src, float *y, int64_t n) {
    const qlm_block_q4_1 *b = (const qlm_block_q4_1 *)src;
    for (int64_t i = 0; i < n; i++) {
        const qlm_block_q4_1 *bk = &b[i / QLM_QK];
        const int j = (int)(i % QLM_QK);
        const int q = j < 16 ? (bk->qs[j] & 0xF) : (bk->qs[j - 16] >> 4);
        y[i] = qlm_h2f(bk->d) * (float)q + qlm_h2f(bk->m);
    }
}

// ---- dots --------------------------------------------------------------------------------------
static float dot_q4_1_scalar1(int64_t n, const qlm_block_q4_1 *w, const qlm_block_q8a *a) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    float s = 0.0f, sm = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int32_t is = 0;
        for (int j = 0; j < 16; j++) {
            is += (int32_t)(w[b].qs[j] & 0xF) * (int32_t)a[b].qs[j];
            is += (int32_t)(w[b].qs[j] >> 4) * (int32_t)a[b].qs[j + 16];
        }
        s += (qlm_h2f(w[b].d) * a[b].d) * (float)is;
        sm += qlm_h2f(w[b].m) * a[b].s;
    }
    return s + sm;
}

SCALAR_DOTN(dotn_q4_1_scalar, dot_q4_1_scalar1, qlm_block_q4_1, qlm_block_q8a)

#if QLM_X86
#define Q4_1_BODY(P, bb, k) {                                                                     \
        const __m256i av = _mm256_loadu_si256((const __m256i *)a[bb].qs);                         \
        const __m256 da = _mm256_set1_ps(a[bb].d);                                                \
        const float sa = a[bb].s;                                                                 \
        for (int r = 0; r < nr; r++) {                                                            \
            PF((const char *)(wr[r] + bb) + QLM_PF_DIST);                                         \
            const __m256i is = dot_us_##P(unpack_nibbles_##P(wr[r][bb].qs), av);                  \
            /* d and m are adjacent: one 32-bit load, one conversion -> [d, m, 0, 0] */           \
            uint32_t dm32;                                                                        \
            memcpy(&dm32, &wr[r][bb].d, 4);                                                       \
            const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dm32));                         \
            const __m256 sc = _mm256_mul_ps(_mm256_broadcastss_ps(dm), da);                       \
            acc[r][k] = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(is), acc[r][k]);                   \
            sm[r][k] += _mm_cvtss_f32(_mm_movehdup_ps(dm)) * sa;                                  \
        } }
#define Q4_1_AVX2(bb, k) Q4_1_BODY(avx2, bb, k)
#define Q4_1_AVX512(bb, k) Q4_1_BODY(avx512, bb, k)
#define Q4_1_KERNEL(P, PU, TGT)                                                                   \
TGT QLM_INLINE void k_q4_1_##P(int64_t n, const void *w, size_t rs, const void *act, float *out, const int nr) { \
    QK_BEGIN(qlm_block_q4_1) QK_LOOP(Q4_1_##PU) QK_END(P)                                         \
}                                                                                                 \
NR_DISPATCH(q4_1, P, TGT)
Q4_1_KERNEL(avx2, AVX2, QLM_AVX2_TARGET)
Q4_1_KERNEL(avx512, AVX512, QLM_AVX512_TARGET)

// AVX2: the few-token kernel and 1 row x 4 tokens tile (qlm_simd.h FEW2_FAMILY), the lanes of
// k_q4_1_avx2; the min term m_w * s_a per token and parity as its sm[r][k] (multiply, then add).
#define Q41_ROW2(bb)                                                                               \
    const __m256i wq = unpack_nibbles_avx2(wr[bb].qs);                                             \
    const float mw = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128((int)wr[bb].m)));
#define Q41_PAIR2 dot_us_avx2(wq, av)
#define Q41_MIN2(t, k) sm[t][k] += mw * ab->s;
FEW2_FAMILY(few_q4_1_avx2, qlm_block_q4_1, Q41_ROW2, Q41_PAIR2, Q41_MIN2)

// ---- prefill tile (AVX-512) -------------------------------------------------------------------
// q4_1: 8-lane blocks as k_q4_1 (codes unpacked as on AVX2, no -8 offset), plus the min term m_w * s_a. The min terms of the 4 tokens
// sit in the 4 lanes of one __m128 per (row, parity): lane t does exactly the scalar kernel's
// `sm += m_w * s_a` (separate multiply and add), so the results stay bit-identical.
QLM_AVX512_TARGET static void tile_q4_1_avx512(int64_t n, const void *w_, size_t rs, const void *act_, size_t as,
                                               float *Y, int64_t ldy) {
    const char *w = (const char *)w_, *act = (const char *)act_;
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    const qlm_block_q4_1 *wr[TILE_NR];
    for (int r = 0; r < TILE_NR; r++) wr[r] = (const qlm_block_q4_1 *)(w + r * rs);
    __m256 acc[TILE_NR][TILE_NT][2];
    __m128 sm[TILE_NR][2];
    for (int r = 0; r < TILE_NR; r++) {
        sm[r][0] = sm[r][1] = _mm_setzero_ps();
        for (int t = 0; t < TILE_NT; t++) acc[r][t][0] = acc[r][t][1] = _mm256_setzero_ps();
    }
#define Q41_TILE_BODY(bb, k)                                                                       \
    {                                                                                              \
        __m256i wq[TILE_NR];                                                                       \
        __m256 dw[TILE_NR];                                                                        \
        for (int r = 0; r < TILE_NR; r++) {                                                        \
            wq[r] = unpack_nibbles_avx512(wr[r][bb].qs);                                           \
            dw[r] = bh2f_avx512(&wr[r][bb].d);                                                     \
        }                                                                                          \
        const qlm_block_q8a *ab0 = (const qlm_block_q8a *)act + (bb);                              \
        const qlm_block_q8a *ab1 = (const qlm_block_q8a *)(act + as) + (bb);                       \
        const qlm_block_q8a *ab2 = (const qlm_block_q8a *)(act + 2 * as) + (bb);                   \
        const qlm_block_q8a *ab3 = (const qlm_block_q8a *)(act + 3 * as) + (bb);                   \
        const __m128 sa = _mm_setr_ps(ab0->s, ab1->s, ab2->s, ab3->s);                             \
        for (int r = 0; r < TILE_NR; r++)                                                          \
            sm[r][k] = _mm_add_ps(sm[r][k], _mm_mul_ps(_mm256_castps256_ps128(bh2f_avx512(&wr[r][bb].m)), sa)); \
        for (int t = 0; t < TILE_NT; t++) {                                                        \
            const qlm_block_q8a *ab = (const qlm_block_q8a *)(act + t * as) + (bb);                \
            const __m256i av = _mm256_loadu_si256((const __m256i *)ab->qs);                        \
            const __m256 da = _mm256_set1_ps(ab->d);                                               \
            for (int r = 0; r < TILE_NR; r++) {                                                    \
                const __m256i is = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wq[r], av);         \
                acc[r][t][k] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], da), _mm256_cvtepi32_ps(is), acc[r][t][k]); \
            }                                                                                      \
        }                                                                                          \
    }
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) { Q41_TILE_BODY(b, 0) Q41_TILE_BODY(b + 1, 1) }
    if (b < nb) { Q41_TILE_BODY(b, 0) }
#undef Q41_TILE_BODY
    for (int r = 0; r < TILE_NR; r++) {
        float s0[4], s1[4];
        _mm_storeu_ps(s0, sm[r][0]);
        _mm_storeu_ps(s1, sm[r][1]);
        for (int t = 0; t < TILE_NT; t++)
            Y[t * ldy + r] = hsum8_avx512(_mm256_add_ps(acc[r][t][0], acc[r][t][1])) + (s0[t] + s1[t]);
    }
}
#endif

// ---- few-token kernel (AVX-512) on packed activations --------------------------------------------
// Packed activation row ("q8s"), per pair of blocks 2p, 2p+1, 192 bytes: the 64 codes as they are
// (signed; the weights' nibbles are the unsigned side of dpbusd), the scales d[2p] x 8 then
// d[2p+1] x 8, and the sums s[2p], s[2p+1] (an odd last block: its half, the rest zero). One
// register then holds an even block in its low half and the odd one in its high half: the dot
// kernel's acc[0] and acc[1] side by side, with the same integer lanes, the same d_w * d_a product
// and FMA per lane; the min terms m_w * s_a of both parities sit in lanes 0 and 1 of one __m128
// (multiply, then add, as the dot kernel's sm[0] and sm[1]). Every output is bit-identical to
// k_q4_1_avx512's: hsum8(acc0 + acc1) + (sm0 + sm1).
#if QLM_X86
#define Q8S_PAIR 192
static size_t q8s_size(int64_t n) { return (size_t)((n + 2 * QLM_QK - 1) / (2 * QLM_QK)) * Q8S_PAIR; }
QLM_AVX512_TARGET static void q8s_pack(const void *act, int64_t n, void *packed) {
    const qlm_block_q8a *a = (const qlm_block_q8a *)act;
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    char *p = (char *)packed;
    for (int64_t b = 0; b < nb; b += 2, p += Q8S_PAIR) {
        const int odd = b + 1 < nb;
        _mm256_store_si256((__m256i *)p, _mm256_loadu_si256((const __m256i *)a[b].qs));
        _mm256_store_si256((__m256i *)(p + 32), odd ? _mm256_loadu_si256((const __m256i *)a[b + 1].qs) : _mm256_setzero_si256());
        _mm256_store_ps((float *)(p + 64), _mm256_set1_ps(a[b].d));
        _mm256_store_ps((float *)(p + 96), odd ? _mm256_set1_ps(a[b + 1].d) : _mm256_setzero_ps());
        const float s2[2] = {a[b].s, odd ? a[b + 1].s : 0.0f};
        memcpy(p + 128, s2, sizeof s2);
    }
}
#define Q41F_FN(NT)                                                                                \
QLM_AVX512_TARGET static void few_q4_1_avx512_##NT(int64_t n, const void *w_, const void *act_, size_t as, float *Y, int64_t ldy) { \
    const qlm_block_q4_1 *wr = (const qlm_block_q4_1 *)w_;                                         \
    const char *act = (const char *)act_;                                                          \
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;                                                  \
    const __m512i shift = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4), lo4 = _mm512_set1_epi8(0x0F); \
    const __m512i didx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);        \
    __m512 acc[NT];                                                                                \
    __m128 sm[NT];                                                                                 \
    for (int t = 0; t < NT; t++) { acc[t] = _mm512_setzero_ps(); sm[t] = _mm_setzero_ps(); }       \
    int64_t b = 0;                                                                                 \
    for (; b + 1 < nb; b += 2) {                                                                   \
        PF((const char *)(wr + b) + QLM_PF_DIST);                                                  \
        const __m512i x = _mm512_inserti64x4(                                                      \
            _mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)wr[b].qs))), \
            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)wr[b + 1].qs)), 1);       \
        const __m512i wq = _mm512_and_si512(_mm512_srlv_epi64(x, shift), lo4);                     \
        uint32_t dm0, dm1;                                                                         \
        memcpy(&dm0, &wr[b].d, 4);                                                                 \
        memcpy(&dm1, &wr[b + 1].d, 4);                                                             \
        const __m128 dm = _mm_cvtph_ps(_mm_setr_epi32((int)dm0, (int)dm1, 0, 0)); /* d0 m0 d1 m1 */ \
        const __m512 dw = _mm512_permutexvar_ps(didx, _mm512_castps128_ps512(dm));                 \
        const __m128 mw = _mm_shuffle_ps(dm, dm, _MM_SHUFFLE(3, 3, 3, 1));       /* m0 m1 . . */   \
        const char *pp = act + b / 2 * Q8S_PAIR;                                                   \
        for (int t = 0; t < NT; t++) {                                                             \
            const char *q = pp + t * as;                                                           \
            const __m512i is = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, _mm512_load_si512((const void *)q)); \
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_load_ps((const float *)(q + 64))), _mm512_cvtepi32_ps(is), acc[t]); \
            sm[t] = _mm_add_ps(sm[t], _mm_mul_ps(mw, _mm_castpd_ps(_mm_load_sd((const double *)(q + 128))))); \
        }                                                                                          \
    }                                                                                              \
    if (b < nb) { /* a last even block: the low halves and lane 0 only */                         \
        const __m256i wq = unpack_nibbles_avx512(wr[b].qs);                                        \
        const __m256 dw = bh2f_avx512(&wr[b].d);                                                   \
        const __m128 mw = _mm256_castps256_ps128(bh2f_avx512(&wr[b].m));                              \
        for (int t = 0; t < NT; t++) {                                                             \
            const char *q = act + t * as + b / 2 * Q8S_PAIR;                                       \
            const __m256i is = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wq, _mm256_load_si256((const __m256i *)q)); \
            const __m256 lo = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_load_ps((const float *)(q + 64))), \
                                              _mm256_cvtepi32_ps(is), _mm512_castps512_ps256(acc[t])); \
            acc[t] = _mm512_insertf32x8(acc[t], lo, 0);                                            \
            sm[t] = _mm_add_ss(sm[t], _mm_mul_ss(mw, _mm_load_ss((const float *)(q + 128))));     \
        }                                                                                          \
    }                                                                                              \
    for (int t = 0; t < NT; t++)                                                                   \
        Y[t * ldy] = hsum8_avx512(_mm256_add_ps(_mm512_castps512_ps256(acc[t]), _mm512_extractf32x8_ps(acc[t], 1))) \
                     + (_mm_cvtss_f32(sm[t]) + _mm_cvtss_f32(_mm_movehdup_ps(sm[t])));             \
}
Q41F_FN(1) Q41F_FN(2) Q41F_FN(3) Q41F_FN(4) Q41F_FN(5) Q41F_FN(6) Q41F_FN(7) Q41F_FN(8)
FEW_DISPATCH(few_q4_1_avx512, QLM_AVX512_TARGET)
#endif

// ---- table row -------------------------------------------------------------------------------
const qlm_type_traits qlm_traits_q4_1 = {
    .name = "q4_1", .block_size = QLM_QK, .block_bytes = sizeof(qlm_block_q4_1), .is_quantized = 1,
    .act_type = QLM_ACT_Q8A, .row_group = 1, .code_bits = 4,
    .fp16_count = 2, .fp16_offsets = {offsetof(qlm_block_q4_1, d), offsetof(qlm_block_q4_1, m)},
    .row_size = q4_1_row_size, .quantize_row = q4_1_quantize_row, .dequantize_row = q4_1_dequantize_row,
    .act_row_size = qlm_act_size_q8a, .prepare_act = qlm_prepare_q8a,
    .dotn = {[QLM_PATH_SCALAR] = dotn_q4_1_scalar, [QLM_PATH_AVX2] = QLM_IF_X86(dotn_q4_1_avx2),
             [QLM_PATH_AVX512] = QLM_IF_X86(dotn_q4_1_avx512)},
    .tile = {[QLM_PATH_AVX2] = {QLM_IF_X86(few_q4_1_avx2_tile), 1, FEW2_NT},
             [QLM_PATH_AVX512] = {QLM_IF_X86(tile_q4_1_avx512), TILE_NR, TILE_NT}},
    .few = {[QLM_PATH_AVX2] = QLM_IF_X86(few_q4_1_avx2), [QLM_PATH_AVX512] = QLM_IF_X86(few_q4_1_avx512)},
    .pack = {[QLM_PATH_AVX512] = {QLM_IF_X86(q8s_pack), QLM_IF_X86(q8s_size), 1}},
    .quantize_row_imp = qlm_q4_1_quantize_row_imp,
};
