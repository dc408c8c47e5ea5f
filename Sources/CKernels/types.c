// Type traits, row sizes, CPU path selection, fp16/bf16 conversion, quantize/dequantize.
// Vectorized quantizers (AVX-512 and AVX2) are bit-identical to the scalar ones: same
// formulas, no fused multiply-add (contraction off), roundf emulated exactly (half away from zero).
#include "qlm_internal.h"
#include <pthread.h>
#include <stdlib.h>

#pragma clang fp contract(off)

static const qlm_type_traits k_traits[] = {
    [QLM_TYPE_F32] = {"f32", 1, 4, 0, 0, 1},
    [QLM_TYPE_F16] = {"f16", 1, 2, 0, 0, 1},
    [QLM_TYPE_Q8_0] = {"q8_0", QLM_QK, sizeof(qlm_block_q8_0), 1, 1, 1},
    [QLM_TYPE_Q4_0] = {"q4_0", QLM_QK, sizeof(qlm_block_q4_0), 1, 1, 1},
    [QLM_TYPE_Q4_1] = {"q4_1", QLM_QK, sizeof(qlm_block_q4_1), 1, 1, 1},
    // super-block types: block = one full 256-weight super-block (rows use qlm_kq_row_size)
    [QLM_TYPE_IQ4_K16] = {"iq4_k16", 256, 1 + 8 + 128, 1, 1, 1},
    [QLM_TYPE_IQ4_K32] = {"iq4_k32", 256, 1 + 8 + 128, 1, 1, 1},
    // per row: the bytes of a q4_0 row; stored in groups of 8 rows (qlm_block_q4_0x8)
    [QLM_TYPE_Q4_0X8] = {"q4_0x8", QLM_QK, sizeof(qlm_block_q4_0), 1, 1, 8},
};
static const qlm_type_traits k_u8 = {"u8", 1, 1, 0, 0, 1};

const qlm_type_traits *qlm_traits(int32_t type) {
    if (type == QLM_TYPE_U8) return &k_u8;
    if (type < 0 || type > QLM_TYPE_Q4_0X8) return NULL;
    return &k_traits[type];
}

size_t qlm_row_size(int32_t type, int64_t n) {
    const qlm_type_traits *t = qlm_traits(type);
    if (!t || n < 0) return 0;
    if (type == QLM_TYPE_IQ4_K16 || type == QLM_TYPE_IQ4_K32) return qlm_kq_row_size(n);
    int64_t nb = (n + t->block_size - 1) / t->block_size;
    return (size_t)nb * (size_t)t->block_bytes;
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
int32_t qlm_active_path(void) {
    int p = __atomic_load_n(&g_path, __ATOMIC_RELAXED);
    if (p < 0) { p = qlm_best_path(); __atomic_store_n(&g_path, p, __ATOMIC_RELAXED); }
    return p;
}
int32_t qlm_get_path(void) { return qlm_active_path(); }
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
    if (qlm_active_path() != QLM_PATH_SCALAR) { f32_to_f16_f16c(x, y, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] = qlm_f2h(x[i]);
}
void qlm_f16_to_f32(const uint16_t *x, float *y, int64_t n) {
#if QLM_X86
    if (qlm_active_path() != QLM_PATH_SCALAR) { f16_to_f32_f16c(x, y, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) y[i] = qlm_h2f(x[i]);
}
void qlm_bf16_to_f32(const uint16_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = qlm_bits_f32((uint32_t)x[i] << 16);
}

// ---- scalar block quantizers ----------------------------------------------------------------
// q8 codes: round(x / d) (roundf: half away from zero), clamped to [-127, 127]; d == 0 -> 0.
// (The clamp and the d == 0 guard only matter for blocks whose d is a float denormal.)
static inline float q8_code(float x, float d) {
    if (d == 0.0f) return 0.0f;
    return fminf(fmaxf(roundf(x / d), -127.0f), 127.0f);
}
// q4 codes: min(15, (int8)v) with v = x*id + 8.5 (q4_0) or (x-m)*id + 0.5 (q4_1); v is clamped
// to [0, 15] first (NaN -> 0) so that a denormal d (id = inf) stays defined. Same result otherwise.
static inline int8_t q4_code(float v) { return (int8_t)fminf(fmaxf(v, 0.0f), 15.0f); }

void qlm_quant_block_q8_0(const float *x, void *bv) {
    qlm_block_q8_0 *b = (qlm_block_q8_0 *)bv;
    float amax = 0.0f;
    for (int j = 0; j < QLM_QK; j++) { float a = fabsf(x[j]); if (a > amax) amax = a; }
    const float d = amax / 127.0f;
    b->d = qlm_f2h(d);
    for (int j = 0; j < QLM_QK; j++) b->qs[j] = (int8_t)q8_code(x[j], d);
}

void qlm_quant_block_q4_0(const float *x, void *bv) {
    qlm_block_q4_0 *b = (qlm_block_q4_0 *)bv;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QLM_QK; j++) {
        const float v = x[j];
        if (amax < fabsf(v)) { amax = fabsf(v); max = v; }
    }
    const float d = max / -8.0f + 0.0f; // + 0: an all-zero block gets d = +0, not -0
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = qlm_f2h(d);
    for (int j = 0; j < QLM_QK / 2; j++) {
        const float x0 = x[j] * id, x1 = x[j + 16] * id;
        const int8_t q0 = q4_code(x0 + 8.5f), q1 = q4_code(x1 + 8.5f);
        b->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

void qlm_quant_block_q4_1(const float *x, void *bv) {
    qlm_block_q4_1 *b = (qlm_block_q4_1 *)bv;
    float min = x[0], max = x[0];
    for (int j = 1; j < QLM_QK; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    min += 0.0f; max += 0.0f; // canonical +0 (SIMD min/max may pick either signed zero)
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = qlm_f2h(d);
    b->m = qlm_f2h(min);
    for (int j = 0; j < QLM_QK / 2; j++) {
        const float x0 = (x[j] - min) * id, x1 = (x[j + 16] - min) * id;
        const int8_t q0 = q4_code(x0 + 0.5f), q1 = q4_code(x1 + 0.5f);
        b->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

void qlm_quant_block_q8a(const float *x, void *bv) {
    qlm_block_q8a *b = (qlm_block_q8a *)bv;
    float amax = 0.0f;
    for (int j = 0; j < QLM_QK; j++) { float a = fabsf(x[j]); if (a > amax) amax = a; }
    const float d = amax / 127.0f;
    int sum = 0;
    for (int j = 0; j < QLM_QK; j++) { int q = (int)q8_code(x[j], d); b->qs[j] = (int8_t)q; sum += q; }
    b->d = d;
    b->s = d * (float)sum;
}

// ---- AVX-512 block quantizers (bit-identical to the scalar ones) ----------------------------
#if QLM_X86
QLM_AVX512_TARGET QLM_INLINE __m512 round_away512(__m512 p) {
    const __m512 t = _mm512_roundscale_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 diff = _mm512_sub_ps(p, t); // exact
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(diff), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 one = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(_mm512_set1_ps(1.0f)),
        _mm512_and_si512(_mm512_castps_si512(p), _mm512_set1_epi32((int)0x80000000u))));
    return _mm512_mask_add_ps(t, up, t, one);
}

QLM_AVX512_TARGET QLM_INLINE __m512i q8_codes512(__m512 v, float d) {
    if (d == 0.0f) return _mm512_setzero_si512();
    const __m512 q = round_away512(_mm512_div_ps(v, _mm512_set1_ps(d)));
    return _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(q, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f)));
}
// max(v, 0) returns 0 for NaN (second operand), like fmaxf(v, 0).
QLM_AVX512_TARGET QLM_INLINE __m512i q4_codes512(__m512 v) {
    return _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(v, _mm512_setzero_ps()), _mm512_set1_ps(15.0f)));
}

QLM_AVX512_TARGET static void q8_0_block_avx512(const float *x, void *bv) {
    qlm_block_q8_0 *b = (qlm_block_q8_0 *)bv;
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    b->d = qlm_f2h(d);
    const __m512i q0 = q8_codes512(v0, d), q1 = q8_codes512(v1, d);
    _mm_storeu_si128((__m128i *)b->qs, _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(b->qs + 16), _mm512_cvtepi32_epi8(q1));
}

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

QLM_AVX512_TARGET static void q4_0_block_avx512(const float *x, void *bv) {
    qlm_block_q4_0 *b = (qlm_block_q4_0 *)bv;
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
    const __m512 va = _mm512_set1_ps(amax);
    const uint32_t m = (uint32_t)_mm512_cmp_ps_mask(a0, va, _CMP_EQ_OQ) |
                       ((uint32_t)_mm512_cmp_ps_mask(a1, va, _CMP_EQ_OQ) << 16);
    const float max = amax == 0.0f ? 0.0f : x[__builtin_ctz(m)]; // first element of largest |x|
    const float d = max / -8.0f + 0.0f; // + 0: an all-zero block gets d = +0, not -0
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = qlm_f2h(d);
    const __m512 vid = _mm512_set1_ps(id), h = _mm512_set1_ps(8.5f);
    const __m512i q0 = q4_codes512(_mm512_add_ps(_mm512_mul_ps(v0, vid), h));
    const __m512i q1 = q4_codes512(_mm512_add_ps(_mm512_mul_ps(v1, vid), h));
    _mm_storeu_si128((__m128i *)b->qs, _mm512_cvtepi32_epi8(_mm512_or_si512(q0, _mm512_slli_epi32(q1, 4))));
}

QLM_AVX512_TARGET static void q4_1_block_avx512(const float *x, void *bv) {
    qlm_block_q4_1 *b = (qlm_block_q4_1 *)bv;
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float min = _mm512_reduce_min_ps(_mm512_min_ps(v0, v1)) + 0.0f;
    const float max = _mm512_reduce_max_ps(_mm512_max_ps(v0, v1)) + 0.0f;
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = qlm_f2h(d);
    b->m = qlm_f2h(min);
    const __m512 vid = _mm512_set1_ps(id), h = _mm512_set1_ps(0.5f), vm = _mm512_set1_ps(min);
    const __m512i q0 = q4_codes512(_mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v0, vm), vid), h));
    const __m512i q1 = q4_codes512(_mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v1, vm), vid), h));
    _mm_storeu_si128((__m128i *)b->qs, _mm512_cvtepi32_epi8(_mm512_or_si512(q0, _mm512_slli_epi32(q1, 4))));
}

// ---- AVX2 block quantizers (bit-identical to the scalar ones) -------------------------------
QLM_AVX2_TARGET QLM_INLINE __m256 abs256(__m256 v) {
    return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
}
QLM_AVX2_TARGET QLM_INLINE float hmax256(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
QLM_AVX2_TARGET QLM_INLINE float hmin256(__m256 v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
QLM_AVX2_TARGET QLM_INLINE __m256 round_away256(__m256 p) {
    const __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 up = _mm256_cmp_ps(abs256(_mm256_sub_ps(p, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(p, _mm256_set1_ps(-0.0f)));
    return _mm256_add_ps(t, _mm256_and_ps(up, one));
}
// 32 int32 codes (4 x 8, in element order) -> 32 int8.
QLM_AVX2_TARGET QLM_INLINE void store_i8x32(int8_t *dst, __m256i i0, __m256i i1, __m256i i2, __m256i i3) {
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    _mm256_storeu_si256((__m256i *)dst, _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}
// 16 nibble pairs (c0: elements 0..7, c1: 8..15, each already q[j] | q[j+16] << 4) -> 16 bytes.
QLM_AVX2_TARGET QLM_INLINE void store_u8x16(uint8_t *dst, __m256i c0, __m256i c1) {
    const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(c0, c1), 0xD8);
    _mm_storeu_si128((__m128i *)dst, _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
}

#define LOAD4(x) const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24)

QLM_AVX2_TARGET static void q8_codes_avx2(const float *x, float d, __m256i q[4]) {
    if (d == 0.0f) { q[0] = q[1] = q[2] = q[3] = _mm256_setzero_si256(); return; }
    LOAD4(x);
    const __m256 vd = _mm256_set1_ps(d), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
#define Q8C(v) _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(round_away256(_mm256_div_ps(v, vd)), lo), hi))
    q[0] = Q8C(v0); q[1] = Q8C(v1); q[2] = Q8C(v2); q[3] = Q8C(v3);
#undef Q8C
}
QLM_AVX2_TARGET QLM_INLINE __m256i q4_codes256(__m256 v) {
    return _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(15.0f)));
}
QLM_AVX2_TARGET static float amax_avx2(const float *x) {
    LOAD4(x);
    return hmax256(_mm256_max_ps(_mm256_max_ps(abs256(v0), abs256(v1)), _mm256_max_ps(abs256(v2), abs256(v3))));
}

QLM_AVX2_TARGET static void q8_0_block_avx2(const float *x, void *bv) {
    qlm_block_q8_0 *b = (qlm_block_q8_0 *)bv;
    const float amax = amax_avx2(x);
    const float d = amax / 127.0f;
    b->d = qlm_f2h(d);
    __m256i q[4];
    q8_codes_avx2(x, d, q);
    store_i8x32(b->qs, q[0], q[1], q[2], q[3]);
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

QLM_AVX2_TARGET static void q4_0_block_avx2(const float *x, void *bv) {
    qlm_block_q4_0 *b = (qlm_block_q4_0 *)bv;
    LOAD4(x);
    const __m256 a0 = abs256(v0), a1 = abs256(v1), a2 = abs256(v2), a3 = abs256(v3);
    const float amax = hmax256(_mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3)));
    const __m256 va = _mm256_set1_ps(amax);
    const uint32_t m = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a0, va, _CMP_EQ_OQ)) |
                       ((uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a1, va, _CMP_EQ_OQ)) << 8) |
                       ((uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a2, va, _CMP_EQ_OQ)) << 16) |
                       ((uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a3, va, _CMP_EQ_OQ)) << 24);
    const float max = amax == 0.0f ? 0.0f : x[__builtin_ctz(m)];
    const float d = max / -8.0f + 0.0f; // + 0: an all-zero block gets d = +0, not -0
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = qlm_f2h(d);
    const __m256 vid = _mm256_set1_ps(id), h = _mm256_set1_ps(8.5f);
#define Q40(v) q4_codes256(_mm256_add_ps(_mm256_mul_ps(v, vid), h))
    store_u8x16(b->qs, _mm256_or_si256(Q40(v0), _mm256_slli_epi32(Q40(v2), 4)),
                _mm256_or_si256(Q40(v1), _mm256_slli_epi32(Q40(v3), 4)));
#undef Q40
}

QLM_AVX2_TARGET static void q4_1_block_avx2(const float *x, void *bv) {
    qlm_block_q4_1 *b = (qlm_block_q4_1 *)bv;
    LOAD4(x);
    const float min = hmin256(_mm256_min_ps(_mm256_min_ps(v0, v1), _mm256_min_ps(v2, v3))) + 0.0f;
    const float max = hmax256(_mm256_max_ps(_mm256_max_ps(v0, v1), _mm256_max_ps(v2, v3))) + 0.0f;
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = qlm_f2h(d);
    b->m = qlm_f2h(min);
    const __m256 vid = _mm256_set1_ps(id), h = _mm256_set1_ps(0.5f), vm = _mm256_set1_ps(min);
#define Q41(v) q4_codes256(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, vm), vid), h))
    store_u8x16(b->qs, _mm256_or_si256(Q41(v0), _mm256_slli_epi32(Q41(v2), 4)),
                _mm256_or_si256(Q41(v1), _mm256_slli_epi32(Q41(v3), 4)));
#undef Q41
}

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

typedef void (*block_fn)(const float *, void *);

static block_fn block_quantizer(int32_t type, int32_t path) {
#if QLM_X86
    if (path == QLM_PATH_AVX512) {
        switch (type) {
        case QLM_TYPE_Q8_0: return q8_0_block_avx512;
        case QLM_TYPE_Q4_0: return q4_0_block_avx512;
        case QLM_TYPE_Q4_1: return q4_1_block_avx512;
        case -1: return q8a_block_avx512;
        }
    }
    if (path == QLM_PATH_AVX2) {
        switch (type) {
        case QLM_TYPE_Q8_0: return q8_0_block_avx2;
        case QLM_TYPE_Q4_0: return q4_0_block_avx2;
        case QLM_TYPE_Q4_1: return q4_1_block_avx2;
        case -1: return q8a_block_avx2;
        }
    }
#endif
    (void)path;
    switch (type) {
    case QLM_TYPE_Q8_0: return qlm_quant_block_q8_0;
    case QLM_TYPE_Q4_0: return qlm_quant_block_q4_0;
    case QLM_TYPE_Q4_1: return qlm_quant_block_q4_1;
    case -1: return qlm_quant_block_q8a;
    }
    return NULL;
}

// Quantize a row in blocks; type -1 = q8a activation blocks. Last block zero-padded.
static void quantize_blocks(int32_t type, int32_t path, const float *x, void *dst, int64_t n) {
    block_fn f = block_quantizer(type, path);
    const size_t bb = type == -1 ? sizeof(qlm_block_q8a) : (size_t)k_traits[type].block_bytes;
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

static int quantize_row_path(int32_t type, int32_t path, const float *x, void *dst, int64_t n) {
    int finite;
#if QLM_X86
    if (path == QLM_PATH_AVX512) finite = all_finite_avx512(x, n); else
    if (path == QLM_PATH_AVX2) finite = all_finite_avx2(x, n); else
#endif
    finite = all_finite_scalar(x, n);
    if (!finite) return -1;
    if (type == QLM_TYPE_Q4_0X8) type = QLM_TYPE_Q4_0; // a row on its own is a q4_0 row
    switch (type) {
    case QLM_TYPE_F32: memcpy(dst, x, (size_t)n * 4); return 0;
    case QLM_TYPE_F16:
#if QLM_X86
        if (path != QLM_PATH_SCALAR) { f32_to_f16_f16c(x, (uint16_t *)dst, n); return 0; }
#endif
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = qlm_f2h(x[i]);
        return 0;
    case QLM_TYPE_Q8_0: case QLM_TYPE_Q4_0: case QLM_TYPE_Q4_1:
        quantize_blocks(type, path, x, dst, n);
        return 0;
    case QLM_TYPE_IQ4_K16: case QLM_TYPE_IQ4_K32: // one (scalar) quantizer on every path
        qlm_kq_quantize_row(type, x, dst, n);
        return 0;
    default: return -1;
    }
}

int qlm_quantize_row(int32_t type, const float *x, void *dst, int64_t n) {
    return quantize_row_path(type, qlm_active_path(), x, dst, n);
}

void qlm_dequantize_row(int32_t type, const void *src, float *y, int64_t n) {
    if (type == QLM_TYPE_Q4_0X8) type = QLM_TYPE_Q4_0; // a row on its own is a q4_0 row
    switch (type) {
    case QLM_TYPE_F32: memcpy(y, src, (size_t)n * 4); return;
    case QLM_TYPE_F16: qlm_f16_to_f32((const uint16_t *)src, y, n); return;
    case QLM_TYPE_Q8_0: {
        const qlm_block_q8_0 *b = (const qlm_block_q8_0 *)src;
        for (int64_t i = 0; i < n; i++) {
            const qlm_block_q8_0 *bk = &b[i / QLM_QK];
            y[i] = qlm_h2f(bk->d) * (float)bk->qs[i % QLM_QK];
        }
        return;
    }
    case QLM_TYPE_Q4_0: {
        const qlm_block_q4_0 *b = (const qlm_block_q4_0 *)src;
        for (int64_t i = 0; i < n; i++) {
            const qlm_block_q4_0 *bk = &b[i / QLM_QK];
            const int j = (int)(i % QLM_QK);
            const int q = j < 16 ? (bk->qs[j] & 0xF) : (bk->qs[j - 16] >> 4);
            y[i] = qlm_h2f(bk->d) * (float)(q - 8);
        }
        return;
    }
    case QLM_TYPE_Q4_1: {
        const qlm_block_q4_1 *b = (const qlm_block_q4_1 *)src;
        for (int64_t i = 0; i < n; i++) {
            const qlm_block_q4_1 *bk = &b[i / QLM_QK];
            const int j = (int)(i % QLM_QK);
            const int q = j < 16 ? (bk->qs[j] & 0xF) : (bk->qs[j - 16] >> 4);
            y[i] = qlm_h2f(bk->d) * (float)q + qlm_h2f(bk->m);
        }
        return;
    }
    case QLM_TYPE_IQ4_K16: case QLM_TYPE_IQ4_K32:
        qlm_kq_dequantize_row(type, src, y, n);
        return;
    case QLM_TYPE_U8: // opaque bytes: each byte as a float value (no real use; defined anyway)
        for (int64_t i = 0; i < n; i++) y[i] = (float)((const uint8_t *)src)[i];
        return;
    default: return;
    }
}

// ---- multi-threaded conversion (converter) ----------------------------------------------
typedef struct {
    int32_t type, path;
    const float *x;
    char *dst;
    int64_t r0, r1, n;
    size_t rs;
    int64_t bad;
    int nomem;
} qrows_job;

static void *qrows_worker(void *p) {
    qrows_job *j = (qrows_job *)p;
    j->bad = -1;
    for (int64_t r = j->r0; r < j->r1; r++) {
        if (quantize_row_path(j->type, j->path, j->x + r * j->n, j->dst + (size_t)r * j->rs, j->n) != 0) {
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
    if (rows <= 0) return -1;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
    if ((int64_t)n_threads > rows) n_threads = (int)rows;
    if (rows * n < 65536) n_threads = 1;
    qrows_job jobs[64];
    pthread_t th[64];
    const int32_t path = qlm_active_path();
    const size_t rs = qlm_row_size(type, n);
    const int64_t g = qlm_traits(type) ? qlm_traits(type)->row_group : 1; // ranges start at group boundaries
    for (int t = 0; t < n_threads; t++) {
        const int64_t r0 = t == 0 ? 0 : rows * t / n_threads / g * g, r1 = t == n_threads - 1 ? rows : rows * (t + 1) / n_threads / g * g;
        jobs[t] = (qrows_job){type, path, x, (char *)dst, r0, r1, n, rs, -1, 0};
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
    if (!t) return 0;
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    if (wtype == QLM_TYPE_Q4_0) return qlm_q4quad_offset(nb) + (size_t)((nb + 3) / 4) * sizeof(qlm_q4quad);
    if (t->act_is_q8a) return (size_t)nb * sizeof(qlm_block_q8a);
    return (size_t)n * sizeof(float);
}

void qlm_prepare_act(int32_t wtype, const float *x, void *act, int64_t n) {
    const qlm_type_traits *t = qlm_traits(wtype);
    if (!t) return;
    if (t->act_is_q8a) {
        quantize_blocks(-1, qlm_active_path(), x, act, n);
        if (wtype == QLM_TYPE_Q4_0X8) qlm_q8a_to_q8i(act, (n + QLM_QK - 1) / QLM_QK);
        if (wtype == QLM_TYPE_Q4_0) qlm_q4quad_build(act, (n + QLM_QK - 1) / QLM_QK);
    } else {
        memcpy(act, x, (size_t)n * sizeof(float));
    }
}
