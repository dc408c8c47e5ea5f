// Attention over a contiguous run of cached positions: one call per run of keys instead of
// one call per key (stories260K has head_dim 8, where per-key calls are all overhead).
// A ring-buffer cache presents at most two runs; the caller softmaxes across all runs.
#include "qlm_kernels.h"
#include "qlm_testing.h"

#include <math.h>
#include <string.h>

// A SIMD path's kernels (attention_simd.h), or NULL for the scalar loops below. Each entry
// returns 0 when the head size has no kernel on that path; the caller then falls back.
typedef struct {
    int (*scores)(int kind, const float *q, const uint8_t *k, int64_t stride, int64_t n, int64_t hd, float scale, float *scores);
    int (*accum)(int kind, const float *w, const uint8_t *v, int64_t stride, int64_t n, int64_t hd, float *out);
    int (*scores_heads)(int kind, int64_t nq, const float *q, int64_t hd, const uint8_t *k, int64_t stride, int64_t n,
                        float scale, float *scores, int64_t ss);
    int (*accum_heads)(int kind, int64_t nq, const float *w, int64_t ws, const uint8_t *v, int64_t stride, int64_t n,
                       int64_t hd, float *out);
} att_kernels;

#if defined(__x86_64__)
#include <immintrin.h>

// Bytes of one head vector in the cache (see "KV rows" below).
static inline int64_t kv_bytes(int kind, int64_t hd) { return kind == QLM_KV_F16 ? 2 * hd : kind == QLM_KV_Q8_0 ? 4 + hd : 4 * hd; }

// q8_0's per-head-vector scale d (value = d * q).
static inline float kv_scale(const uint8_t *h) { float d; memcpy(&d, h, 4); return d; }

// q8_0: the scales of nk keys.
static inline void key_scales(int nk, const uint8_t *k0, int64_t stride, float *d) {
    for (int t = 0; t < nk; t++) d[t] = kv_scale(k0 + t * stride);
}

// Prefetch distance in keys for the scores and accumulate loops (the rows of one head are
// strided by the whole cache row; measured: q8_0's 4 + hd byte vectors gain most).
#define QLM_ATTN_PF 8

static inline void kv_prefetch(const uint8_t *h, int64_t bytes) {
    for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch((const char *)h + b, _MM_HINT_T0);
    _mm_prefetch((const char *)h + bytes - 1, _MM_HINT_T0);
}

// The runtime walks the heads in order, each over the same rows, so the next two calls read the
// two head vectors right after this one in every row: fetching them into L2 while this head's
// rows stream in turns most of their misses into L2 hits. Measured on GPT-2-small-shaped decode
// (12 heads of 64, positions 128..380, caches flushed by a 128 MiB read per token as the weights
// do), attention time per token vs no next-head prefetch: f32 -35 %, f16 -40 %, q8_0 -45 %
// (one head ahead gained less, three no more). A prefetch past the last head or the cache's end
// is harmless (prefetches never fault).
static inline void kv_prefetch_next_heads(const uint8_t *h, int64_t bytes) {
    for (int64_t b = 0; b < 2 * bytes; b += 64) _mm_prefetch((const char *)h + bytes + b, _MM_HINT_T1);
    _mm_prefetch((const char *)h + 3 * bytes - 1, _MM_HINT_T1);
}

// ---- AVX-512: 16 lanes ------------------------------------------------------------------------
#define QLM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define QLM_AVX512_INLINE QLM_AVX512 static inline __attribute__((always_inline))

QLM_AVX512_INLINE __m512 kv_load_avx512(int kind, const uint8_t *h, int64_t j) {
    switch (kind) {
    case QLM_KV_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + 2 * j)));
    case QLM_KV_Q8_0: return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(h + 4 + j))));
    default: return _mm512_loadu_ps((const float *)h + j);
    }
}

QLM_AVX512_INLINE __m256 fold8_avx512(__m512 a) {
    return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

// The 8 values of a head_dim-8 head vector.
QLM_AVX512_INLINE __m256 kv_load8(int kind, const uint8_t *h) {
    switch (kind) {
    case QLM_KV_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
    case QLM_KV_Q8_0: return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(h + 4))));
    default: return _mm256_loadu_ps((const float *)h);
    }
}

// head_dim 8 (stories260K; below one 16-lane chunk): product, then (0+4, 1+5, 2+6, 3+7), then
// (0+2, 1+3), then the two; per key.
QLM_AVX512_INLINE void scores_kernel8(int kind, const float *q, const uint8_t *k, int64_t stride, int64_t n, float scale,
                                      float *scores) {
    const __m256 qv = _mm256_loadu_ps(q);
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *ki = k + i * stride;
        __m256 p = _mm256_mul_ps(qv, kv_load8(kind, ki));
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(p), _mm256_extractf128_ps(p, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        float r = _mm_cvtss_f32(s);
        if (kind == QLM_KV_Q8_0) r *= kv_scale(ki);
        scores[i] = r * scale;
    }
}

QLM_AVX512_INLINE void accum_kernel8(int kind, const float *w, const uint8_t *v, int64_t stride, int64_t n, float *out) {
    __m256 acc = _mm256_loadu_ps(out);
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *vi = v + i * stride;
        const float wi = kind == QLM_KV_Q8_0 ? w[i] * kv_scale(vi) : w[i];
        acc = _mm256_fmadd_ps(_mm256_set1_ps(wi), kv_load8(kind, vi), acc);
    }
    _mm256_storeu_ps(out, acc);
}

QLM_AVX512 static int scores_small_avx512(int kind, const float *q, const uint8_t *k, int64_t stride, int64_t n, int64_t hd,
                                          float scale, float *scores) {
    if (hd != 8) return 0;
    switch (kind) {
    case QLM_KV_F16: scores_kernel8(QLM_KV_F16, q, k, stride, n, scale, scores); break;
    case QLM_KV_Q8_0: scores_kernel8(QLM_KV_Q8_0, q, k, stride, n, scale, scores); break;
    default: scores_kernel8(QLM_KV_F32, q, k, stride, n, scale, scores); break;
    }
    return 1;
}

QLM_AVX512 static int accum_small_avx512(int kind, const float *w, const uint8_t *v, int64_t stride, int64_t n, int64_t hd,
                                         float *out) {
    if (hd != 8) return 0;
    switch (kind) {
    case QLM_KV_F16: accum_kernel8(QLM_KV_F16, w, v, stride, n, out); break;
    case QLM_KV_Q8_0: accum_kernel8(QLM_KV_Q8_0, w, v, stride, n, out); break;
    default: accum_kernel8(QLM_KV_F32, w, v, stride, n, out); break;
    }
    return 1;
}

#define ATT(name) name##_avx512
#define ATT_TARGET QLM_AVX512
#define ATT_V __m512
#define ATT_W 16
#define ATT_ZERO() _mm512_setzero_ps()
#define ATT_LOADU(p) _mm512_loadu_ps(p)
#define ATT_STOREU(p, v) _mm512_storeu_ps(p, v)
#define ATT_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define ATT_SET1(x) _mm512_set1_ps(x)
#define ATT_MAXQ 4 // 16 accumulators + 4 queries + a key of 32 zmm registers
#include "attention_simd.h"

// ---- AVX2: 8 lanes (head_dim 8 is one chunk) ---------------------------------------------------
#define QLM_AVX2 __attribute__((target("avx2,fma,f16c")))

QLM_AVX2 static inline __attribute__((always_inline)) __m256 kv_load_avx2(int kind, const uint8_t *h, int64_t j) {
    switch (kind) {
    case QLM_KV_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + 2 * j)));
    case QLM_KV_Q8_0: return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(h + 4 + j))));
    default: return _mm256_loadu_ps((const float *)h + j);
    }
}
QLM_AVX2 static inline __attribute__((always_inline)) __m256 fold8_avx2(__m256 a) { return a; }
static int scores_small_avx2(int kind, const float *q, const uint8_t *k, int64_t stride, int64_t n, int64_t hd, float scale,
                             float *scores) {
    (void)kind, (void)q, (void)k, (void)stride, (void)n, (void)hd, (void)scale, (void)scores;
    return 0;
}
static int accum_small_avx2(int kind, const float *w, const uint8_t *v, int64_t stride, int64_t n, int64_t hd, float *out) {
    (void)kind, (void)w, (void)v, (void)stride, (void)n, (void)hd, (void)out;
    return 0;
}

#define ATT(name) name##_avx2
#define ATT_TARGET QLM_AVX2
#define ATT_V __m256
#define ATT_W 8
#define ATT_ZERO() _mm256_setzero_ps()
#define ATT_LOADU(p) _mm256_loadu_ps(p)
#define ATT_STOREU(p, v) _mm256_storeu_ps(p, v)
#define ATT_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define ATT_SET1(x) _mm256_set1_ps(x)
#define ATT_MAXQ 3 // 12 accumulators + 3 queries + a key of 16 ymm registers
#include "attention_simd.h"
#endif

static const att_kernels *att_for_path(void) {
#if defined(__x86_64__)
    switch (qlm_get_path()) {
    case QLM_PATH_AVX512: return &kernels_avx512;
    case QLM_PATH_AVX2: return &kernels_avx2;
    default: break;
    }
#endif
    return NULL;
}

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

// ---- KV rows in f32, f16 or q8_0 ------------------------------------------------------------
// One kernel family for every KV type: the same scores / softmax / accumulate steps, with the
// type a parameter. A cached row of one position is n_kv_head head vectors of hd values:
//   QLM_KV_F32  hd floats per head
//   QLM_KV_F16  hd IEEE halves per head
//   QLM_KV_Q8_0 per head: a float scale d then hd int8 q, value = d * q, d = max|x| / 127
//               (one block per head vector: "per head-dimension block").
// k / v point at the first head vector of the run; stride_bytes separates consecutive positions.

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
    const att_kernels *simd = att_for_path();
    if (simd && simd->scores(kv_type, q, kb, stride_bytes, n, hd, scale, scores)) return;
    if (kv_type == QLM_KV_F32 && stride_bytes % 4 == 0) {
        scores_scalar(q, (const float *)k, stride_bytes / 4, n, hd, scale, scores);
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
    const att_kernels *simd = att_for_path();
    if (simd && simd->accum(kv_type, w, vb, stride_bytes, n, hd, out)) return;
    if (kv_type == QLM_KV_F32 && stride_bytes % 4 == 0) {
        accum_scalar(w, (const float *)v, stride_bytes / 4, n, hd, out);
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

void qlm_attn_scores_heads(int32_t kv_type, const float *q, int64_t nq, const void *k, int64_t stride_bytes, int64_t n,
                           int64_t hd, float scale, float *scores, int64_t scores_stride) {
    if (n <= 0 || nq <= 0) return;
    const att_kernels *simd = att_for_path();
    if (simd && simd->scores_heads(kv_type, nq, q, hd, (const uint8_t *)k, stride_bytes, n, scale, scores, scores_stride)) return;
    for (int64_t g = 0; g < nq; g++) qlm_attn_scores(kv_type, q + g * hd, k, stride_bytes, n, hd, scale, scores + g * scores_stride);
}

void qlm_attn_accum_heads(int32_t kv_type, const float *w, int64_t w_stride, int64_t nq, const void *v, int64_t stride_bytes,
                          int64_t n, int64_t hd, float *out) {
    if (n <= 0 || nq <= 0) return;
    const att_kernels *simd = att_for_path();
    if (simd && simd->accum_heads(kv_type, nq, w, w_stride, (const uint8_t *)v, stride_bytes, n, hd, out)) return;
    for (int64_t g = 0; g < nq; g++) qlm_attn_accum(kv_type, w + g * w_stride, v, stride_bytes, n, hd, out + g * hd);
}
