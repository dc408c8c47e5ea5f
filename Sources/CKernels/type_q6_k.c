// q6_k: ggml's Q6_K super-block, byte for byte (ksuper.h, docs/format.md): 256 weights as 16
// sub-blocks of 16, weight = d * sc_k * (q - 32), int8 sc_k, fp16 d (last in the block), 6-bit
// codes: per half of 128 weights, the low 4 bits in ql[64 half + r % 64] (nibble r / 64) and the
// high 2 in qh[32 half + r % 32] (bits 2 (r / 32)). Pairs with q8k activations (a scale per 32); the -32 is the
// exact term -32 sc_k bsums_k of the integer sum (ksuper.h).
#include "ksuper.h"
#include "qlm_ggml.h"

#pragma clang fp contract(off)

static size_t q6_k_row_size(int64_t n) { return kq_row_size_bytes(n, sizeof(qlm_block_q6_k)); }

// Per 16 weights a symmetric fit (kq_fit_symmetric, codes -32..31), d = max |scale| / 127 (fp16),
// the int8 sub-scales rounded against it, the codes against d * sc as the dequantizer forms it.
static void q6_k_block(const float *x, void *dst) {
    qlm_block_q6_k *b = (qlm_block_q6_k *)dst;
    float sc[16], amax = 0.0f;
    for (int k = 0; k < 16; k++) {
        sc[k] = kq_fit_symmetric(x + 16 * k, 16, 32);
        if (fabsf(sc[k]) > amax) amax = fabsf(sc[k]);
    }
    b->d = qlm_f2h(amax / 127.0f);
    const float d = qlm_h2f(b->d);
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int k = 0; k < 16; k++) {
        b->scales[k] = (int8_t)kq_code(sc[k], d, -128, 127, 0);
        const float dl = d * (float)b->scales[k];
        for (int i = 0; i < 16; i++) {
            const int L = 16 * k + i, half = L / 128, r = L % 128;
            const int q = kq_code(x[L], dl, -32, 31, 0) + 32;
            b->ql[64 * half + r % 64] |= (uint8_t)((q & 15) << (4 * (r / 64)));
            b->qh[32 * half + r % 32] |= (uint8_t)((q >> 4) << (2 * (r / 32)));
        }
    }
}
// Importance-weighted (quant_imp.c): per 16 weights the weighted scale search (codes -32..31),
// d the best of 9 factors around max |s| / 127 by the total weighted error, each int8 sub-scale
// the best of round(s / d) +- 1.
static void q6_k_imp_block(const float *x, const float *w, void *dst) {
    qlm_block_q6_k *b = (qlm_block_q6_k *)dst;
    int l[16], q[QK_K];
    qlm_imp_sym_super(x, w, 16, 16, -32, 31, -128, 127, 127.0f, &b->d, l, q);
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int k = 0; k < 16; k++) b->scales[k] = (int8_t)l[k];
    for (int L = 0; L < QK_K; L++) {
        const int half = L / 128, r = L % 128, c = q[L] + 32;
        b->ql[64 * half + r % 64] |= (uint8_t)((c & 15) << (4 * (r / 64)));
        b->qh[32 * half + r % 32] |= (uint8_t)((c >> 4) << (2 * (r / 32)));
    }
}
static void q6_k_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) {
    qlm_imp_rows(q6_k_imp_block, QK_K, sizeof(qlm_block_q6_k), x, imp, dst, n);
}
static void q6_k_quantize_row(int32_t path, const float *x, void *dst, int64_t n) {
    (void)path;
    kq_quantize_row(q6_k_block, sizeof(qlm_block_q6_k), x, dst, n);
}
static void q6_k_dequantize_row(const void *src, float *y, int64_t n) {
    kq_dequantize_row(QLM_GGML_Q6_K, sizeof(qlm_block_q6_k), src, y, n);
}

// ---- decoders: codes 0..63, off = -32 sc (into isum), no min term ------------------------------
#if QLM_X86
QLM_AVX2_TARGET QLM_INLINE void dec_q6_k_avx2(const qlm_block_q6_k *b, kq_dec *D) {
    const __m256i lo4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    for (int h = 0; h < 2; h++) {
        const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
        const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
        const __m256i hh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
        uint8_t *q = D->q + 128 * h;
        _mm256_store_si256((__m256i *)q, _mm256_or_si256(_mm256_and_si256(l0, lo4), _mm256_and_si256(_mm256_slli_epi16(hh, 4), m2)));
        _mm256_store_si256((__m256i *)(q + 32), _mm256_or_si256(_mm256_and_si256(l1, lo4), _mm256_and_si256(_mm256_slli_epi16(hh, 2), m2)));
        _mm256_store_si256((__m256i *)(q + 64), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), lo4), _mm256_and_si256(hh, m2)));
        _mm256_store_si256((__m256i *)(q + 96), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), lo4), _mm256_and_si256(_mm256_srli_epi16(hh, 2), m2)));
    }
    const __m128i s = _mm_loadu_si128((const __m128i *)b->scales);
    kq_dec_sw_avx2(D, s);
    _mm256_store_si256((__m256i *)D->off, _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(_mm256_cvtepi8_epi16(s), 5)));
    D->d = kq_h2f_f16c(b->d);
    D->dmin = 0.0f;
}
#endif

KQ_KERNELS(q6_k, scalar, , kq_dec_q6_k_scalar, 1, qlm_block_q6_k)
#if QLM_X86
KQ_KERNELS(q6_k, avx2, QLM_AVX2_TARGET, dec_q6_k_avx2, 1, qlm_block_q6_k)
KQ_KERNELS(q6_k, avx512, QLM_AVX512_TARGET, dec_q6_k_avx2, 1, qlm_block_q6_k)

// One-token dots (decode) without the decoded block: the 6-bit codes are assembled in registers
// and go straight into the products. Per 32-weight group the same exact integer as kq_step_P
// (sc_2g (sum q a) + sc_2g+1 (sum q a) + the two -32 sc_k bsums_k terms, int32 in another order)
// and the same float steps as kq_rows (S[g] += (d * d_a[g]) * isum_g; the min lanes stay +0), so
// the results equal the few-token kernels' and the tiles' bit for bit.
QLM_AVX512_TARGET static float dot1_q6_k_avx512(int64_t n, const qlm_block_q6_k *w, const qlm_block_q8k *a) {
    const int64_t nb = (n + QK_K - 1) / QK_K;
    const __m512i lo4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
    // high bits of weights 32c..32c+31 of a half: qh << 4, << 2, >> 0, >> 2 (per 256-bit half)
    const __m512i shA = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shB = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    __m256 S = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        PF((const char *)(w + b) + QLM_PF_DIST);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)w[b].scales);
        __m256i hp[4];
        for (int h = 0; h < 2; h++) {
            const __m512i L = _mm512_loadu_si512((const void *)(w[b].ql + 64 * h));
            const __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h)));
            const __m512i qa = _mm512_or_si512(_mm512_and_si512(L, lo4), _mm512_and_si512(_mm512_sllv_epi16(H, shA), m2));
            const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), lo4), _mm512_and_si512(_mm512_srlv_epi16(H, shB), m2));
            hp[2 * h] = kq_pair512(_mm512_maddubs_epi16(qa, _mm512_loadu_si512((const void *)(a[b].qs + 128 * h))));           // chunks 4h, 4h + 1
            hp[2 * h + 1] = kq_pair512(_mm512_maddubs_epi16(qb, _mm512_loadu_si512((const void *)(a[b].qs + 128 * h + 64)))); // 4h + 2, 4h + 3
        }
        const __m256i isum = kq_groups16(hp, kq_sw_pair(sc8, 0), kq_sw_pair(sc8, 1), kq_sw_pair(sc8, 2), kq_sw_pair(sc8, 3));
        const __m256i o = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a[b].bsums),
                                            _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc8), 5)));
        kq_floats8_sym(_mm256_add_epi32(isum, o), kq_h2f_f16c(w[b].d), a[b].d, &S);
    }
    return hsum8_avx512(S);
}
QLM_AVX2_TARGET static float dot1_q6_k_avx2(int64_t n, const qlm_block_q6_k *w, const qlm_block_q8k *a) {
    const int64_t nb = (n + QK_K - 1) / QK_K;
    const __m256i lo4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    __m256 S = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        PF((const char *)(w + b) + QLM_PF_DIST);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)w[b].scales);
        __m256i hp[4];
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h + 32));
            const __m256i hh = _mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h));
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, lo4), _mm256_and_si256(_mm256_slli_epi16(hh, 4), m2)),
                _mm256_or_si256(_mm256_and_si256(l1, lo4), _mm256_and_si256(_mm256_slli_epi16(hh, 2), m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), lo4), _mm256_and_si256(hh, m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), lo4), _mm256_and_si256(_mm256_srli_epi16(hh, 2), m2))};
            __m256i p[4];
            for (int j = 0; j < 4; j++) p[j] = _mm256_maddubs_epi16(q[j], _mm256_loadu_si256((const __m256i *)(a[b].qs + 128 * h + 32 * j)));
            hp[2 * h] = _mm256_hadd_epi16(p[0], p[1]);
            hp[2 * h + 1] = _mm256_hadd_epi16(p[2], p[3]);
        }
        const __m256i isum = kq_groups16(hp, kq_sw_pair(sc8, 0), kq_sw_pair(sc8, 1), kq_sw_pair(sc8, 2), kq_sw_pair(sc8, 3));
        const __m256i o = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a[b].bsums),
                                            _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc8), 5)));
        kq_floats8_sym(_mm256_add_epi32(isum, o), kq_h2f_f16c(w[b].d), a[b].d, &S);
    }
    return hsum8_avx2(S);
}
KQ_DOT1_DOTN(q6_k, avx512, QLM_AVX512_TARGET, qlm_block_q6_k)
KQ_DOT1_DOTN(q6_k, avx2, QLM_AVX2_TARGET, qlm_block_q6_k)
#endif

// ---- table row -------------------------------------------------------------------------------
// The fp16 d is the block's last field; the zstd head (bytes up to the last fp16 field) is then
// the whole block.
const qlm_type_traits qlm_traits_q6_k = {
    .name = "q6_k", .summary = "ggml Q6_K", .block_bytes = sizeof(qlm_block_q6_k), .code_bits = 6,
    .fp16_count = 1, .fp16_offsets = {offsetof(qlm_block_q6_k, d)},
    .row_fallback = QLM_TYPE_Q8_0, // as llama.cpp falls back
    .row_size = q6_k_row_size, .quantize_row = q6_k_quantize_row, .dequantize_row = q6_k_dequantize_row,
    .quantize_row_imp = q6_k_quantize_row_imp,
    KQ_ROW_KERNELS(q6_k, dot1n)
};
