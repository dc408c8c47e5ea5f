// Activation formats the weight types pair with (qlm_act_type): floats as they are, and q8a
// blocks (float scale, int8 codes, float d * sum). Types with a derived format (q4_0's regrouped
// copy, q4_0x8's q8i) build on these in their own files. Vectorized quantizers are bit-identical
// to the scalar one: same formulas, no fused multiply-add, roundf emulated exactly.
#include "qlm_simd.h"

#pragma clang fp contract(off)

size_t qlm_act_size_f32(int64_t n) { return (size_t)n * sizeof(float); }
void qlm_prepare_f32(int32_t path, const float *x, void *act, int64_t n) { (void)path; memcpy(act, x, (size_t)n * sizeof(float)); }

size_t qlm_act_size_q8a(int64_t n) { return (size_t)((n + QLM_QK - 1) / QLM_QK) * sizeof(qlm_block_q8a); }

static void q8a_block_scalar(const float *x, void *bv) {
    qlm_block_q8a *b = (qlm_block_q8a *)bv;
    float amax = 0.0f;
    for (int j = 0; j < QLM_QK; j++) { float a = fabsf(x[j]); if (a > amax) amax = a; }
    const float d = amax / 127.0f;
    int sum = 0;
    for (int j = 0; j < QLM_QK; j++) { int q = (int)q8_code(x[j], d); b->qs[j] = (int8_t)q; sum += q; }
    b->d = d;
    b->s = d * (float)sum;
}

#if QLM_X86
QLM_AVX512_TARGET static void q8a_block_avx512(const float *x, void *bv) {
    qlm_block_q8a *b = (qlm_block_q8a *)bv;
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const __m512i q0 = q8_codes512(v0, d), q1 = q8_codes512(v1, d);
    _mm_storeu_si128((__m128i *)b->qs, _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(b->qs + 16), _mm512_cvtepi32_epi8(q1));
    const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    b->d = d;
    b->s = d * (float)sum;
}

QLM_AVX2_TARGET static void q8a_block_avx2(const float *x, void *bv) {
    qlm_block_q8a *b = (qlm_block_q8a *)bv;
    const float amax = amax_avx2(x);
    const float d = amax / 127.0f;
    __m256i q[4];
    q8_codes_avx2(x, d, q);
    store_i8x32(b->qs, q[0], q[1], q[2], q[3]);
    const __m256i s8 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    b->d = d;
    b->s = d * (float)_mm_cvtsi128_si32(s4);
}
#endif

void qlm_prepare_q8a(int32_t path, const float *x, void *act, int64_t n) {
    qlm_block_fn f = q8a_block_scalar;
#if QLM_X86
    if (path == QLM_PATH_AVX512) f = q8a_block_avx512;
    else if (path == QLM_PATH_AVX2) f = q8a_block_avx2;
#endif
    (void)path;
    qlm_quantize_blocks(f, sizeof(qlm_block_q8a), x, act, n);
}

// ---- q8k: one block per 256 elements (the K-quants' activation) -------------------------------
// Per 32 elements g a scale d[g] = absmax / 127 and codes as q8a's (round half away, clamped to
// +-127): the numbers of eight q8a blocks, with the scales side by side (one vector load for a
// super-block's eight) and bsums[k] = the exact sum of codes 16k..16k+15. A last partial block is
// zero-padded. The SIMD paths compute the same maxima, divisions and roundings: bit-identical.
#define Q8K 256
size_t qlm_act_size_q8k(int64_t n) { return (size_t)((n + Q8K - 1) / Q8K) * sizeof(qlm_block_q8k); }

static void q8k_sums(qlm_block_q8k *b) {
    for (int k = 0; k < 16; k++) {
        int s = 0;
        for (int j = 0; j < 16; j++) s += b->qs[16 * k + j];
        b->bsums[k] = (int16_t)s;
    }
}

static void q8k_block_scalar(const float *x, qlm_block_q8k *b) {
    for (int g = 0; g < 8; g++) {
        float amax = 0.0f;
        for (int j = 0; j < QLM_QK; j++) { float a = fabsf(x[32 * g + j]); if (a > amax) amax = a; }
        const float d = amax / 127.0f;
        for (int j = 0; j < QLM_QK; j++) b->qs[32 * g + j] = (int8_t)q8_code(x[32 * g + j], d);
        b->d[g] = d;
    }
    q8k_sums(b);
}

#if QLM_X86
QLM_AVX512_TARGET static void q8k_block_avx512(const float *x, qlm_block_q8k *b) {
    for (int g = 0; g < 8; g++) {
        const __m512 v0 = _mm512_loadu_ps(x + 32 * g), v1 = _mm512_loadu_ps(x + 32 * g + 16);
        const float d = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1))) / 127.0f;
        _mm_storeu_si128((__m128i *)(b->qs + 32 * g), _mm512_cvtepi32_epi8(q8_codes512(v0, d)));
        _mm_storeu_si128((__m128i *)(b->qs + 32 * g + 16), _mm512_cvtepi32_epi8(q8_codes512(v1, d)));
        b->d[g] = d;
    }
    q8k_sums(b);
}

QLM_AVX2_TARGET static void q8k_block_avx2(const float *x, qlm_block_q8k *b) {
    for (int g = 0; g < 8; g++) {
        const float d = amax_avx2(x + 32 * g) / 127.0f;
        __m256i q[4];
        q8_codes_avx2(x + 32 * g, d, q);
        store_i8x32(b->qs + 32 * g, q[0], q[1], q[2], q[3]);
        b->d[g] = d;
    }
    q8k_sums(b);
}
#endif

void qlm_prepare_q8k(int32_t path, const float *x, void *act, int64_t n) {
    void (*f)(const float *, qlm_block_q8k *) = q8k_block_scalar;
#if QLM_X86
    if (path == QLM_PATH_AVX512) f = q8k_block_avx512;
    else if (path == QLM_PATH_AVX2) f = q8k_block_avx2;
#endif
    (void)path;
    qlm_block_q8k *out = (qlm_block_q8k *)act;
    const int64_t nfull = n / Q8K;
    for (int64_t b = 0; b < nfull; b++) f(x + b * Q8K, out + b);
    if (n % Q8K) {
        float tmp[Q8K] = {0};
        memcpy(tmp, x + nfull * Q8K, (size_t)(n % Q8K) * sizeof(float));
        f(tmp, out + nfull);
    }
}
