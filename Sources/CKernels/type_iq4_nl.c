// iq4_nl: ggml's IQ4_NL 32-weight blocks byte for byte (docs/format.md): fp16 d, 16 bytes of 4-bit
// indices (q4_0's nibble order), weight j = d * K[index_j] with K the IQ4 codebook the iq4_k*
// types share (qlm_iq4_levels, kquant.c). GGUF IQ4_NL tensors pass through `--type keep`.
// Pairs with q8a activations: per block sum K[c] * a is exact in int32 (the SIMD lanes by the sign
// trick: |K[c]| (u8) x sign(a, K[c]) (s8)); the float steps are q4_0's, so the AVX2 and AVX-512
// dot kernels, the few-token kernels and the prefill tiles agree bit for bit.
#include "qlm_pair512.h"
#include "qlm_ggml.h"

#pragma clang fp contract(off)

size_t qlm_iq4_nl_row_size(int64_t n) { return (size_t)((n + QLM_QK - 1) / QLM_QK) * sizeof(qlm_block_q4_0); }

// Quantizer (scalar on every path): the codebook is asymmetric (-127..113), so the best scale of
// each sign is searched (qlm_iq4_best_scale on x and on -x) and the one with the lower error after
// rounding to fp16 is kept; codes are the nearest levels at that fp16 scale. With importance
// weights w (quantize_row_imp) both the searches and the comparison use the weighted error.
static void iq4_nl_block_w(const float *x, const float *w, void *bv) {
    qlm_block_q4_0 *b = (qlm_block_q4_0 *)bv;
    float nx[QLM_QK];
    for (int j = 0; j < QLM_QK; j++) nx[j] = -x[j];
    const float sp = qlm_h2f(qlm_f2h(qlm_iq4_best_scale(x, w, QLM_QK)));
    const float sn = -qlm_h2f(qlm_f2h(qlm_iq4_best_scale(nx, w, QLM_QK)));
    const float d = qlm_iq4_code_err(x, w, QLM_QK, sn, NULL) < qlm_iq4_code_err(x, w, QLM_QK, sp, NULL) ? sn : sp;
    uint8_t q[QLM_QK];
    qlm_iq4_code_err(x, w, QLM_QK, d, q);
    b->d = qlm_f2h(d + 0.0f);
    for (int j = 0; j < 16; j++) b->qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
}
static void iq4_nl_block_scalar(const float *x, void *bv) { iq4_nl_block_w(x, NULL, bv); }
void qlm_iq4_nl_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) {
    qlm_imp_rows(iq4_nl_block_w, QLM_QK, sizeof(qlm_block_q4_0), x, imp, dst, n);
}
void qlm_iq4_nl_quantize_row(int32_t path, const float *x, void *dst, int64_t n) {
    (void)path;
    qlm_quantize_blocks(iq4_nl_block_scalar, sizeof(qlm_block_q4_0), x, dst, n);
}
void qlm_iq4_nl_dequantize_row(const void *src, float *y, int64_t n) {
    qlm_dequantize_ggml_blocks(QLM_GGML_IQ4_NL, QLM_QK, sizeof(qlm_block_q4_0), src, y, n);
}

// ---- dots ------------------------------------------------------------------------------------
static float dot_iq4_nl_scalar1(int64_t n, const qlm_block_q4_0 *w, const qlm_block_q8a *a) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    float s = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int32_t is = 0;
        for (int j = 0; j < 16; j++) {
            is += (int32_t)qlm_iq4_levels[w[b].qs[j] & 0xF] * (int32_t)a[b].qs[j];
            is += (int32_t)qlm_iq4_levels[w[b].qs[j] >> 4] * (int32_t)a[b].qs[j + 16];
        }
        s += (qlm_h2f(w[b].d) * a[b].d) * (float)is;
    }
    return s;
}
SCALAR_DOTN(dotn_iq4_nl_scalar, dot_iq4_nl_scalar1, qlm_block_q4_0, qlm_block_q8a)
// The scalar row dot, for the iq4_nlx8 rows past the last group (rowgroup.c); the iq4_nl row
// functions above are exported under their qlm_ names for the same reason.
void qlm_iq4_nl_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    dotn_iq4_nl_scalar(n, w, rs, act, out, nr);
}

#if QLM_X86
// Codebook values of a block's 32 indices (pshufb within each 128-bit lane).
#define IQ4NL_LUT _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qlm_iq4_levels))
#define IQ4NL_BODY(P, bb, k) {                                                                    \
        const __m256i av = _mm256_loadu_si256((const __m256i *)a[bb].qs);                         \
        const __m256 da = _mm256_set1_ps(a[bb].d);                                                \
        for (int r = 0; r < nr; r++) {                                                            \
            PF((const char *)(wr[r] + bb) + QLM_PF_DIST);                                         \
            const __m256i wv = _mm256_shuffle_epi8(lut, unpack_nibbles_##P(wr[r][bb].qs));        \
            const __m256i is = dot_us_##P(_mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv));         \
            const __m256 sc = _mm256_mul_ps(bh2f_##P(&wr[r][bb].d), da);                          \
            acc[r][k] = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(is), acc[r][k]);                   \
        } }
#define IQ4NL_AVX2(bb, k) IQ4NL_BODY(avx2, bb, k)
#define IQ4NL_AVX512(bb, k) IQ4NL_BODY(avx512, bb, k)
#define IQ4NL_KERNEL(P, BODY, TGT)                                                                \
TGT QLM_INLINE void k_iq4_nl_##P(int64_t n, const void *w, size_t rs, const void *act, float *out, const int nr) { \
    const __m256i lut = IQ4NL_LUT;                                                                \
    QK_BEGIN(qlm_block_q4_0) QK_LOOP(BODY) QK_END(P)                                              \
}                                                                                                 \
NR_DISPATCH(iq4_nl, P, TGT)
IQ4NL_KERNEL(avx2, IQ4NL_AVX2, QLM_AVX2_TARGET)
IQ4NL_KERNEL(avx512, IQ4NL_AVX512, QLM_AVX512_TARGET)

// AVX2 few-token kernel and 1 row x 4 tokens tile (qlm_simd.h FEW2_FAMILY; AVX-512: below): the
// same int32 lanes (maddubs pairs at most 2 * 127 * 127 < 32767) and float steps as the dot kernels.
#define IQ4NL_ROW2(bb)                                                                             \
    const __m256i wsg = _mm256_shuffle_epi8(IQ4NL_LUT, unpack_nibbles_avx2(wr[bb].qs));           \
    const __m256i wab = _mm256_abs_epi8(wsg);
#define IQ4NL_PAIR2 _mm256_madd_epi16(_mm256_maddubs_epi16(wab, _mm256_sign_epi8(av, wsg)), ones)
FEW2_FAMILY(few_iq4_nl, qlm_block_q4_0, IQ4NL_ROW2, IQ4NL_PAIR2, FEW2_NONE)

// AVX-512 tiles and few-token kernels, two blocks per register (qlm_pair512.h): the signed codes
// are the codebook values (pshufb within each 128-bit lane).
#define IQ4NL_P512_PAIR(wr, b)                                                                     \
    const __m512i w = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qlm_iq4_levels)), \
                                          p512_nibbles((wr)[b].qs, (wr)[(b) + 1].qs));             \
    const __m512 dw = p512_dw(&(wr)[b].d, &(wr)[(b) + 1].d);
#define IQ4NL_P512_TAIL(wr, b)                                                                     \
    const __m256i w = _mm256_shuffle_epi8(IQ4NL_LUT, unpack_nibbles_avx512((wr)[b].qs));           \
    const __m256 dw = bh2f_avx512(&(wr)[b].d);
P512_FAMILY(iq4_nl, qlm_block_q4_0, 4, IQ4NL_P512_PAIR, IQ4NL_P512_TAIL, P512_NOMIN, P512_NOMIN, P512_SUMNOMIN, P512_IS, P512_IS, P512_PF32)
#endif

const qlm_type_traits qlm_traits_iq4_nl = {
    .name = "iq4_nl", .block_size = QLM_QK, .block_bytes = sizeof(qlm_block_q4_0), .is_quantized = 1,
    .act_type = QLM_ACT_Q8A, .row_group = 1, .code_bits = 4,
    .fp16_count = 1, .fp16_offsets = {offsetof(qlm_block_q4_0, d)},
    .row_size = qlm_iq4_nl_row_size, .quantize_row = qlm_iq4_nl_quantize_row, .dequantize_row = qlm_iq4_nl_dequantize_row,
    .quantize_row_imp = qlm_iq4_nl_quantize_row_imp,
    .act_row_size = qlm_act_size_q8a, .prepare_act = qlm_prepare_q8a,
    .dotn = {[QLM_PATH_SCALAR] = dotn_iq4_nl_scalar, [QLM_PATH_AVX2] = QLM_IF_X86(dotn_iq4_nl_avx2),
             [QLM_PATH_AVX512] = QLM_IF_X86(dotn_iq4_nl_avx512)},
#if QLM_X86
    P512_ROW_KERNELS(iq4_nl, 4)
#endif
};
