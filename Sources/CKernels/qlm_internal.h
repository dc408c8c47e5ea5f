// Private helpers shared by the CKernels translation units. Not part of the public API.
#ifndef QLM_INTERNAL_H
#define QLM_INTERNAL_H

#include "qlm_kernels.h"
#include "qlm_testing.h" // single-row forms and pieces the C files share (test-visible)
#include <math.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(QLM_NO_X86) // QLM_NO_X86: check the portable build on x86
#define QLM_X86 1
#include <immintrin.h>
#define QLM_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c,bmi2")))
#define QLM_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#else
#define QLM_X86 0
#endif

#define QLM_INLINE static inline __attribute__((always_inline))

// ---- fp16 (bit-exact software conversions, round to nearest even) ---------------------------
QLM_INLINE float qlm_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
QLM_INLINE uint32_t qlm_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

// Matches F16C vcvtph2ps: denormals exact, inf kept, NaN quieted (payload kept).
QLM_INLINE float qlm_h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    uint32_t u;
    if (exp == 0x1F) {
        u = sign | 0x7F800000u | (man << 13);
        if (man) u |= 0x00400000u; // quiet
    } else if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else {
            // denormal: value = man * 2^-24, normalize
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            man &= 0x3FF;
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
        }
    } else {
        u = sign | ((exp + 112) << 23) | (man << 13);
    }
    return qlm_bits_f32(u);
}

// Matches F16C vcvtps2ph with round-to-nearest-even (NaN: quiet bit set, top payload bits kept).
QLM_INLINE uint16_t qlm_f2h(float f) {
    uint32_t u = qlm_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) {
        if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00 | ((a >> 13) & 0x3FF));
        return (uint16_t)(sign | 0x7C00);
    }
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00); // rounds to >= 65520 -> inf
    if (a >= 0x38800000u) { // normal half range (>= 2^-14)
        uint32_t mant_odd = (a >> 13) & 1;
        a += 0xFFFu + mant_odd;       // round to nearest even on bit 13
        a -= (uint32_t)(127 - 15) << 23;
        return (uint16_t)(sign | (a >> 13));
    }
    // half denormal or zero: value / 2^-24, rounded to nearest even
    if (a < 0x33000000u) return sign; // < 2^-25: rounds to 0 (2^-25 exactly ties to even 0)
    uint32_t e = a >> 23;             // biased exponent, 102..112
    uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
    uint32_t shift = 126 - e;         // value = m * 2^(e-127-23); in units 2^-24: m >> (126 - e) ... see below
    // units of 2^-24: m * 2^(e - 150 + 24) = m >> (126 - e)
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | q);
}

// ---- paths -------------------------------------------------------------------------------
// A kernel-table entry that exists only on x86 (NULL elsewhere).
#if QLM_X86
#define QLM_IF_X86(x) x
#else
#define QLM_IF_X86(x) NULL
#endif
#define QLM_SMALL_PRODUCT 262144 // rows * n below this: single thread (~10 us of q8_0 work; a pool job costs 1-3 us, more under load)

// Round half away from zero, as roundf.
QLM_INLINE float qlm_roundf(float x) { return roundf(x); }

// ---- the type table (types.c assembles it from the rows the type files define) ---------------
extern const qlm_type_traits qlm_traits_f32, qlm_traits_f16, qlm_traits_u8; // type_f32.c
extern const qlm_type_traits qlm_traits_q8_0;                               // type_q8_0.c
extern const qlm_type_traits qlm_traits_q4_0;                               // type_q4_0.c
extern const qlm_type_traits qlm_traits_q4_1;                               // type_q4_1.c
extern const qlm_type_traits qlm_traits_iq4_k16, qlm_traits_iq4_k32;        // kquant.c
extern const qlm_type_traits qlm_traits_q4_0x8, qlm_traits_q8_0x8, qlm_traits_q5_0x8; // rowgroup.c
extern const qlm_type_traits qlm_traits_q5_1x8;                             // rowgroup.c
extern const qlm_type_traits qlm_traits_iq4_nlx8;                           // rowgroup.c
extern const qlm_type_traits qlm_traits_q4_kx8, qlm_traits_q6_kx8, qlm_traits_q5_kx8; // rowgroup_k.c
extern const qlm_type_traits qlm_traits_q3_kx8, qlm_traits_iq4_xsx8;        // rowgroup_sb.c
extern const qlm_type_traits qlm_traits_q4_k;                               // type_q4_k.c
extern const qlm_type_traits qlm_traits_q5_k;                               // type_q5_k.c
extern const qlm_type_traits qlm_traits_q6_k;                               // type_q6_k.c
extern const qlm_type_traits qlm_traits_q5_0, qlm_traits_q5_1, qlm_traits_iq4_nl; // type_q5.c, type_iq4_nl.c
extern const qlm_type_traits qlm_traits_iq4_xs, qlm_traits_q3_k, qlm_traits_q2_k;  // type_iq4_xs.c, type_q3_k.c, type_q2_k.c
// The path whose kernels a product of type t runs on CPU path `path`: the highest path <= path
// with a dot kernel (-1: none, e.g. u8).
QLM_INLINE int32_t qlm_kernel_path(const qlm_type_traits *t, int32_t path) {
    if (path >= QLM_PATH_COUNT) path = QLM_PATH_COUNT - 1;
    for (int32_t p = path; p >= 0; p--) if (t->dotn[p]) return p;
    return -1;
}
// The dot kernel of `type` for CPU path `path` (fallback as above); NULL if none.
qlm_dotn_fn qlm_get_dotn(int32_t path, int32_t type);

// ---- helpers the type files share (types.c) -------------------------------------------------------
// Quantizes a row 32 elements at a time with f (one block of bb bytes each); the last block is
// zero-padded.
typedef void (*qlm_block_fn)(const float *x, void *block);
void qlm_quantize_blocks(qlm_block_fn f, size_t bb, const float *x, void *dst, int64_t n);
void qlm_f32_to_f16_path(int32_t path, const float *x, uint16_t *y, int64_t n);
// Activation rows: floats as they are, or q8a blocks (zero padded), on a given path.
size_t qlm_act_size_f32(int64_t n);
void qlm_prepare_f32(int32_t path, const float *x, void *act, int64_t n);
size_t qlm_act_size_q8a(int64_t n);
void qlm_prepare_q8a(int32_t path, const float *x, void *act, int64_t n);
size_t qlm_act_size_q8k(int64_t n);
void qlm_prepare_q8k(int32_t path, const float *x, void *act, int64_t n);

// q4_0 pieces the q4_0x8 row reuses (type_q4_0.c): a lone q4_0x8 row is a q4_0 row.
size_t qlm_q4_0_row_size(int64_t n);
void qlm_q4_0_quantize_row(int32_t path, const float *x, void *dst, int64_t n);
void qlm_q4_0_dequantize_row(const void *src, float *y, int64_t n);
void qlm_q4_0_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);
void qlm_q4_0_gptq_row(float *w, int64_t n, const double *U, void *dst);
void qlm_q4_0_gptq_rows(float *W, int64_t rows, int64_t n, const double *U, void *dst);
// q8_0 pieces the q8_0x8 row reuses (type_q8_0.c): a lone q8_0x8 row is a q8_0 row.
size_t qlm_q8_0_row_size(int64_t n);
void qlm_q8_0_quantize_row(int32_t path, const float *x, void *dst, int64_t n);
void qlm_q8_0_dequantize_row(const void *src, float *y, int64_t n);
void qlm_q8_0_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);
void qlm_q8_0_gptq_row(float *w, int64_t n, const double *U, void *dst);
void qlm_q8_0_gptq_rows(float *W, int64_t rows, int64_t n, const double *U, void *dst);

// q5_0 pieces the q5_0x8 row reuses (type_q5.c): a lone q5_0x8 row is a q5_0 row.
size_t qlm_q5_0_row_size(int64_t n);
void qlm_q5_0_quantize_row(int32_t path, const float *x, void *dst, int64_t n);
void qlm_q5_0_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n);
void qlm_q5_0_dequantize_row(const void *src, float *y, int64_t n);
void qlm_q5_0_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);
// q5_1 pieces the q5_1x8 row reuses (type_q5.c; its quantizers through qlm_traits_q5_1).
size_t qlm_q5_1_row_size(int64_t n);
void qlm_q5_1_quantize_row(int32_t path, const float *x, void *dst, int64_t n);
void qlm_q5_1_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n);
void qlm_q5_1_dequantize_row(const void *src, float *y, int64_t n);
void qlm_q5_1_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);

// iq4_nl pieces the iq4_nlx8 row reuses (type_iq4_nl.c): a lone iq4_nlx8 row is an iq4_nl row.
size_t qlm_iq4_nl_row_size(int64_t n);
void qlm_iq4_nl_quantize_row(int32_t path, const float *x, void *dst, int64_t n);
void qlm_iq4_nl_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n);
void qlm_iq4_nl_dequantize_row(const void *src, float *y, int64_t n);
void qlm_iq4_nl_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);

// The 8-row product loop of the row-grouped types (rowgroup.c): f runs one group (8 rows, nb blocks
// each) against nt (1..4) activation rows `as` bytes apart, Y[t * ldy + r]; decode (T = 1) gives each
// thread one contiguous share of groups, prefill pieces from one counter; rows past the last whole
// group go through row_dot (the plain type's dot, bit-identical to f per row).
typedef void (*qlm_group_fn)(int64_t nb, const void *g, const char *act, size_t as, float *Y, int64_t ldy, int nt);
void qlm_group_product(qlm_group_fn f, size_t rs, int64_t nb, qlm_dotn_fn row_dot, qlm_pool *pool, const void *W, int64_t rows,
                       int64_t n, const void *act, size_t as, int64_t T, float *Y, int64_t ldy);
// A layout's group kernel group_Q_P (qlm_group_fn) from group_Q_P_nt(nb, (const BT *)g, ..., NT)
// with NT = 1..4 as constants; and group_Q_kernel(path), the one of a path (rowgroup.c, rowgroup_sb.c, rowgroup_k.c).
#define GROUP_DISPATCH(Q, P, TGT, BT)                                                                   \
TGT static void group_##Q##_##P(int64_t nb, const void *g, const char *act, size_t as, float *Y, int64_t ldy, int nt) { \
    switch (nt) {                                                                                       \
    case 4: group_##Q##_##P##_nt(nb, (const BT *)g, act, as, Y, ldy, 4); break;                         \
    case 3: group_##Q##_##P##_nt(nb, (const BT *)g, act, as, Y, ldy, 3); break;                         \
    case 2: group_##Q##_##P##_nt(nb, (const BT *)g, act, as, Y, ldy, 2); break;                         \
    default: group_##Q##_##P##_nt(nb, (const BT *)g, act, as, Y, ldy, 1); break;                        \
    }                                                                                                   \
}
#if QLM_X86
#define GROUP_PICK(Q)                                                     \
    static qlm_group_fn group_##Q##_kernel(int32_t path) {                \
        if (path == QLM_PATH_AVX512) return group_##Q##_avx512;           \
        if (path == QLM_PATH_AVX2) return group_##Q##_avx2;               \
        return group_##Q##_scalar;                                        \
    }
#else
#define GROUP_PICK(Q) static qlm_group_fn group_##Q##_kernel(int32_t path) { (void)path; return group_##Q##_scalar; }
#endif

// q3_k pieces the q3_kx8 row reuses (type_q3_k.c): a lone q3_kx8 row is a q3_k row.
size_t qlm_q3_k_row_size(int64_t n);
void qlm_q3_k_quantize_row(int32_t path, const float *x, void *dst, int64_t n);
void qlm_q3_k_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n);
void qlm_q3_k_dequantize_row(const void *src, float *y, int64_t n);
void qlm_q3_k_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);
// The exact integer sum of q3_k sub-block j (32 weights) of a block against 32 activation codes:
// sum over its two 16-weight groups of (scale - 32) * sum(code * a). The scalar dot's and the
// q3_kx8 scalar kernel's.
int32_t qlm_q3_k_isum(const void *block, int j, const int8_t *a);
// iq4_xs pieces the iq4_xsx8 row reuses (type_iq4_xs.c), and its sub-block j's exact integer sum
// (l_j - 32) * sum K[c] * a.
size_t qlm_iq4_xs_row_size(int64_t n);
void qlm_iq4_xs_quantize_row(int32_t path, const float *x, void *dst, int64_t n);
void qlm_iq4_xs_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n);
void qlm_iq4_xs_dequantize_row(const void *src, float *y, int64_t n);
void qlm_iq4_xs_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);
int32_t qlm_iq4_xs_isum(const void *block, int j, const int8_t *a);
// q8i activations with -128 * sum(qs) (rowgroup.c: iq4_nlx8's, which iq4_xsx8 shares).
void qlm_prepare_q8i128(int32_t path, const float *x, void *act, int64_t n);

// Importance-weighted row quantizers (quant_imp.c), the quantize_row_imp hooks of q8_0, q4_0, q4_1
// (and their row-grouped forms, which quantize plain rows and pack them afterwards).
void qlm_q8_0_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n);
void qlm_q4_0_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n);
void qlm_q4_1_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n);
// What the other types' quantize_row_imp hooks share (quant_imp.c); w[] are the importance weights.
// A row through fn one block of bs (<= 256) weights at a time (the last zero padded, its padding
// weight 0; a block whose weights are all 0 gets ones, others a floor of 1e-4 of their mean).
typedef void (*qlm_imp_block_fn)(const float *x, const float *w, void *block);
void qlm_imp_rows(qlm_imp_block_fn fn, int bs, size_t bb, const float *x, const float *imp, void *dst, int64_t n);
// Symmetric codes clamp(round(x / d), lo, hi): the fp16-representable d minimizing the weighted error
// (d0, the plain rule's, among the candidates), and the weighted error at d (codes to q if non-NULL).
float qlm_imp_sym_scale(const float *x, const float *w, int m, float d0, float lo, float hi);
float qlm_imp_sym_err(const float *x, const float *w, int m, float d, float lo, float hi, int *q);
// A 32-weight block x ~ d q + m, q in 0..nmax (q4_1, q5_1): fp16 d, m and the codes.
void qlm_imp_asym_block(const float *x, const float *w, int nmax, uint16_t *d, uint16_t *mn, int *q);
// K-quant super-blocks of ng (<= 16) groups of gs (<= 32) weights.
// Affine (q4_k, q5_k, q2_k): x ~ d sc_g q - dmin m_g, q in 0..nmax, sc_g, m_g in 0..lmax; per group a
// weighted fit, d / dmin = the largest / lmax (fp16), sc_g and m_g the best of round +- 1; codes q[ng gs].
void qlm_imp_affine_super(const float *x, const float *w, int ng, int gs, int nmax, int lmax,
                          uint16_t *d, uint16_t *dmin, uint8_t *sc, uint8_t *mn, uint8_t *q);
// Symmetric (q3_k, q6_k): x ~ d l_g q, q in qlo..qhi, l_g in llo..lhi; per group the weighted scale
// search, d = max |scale| / lnorm times the best of 9 factors 0.9..1.1 (fp16), l_g the best of round +- 1.
void qlm_imp_sym_super(const float *x, const float *w, int ng, int gs, int qlo, int qhi, int llo, int lhi, float lnorm,
                       uint16_t *d, int *l, int *q);

// ---- IQ4_K* super-block types (kquant.c) ----------------------------------------------------
size_t qlm_kq_row_size(int64_t n);
// The IQ4 codebook's coder (shared with iq4_nl): squared error of x[0..m) coded at scale s (codes to
// q when non-NULL; terms weighted by wt when non-NULL), and the best scale >= 0 for x by that error.
float qlm_iq4_code_err(const float *x, const float *wt, int m, float s, uint8_t *q);
float qlm_iq4_best_scale(const float *x, const float *wt, int m);
// Dequantizes a row of n elements stored as ggml blocks of bs (<= 256) elements, the last one padded:
// whole blocks by ggml_blocks.c, the partial last block through a copy (type_q5.c).
void qlm_dequantize_ggml_blocks(int32_t ggml_type, int bs, size_t block_bytes, const void *src, float *y, int64_t n);

// ---- pool (pool.c) -------------------------------------------------------------------------
// Like qlm_pool_run, but fn may run on fewer threads: workers that have not picked the job up
// by the time the caller finished its own call skip it. fn must share work dynamically (e.g. an
// atomic chunk counter in ctx) and not rely on ith. Not reentrant.
void qlm_pool_run_dynamic(qlm_pool *pool, qlm_task_fn fn, void *ctx);
// qlm_pool_for and qlm_pool_for_shares are declared in qlm_kernels.h (tests call them).

// GPTQ's step for column i once it is coded as deq: its error, divided by U_ii, is pushed onto
// the columns after it through row i of U (the upper Cholesky factor of H^-1, [n, n]); then the
// column holds its coded value. Every type's gptq_row calls this.
static inline void qlm_gptq_step(float *w, int64_t n, const double *U, int64_t i, float deq) {
    const double err = ((double)w[i] - (double)deq) / U[i * n + i];
    const double *ui = U + i * n;
    for (int64_t k = i + 1; k < n; k++) w[k] -= (float)(err * ui[k]);
    w[i] = deq;
}

// GPTQ for 32-value blocks with one fp16 scale at d_offset and integer codes in [lo, hi]
// (q8_0, q4_0): the block quantizer picks the scale from the block's current weights at its
// first column, then each column is coded as clamp(round(w / d)) with that scale and its error
// pushed on; pack writes the QLM_QK codes (0 past the row's end) into the block.
// The same for `rows` rows of W (row r at W + r * n, its blocks at dst + r * nb * block_bytes), in
// groups of 8 rows that walk the columns together: each row's numbers equal qlm_gptq_blocks' bit
// for bit, while each row of U is read once per group (gptq.c).
void qlm_gptq_blocks_rows(float *W, int64_t rows, int64_t n, const double *U, void *dst, size_t block_bytes, size_t d_offset,
                          qlm_block_fn quantize_block, float lo, float hi, void (*pack)(void *blk, const int *codes));
static inline void qlm_gptq_blocks(float *w, int64_t n, const double *U, void *dst, size_t block_bytes, size_t d_offset,
                                   qlm_block_fn quantize_block, float lo, float hi, void (*pack)(void *blk, const int *codes)) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    for (int64_t b = 0; b < nb; b++) {
        float tmp[QLM_QK] = {0};
        const int64_t i0 = b * QLM_QK;
        const int m = (int)((n - i0) < QLM_QK ? (n - i0) : QLM_QK);
        memcpy(tmp, w + i0, (size_t)m * sizeof(float));
        uint8_t *blk = (uint8_t *)dst + b * (int64_t)block_bytes;
        quantize_block(tmp, blk);
        uint16_t dh;
        memcpy(&dh, blk + d_offset, sizeof dh);
        const float dd = qlm_h2f(dh);
        int codes[QLM_QK] = {0};
        for (int j = 0; j < m; j++) {
            const int64_t i = i0 + j;
            const float qf = dd != 0.0f ? fminf(fmaxf(roundf(w[i] / dd), lo), hi) : 0.0f;
            codes[j] = (int)qf;
            qlm_gptq_step(w, n, U, i, dd * qf);
        }
        pack(blk, codes);
    }
}

#endif
