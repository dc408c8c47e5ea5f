// Elementwise and small float ops. Plain loops (the compiler vectorizes the simple ones);
// the reductions that dominate (dot, norm sums) have AVX-512/AVX2 variants via target attributes.
#include "qlm_internal.h"

float qlm_dot_f32(const float *a, const float *b, int64_t n) {
    float out;
    qlm_get_dotn(qlm_get_path(), QLM_TYPE_F32)(n, a, 0, b, &out, 1);
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
    const int32_t p = qlm_get_path();
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
    qlm_get_dotn(qlm_get_path(), QLM_TYPE_F32)(n, x, 0, x, &out, 1);
    return out;
}

void qlm_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    float ss = sum_sq(x, n);
    ss = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = w[i] * (ss * x[i]);
}

#if QLM_X86
// GPT-2's 25 layernorms per token: the scalar loop is two dependent float-add chains of n
// (~1.7 us at n = 768, 1.3% of a q4_0x8 decoded token in perf); 16 lanes x 2 accumulators here.
QLM_AVX512_TARGET static void layernorm_avx512(float *out, const float *x, const float *w, const float *b, int64_t n, float eps) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) { s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i)); s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16)); }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++) s += x[i];
    const float mean = s / (float)n;
    const __m512 vm = _mm512_set1_ps(mean);
    __m512 v0 = _mm512_setzero_ps(), v1 = v0;
    for (i = 0; i + 32 <= n; i += 32) {
        const __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), vm), d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm);
        v0 = _mm512_fmadd_ps(d0, d0, v0); v1 = _mm512_fmadd_ps(d1, d1, v1);
    }
    float v = _mm512_reduce_add_ps(_mm512_add_ps(v0, v1));
    for (; i < n; i++) { const float d = x[i] - mean; v += d * d; }
    const float rstd = 1.0f / sqrtf(v / (float)n + eps);
    const __m512 vr = _mm512_set1_ps(rstd);
    for (i = 0; i + 16 <= n; i += 16) {
        const __m512 y = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm), vr);
        const __m512 yw = _mm512_mul_ps(y, _mm512_loadu_ps(w + i));
        _mm512_storeu_ps(out + i, b ? _mm512_add_ps(yw, _mm512_loadu_ps(b + i)) : yw);
    }
    for (; i < n; i++) {
        const float y = (x[i] - mean) * rstd;
        out[i] = b ? y * w[i] + b[i] : y * w[i];
    }
}
#endif

void qlm_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, float eps) {
#if QLM_X86
    if (qlm_get_path() == QLM_PATH_AVX512) { layernorm_avx512(out, x, w, b, n, eps); return; }
#endif
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

// ---- vector exp (Cephes polynomial, ~2 ulp on [-87, 88]; below -87.3 returns 0) -----------------
// GELU on the SIMD paths uses the identity 0.5 * (1 + tanh(z)) = 1 / (1 + exp(-2z)), so one exp
// and one division per element; the scalar path keeps the tanhf formula as the reference.
#define EXP_C1 1.9875691500E-4f
#define EXP_C2 1.3981999507E-3f
#define EXP_C3 8.3334519073E-3f
#define EXP_C4 4.1665795894E-2f
#define EXP_C5 1.6666665459E-1f
#define EXP_C6 5.0000001201E-1f
#if QLM_X86
QLM_AVX512_TARGET QLM_INLINE __m512 exp512(__m512 x) {
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_LT_OQ);
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(EXP_C1);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C6));
    const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps((__mmask16)~tiny, y, n);
}
QLM_AVX2_TARGET QLM_INLINE __m256 exp256(__m256 x) {
    const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
    x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(EXP_C1);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C6));
    const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    // 2^n via the exponent field; n in [-126, 127] after the clamps
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(tiny, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}

#define GELU_K 0.7978845608028654f
QLM_AVX512_TARGET static void gelu_avx512(float *x, int64_t n) {
    int64_t i = 0;
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        const __m512 z = _mm512_mul_ps(_mm512_set1_ps(GELU_K), _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715f), v), _mm512_mul_ps(v, v), v));
        const __m512 e = exp512(_mm512_mul_ps(_mm512_set1_ps(-2.0f), z));
        _mm512_mask_storeu_ps(x + i, m, _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e)));
    }
}
QLM_AVX2_TARGET static int64_t gelu_avx2(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 z = _mm256_mul_ps(_mm256_set1_ps(GELU_K), _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), v), _mm256_mul_ps(v, v), v));
        const __m256 e = exp256(_mm256_mul_ps(_mm256_set1_ps(-2.0f), z));
        _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e)));
    }
    return i;
}
QLM_AVX512_TARGET static void silu_mul_avx512(float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, a + i);
        const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), v));
        const __m512 s = _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_mask_storeu_ps(a + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, b + i)));
    }
}
QLM_AVX2_TARGET static int64_t silu_mul_avx2(float *a, const float *b, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(a + i);
        const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), v));
        const __m256 s = _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(a + i, _mm256_mul_ps(s, _mm256_loadu_ps(b + i)));
    }
    return i;
}
// x[i] = exp(x[i] - mx); returns the sum (float lanes, fixed order).
QLM_AVX512_TARGET static float exp_sub_sum_avx512(float *x, int64_t n, float mx) {
    __m512 acc = _mm512_setzero_ps();
    const __m512 vm = _mm512_set1_ps(mx);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm));
        _mm512_mask_storeu_ps(x + i, m, e);
        acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(m, e));
    }
    return _mm512_reduce_add_ps(acc);
}
QLM_AVX2_TARGET static float exp_sub_sum_avx2(float *x, int64_t n, float mx, int64_t *done) {
    __m256 acc = _mm256_setzero_ps();
    const __m256 vm = _mm256_set1_ps(mx);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    *done = i;
    float t[8];
    _mm256_storeu_ps(t, acc);
    return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}
#endif

void qlm_gelu_tanh(float *x, int64_t n) {
    int64_t i = 0;
#if QLM_X86
    const int32_t p = qlm_get_path();
    if (p == QLM_PATH_AVX512) { gelu_avx512(x, n); return; }
    if (p == QLM_PATH_AVX2) i = gelu_avx2(x, n);
#endif
    const float k = 0.7978845608028654f; // sqrt(2/pi)
    for (; i < n; i++) {
        const float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
}

void qlm_gelu_mul(float *a, const float *b, int64_t n) {
    qlm_gelu_tanh(a, n);
    for (int64_t i = 0; i < n; i++) a[i] *= b[i];
}

void qlm_silu_mul(float *a, const float *b, int64_t n) {
    int64_t i = 0;
#if QLM_X86
    const int32_t p = qlm_get_path();
    if (p == QLM_PATH_AVX512) { silu_mul_avx512(a, b, n); return; }
    if (p == QLM_PATH_AVX2) i = silu_mul_avx2(a, b, n);
#endif
    for (; i < n; i++) {
        const float v = a[i];
        a[i] = v / (1.0f + expf(-v)) * b[i];
    }
}

void qlm_softmax(float *x, int64_t n) {
    if (n <= 0) return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) if (x[i] > mx) mx = x[i];
    float s = 0.0f;
    int64_t i = 0;
#if QLM_X86
    const int32_t p = qlm_get_path();
    if (p == QLM_PATH_AVX512) { s = exp_sub_sum_avx512(x, n, mx); i = n; }
    else if (p == QLM_PATH_AVX2) s = exp_sub_sum_avx2(x, n, mx, &i);
#endif
    for (; i < n; i++) { x[i] = expf(x[i] - mx); s += x[i]; }
    const float inv = 1.0f / s;
    for (i = 0; i < n; i++) x[i] *= inv;
}

// Greedy sampling's argmax: the first index of the largest value, NaNs never chosen (unless
// x[0] is NaN, then 0) — exactly what a scalar `if (x[i] > best)` scan returns. Over GPT-2's
// 50,257 logits that scan is ~1% of a decoded token (perf, 2 threads, q4_0x8); the AVX-512 pass
// takes the max 16 lanes at a time (vmaxps returns its second operand when the first is NaN,
// and the running max never is NaN), then finds its first occurrence.
#if QLM_X86
QLM_AVX512_TARGET static int64_t argmax_avx512(const float *x, int64_t n) {
    __m512 m = _mm512_set1_ps(x[0]);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(_mm512_loadu_ps(x + i), m);
    float mx = _mm512_reduce_max_ps(m);
    for (; i < n; i++) if (x[i] > mx) mx = x[i];
    const __m512 vm = _mm512_set1_ps(mx);
    for (i = 0; i + 16 <= n; i += 16) {
        const __mmask16 k = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), vm, _CMP_EQ_OQ);
        if (k) return i + __builtin_ctz((unsigned)k);
    }
    for (; i < n; i++) if (x[i] == mx) return i;
    return 0;
}
#endif

int64_t qlm_argmax_f32(const float *x, int64_t n) {
    if (n <= 0) return -1;
    if (x[0] != x[0]) return 0; // NaN first: nothing compares greater
#if QLM_X86
    if (qlm_get_path() == QLM_PATH_AVX512) return argmax_avx512(x, n);
#endif
    int64_t best = 0;
    float bv = x[0];
    for (int64_t i = 1; i < n; i++) if (x[i] > bv) { bv = x[i]; best = i; }
    return best;
}
