// Float types: f32, f16 (and u8, opaque bytes without products). Their rows take float
// activations as they are (QLM_ACT_F32).
#include "qlm_simd.h"

#pragma clang fp contract(off)

// ---- rows ----------------------------------------------------------------------------------
static size_t f32_row_size(int64_t n) { return (size_t)n * 4; }
static size_t f16_row_size(int64_t n) { return (size_t)n * 2; }
static size_t u8_row_size(int64_t n) { return (size_t)n; }

static void f32_quantize_row(int32_t path, const float *x, void *dst, int64_t n) { (void)path; memcpy(dst, x, (size_t)n * 4); }
static void f16_quantize_row(int32_t path, const float *x, void *dst, int64_t n) { qlm_f32_to_f16_path(path, x, (uint16_t *)dst, n); }

static void f32_dequantize_row(const void *src, float *y, int64_t n) { memcpy(y, src, (size_t)n * 4); }
static void f16_dequantize_row(const void *src, float *y, int64_t n) { qlm_f16_to_f32((const uint16_t *)src, y, n); }
// opaque bytes: each byte as a float value (no real use; defined anyway)
static void u8_dequantize_row(const void *src, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = (float)((const uint8_t *)src)[i];
}

// ---- scalar dots -----------------------------------------------------------------------------
static float dot_f32_scalar1(int64_t n, const float *w, const float *a) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += w[i] * a[i];
    return s;
}
static float dot_f16_scalar1(int64_t n, const uint16_t *w, const float *a) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += qlm_h2f(w[i]) * a[i];
    return s;
}
SCALAR_DOTN(dotn_f32_scalar, dot_f32_scalar1, float, float)
SCALAR_DOTN(dotn_f16_scalar, dot_f16_scalar1, uint16_t, float)

#if QLM_X86
// ---- float kernels -----------------------------------------------------------------------
// AVX2: two 8-wide accumulators per row over 16-element steps, scalar tail added after the
// fixed-order reduction.
QLM_AVX2_TARGET static void dotn_f32_avx2(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    const float *x = (const float *)act;
    for (int r = 0; r < nr; r++) {
        const float *wr = (const float *)((const char *)w + r * rs);
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i), _mm256_loadu_ps(x + i), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        }
        float s = hsum8_avx2(_mm256_add_ps(a0, a1));
        for (; i < n; i++) s += wr[i] * x[i];
        out[r] = s;
    }
}
QLM_AVX2_TARGET static void dotn_f16_avx2(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    const float *x = (const float *)act;
    for (int r = 0; r < nr; r++) {
        const uint16_t *wr = (const uint16_t *)((const char *)w + r * rs);
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
            a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wr + i))), _mm256_loadu_ps(x + i), a0);
            a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wr + i + 8))), _mm256_loadu_ps(x + i + 8), a1);
        }
        float s = hsum8_avx2(_mm256_add_ps(a0, a1));
        for (; i < n; i++) s += _cvtsh_ss(wr[i]) * x[i];
        out[r] = s;
    }
}
// AVX-512: 16-wide, up to 4 rows share the activation loads; two accumulators per row
// (elements [32i, 32i+16) and [32i+16, 32i+32)), a leftover 16 goes to the first, the masked
// tail to the second; result = hsum(acc0 + acc1).
#define FLOAT_KERNEL_AVX512(NAME, WT, LOADW, LOADW_MASKED)                                         \
QLM_AVX512_TARGET QLM_INLINE void k_##NAME(int64_t n, const void *w, size_t rs, const void *act, float *out, const int nr) { \
    const float *x = (const float *)act;                                                           \
    const WT *wr[4];                                                                               \
    __m512 acc[4][2];                                                                              \
    for (int r = 0; r < 4; r++) {                                                                  \
        wr[r] = (const WT *)((const char *)w + (r < nr ? r : 0) * rs);                             \
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();                                               \
    }                                                                                              \
    int64_t i = 0;                                                                                 \
    for (; i + 32 <= n; i += 32) {                                                                 \
        const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);               \
        for (int r = 0; r < nr; r++) {                                                             \
            acc[r][0] = _mm512_fmadd_ps(LOADW(wr[r] + i), x0, acc[r][0]);                          \
            acc[r][1] = _mm512_fmadd_ps(LOADW(wr[r] + i + 16), x1, acc[r][1]);                     \
        }                                                                                          \
    }                                                                                              \
    if (i + 16 <= n) {                                                                             \
        const __m512 x0 = _mm512_loadu_ps(x + i);                                                  \
        for (int r = 0; r < nr; r++) acc[r][0] = _mm512_fmadd_ps(LOADW(wr[r] + i), x0, acc[r][0]); \
        i += 16;                                                                                   \
    }                                                                                              \
    if (i < n) {                                                                                   \
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                                      \
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);                                         \
        for (int r = 0; r < nr; r++) acc[r][1] = _mm512_fmadd_ps(LOADW_MASKED(m, wr[r] + i), xv, acc[r][1]); \
    }                                                                                              \
    for (int r = 0; r < nr; r++) out[r] = hsum16_avx512(_mm512_add_ps(acc[r][0], acc[r][1]));      \
}
#define LOAD_F32(p) _mm512_loadu_ps(p)
#define LOAD_F32_M(m, p) _mm512_maskz_loadu_ps(m, p)
#define LOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define LOAD_F16_M(m, p) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p))
FLOAT_KERNEL_AVX512(f32_avx512, float, LOAD_F32, LOAD_F32_M)
FLOAT_KERNEL_AVX512(f16_avx512, uint16_t, LOAD_F16, LOAD_F16_M)
NR_DISPATCH(f32, avx512, QLM_AVX512_TARGET)
NR_DISPATCH(f16, avx512, QLM_AVX512_TARGET)
#endif

// ---- table rows ------------------------------------------------------------------------------
const qlm_type_traits qlm_traits_f32 = {
    .name = "f32", .block_size = 1, .block_bytes = 4, .is_quantized = 0, .act_type = QLM_ACT_F32,
    .row_group = 1, .code_bits = 32, .fp16_count = 0,
    .row_size = f32_row_size, .quantize_row = f32_quantize_row, .dequantize_row = f32_dequantize_row,
    .act_row_size = qlm_act_size_f32, .prepare_act = qlm_prepare_f32,
    .dotn = {[QLM_PATH_SCALAR] = dotn_f32_scalar, [QLM_PATH_AVX2] = QLM_IF_X86(dotn_f32_avx2),
             [QLM_PATH_AVX512] = QLM_IF_X86(dotn_f32_avx512)},
};

const qlm_type_traits qlm_traits_f16 = {
    .name = "f16", .block_size = 1, .block_bytes = 2, .is_quantized = 0, .act_type = QLM_ACT_F32,
    .row_group = 1, .code_bits = 16, .fp16_count = 1, .fp16_offsets = {0},
    .row_size = f16_row_size, .quantize_row = f16_quantize_row, .dequantize_row = f16_dequantize_row,
    .act_row_size = qlm_act_size_f32, .prepare_act = qlm_prepare_f32,
    .dotn = {[QLM_PATH_SCALAR] = dotn_f16_scalar, [QLM_PATH_AVX2] = QLM_IF_X86(dotn_f16_avx2),
             [QLM_PATH_AVX512] = QLM_IF_X86(dotn_f16_avx512)},
};

// Opaque bytes (embedded tokenizer blobs): no quantizer, no products.
const qlm_type_traits qlm_traits_u8 = {
    .name = "u8", .block_size = 1, .block_bytes = 1, .is_quantized = 0, .act_type = QLM_ACT_F32,
    .row_group = 1, .code_bits = 8, .fp16_count = 0,
    .row_size = u8_row_size, .dequantize_row = u8_dequantize_row,
    .act_row_size = qlm_act_size_f32, .prepare_act = qlm_prepare_f32,
};
