// Attention over a contiguous run of cached positions: one call per run of keys instead of
// one call per key (stories260K has head_dim 8, where per-key calls are all overhead).
// A ring-buffer cache presents at most two runs; the caller softmaxes across all runs.
#include "qlm_kernels.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define QLM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define QLM_AVX512_INLINE QLM_AVX512 static inline __attribute__((always_inline))

// One AVX-512 kernel family for every KV type, specialised per type at compile time (`kind` is
// a constant in every caller). h points at a head vector in the cache's layout (see below).

// Values j .. j+15 of the head vector at h, as floats (f16 → f32 and int8 → f32 are exact).
QLM_AVX512_INLINE __m512 kv_load16(int kind, const uint8_t *h, int64_t j) {
    switch (kind) {
    case QLM_KV_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + 2 * j)));
    case QLM_KV_Q8_0: return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(h + 4 + j))));
    default: return _mm512_loadu_ps((const float *)h + j);
    }
}

// The 8 values of a head_dim-8 head vector.
QLM_AVX512_INLINE __m256 kv_load8(int kind, const uint8_t *h) {
    switch (kind) {
    case QLM_KV_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
    case QLM_KV_Q8_0: return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(h + 4))));
    default: return _mm256_loadu_ps((const float *)h);
    }
}

// q8_0's per-head-vector scale d (value = d * q).
QLM_AVX512_INLINE float kv_scale(const uint8_t *h) { float d; memcpy(&d, h, 4); return d; }

// ---- scores ----
// A key's score is its hd/16-step FMA chain (one 16-lane accumulator, chunks in order), then one
// fixed reduction tree: lanes l and l+8 added, then (0+1)+(2+3) and (4+5)+(6+7) of those, then
// the two added; times d (q8_0) then times scale. Groups of 8, 4 or 1 keys run that very tree,
// so each key's score is bit-identical however the cache cuts its rows into runs (the
// ring-vs-dense tests rely on that); for f32 it is the tree of the previous 4-key kernel.

QLM_AVX512_INLINE __m256 fold256(__m512 a) {
    return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

// Prefetch distance in keys for the scores and accumulate loops (the rows of one head are
// strided by the whole cache row; measured: q8_0's 4 + hd byte vectors gain most).
#define QLM_ATTN_PF 8

QLM_AVX512_INLINE void kv_prefetch(const uint8_t *h, int64_t bytes) {
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
QLM_AVX512_INLINE void kv_prefetch_next_heads(const uint8_t *h, int64_t bytes) {
    for (int64_t b = 0; b < 2 * bytes; b += 64) _mm_prefetch((const char *)h + bytes + b, _MM_HINT_T1);
    _mm_prefetch((const char *)h + 3 * bytes - 1, _MM_HINT_T1);
}

// The FMA chains of nk keys (k0, k0 + stride, ...; nk a constant 8 or 4): a[t] over chunks of 16
// in order, the keys interleaved per chunk so the chains run side by side.
QLM_AVX512_INLINE void key_chains(int kind, int nk, const float *q, const uint8_t *k0, int64_t stride, int64_t hd, __m512 *a) {
    for (int t = 0; t < nk; t++) a[t] = _mm512_setzero_ps();
    for (int64_t j = 0; j < hd; j += 16) {
        const __m512 qv = _mm512_loadu_ps(q + j);
        for (int t = 0; t < nk; t++) a[t] = _mm512_fmadd_ps(qv, kv_load16(kind, k0 + t * stride, j), a[t]);
    }
}

// hadd(hadd(b0, b1), hadd(b2, b3)) of the folded a[0..3]: each 128-bit lane holds four keys' partial sums.
QLM_AVX512_INLINE __m256 hadd4(const __m512 *a) {
    return _mm256_hadd_ps(_mm256_hadd_ps(fold256(a[0]), fold256(a[1])), _mm256_hadd_ps(fold256(a[2]), fold256(a[3])));
}

// q8_0: the scales of nk keys.
QLM_AVX512_INLINE void key_scales(int nk, const uint8_t *k0, int64_t stride, float *d) {
    for (int t = 0; t < nk; t++) d[t] = kv_scale(k0 + t * stride);
}

QLM_AVX512_INLINE void scores_kernel(int kind, const float *q, const uint8_t *k, int64_t stride, int64_t n, int64_t hd,
                                     float scale, float *scores) {
    const int64_t bytes = kind == QLM_KV_F16 ? 2 * hd : kind == QLM_KV_Q8_0 ? 4 + hd : 4 * hd;
    const __m256 sv = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint8_t *k0 = k + i * stride;
        if (i + QLM_ATTN_PF + 8 <= n)
            for (int t = 0; t < 8; t++) kv_prefetch(k0 + (QLM_ATTN_PF + t) * stride, bytes);
        for (int t = 0; t < 8; t++) kv_prefetch_next_heads(k0 + t * stride, bytes);
        __m512 a[8];
        key_chains(kind, 8, q, k0, stride, hd, a);
        const __m256 h0 = hadd4(a), h1 = hadd4(a + 4);
        __m256 r = _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
        if (kind == QLM_KV_Q8_0) {
            float d[8];
            key_scales(8, k0, stride, d);
            r = _mm256_mul_ps(r, _mm256_loadu_ps(d));
        }
        _mm256_storeu_ps(scores + i, _mm256_mul_ps(r, sv));
    }
    if (i + 4 <= n) {
        const uint8_t *k0 = k + i * stride;
        __m512 a[4];
        key_chains(kind, 4, q, k0, stride, hd, a);
        const __m256 h = hadd4(a);
        __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        if (kind == QLM_KV_Q8_0) {
            float d[4];
            key_scales(4, k0, stride, d);
            r = _mm_mul_ps(r, _mm_loadu_ps(d));
        }
        _mm_storeu_ps(scores + i, _mm_mul_ps(r, _mm256_castps256_ps128(sv)));
        i += 4;
    }
    for (; i < n; i++) {
        const uint8_t *k0 = k + i * stride;
        __m512 a0 = _mm512_setzero_ps();
        for (int64_t j = 0; j < hd; j += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j), kv_load16(kind, k0, j), a0);
        __m256 h = fold256(a0);
        h = _mm256_hadd_ps(h, h);
        h = _mm256_hadd_ps(h, h);
        __m128 r = _mm_add_ss(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        if (kind == QLM_KV_Q8_0) r = _mm_mul_ss(r, _mm_set_ss(kv_scale(k0)));
        scores[i] = _mm_cvtss_f32(_mm_mul_ss(r, _mm256_castps256_ps128(sv)));
    }
}

// head_dim 8: product, then (0+4, 1+5, 2+6, 3+7), then (0+2, 1+3), then the two; per key.
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

// ---- accumulate ----
// Each output element is one FMA chain over the positions in order, acc = fma(w_i, v_i[j], acc)
// (w_i * d_i for q8_0, rounded once), starting from out[j]: identical whichever runs the
// positions arrive in, and for f32 bit-identical to the previous chunk-outer kernel. Positions
// run outside and up to 8 chunks (128 floats) inside, so the chunks' chains are independent.

QLM_AVX512_INLINE void accum_chunks(int kind, int nc, const float *w, const uint8_t *v, int64_t stride, int64_t n,
                                    int64_t bytes, int64_t j0, float *out) {
    __m512 acc[8];
    for (int c = 0; c < nc; c++) acc[c] = _mm512_loadu_ps(out + j0 + 16 * c);
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *vi = v + i * stride;
        if (j0 == 0) {
            if (i + QLM_ATTN_PF < n) kv_prefetch(vi + QLM_ATTN_PF * stride, bytes);
            kv_prefetch_next_heads(vi, bytes);
        }
        const __m512 wi = _mm512_set1_ps(kind == QLM_KV_Q8_0 ? w[i] * kv_scale(vi) : w[i]);
        for (int c = 0; c < nc; c++) acc[c] = _mm512_fmadd_ps(wi, kv_load16(kind, vi, j0 + 16 * c), acc[c]);
    }
    for (int c = 0; c < nc; c++) _mm512_storeu_ps(out + j0 + 16 * c, acc[c]);
}

QLM_AVX512_INLINE void accum_kernel(int kind, const float *w, const uint8_t *v, int64_t stride, int64_t n, int64_t hd,
                                    float *out) {
    const int64_t bytes = kind == QLM_KV_F16 ? 2 * hd : kind == QLM_KV_Q8_0 ? 4 + hd : 4 * hd;
    for (int64_t j0 = 0; j0 < hd; j0 += 128) {
        switch ((hd - j0) / 16) {
        case 1: accum_chunks(kind, 1, w, v, stride, n, bytes, j0, out); break;
        case 2: accum_chunks(kind, 2, w, v, stride, n, bytes, j0, out); break;
        case 3: accum_chunks(kind, 3, w, v, stride, n, bytes, j0, out); break;
        case 4: accum_chunks(kind, 4, w, v, stride, n, bytes, j0, out); break;
        case 5: accum_chunks(kind, 5, w, v, stride, n, bytes, j0, out); break;
        case 6: accum_chunks(kind, 6, w, v, stride, n, bytes, j0, out); break;
        case 7: accum_chunks(kind, 7, w, v, stride, n, bytes, j0, out); break;
        default: accum_chunks(kind, 8, w, v, stride, n, bytes, j0, out); break;
        }
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

// Entry points per KV type; 0 if the head size has no SIMD kernel (the caller falls back).
#define QLM_KV_AVX512_ENTRIES(NAME, KIND)                                                                              \
    QLM_AVX512 static int scores_##NAME##_avx512(const float *q, const uint8_t *k, int64_t stride, int64_t n, int64_t hd, \
                                                float scale, float *scores) {                                         \
        if (hd == 64) scores_kernel(KIND, q, k, stride, n, 64, scale, scores);                                        \
        else if (hd % 16 == 0) scores_kernel(KIND, q, k, stride, n, hd, scale, scores);                               \
        else if (hd == 8) scores_kernel8(KIND, q, k, stride, n, scale, scores);                                       \
        else return 0;                                                                                                \
        return 1;                                                                                                     \
    }                                                                                                                 \
    QLM_AVX512 static int accum_##NAME##_avx512(const float *w, const uint8_t *v, int64_t stride, int64_t n, int64_t hd, \
                                               float *out) {                                                          \
        if (hd == 64) accum_kernel(KIND, w, v, stride, n, 64, out);                                                    \
        else if (hd % 16 == 0) accum_kernel(KIND, w, v, stride, n, hd, out);                                           \
        else if (hd == 8) accum_kernel8(KIND, w, v, stride, n, out);                                                   \
        else return 0;                                                                                                \
        return 1;                                                                                                     \
    }
QLM_KV_AVX512_ENTRIES(f32, QLM_KV_F32)
QLM_KV_AVX512_ENTRIES(f16, QLM_KV_F16)
QLM_KV_AVX512_ENTRIES(q8, QLM_KV_Q8_0)
#undef QLM_KV_AVX512_ENTRIES

// ---- several query heads over the same keys (grouped-query attention) -----------------------
// Heads that share a KV head read the same key and value rows: here the rows are loaded (and
// converted) once for up to QLM_ATTN_MAXQ heads. Each (head, key) score is the chain and the
// reduction tree of scores_kernel (the 4-key and 1-key groups there), and each output element
// the chain of accum_kernel over the positions in order, so every result is bit-identical to
// qlm_attn_scores / qlm_attn_accum called per head.
#define QLM_ATTN_MAXQ 4

QLM_AVX512_INLINE void scores_heads_kernel(int kind, const int nq, const float *q, int64_t hd, const uint8_t *k,
                                           int64_t stride, int64_t n, float scale, float *scores, int64_t ss) {
    const int64_t bytes = kind == QLM_KV_F16 ? 2 * hd : kind == QLM_KV_Q8_0 ? 4 + hd : 4 * hd;
    const __m128 sv = _mm_set1_ps(scale);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint8_t *k0 = k + i * stride;
        if (i + QLM_ATTN_PF + 4 <= n)
            for (int t = 0; t < 4; t++) kv_prefetch(k0 + (QLM_ATTN_PF + t) * stride, bytes);
        __m512 a[QLM_ATTN_MAXQ][4];
        for (int g = 0; g < nq; g++)
            for (int t = 0; t < 4; t++) a[g][t] = _mm512_setzero_ps();
        for (int64_t j = 0; j < hd; j += 16) {
            __m512 kv[4];
            for (int t = 0; t < 4; t++) kv[t] = kv_load16(kind, k0 + t * stride, j);
            for (int g = 0; g < nq; g++) {
                const __m512 qv = _mm512_loadu_ps(q + g * hd + j);
                for (int t = 0; t < 4; t++) a[g][t] = _mm512_fmadd_ps(qv, kv[t], a[g][t]);
            }
        }
        float d[4];
        if (kind == QLM_KV_Q8_0) key_scales(4, k0, stride, d);
        for (int g = 0; g < nq; g++) {
            const __m256 h = hadd4(a[g]);
            __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            if (kind == QLM_KV_Q8_0) r = _mm_mul_ps(r, _mm_loadu_ps(d));
            _mm_storeu_ps(scores + g * ss + i, _mm_mul_ps(r, sv));
        }
    }
    for (; i < n; i++) {
        const uint8_t *k0 = k + i * stride;
        for (int g = 0; g < nq; g++) {
            __m512 a0 = _mm512_setzero_ps();
            for (int64_t j = 0; j < hd; j += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + g * hd + j), kv_load16(kind, k0, j), a0);
            __m256 h = fold256(a0);
            h = _mm256_hadd_ps(h, h);
            h = _mm256_hadd_ps(h, h);
            __m128 r = _mm_add_ss(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            if (kind == QLM_KV_Q8_0) r = _mm_mul_ss(r, _mm_set_ss(kv_scale(k0)));
            scores[g * ss + i] = _mm_cvtss_f32(_mm_mul_ss(r, sv));
        }
    }
}

// out[g * hd + j] += sum_i w[g * ws + i] * v_i[j], hd a multiple of 64: blocks of 64 elements
// (4 chains per head), positions inside.
QLM_AVX512_INLINE void accum_heads_kernel(int kind, const int nq, const float *w, int64_t ws, const uint8_t *v,
                                          int64_t stride, int64_t n, int64_t hd, float *out) {
    const int64_t bytes = kind == QLM_KV_F16 ? 2 * hd : kind == QLM_KV_Q8_0 ? 4 + hd : 4 * hd;
    for (int64_t j0 = 0; j0 < hd; j0 += 64) {
        __m512 acc[QLM_ATTN_MAXQ][4];
        for (int g = 0; g < nq; g++)
            for (int c = 0; c < 4; c++) acc[g][c] = _mm512_loadu_ps(out + g * hd + j0 + 16 * c);
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *vi = v + i * stride;
            if (j0 == 0 && i + QLM_ATTN_PF < n) kv_prefetch(vi + QLM_ATTN_PF * stride, bytes);
            __m512 x[4];
            for (int c = 0; c < 4; c++) x[c] = kv_load16(kind, vi, j0 + 16 * c);
            const float d = kind == QLM_KV_Q8_0 ? kv_scale(vi) : 1.0f;
            for (int g = 0; g < nq; g++) {
                const __m512 wi = _mm512_set1_ps(kind == QLM_KV_Q8_0 ? w[g * ws + i] * d : w[g * ws + i]);
                for (int c = 0; c < 4; c++) acc[g][c] = _mm512_fmadd_ps(wi, x[c], acc[g][c]);
            }
        }
        for (int g = 0; g < nq; g++)
            for (int c = 0; c < 4; c++) _mm512_storeu_ps(out + g * hd + j0 + 16 * c, acc[g][c]);
    }
}

#define QLM_HEADS_ENTRIES(NAME, KIND)                                                                                   \
    QLM_AVX512 static void scores_heads_##NAME(int nq, const float *q, int64_t hd, const uint8_t *k, int64_t stride,   \
                                               int64_t n, float scale, float *scores, int64_t ss) {                    \
        switch (nq) {                                                                                                  \
        case 1: scores_heads_kernel(KIND, 1, q, hd, k, stride, n, scale, scores, ss); break;                           \
        case 2: scores_heads_kernel(KIND, 2, q, hd, k, stride, n, scale, scores, ss); break;                           \
        case 3: scores_heads_kernel(KIND, 3, q, hd, k, stride, n, scale, scores, ss); break;                           \
        default: scores_heads_kernel(KIND, 4, q, hd, k, stride, n, scale, scores, ss); break;                          \
        }                                                                                                              \
    }                                                                                                                  \
    QLM_AVX512 static void accum_heads_##NAME(int nq, const float *w, int64_t ws, const uint8_t *v, int64_t stride,    \
                                              int64_t n, int64_t hd, float *out) {                                     \
        switch (nq) {                                                                                                  \
        case 1: accum_heads_kernel(KIND, 1, w, ws, v, stride, n, hd, out); break;                                      \
        case 2: accum_heads_kernel(KIND, 2, w, ws, v, stride, n, hd, out); break;                                      \
        case 3: accum_heads_kernel(KIND, 3, w, ws, v, stride, n, hd, out); break;                                      \
        default: accum_heads_kernel(KIND, 4, w, ws, v, stride, n, hd, out); break;                                     \
        }                                                                                                              \
    }
QLM_HEADS_ENTRIES(f32, QLM_KV_F32)
QLM_HEADS_ENTRIES(f16, QLM_KV_F16)
QLM_HEADS_ENTRIES(q8, QLM_KV_Q8_0)
#undef QLM_HEADS_ENTRIES

QLM_AVX512 static void scores_avx512(const float *q, const float *k, int64_t stride, int64_t n, int64_t hd,
                                     float scale, float *scores) {
    if (scores_f32_avx512(q, (const uint8_t *)k, 4 * stride, n, hd, scale, scores)) return;
    for (int64_t i = 0; i < n; i++) {
        const float *ki = k + i * stride;
        float acc = 0;
        for (int64_t j = 0; j < hd; j++) acc += q[j] * ki[j];
        scores[i] = acc * scale;
    }
}

QLM_AVX512 static void accum_avx512(const float *w, const float *v, int64_t stride, int64_t n, int64_t hd, float *out) {
    if (accum_f32_avx512(w, (const uint8_t *)v, 4 * stride, n, hd, out)) return;
    for (int64_t i = 0; i < n; i++) {
        const float *vi = v + i * stride;
        for (int64_t j = 0; j < hd; j++) out[j] += w[i] * vi[j];
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

static void attn_scores_f32(const float *q, const float *k, int64_t stride, int64_t n, int64_t hd, float scale, float *scores) {
#if defined(__x86_64__)
    if (qlm_get_path() == QLM_PATH_AVX512) { scores_avx512(q, k, stride, n, hd, scale, scores); return; }
#endif
    scores_scalar(q, k, stride, n, hd, scale, scores);
}

static void attn_accum_f32(const float *w, const float *v, int64_t stride, int64_t n, int64_t hd, float *out) {
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
        attn_scores_f32(q, (const float *)k, stride_bytes / 4, n, hd, scale, scores);
        return;
    }
#if defined(__x86_64__)
    if (qlm_get_path() == QLM_PATH_AVX512) {
        if (kv_type == QLM_KV_F16 && scores_f16_avx512(q, kb, stride_bytes, n, hd, scale, scores)) return;
        if (kv_type == QLM_KV_Q8_0 && scores_q8_avx512(q, kb, stride_bytes, n, hd, scale, scores)) return;
    }
#endif
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
        attn_accum_f32(w, (const float *)v, stride_bytes / 4, n, hd, out);
        return;
    }
#if defined(__x86_64__)
    if (qlm_get_path() == QLM_PATH_AVX512) {
        if (kv_type == QLM_KV_F16 && accum_f16_avx512(w, vb, stride_bytes, n, hd, out)) return;
        if (kv_type == QLM_KV_Q8_0 && accum_q8_avx512(w, vb, stride_bytes, n, hd, out)) return;
    }
#endif
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
#if defined(__x86_64__)
    if (qlm_get_path() == QLM_PATH_AVX512 && hd % 16 == 0 && (kv_type != QLM_KV_F32 || stride_bytes % 4 == 0)) {
        const uint8_t *kb = (const uint8_t *)k;
        for (int64_t g = 0; g < nq; g += QLM_ATTN_MAXQ) {
            const int m = (int)(nq - g < QLM_ATTN_MAXQ ? nq - g : QLM_ATTN_MAXQ);
            const float *qg = q + g * hd;
            float *sg = scores + g * scores_stride;
            switch (kv_type) {
            case QLM_KV_F16: scores_heads_f16(m, qg, hd, kb, stride_bytes, n, scale, sg, scores_stride); break;
            case QLM_KV_Q8_0: scores_heads_q8(m, qg, hd, kb, stride_bytes, n, scale, sg, scores_stride); break;
            default: scores_heads_f32(m, qg, hd, kb, stride_bytes, n, scale, sg, scores_stride); break;
            }
        }
        return;
    }
#endif
    for (int64_t g = 0; g < nq; g++) qlm_attn_scores(kv_type, q + g * hd, k, stride_bytes, n, hd, scale, scores + g * scores_stride);
}

void qlm_attn_accum_heads(int32_t kv_type, const float *w, int64_t w_stride, int64_t nq, const void *v, int64_t stride_bytes,
                          int64_t n, int64_t hd, float *out) {
    if (n <= 0 || nq <= 0) return;
#if defined(__x86_64__)
    if (qlm_get_path() == QLM_PATH_AVX512 && hd % 64 == 0 && (kv_type != QLM_KV_F32 || stride_bytes % 4 == 0)) {
        const uint8_t *vb = (const uint8_t *)v;
        for (int64_t g = 0; g < nq; g += QLM_ATTN_MAXQ) {
            const int m = (int)(nq - g < QLM_ATTN_MAXQ ? nq - g : QLM_ATTN_MAXQ);
            const float *wg = w + g * w_stride;
            float *og = out + g * hd;
            switch (kv_type) {
            case QLM_KV_F16: accum_heads_f16(m, wg, w_stride, vb, stride_bytes, n, hd, og); break;
            case QLM_KV_Q8_0: accum_heads_q8(m, wg, w_stride, vb, stride_bytes, n, hd, og); break;
            default: accum_heads_f32(m, wg, w_stride, vb, stride_bytes, n, hd, og); break;
            }
        }
        return;
    }
#endif
    for (int64_t g = 0; g < nq; g++) qlm_attn_accum(kv_type, w + g * w_stride, v, stride_bytes, n, hd, out + g * hd);
}
