// q5_k: ggml's Q5_K super-block, byte for byte (ksuper.h, docs/format.md): q4_k's scales, mins
// and nibbles plus a fifth code bit, qh[i] bit j for weight i of sub-block j (codes 0..31).
// Pairs with q8k activations (a scale per 32); one product scheme for every path and kernel (ksuper.h).
#include "ksuper.h"
#include "qlm_ggml.h"

#pragma clang fp contract(off)

static size_t q5_k_row_size(int64_t n) { return kq_row_size_bytes(n, sizeof(qlm_block_q5_k)); }

// As q4_k's quantizer with 32 levels (scale = max scale / 63, codes against the stored numbers).
static void q5_k_block(const float *x, void *dst) {
    qlm_block_q5_k *b = (qlm_block_q5_k *)dst;
    float dl[8], ml[8];
    kq_fit_scales_mins(x, 31, &b->d, &b->dmin, b->scales, dl, ml);
    memset(b->qs, 0, sizeof b->qs);
    memset(b->qh, 0, sizeof b->qh);
    for (int j = 0; j < 8; j++) {
        for (int i = 0; i < 32; i++) {
            const int q = kq_code(x[32 * j + i] + ml[j], dl[j], 0, 31, 0);
            b->qs[32 * (j / 2) + i] |= (uint8_t)((q & 15) << (4 * (j % 2)));
            b->qh[i] |= (uint8_t)((q >> 4) << j);
        }
    }
}
// Importance-weighted: q4_k's (quant_imp.c) with 32 levels.
static void q5_k_imp_block(const float *x, const float *w, void *dst) {
    qlm_block_q5_k *b = (qlm_block_q5_k *)dst;
    uint8_t sc[8], mn[8], q[QK_K];
    qlm_imp_affine_super(x, w, 8, 32, 31, 63, &b->d, &b->dmin, sc, mn, q);
    kq_pack_scales(sc, mn, b->scales);
    memset(b->qs, 0, sizeof b->qs);
    memset(b->qh, 0, sizeof b->qh);
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < 32; i++) {
            const int c = q[32 * j + i];
            b->qs[32 * (j / 2) + i] |= (uint8_t)((c & 15) << (4 * (j % 2)));
            b->qh[i] |= (uint8_t)((c >> 4) << j);
        }
}
static void q5_k_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) {
    qlm_imp_rows(q5_k_imp_block, QK_K, sizeof(qlm_block_q5_k), x, imp, dst, n);
}
static void q5_k_quantize_row(int32_t path, const float *x, void *dst, int64_t n) {
    (void)path;
    kq_quantize_row(q5_k_block, sizeof(qlm_block_q5_k), x, dst, n);
}
static void q5_k_dequantize_row(const void *src, float *y, int64_t n) {
    kq_dequantize_row(QLM_GGML_Q5_K, sizeof(qlm_block_q5_k), src, y, n);
}

// ---- decoders ----------------------------------------------------------------------------------
#if QLM_X86
QLM_AVX2_TARGET QLM_INLINE void dec_q5_k_avx2(const qlm_block_q5_k *b, kq_dec *D) {
    kq_dec_scales_min_avx2(D, b->scales, b->d, b->dmin);
    const __m256i lo4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    const __m256i h = _mm256_loadu_si256((const __m256i *)b->qh);
    for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * j));
        const __m256i m0 = _mm256_set1_epi8((char)(1 << (2 * j))), m1 = _mm256_set1_epi8((char)(1 << (2 * j + 1)));
        const __m256i h0 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, m0), m0), b4);
        const __m256i h1 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, m1), m1), b4);
        _mm256_store_si256((__m256i *)(D->q + 64 * j), _mm256_or_si256(_mm256_and_si256(v, lo4), h0));
        _mm256_store_si256((__m256i *)(D->q + 64 * j + 32), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), lo4), h1));
    }
}
#endif

KQ_KERNELS(q5_k, scalar, , kq_dec_q5_k_scalar, 0, qlm_block_q5_k)
#if QLM_X86
KQ_KERNELS(q5_k, avx2, QLM_AVX2_TARGET, dec_q5_k_avx2, 0, qlm_block_q5_k)
KQ_KERNELS(q5_k, avx512, QLM_AVX512_TARGET, dec_q5_k_avx2, 0, qlm_block_q5_k)

// One-token dots (decode): kq_dot1_affine_* (ksuper.h) per super-block, the fifth bits from qh.
QLM_AVX512_TARGET static float dot1_q5_k_avx512(int64_t n, const qlm_block_q5_k *w, const qlm_block_q8k *a) {
    const int64_t nb = (n + QK_K - 1) / QK_K;
    __m256 S = _mm256_setzero_ps(), M = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        PF((const char *)(w + b) + QLM_PF_DIST);
        kq_dot1_affine_avx512(w[b].scales, w[b].qs, w[b].qh, w[b].d, w[b].dmin, a + b, &S, &M);
    }
    return hsum8_avx2(S) - hsum8_avx2(M);
}
QLM_AVX2_TARGET static float dot1_q5_k_avx2(int64_t n, const qlm_block_q5_k *w, const qlm_block_q8k *a) {
    const int64_t nb = (n + QK_K - 1) / QK_K;
    __m256 S = _mm256_setzero_ps(), M = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        PF((const char *)(w + b) + QLM_PF_DIST);
        kq_dot1_affine_avx2(w[b].scales, w[b].qs, w[b].qh, w[b].d, w[b].dmin, a + b, &S, &M);
    }
    return hsum8_avx2(S) - hsum8_avx2(M);
}
KQ_DOT1_DOTN(q5_k, avx512, QLM_AVX512_TARGET, qlm_block_q5_k)
KQ_DOT1_DOTN(q5_k, avx2, QLM_AVX2_TARGET, qlm_block_q5_k)
#endif

// ---- table row -------------------------------------------------------------------------------
const qlm_type_traits qlm_traits_q5_k = {
    .name = "q5_k", .summary = "ggml Q5_K", .block_bytes = sizeof(qlm_block_q5_k), .code_bits = 5,
    .fp16_count = 2, .fp16_offsets = {offsetof(qlm_block_q5_k, d), offsetof(qlm_block_q5_k, dmin)},
    .row_fallback = 13, // q5_1, as llama.cpp falls back
    .row_size = q5_k_row_size, .quantize_row = q5_k_quantize_row, .dequantize_row = q5_k_dequantize_row,
    .quantize_row_imp = q5_k_quantize_row_imp,
    KQ_ROW_KERNELS(q5_k, dot1n)
};
