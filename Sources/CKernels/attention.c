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
        // Four keys at a time: four accumulators folded to four sums by one shared reduction
        // (a full horizontal reduction per key was most of the cost at head_dim 64). A leftover
        // key goes through the very same reduction sequence, so each key's score is bit-identical
        // however the cache cuts its rows into runs (the ring-vs-dense tests rely on that).
        int64_t i = 0;
        for (; i < n; i += 4) {
            const int64_t m = n - i < 4 ? n - i : 4;
            const float *k0 = k + i * stride;
            const float *k1 = m > 1 ? k0 + stride : k0, *k2 = m > 2 ? k0 + 2 * stride : k0, *k3 = m > 3 ? k0 + 3 * stride : k0;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t j = 0; j < hd; j += 16) {
                const __m512 qv = _mm512_loadu_ps(q + j);
                a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + j), a0);
                a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k1 + j), a1);
                a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k2 + j), a2);
                a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k3 + j), a3);
            }
#define QLM_FOLD256(a) _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)))
            const __m256 b0 = QLM_FOLD256(a0), b1 = QLM_FOLD256(a1), b2 = QLM_FOLD256(a2), b3 = QLM_FOLD256(a3);
#undef QLM_FOLD256
            // hadd(hadd(b0, b1), hadd(b2, b3)): each 128-bit lane holds the four partial sums.
            const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(b0, b1), _mm256_hadd_ps(b2, b3));
            const __m128 r = _mm_mul_ps(_mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)), _mm_set1_ps(scale));
            float out4[4];
            _mm_storeu_ps(out4, r);
            for (int64_t t = 0; t < m; t++) scores[i + t] = out4[t];
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

// ---- KV rows in f32, f16 or q8_0 ------------------------------------------------------------
// One kernel family for every KV type: the same scores / softmax / accumulate steps, with the
// type a parameter. A cached row of one position is n_kv_head head vectors of hd values:
//   QLM_KV_F32  hd floats per head
//   QLM_KV_F16  hd IEEE halves per head
//   QLM_KV_Q8_0 per head: a float scale d then hd int8 q, value = d * q, d = max|x| / 127
//               (one block per head vector: "per head-dimension block").
// k / v point at the first head vector of the run; stride_bytes separates consecutive positions.
#include <string.h>

int64_t qlm_kv_head_bytes(int32_t kv_type, int64_t hd) {
    switch (kv_type) {
    case QLM_KV_F16: return 2 * hd;
    case QLM_KV_Q8_0: return 4 + hd;
    default: return 4 * hd;
    }
}

void qlm_kv_store_row(int32_t kv_type, const float *x, void *dst, int64_t n_head, int64_t hd) {
    uint8_t *d = (uint8_t *)dst;
    switch (kv_type) {
    case QLM_KV_F16:
        qlm_f32_to_f16(x, (uint16_t *)d, n_head * hd);
        return;
    case QLM_KV_Q8_0:
        for (int64_t h = 0; h < n_head; h++) {
            const float *xh = x + h * hd;
            uint8_t *b = d + h * (4 + hd);
            float amax = 0.0f;
            for (int64_t j = 0; j < hd; j++) { float a = fabsf(xh[j]); if (a > amax) amax = a; }
            const float scale = amax / 127.0f;
            const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
            memcpy(b, &scale, 4);
            int8_t *q = (int8_t *)(b + 4);
            for (int64_t j = 0; j < hd; j++) q[j] = (int8_t)roundf(xh[j] * inv);
        }
        return;
    default:
        memcpy(d, x, (size_t)(n_head * hd) * sizeof(float));
    }
}

void qlm_kv_load_head(int32_t kv_type, const void *src, int64_t hd, float *out) {
    const uint8_t *s = (const uint8_t *)src;
    switch (kv_type) {
    case QLM_KV_F16: qlm_f16_to_f32((const uint16_t *)s, out, hd); return;
    case QLM_KV_Q8_0: {
        float scale; memcpy(&scale, s, 4);
        const int8_t *q = (const int8_t *)(s + 4);
        for (int64_t j = 0; j < hd; j++) out[j] = scale * (float)q[j];
        return;
    }
    default: memcpy(out, s, (size_t)hd * sizeof(float));
    }
}

#define QLM_KV_MAX_HD 1024

void qlm_attn_scores(int32_t kv_type, const float *q, const void *k, int64_t stride_bytes, int64_t n, int64_t hd,
                     float scale, float *scores) {
    const uint8_t *kb = (const uint8_t *)k;
    if (kv_type == QLM_KV_F32 && stride_bytes % 4 == 0) {
        qlm_attn_scores_f32(q, (const float *)k, stride_bytes / 4, n, hd, scale, scores);
        return;
    }
    if (kv_type == QLM_KV_Q8_0) {
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *b = kb + i * stride_bytes;
            float d; memcpy(&d, b, 4);
            const int8_t *qs = (const int8_t *)(b + 4);
            float acc = 0;
            for (int64_t j = 0; j < hd; j++) acc += q[j] * (float)qs[j];
            scores[i] = acc * d * scale;
        }
        return;
    }
    float tmp[QLM_KV_MAX_HD];
    for (int64_t i = 0; i < n; i++) {
        qlm_kv_load_head(kv_type, kb + i * stride_bytes, hd, tmp);
        float acc = 0;
        for (int64_t j = 0; j < hd; j++) acc += q[j] * tmp[j];
        scores[i] = acc * scale;
    }
}

void qlm_attn_accum(int32_t kv_type, const float *w, const void *v, int64_t stride_bytes, int64_t n, int64_t hd,
                    float *out) {
    const uint8_t *vb = (const uint8_t *)v;
    if (kv_type == QLM_KV_F32 && stride_bytes % 4 == 0) {
        qlm_attn_accum_f32(w, (const float *)v, stride_bytes / 4, n, hd, out);
        return;
    }
    if (kv_type == QLM_KV_Q8_0) {
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *b = vb + i * stride_bytes;
            float d; memcpy(&d, b, 4);
            const float a = w[i] * d;
            const int8_t *qs = (const int8_t *)(b + 4);
            for (int64_t j = 0; j < hd; j++) out[j] += a * (float)qs[j];
        }
        return;
    }
    float tmp[QLM_KV_MAX_HD];
    for (int64_t i = 0; i < n; i++) {
        qlm_kv_load_head(kv_type, vb + i * stride_bytes, hd, tmp);
        for (int64_t j = 0; j < hd; j++) out[j] += w[i] * tmp[j];
    }
}
