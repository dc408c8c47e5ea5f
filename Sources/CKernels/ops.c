// Elementwise and small float ops. Plain loops (the compiler vectorizes the simple ones);
// the reductions that dominate (dot, norm sums) have AVX-512/AVX2 variants via target attributes.
#include "qlm_internal.h"

float qlm_dot_f32(const float *a, const float *b, int64_t n) {
    float out;
    qlm_get_dotn(qlm_active_path(), QLM_TYPE_F32)(n, a, 0, b, &out, 1);
    return out;
}

#if QLM_X86
QLM_AVX512_TARGET static void axpy_avx512(float *y, float a, const float *x, int64_t n) {
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}
QLM_AVX2_TARGET static void axpy_avx2(float *y, float a, const float *x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}
#endif

void qlm_axpy_f32(float *y, float a, const float *x, int64_t n) {
#if QLM_X86
    const int32_t p = qlm_active_path();
    if (p == QLM_PATH_AVX512) { axpy_avx512(y, a, x, n); return; }
    if (p == QLM_PATH_AVX2) { axpy_avx2(y, a, x, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void qlm_add_f32(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

static float sum_sq(const float *x, int64_t n) {
    float out;
    qlm_get_dotn(qlm_active_path(), QLM_TYPE_F32)(n, x, 0, x, &out, 1);
    return out;
}

void qlm_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    float ss = sum_sq(x, n);
    ss = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = w[i] * (ss * x[i]);
}

void qlm_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, float eps) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += x[i];
    const float mean = s / (float)n;
    float v = 0.0f;
    for (int64_t i = 0; i < n; i++) { const float d = x[i] - mean; v += d * d; }
    const float rstd = 1.0f / sqrtf(v / (float)n + eps);
    for (int64_t i = 0; i < n; i++) {
        const float y = (x[i] - mean) * rstd;
        out[i] = b ? y * w[i] + b[i] : y * w[i];
    }
}

void qlm_gelu_tanh(float *x, int64_t n) {
    const float k = 0.7978845608028654f; // sqrt(2/pi)
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
}

void qlm_silu_mul(float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float v = a[i];
        a[i] = v / (1.0f + expf(-v)) * b[i];
    }
}

void qlm_softmax(float *x, int64_t n) {
    if (n <= 0) return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) if (x[i] > mx) mx = x[i];
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) { x[i] = expf(x[i] - mx); s += x[i]; }
    const float inv = 1.0f / s;
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}
