// The type table (assembled from the rows the type files define), the calls that go through it
// (row sizes, conversions, activations), CPU path selection and fp16/bf16 conversion.
// No per-type code here: a type's behaviour is its row (qlm_kernels.h, qlm_type_traits).
#include "qlm_internal.h"
#include <pthread.h>
#include <stdlib.h>

#pragma clang fp contract(off)

// ---- the table ------------------------------------------------------------------------------
// Index = the type's value (stored in .qlm files). A new type adds its row here.
static const qlm_type_traits *const k_table[32] = {
    [QLM_TYPE_F32] = &qlm_traits_f32,
    [QLM_TYPE_F16] = &qlm_traits_f16,
    [QLM_TYPE_Q8_0] = &qlm_traits_q8_0,
    [QLM_TYPE_Q4_0] = &qlm_traits_q4_0,
    [QLM_TYPE_Q4_1] = &qlm_traits_q4_1,
    [QLM_TYPE_IQ4_K16] = &qlm_traits_iq4_k16,
    [QLM_TYPE_IQ4_K32] = &qlm_traits_iq4_k32,
    [QLM_TYPE_Q4_0X8] = &qlm_traits_q4_0x8,
    [QLM_TYPE_Q8_0X8] = &qlm_traits_q8_0x8,
    [QLM_TYPE_Q4_K] = &qlm_traits_q4_k,
    [QLM_TYPE_Q5_K] = &qlm_traits_q5_k,
    [QLM_TYPE_Q6_K] = &qlm_traits_q6_k,
    [QLM_TYPE_Q5_0] = &qlm_traits_q5_0, [QLM_TYPE_Q5_1] = &qlm_traits_q5_1, [QLM_TYPE_IQ4_NL] = &qlm_traits_iq4_nl,
    [QLM_TYPE_IQ4_XS] = &qlm_traits_iq4_xs, [QLM_TYPE_Q3_K] = &qlm_traits_q3_k, [QLM_TYPE_Q2_K] = &qlm_traits_q2_k,
    [QLM_TYPE_Q5_0X8] = &qlm_traits_q5_0x8,
    [QLM_TYPE_Q5_1X8] = &qlm_traits_q5_1x8,
    [QLM_TYPE_IQ4_NLX8] = &qlm_traits_iq4_nlx8,
    [QLM_TYPE_Q4_KX8] = &qlm_traits_q4_kx8, [QLM_TYPE_Q6_KX8] = &qlm_traits_q6_kx8, [QLM_TYPE_Q5_KX8] = &qlm_traits_q5_kx8,
    [QLM_TYPE_IQ4_XSX8] = &qlm_traits_iq4_xsx8, [QLM_TYPE_Q3_KX8] = &qlm_traits_q3_kx8,
    [QLM_TYPE_U8] = &qlm_traits_u8,
};

const qlm_type_traits *qlm_traits(int32_t type) {
    if (type < 0 || type >= (int32_t)(sizeof k_table / sizeof k_table[0])) return NULL;
    return k_table[type];
}

size_t qlm_row_size(int32_t type, int64_t n) {
    const qlm_type_traits *t = qlm_traits(type);
    if (!t || n < 0) return 0;
    return t->row_size(n);
}

// ---- CPU paths ----------------------------------------------------------------------------
int qlm_path_supported(int32_t path) {
    switch (path) {
    case QLM_PATH_SCALAR: return 1;
#if QLM_X86
    case QLM_PATH_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case QLM_PATH_AVX512:
        __builtin_cpu_init();
        return qlm_path_supported(QLM_PATH_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
#endif
    default: return 0;
    }
}

int32_t qlm_best_path(void) {
    static int best = -1;
    int b = __atomic_load_n(&best, __ATOMIC_RELAXED);
    if (b < 0) {
        b = qlm_path_supported(QLM_PATH_AVX512) ? QLM_PATH_AVX512
          : qlm_path_supported(QLM_PATH_AVX2) ? QLM_PATH_AVX2 : QLM_PATH_SCALAR;
        __atomic_store_n(&best, b, __ATOMIC_RELAXED);
    }
    return b;
}

static int g_path = -1;
void qlm_set_path(int32_t path) {
    if (qlm_path_supported(path)) __atomic_store_n(&g_path, path, __ATOMIC_RELAXED);
}
int32_t qlm_get_path(void) {
    int p = __atomic_load_n(&g_path, __ATOMIC_RELAXED);
    if (p < 0) { p = qlm_best_path(); __atomic_store_n(&g_path, p, __ATOMIC_RELAXED); }
    return p;
}
const char *qlm_path_name(int32_t path) {
    switch (path) {
    case QLM_PATH_SCALAR: return "scalar";
    case QLM_PATH_AVX2: return "avx2";
    case QLM_PATH_AVX512: return "avx512";
    default: return "unknown";
    }
}

// ---- fp16 / bf16 ----------------------------------------------------------------------------
#if QLM_X86
QLM_AVX2_TARGET static void f32_to_f16_f16c(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = qlm_f2h(x[i]);
}
QLM_AVX2_TARGET static void f16_to_f32_f16c(const uint16_t *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = qlm_h2f(x[i]);
}
#endif

void qlm_f32_to_f16(const float *x, uint16_t *y, int64_t n) {
#if QLM_X86
    if (qlm_get_path() != QLM_PATH_SCALAR) { f32_to_f16_f16c(x, y, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] = qlm_f2h(x[i]);
}
void qlm_f16_to_f32(const uint16_t *x, float *y, int64_t n) {
#if QLM_X86
    if (qlm_get_path() != QLM_PATH_SCALAR) { f16_to_f32_f16c(x, y, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] = qlm_h2f(x[i]);
}
void qlm_bf16_to_f32(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = qlm_bits_f32((uint32_t)x[i] << 16);
}

void qlm_f32_to_f16_path(int32_t path, const float *x, uint16_t *y, int64_t n) {
#if QLM_X86
    if (path != QLM_PATH_SCALAR) { f32_to_f16_f16c(x, y, n); return; }
#endif
    (void)path;
    for (int64_t i = 0; i < n; i++) y[i] = qlm_f2h(x[i]);
}

// ---- quantizing rows -------------------------------------------------------------------------
#if QLM_X86
QLM_AVX2_TARGET static int all_finite_avx2(const float *x, int64_t n) {
    const __m256i em = _mm256_set1_epi32(0x7F800000);
    __m256i bad = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), em), em));
    if (!_mm256_testz_si256(bad, bad)) return 0;
    for (; i < n; i++) if (!isfinite(x[i])) return 0;
    return 1;
}

QLM_AVX512_TARGET static int all_finite_avx512(const float *x, int64_t n) {
    const __m512i em = _mm512_set1_epi32(0x7F800000);
    __mmask16 bad = 0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_and_si512(_mm512_loadu_si512((const void *)(x + i)), em);
        bad |= _mm512_cmpeq_epi32_mask(v, em);
    }
    if (bad) return 0;
    for (; i < n; i++) if (!isfinite(x[i])) return 0;
    return 1;
}
#endif

static int all_finite_scalar(const float *x, int64_t n) {
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = qlm_f32_bits(x[i]) & 0x7F800000u;
        bad |= (u == 0x7F800000u);
    }
    return !bad;
}

void qlm_quantize_blocks(qlm_block_fn f, size_t bb, const float *x, void *dst, int64_t n) {
    char *out = (char *)dst;
    const int64_t nfull = n / QLM_QK;
    for (int64_t b = 0; b < nfull; b++) f(x + b * QLM_QK, out + b * bb);
    const int64_t rem = n - nfull * QLM_QK;
    if (rem) {
        float tmp[QLM_QK] = {0};
        memcpy(tmp, x + nfull * QLM_QK, (size_t)rem * sizeof(float));
        f(tmp, out + nfull * bb);
    }
}

static int quantize_row_path(const qlm_type_traits *t, int32_t path, const float *x, const float *imp, void *dst, int64_t n) {
    int finite;
#if QLM_X86
    if (path == QLM_PATH_AVX512) finite = all_finite_avx512(x, n); else
    if (path == QLM_PATH_AVX2) finite = all_finite_avx2(x, n); else
#endif
    finite = all_finite_scalar(x, n);
    if (!finite || !t || !t->quantize_row) return -1;
    if (imp && t->quantize_row_imp) t->quantize_row_imp(x, imp, dst, n);
    else t->quantize_row(path, x, dst, n);
    return 0;
}

int qlm_quantize_row(int32_t type, const float *x, void *dst, int64_t n) {
    return quantize_row_path(qlm_traits(type), qlm_get_path(), x, NULL, dst, n);
}

void qlm_dequantize_row(int32_t type, const void *src, float *y, int64_t n) {
    const qlm_type_traits *t = qlm_traits(type);
    if (t && t->dequantize_row) t->dequantize_row(src, y, n);
}

void qlm_get_row(int32_t type, const void *src, int64_t rows, int64_t n, int64_t r, float *y) {
    const qlm_type_traits *t = qlm_traits(type);
    if (!t) return;
    if (t->get_row) { t->get_row(src, rows, n, r, y); return; }
    t->dequantize_row((const char *)src + (size_t)r * t->row_size(n), y, n);
}

void qlm_plain_row(int32_t type, const void *src, int64_t rows, int64_t n, int64_t r, void *dst) {
    const qlm_type_traits *t = qlm_traits(type);
    if (!t) return;
    if (t->plain_row) { t->plain_row(src, rows, n, r, dst); return; }
    memcpy(dst, (const char *)src + (size_t)r * t->row_size(n), t->row_size(n));
}

int qlm_pack_rows(int32_t type, void *data, int64_t rows, int64_t n) {
    const qlm_type_traits *t = qlm_traits(type);
    return t && t->regroup ? t->regroup(data, rows, n, 1) : 0;
}
int qlm_unpack_rows(int32_t type, void *data, int64_t rows, int64_t n) {
    const qlm_type_traits *t = qlm_traits(type);
    return t && t->regroup ? t->regroup(data, rows, n, 0) : 0;
}

// ---- multi-threaded conversion (converter) ----------------------------------------------
typedef struct {
    int32_t type, path;
    const float *x, *imp;
    char *dst;
    int64_t r0, r1, n;
    size_t rs;
    int64_t bad;
    int nomem;
} qrows_job;

static void *qrows_worker(void *p) {
    qrows_job *j = (qrows_job *)p;
    j->bad = -1;
    const qlm_type_traits *t = qlm_traits(j->type);
    for (int64_t r = j->r0; r < j->r1; r++) {
        if (quantize_row_path(t, j->path, j->x + r * j->n, j->imp, j->dst + (size_t)r * j->rs, j->n) != 0) {
            j->bad = r;
            return NULL;
        }
    }
    // row-grouped types: this job's range starts on a group boundary (see below); pack it here,
    // in parallel, rather than in one pass afterwards
    if (qlm_pack_rows(j->type, j->dst + (size_t)j->r0 * j->rs, j->r1 - j->r0, j->n) != 0) j->nomem = 1;
    return NULL;
}

int64_t qlm_quantize_rows(int32_t type, const float *x, void *dst, int64_t rows, int64_t n, int n_threads) {
    return qlm_quantize_rows_imp(type, x, NULL, dst, rows, n, n_threads);
}

int qlm_has_quantize_imp(int32_t type) {
    const qlm_type_traits *t = qlm_traits(type);
    return t && t->quantize_row_imp ? 1 : 0;
}

int64_t qlm_quantize_rows_imp(int32_t type, const float *x, const float *imp, void *dst, int64_t rows, int64_t n, int n_threads) {
    if (rows <= 0) return -1;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
    if ((int64_t)n_threads > rows) n_threads = (int)rows;
    if (rows * n < 65536) n_threads = 1;
    qrows_job jobs[64];
    pthread_t th[64];
    const int32_t path = qlm_get_path();
    const size_t rs = qlm_row_size(type, n);
    const int64_t g = qlm_traits(type) ? qlm_traits(type)->row_group : 1; // ranges start at group boundaries
    for (int t = 0; t < n_threads; t++) {
        const int64_t r0 = t == 0 ? 0 : rows * t / n_threads / g * g, r1 = t == n_threads - 1 ? rows : rows * (t + 1) / n_threads / g * g;
        jobs[t] = (qrows_job){type, path, x, imp, (char *)dst, r0, r1, n, rs, -1, 0};
    }
    int started[64] = {0};
    for (int t = 1; t < n_threads; t++) started[t] = pthread_create(&th[t], NULL, qrows_worker, &jobs[t]) == 0;
    qrows_worker(&jobs[0]);
    for (int t = 1; t < n_threads; t++) {
        if (started[t]) pthread_join(th[t], NULL); else qrows_worker(&jobs[t]);
    }
    for (int t = 0; t < n_threads; t++) if (jobs[t].bad >= 0) return jobs[t].bad;
    for (int t = 0; t < n_threads; t++) if (jobs[t].nomem) return QLM_QUANTIZE_NOMEM;
    return -1;
}

// ---- activations ---------------------------------------------------------------------------
size_t qlm_act_row_size(int32_t wtype, int64_t n) {
    const qlm_type_traits *t = qlm_traits(wtype);
    return t ? t->act_row_size(n) : 0;
}

void qlm_prepare_act(int32_t wtype, const float *x, void *act, int64_t n) {
    const qlm_type_traits *t = qlm_traits(wtype);
    if (t) t->prepare_act(qlm_get_path(), x, act, n);
}
