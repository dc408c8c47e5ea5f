// Attention over a contiguous run of cached positions: one call per run of keys instead of
// one call per key (stories260K has head_dim 8, where per-key calls are all overhead).
// A ring-buffer cache presents at most two runs; the caller softmaxes across all runs.
#include "qlm_kernels.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define QLM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

QLM_AVX512 static void scores_avx512(const float *q, const float *k, int64_t stride, int64_t n, int64_t hd,
                                     float scale, float *scores) {
    if (hd % 16 == 0) {
        for (int64_t i = 0; i < n; i++) {
            const float *ki = k + i * stride;
            __m512 acc = _mm512_setzero_ps();
            for (int64_t j = 0; j < hd; j += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + j), _mm512_loadu_ps(ki + j), acc);
            scores[i] = _mm512_reduce_add_ps(acc) * scale;
        }
    } else if (hd == 8) {
        const __m256 qv = _mm256_loadu_ps(q);
        for (int64_t i = 0; i < n; i++) {
            __m256 p = _mm256_mul_ps(qv, _mm256_loadu_ps(k + i * stride));
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(p), _mm256_extractf128_ps(p, 1));
            s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            s = _mm_add_ss(s, _mm_movehdup_ps(s));
            scores[i] = _mm_cvtss_f32(s) * scale;
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            const float *ki = k + i * stride;
            float acc = 0;
            for (int64_t j = 0; j < hd; j++) acc += q[j] * ki[j];
            scores[i] = acc * scale;
        }
    }
}

QLM_AVX512 static void accum_avx512(const float *w, const float *v, int64_t stride, int64_t n, int64_t hd, float *out) {
    if (hd % 16 == 0) {
        for (int64_t j = 0; j < hd; j += 16) {
            __m512 acc = _mm512_loadu_ps(out + j);
            for (int64_t i = 0; i < n; i++) acc = _mm512_fmadd_ps(_mm512_set1_ps(w[i]), _mm512_loadu_ps(v + i * stride + j), acc);
            _mm512_storeu_ps(out + j, acc);
        }
    } else if (hd == 8) {
        __m256 acc = _mm256_loadu_ps(out);
        for (int64_t i = 0; i < n; i++) acc = _mm256_fmadd_ps(_mm256_set1_ps(w[i]), _mm256_loadu_ps(v + i * stride), acc);
        _mm256_storeu_ps(out, acc);
    } else {
        for (int64_t i = 0; i < n; i++) {
            const float *vi = v + i * stride;
            for (int64_t j = 0; j < hd; j++) out[j] += w[i] * vi[j];
        }
    }
}
#endif

static void scores_scalar(const float *q, const float *k, int64_t stride, int64_t n, int64_t hd, float scale, float *scores) {
    for (int64_t i = 0; i < n; i++) {
        const float *ki = k + i * stride;
        float acc = 0;
        for (int64_t j = 0; j < hd; j++) acc += q[j] * ki[j];
        scores[i] = acc * scale;
    }
}

static void accum_scalar(const float *w, const float *v, int64_t stride, int64_t n, int64_t hd, float *out) {
    for (int64_t i = 0; i < n; i++) {
        const float *vi = v + i * stride;
        for (int64_t j = 0; j < hd; j++) out[j] += w[i] * vi[j];
    }
}

void qlm_attn_scores_f32(const float *q, const float *k, int64_t stride, int64_t n, int64_t hd, float scale, float *scores) {
#if defined(__x86_64__)
    if (qlm_get_path() == QLM_PATH_AVX512) { scores_avx512(q, k, stride, n, hd, scale, scores); return; }
#endif
    scores_scalar(q, k, stride, n, hd, scale, scores);
}

void qlm_attn_accum_f32(const float *w, const float *v, int64_t stride, int64_t n, int64_t hd, float *out) {
#if defined(__x86_64__)
    if (qlm_get_path() == QLM_PATH_AVX512) { accum_avx512(w, v, stride, n, hd, out); return; }
#endif
    accum_scalar(w, v, stride, n, hd, out);
}
