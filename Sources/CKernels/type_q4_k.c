// q4_k: ggml's Q4_K super-block, byte for byte (ksuper.h, docs/format.md): 256 weights as 8
// sub-blocks of 32, weight = d * sc_j * q - dmin * m_j, 6-bit sc_j and m_j packed in 12 bytes,
// fp16 d and dmin, 4-bit codes (sub-blocks 2i and 2i+1 share 32 bytes: low and high nibbles).
// Pairs with q8k activations (a scale per 32); one product scheme for every path and kernel (ksuper.h).
#include "ksuper.h"
#include "qlm_ggml.h"

#pragma clang fp contract(off)

static size_t q4_k_row_size(int64_t n) { return kq_row_size_bytes(n, sizeof(qlm_block_q4_k)); }

// ---- quantizer (one scalar quantizer on every path) ----------------------------------------
// Per sub-block a weighted fit of scale and min (kq_fit_affine), then d = max scale / 63 and
// dmin = max min / 63 (fp16), the 6-bit sub-scales rounded against them, and the codes rounded
// against the stored numbers as the dequantizer forms them (d * sc, dmin * m).
static void q4_k_block(const float *x, void *dst) {
    qlm_block_q4_k *b = (qlm_block_q4_k *)dst;
    float dl[8], ml[8];
    kq_fit_scales_mins(x, 15, &b->d, &b->dmin, b->scales, dl, ml);
    memset(b->qs, 0, sizeof b->qs);
    for (int j = 0; j < 8; j++) {
        for (int i = 0; i < 32; i++)
            b->qs[32 * (j / 2) + i] |= (uint8_t)(kq_code(x[32 * j + i] + ml[j], dl[j], 0, 15, 0) << (4 * (j % 2)));
    }
}
// Importance-weighted (quant_imp.c): per sub-block a weighted fit of scale and min, d / dmin the
// largest over 63 (fp16), each sub-block's 6-bit scale and min the best of round +- 1.
static void q4_k_imp_block(const float *x, const float *w, void *dst) {
    qlm_block_q4_k *b = (qlm_block_q4_k *)dst;
    uint8_t sc[8], mn[8], q[QK_K];
    qlm_imp_affine_super(x, w, 8, 32, 15, 63, &b->d, &b->dmin, sc, mn, q);
    kq_pack_scales(sc, mn, b->scales);
    memset(b->qs, 0, sizeof b->qs);
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < 32; i++) b->qs[32 * (j / 2) + i] |= (uint8_t)(q[32 * j + i] << (4 * (j % 2)));
}
static void q4_k_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) {
    qlm_imp_rows(q4_k_imp_block, QK_K, sizeof(qlm_block_q4_k), x, imp, dst, n);
}
static void q4_k_quantize_row(int32_t path, const float *x, void *dst, int64_t n) {
    (void)path;
    kq_quantize_row(q4_k_block, sizeof(qlm_block_q4_k), x, dst, n);
}
static void q4_k_dequantize_row(const void *src, float *y, int64_t n) {
    kq_dequantize_row(QLM_GGML_Q4_K, sizeof(qlm_block_q4_k), src, y, n);
}

// ---- decoders ----------------------------------------------------------------------------------
#if QLM_X86
QLM_AVX2_TARGET QLM_INLINE void dec_q4_k_avx2(const qlm_block_q4_k *b, kq_dec *D) {
    kq_dec_scales_min_avx2(D, b->scales, b->d, b->dmin);
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * j));
        _mm256_store_si256((__m256i *)(D->q + 64 * j), _mm256_and_si256(v, lo4));
        _mm256_store_si256((__m256i *)(D->q + 64 * j + 32), _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4));
    }
}
#endif

KQ_KERNELS(q4_k, scalar, , kq_dec_q4_k_scalar, 0, qlm_block_q4_k)
#if QLM_X86
KQ_KERNELS(q4_k, avx2, QLM_AVX2_TARGET, dec_q4_k_avx2, 0, qlm_block_q4_k)
KQ_KERNELS(q4_k, avx512, QLM_AVX512_TARGET, dec_q4_k_avx2, 0, qlm_block_q4_k)

// One-token dots (decode): kq_dot1_affine_* (ksuper.h) per super-block, no fifth bits.
QLM_AVX512_TARGET static float dot1_q4_k_avx512(int64_t n, const qlm_block_q4_k *w, const qlm_block_q8k *a) {
    const int64_t nb = (n + QK_K - 1) / QK_K;
    __m256 S = _mm256_setzero_ps(), M = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        PF((const char *)(w + b) + QLM_PF_DIST);
        kq_dot1_affine_avx512(w[b].scales, w[b].qs, NULL, w[b].d, w[b].dmin, a + b, &S, &M);
    }
    return hsum8_avx2(S) - hsum8_avx2(M);
}
QLM_AVX2_TARGET static float dot1_q4_k_avx2(int64_t n, const qlm_block_q4_k *w, const qlm_block_q8k *a) {
    const int64_t nb = (n + QK_K - 1) / QK_K;
    __m256 S = _mm256_setzero_ps(), M = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        PF((const char *)(w + b) + QLM_PF_DIST);
        kq_dot1_affine_avx2(w[b].scales, w[b].qs, NULL, w[b].d, w[b].dmin, a + b, &S, &M);
    }
    return hsum8_avx2(S) - hsum8_avx2(M);
}
KQ_DOT1_DOTN(q4_k, avx512, QLM_AVX512_TARGET, qlm_block_q4_k)
KQ_DOT1_DOTN(q4_k, avx2, QLM_AVX2_TARGET, qlm_block_q4_k)
#endif

// ---- table row -------------------------------------------------------------------------------
const qlm_type_traits qlm_traits_q4_k = {
    .name = "q4_k", .summary = "ggml Q4_K", .block_bytes = sizeof(qlm_block_q4_k), .code_bits = 4,
    .fp16_count = 2, .fp16_offsets = {offsetof(qlm_block_q4_k, d), offsetof(qlm_block_q4_k, dmin)},
    .row_fallback = 12, // q5_0, as llama.cpp falls back
    .row_size = q4_k_row_size, .quantize_row = q4_k_quantize_row, .dequantize_row = q4_k_dequantize_row,
    .quantize_row_imp = q4_k_quantize_row_imp,
    KQ_ROW_KERNELS(q4_k, dot1n)
};
