// Kernels of the 256-weight super-block types that pair with q8a activations (iq4_xs, q3_k, q2_k):
// every 32-weight sub-block meets exactly one q8a block, so its integer sum is exact in int32 and
// the float step per sub-block is acc += (d * d_a) * lanes (8 int32 lanes, even/odd sub-block
// accumulators, fixed-order reduction). One body per type and SIMD path serves the dot kernel
// (1 token), the few-token kernel (groups of up to 4 tokens over one row) and the prefill tile
// (1 row x 4 tokens): each output is the same arithmetic, so all three agree bit for bit.
// Included after qlm_simd.h; x86 only.
#ifndef QLM_SB32_H
#define QLM_SB32_H
#include "qlm_simd.h"

// A row of n floats quantized 256 at a time by f (one super-block of bb bytes each; the last one
// from a zero-padded copy).
static inline void sb32_quantize_row(qlm_block_fn f, size_t bb, const float *x, void *dst, int64_t n) {
    for (int64_t i0 = 0; i0 < n; i0 += 256, dst = (char *)dst + bb) {
        float buf[256] = {0};
        memcpy(buf, x + i0, (size_t)(n - i0 < 256 ? n - i0 : 256) * sizeof(float));
        f(buf, dst);
    }
}

#if QLM_X86
// One weight row x NT tokens. SETUP: per-call constants. SUB(P, g, k): sub-block g into acc[t][k]
// (and acm[t][k], a second accumulator pair for a type's min terms) for t < NT, reading token t's
// q8a block at (const qlm_block_q8a *)(act + t * as) + g. FIN(P, t): token t's result.
#define SB32_FN(F, P, TGT, NT_, WT, SETUP, SUB, FIN)                                                \
TGT static void F##_##P##_##NT_(int64_t n, const void *w, const void *act_, size_t as, float *Y, int64_t ldy) { \
    enum { NT = NT_ };                                                                             \
    const char *act = (const char *)act_;                                                          \
    const WT *wb = (const WT *)w;                                                                  \
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;                                                  \
    SETUP                                                                                          \
    __m256 acc[NT][2], acm[NT][2];                                                                 \
    for (int t = 0; t < NT; t++) acc[t][0] = acc[t][1] = acm[t][0] = acm[t][1] = _mm256_setzero_ps(); \
    (void)acm;                                                                                     \
    int64_t g = 0;                                                                                 \
    for (; g + 1 < nb; g += 2) { SUB(P, g, 0) SUB(P, g + 1, 1) }                                   \
    if (g < nb) { SUB(P, g, 0) }                                                                   \
    for (int t = 0; t < NT; t++) Y[t * ldy] = FIN(P, t);                                           \
}
#define SB32_FIN(P, t) hsum8_##P(_mm256_add_ps(acc[t][0], acc[t][1]))
// dotn_F_P (rows one by one), few_F_P (qlm_few_fn) and tile_F_P (qlm_tile_fn, 1 x 4).
#define SB32_FAMILY(F, P, TGT, WT, SETUP, SUB, FIN)                                                 \
SB32_FN(F, P, TGT, 1, WT, SETUP, SUB, FIN) SB32_FN(F, P, TGT, 2, WT, SETUP, SUB, FIN)              \
SB32_FN(F, P, TGT, 3, WT, SETUP, SUB, FIN) SB32_FN(F, P, TGT, 4, WT, SETUP, SUB, FIN)              \
TGT static void dotn_##F##_##P(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) { \
    for (int r = 0; r < nr; r++) F##_##P##_1(n, (const char *)w + r * rs, act, 0, out + r, 0);     \
}                                                                                                  \
TGT __attribute__((unused)) static void few_##F##_##P(int64_t n, const void *w, const void *act, size_t as, float *Y, int64_t ldy, int nt) { \
    static void (*const k[5])(int64_t, const void *, const void *, size_t, float *, int64_t) = {   \
        NULL, F##_##P##_1, F##_##P##_2, F##_##P##_3, F##_##P##_4};                                 \
    for (int t0 = 0; t0 < nt; t0 += 4)                                                             \
        k[nt - t0 < 4 ? nt - t0 : 4](n, w, (const char *)act + (size_t)t0 * as, as, Y + t0 * ldy, ldy); \
}                                                                                                  \
TGT __attribute__((unused)) static void tile_##F##_##P(int64_t n, const void *w, size_t rs, const void *act, size_t as, float *Y, int64_t ldy) { \
    (void)rs;                                                                                      \
    F##_##P##_4(n, w, act, as, Y, ldy);                                                            \
}
// The table entries of a type whose kernels are SB32_FAMILY(F, avx2 / avx512, ...).
#define SB32_ROW_KERNELS(F)                                                                        \
    .dotn = {[QLM_PATH_SCALAR] = dotn_##F##_scalar, [QLM_PATH_AVX2] = dotn_##F##_avx2, [QLM_PATH_AVX512] = dotn_##F##_avx512}, \
    .tile = {[QLM_PATH_AVX2] = {tile_##F##_avx2, 1, 4}, [QLM_PATH_AVX512] = {tile_##F##_avx512, 1, 4}}, \
    .few = {[QLM_PATH_AVX2] = few_##F##_avx2, [QLM_PATH_AVX512] = few_##F##_avx512},
// fp16 -> float by F16C (equal to qlm_h2f).
#define SB32_H2F(h) _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128((int)(h))))
#else
#define SB32_ROW_KERNELS(F) .dotn = {[QLM_PATH_SCALAR] = dotn_##F##_scalar},
#endif
#endif
