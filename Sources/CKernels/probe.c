// Memory-bandwidth probe for `run bench`: a sequential read of a buffer much larger than the
// caches, split across the pool's threads, so decode speed can be stated as a share of what
// this machine's memory delivers in the same run.
#include "qlm_kernels.h"

#include <stdint.h>

#if defined(__x86_64__)
#include <immintrin.h>
// Eight independent accumulators over 512 bytes per iteration with aligned loads: the adds
// are never the bottleneck, so this measures how fast memory delivers a sequential stream.
__attribute__((target("avx512f"))) static double sum_avx512(const float *p, size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    size_t i = 0;
    while (i < n && ((uintptr_t)(p + i) & 63)) i++;
    double s = 0;
    for (size_t j = 0; j < i && j < n; j++) s += p[j];
    for (; i + 128 <= n; i += 128) {
        a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
        a4 = _mm512_add_ps(a4, _mm512_load_ps(p + i + 64));
        a5 = _mm512_add_ps(a5, _mm512_load_ps(p + i + 80));
        a6 = _mm512_add_ps(a6, _mm512_load_ps(p + i + 96));
        a7 = _mm512_add_ps(a7, _mm512_load_ps(p + i + 112));
    }
    __m512 t = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s += _mm512_reduce_add_ps(t);
    for (; i < n; i++) s += p[i];
    return s;
}
#endif

static double sum_scalar(const float *p, size_t n) {
    float a[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) a[j] += p[i + j];
    double s = 0;
    for (int j = 0; j < 8; j++) s += a[j];
    for (; i < n; i++) s += p[i];
    return s;
}

typedef struct { const float *p; size_t n; double out[256]; } probe_ctx;

static void probe_task(void *v, int ith, int nth) {
    probe_ctx *c = (probe_ctx *)v;
    size_t per = (c->n / (size_t)nth) & ~(size_t)63;
    size_t lo = per * (size_t)ith;
    size_t hi = ith == nth - 1 ? c->n : lo + per;
#if defined(__x86_64__)
    if (qlm_path_supported(QLM_PATH_AVX512)) { c->out[ith & 255] = sum_avx512(c->p + lo, hi - lo); return; }
#endif
    c->out[ith & 255] = sum_scalar(c->p + lo, hi - lo);
}

double qlm_probe_read(qlm_pool *pool, const float *buf, size_t n_floats) {
    probe_ctx c = {buf, n_floats, {0}};
    if (pool) qlm_pool_run(pool, probe_task, &c);
    else probe_task(&c, 0, 1);
    double s = 0;
    for (int i = 0; i < 256; i++) s += c.out[i];
    return s;
}
