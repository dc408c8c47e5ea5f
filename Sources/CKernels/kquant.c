// Super-block 4-bit formats with a non-uniform codebook: IQ4_K16 and IQ4_K32 (docs/format.md).
//
// Row rule (both types): a row of n weights is ceil(n/16) 16-weight chunks (the last padded
// with zeros), grouped into super-blocks of up to 16 chunks (256 weights); the last super-block
// holds the rest. A super-block of c chunks is
//     e        1 byte   super-scale d = 2^((e - 208) / 8), e = 0 means d = 0
//     sc[g]    ceil(c/2) bytes, one per 32-weight group (the last group may be a half group)
//     codes    8*c bytes: per full 32-group 16 bytes, byte j = code[j] | code[j+16] << 4;
//              a trailing half group 8 bytes, byte j = code[j] | code[j+8] << 4
// and weight = d * sub * K[code], K = the IQ4_NL codebook below (int8).
//  - IQ4_K16: sc[g] low nibble = sub-scale of the group's weights 0..15, high nibble = 16..31.
//  - IQ4_K32: sc[g] = sub-scale (0..255) of the whole group.
// Products pair with q8a activation blocks: per 32-group the integer sum
// sum_j sub(j) * K[code_j] * a_j is exact in int32; the float accumulation is
// s += (d * d_a) * isum (scalar: block order; SIMD: 8 lanes, fixed-order reduction at the end;
// a trailing half group is added in scalar).
#include "qlm_internal.h"

#pragma clang fp contract(off)

const int8_t qlm_iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static inline int kq_qmax(int32_t type) { return type == QLM_TYPE_IQ4_K16 ? 15 : 255; }
static inline int kq_sub(int32_t type) { return type == QLM_TYPE_IQ4_K16 ? 16 : 32; }

// 2^((e - 208) / 8), exact: mantissa table times a power of two built from exponent bits.
static const float k_e8_mant[8] = {1.0f, 1.0905077326652577f, 1.1892071150027210f, 1.2968395546510096f,
                                   1.4142135623730951f, 1.5422108254079407f, 1.6817928305074290f, 1.8340080864093424f};
QLM_INLINE float e8_to_f32(uint8_t e) {
    if (e == 0) return 0.0f;
    const int k = ((int)e - 208) >> 3; // floor((e-208)/8), -26..5
    return k_e8_mant[(e - 208) & 7] * qlm_bits_f32((uint32_t)(k + 127) << 23);
}
float qlm_e8_to_f32(uint8_t e) { return e8_to_f32(e); }

size_t qlm_kq_row_size(int64_t n) {
    const int64_t c = (n + 15) / 16;
    const int64_t full = c / 16, rem = c % 16;
    size_t s = (size_t)full * (1 + 8 + 128);
    if (rem) s += (size_t)(1 + (rem + 1) / 2 + 8 * rem);
    return s;
}

// ---- scalar quantizer ----------------------------------------------------------------------
// Nearest codebook index of v (ties to the lower level).
static inline int nearest_level(float v) {
    int lo = 0;
    // binary search on midpoints
    static const float mid[15] = {-115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
                                  7.0f, 19.0f, 31.5f, 45.5f, 61.0f, 79.0f, 101.0f};
    if (v > mid[7]) lo = 8;
    if (v > mid[lo + 3]) lo += 4;
    if (v > mid[lo + 1]) lo += 2;
    if (v > mid[lo]) lo += 1;
    return lo;
}

// Squared error of coding x[0..m) with scale s (codes written to q when non-NULL).
// Squared coding error of x[0..m) at scale s (codes to q when q != NULL), each term weighted by
// wt[j] when wt != NULL. The weighted form is GPTQ's: wt[j] = 1 / U_jj^2 (see qlm_kq_gptq_row).
// The two loops are kept apart so each keeps its exact floating-point expression.
float qlm_iq4_code_err(const float *x, const float *wt, int m, float s, uint8_t *q) {
    float err = 0.0f;
    if (!wt) {
        if (s == 0.0f) {
            for (int j = 0; j < m; j++) { err += x[j] * x[j]; if (q) q[j] = 8; }
            return err;
        }
        const float is = 1.0f / s;
        for (int j = 0; j < m; j++) {
            const int c = nearest_level(x[j] * is);
            const float e = x[j] - s * (float)qlm_iq4_levels[c];
            err += e * e;
            if (q) q[j] = (uint8_t)c;
        }
        return err;
    }
    const float is = s != 0.0f ? 1.0f / s : 0.0f;
    for (int j = 0; j < m; j++) {
        const int c = s != 0.0f ? nearest_level(x[j] * is) : 8;
        const float e = x[j] - s * (float)qlm_iq4_levels[c];
        err += wt[j] * e * e;
        if (q) q[j] = (uint8_t)c;
    }
    return err;
}

// Best float scale (>= 0) for x[0..m) by a grid search plus a least-squares refit, minimizing
// code_err with the same weights (wt NULL: plain squared error).
float qlm_iq4_best_scale(const float *x, const float *wt, int m) {
    float amax = 0.0f;
    for (int j = 0; j < m; j++) if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
    if (amax == 0.0f) return 0.0f;
    float best_s = amax / 127.0f, best_e = INFINITY;
    uint8_t q[32];
    for (int k = 0; k <= 24; k++) {
        const float s0 = amax / (100.0f + 2.0f * (float)k); // max magnitude at levels 100..148
        qlm_iq4_code_err(x, wt, m, s0, q);
        float sxl = 0.0f, sll = 0.0f;
        if (wt) {
            for (int j = 0; j < m; j++) { const float l = (float)qlm_iq4_levels[q[j]]; sxl += wt[j] * x[j] * l; sll += wt[j] * l * l; }
        } else {
            for (int j = 0; j < m; j++) { const float l = (float)qlm_iq4_levels[q[j]]; sxl += x[j] * l; sll += l * l; }
        }
        const float s1 = (sll > 0.0f && sxl > 0.0f) ? sxl / sll : s0;
        const float e0 = qlm_iq4_code_err(x, wt, m, s0, NULL), e1 = qlm_iq4_code_err(x, wt, m, s1, NULL);
        if (e0 < best_e) { best_e = e0; best_s = s0; }
        if (e1 < best_e) { best_e = e1; best_s = s1; }
    }
    return best_s;
}

// The integer sub-scale (0..qmax) for x[0..m) given d, chosen by least (weighted) error among
// round(s/d) ± radius.
static int best_sub(const float *x, const float *wt, int m, float d, float s, int qmax, int radius) {
    if (d == 0.0f) return 0;
    int q0 = (int)roundf(s / d);
    if (q0 > qmax) q0 = qmax;
    if (q0 < 0) q0 = 0;
    int best = q0;
    float be = INFINITY;
    for (int q = q0 - radius; q <= q0 + radius; q++) {
        if (q < 0 || q > qmax) continue;
        const float e = qlm_iq4_code_err(x, wt, m, d * (float)q, NULL);
        if (e < be) { be = e; best = q; }
    }
    return best;
}

// The super-scale byte for sub-block scales s[0..ns): smallest e with d(e) * qmax >= max s.
static uint8_t choose_e8(const float *s, int ns, int qmax) {
    float smax = 0.0f;
    for (int j = 0; j < ns; j++) if (s[j] > smax) smax = s[j];
    if (smax == 0.0f) return 0;
    const float target = smax / (float)qmax;
    // Clamp in float before converting: a target that underflows to 0 (denormal sub-block
    // scales) gives log2f = -inf, and converting -inf to int is undefined (UBSan).
    const float ef = ceilf(8.0f * log2f(target)) + 208.0f;
    int e = ef >= 1.0f ? (ef <= 255.0f ? (int)ef : 255) : 1;
    while (e < 255 && e8_to_f32((uint8_t)e) * (float)qmax < smax) e++;
    while (e > 1 && e8_to_f32((uint8_t)(e - 1)) * (float)qmax >= smax) e--;
    return (uint8_t)e;
}

// Packs the codes of one super-block's group g (m = 32 or 16 codes) into out.
static void pack_codes(const uint8_t *q, int m, uint8_t *out) {
    const int h = m / 2;
    for (int j = 0; j < h; j++) out[j] = (uint8_t)(q[j] | (q[j + h] << 4));
}

// Writes one sub-block's scale nibble/byte.
static void set_sub(int32_t type, uint8_t *sc, int sb, int q) {
    if (type == QLM_TYPE_IQ4_K16) {
        const int g = sb / 2;
        if (sb & 1) sc[g] = (uint8_t)((sc[g] & 0x0F) | (q << 4));
        else sc[g] = (uint8_t)((sc[g] & 0xF0) | q);
    } else {
        sc[sb] = (uint8_t)q;
    }
}

// Quantizes one super-block of c chunks (x holds 16*c values, zero padded); wt: per-weight
// importance (NULL: plain squared error).
static void quant_superblock(int32_t type, const float *x, const float *wt, int c, uint8_t *out) {
    const int sub = kq_sub(type), qmax = kq_qmax(type);
    const int ng = (c + 1) / 2;
    uint8_t *sc = out + 1, *codes = out + 1 + ng;
    const int m_total = 16 * c;
    int ns = 0;
    float s[16];
    int off[16], len[16];
    for (int o = 0; o < m_total; o += sub) {
        const int m = (m_total - o) < sub ? (m_total - o) : sub;
        off[ns] = o; len[ns] = m;
        s[ns] = qlm_iq4_best_scale(x + o, wt ? wt + o : NULL, m);
        ns++;
    }
    const uint8_t e = choose_e8(s, ns, qmax);
    const float d = e8_to_f32(e);
    out[0] = e;
    memset(sc, 0, (size_t)ng);
    uint8_t q[256];
    for (int j = 0; j < ns; j++) {
        const float *w = wt ? wt + off[j] : NULL;
        const int qs = best_sub(x + off[j], w, len[j], d, s[j], qmax, wt ? 2 : 1);
        set_sub(type, sc, j, qs);
        qlm_iq4_code_err(x + off[j], w, len[j], d * (float)qs, q + off[j]);
    }
    for (int g = 0; g < ng; g++) {
        const int m = (16 * c - 32 * g) >= 32 ? 32 : 16;
        pack_codes(q + 32 * g, m, codes + 16 * g);
    }
}

// imp: per-column importance (NULL: plain). A super-block whose importance is all zero (dead
// inputs) is coded plainly.
static void kq_quantize_row(int32_t type, const float *x, const float *imp, void *dst, int64_t n) {
    uint8_t *out = (uint8_t *)dst;
    const int64_t nc = (n + 15) / 16;
    float buf[256], wbuf[256];
    for (int64_t c0 = 0; c0 < nc; c0 += 16) {
        const int c = (int)((nc - c0) < 16 ? (nc - c0) : 16);
        const int64_t i0 = c0 * 16;
        const int64_t have = (n - i0) < 16 * c ? (n - i0) : 16 * c;
        memset(buf, 0, sizeof buf);
        memcpy(buf, x + i0, (size_t)have * sizeof(float));
        float wsum = 0.0f;
        if (imp) {
            memset(wbuf, 0, sizeof wbuf);
            for (int64_t j = 0; j < have; j++) {
                const float v = imp[i0 + j];
                wbuf[j] = v >= 0.0f && isfinite(v) ? v : 0.0f;
                wsum += wbuf[j];
            }
        }
        quant_superblock(type, buf, wsum > 0.0f && isfinite(wsum) ? wbuf : NULL, c, out);
        out += 1 + (c + 1) / 2 + 8 * c;
    }
}

// Sub-scale of weight j (0..31) of group g's scale byte.
static inline int sub_of(int32_t type, uint8_t scb, int j) {
    if (type == QLM_TYPE_IQ4_K16) return j < 16 ? (scb & 0xF) : (scb >> 4);
    return scb;
}

static void kq_dequantize_row(int32_t type, const void *src, float *y, int64_t n) {
    const uint8_t *p = (const uint8_t *)src;
    const int64_t nc = (n + 15) / 16;
    int64_t i = 0;
    for (int64_t c0 = 0; c0 < nc; c0 += 16) {
        const int c = (int)((nc - c0) < 16 ? (nc - c0) : 16);
        const int ng = (c + 1) / 2;
        const float d = e8_to_f32(p[0]);
        const uint8_t *sc = p + 1, *codes = p + 1 + ng;
        for (int g = 0; g < ng; g++) {
            const int m = (16 * c - 32 * g) >= 32 ? 32 : 16, h = m / 2;
            for (int j = 0; j < m && i < n; j++, i++) {
                const uint8_t b = codes[16 * g + (j % h)];
                const int code = j < h ? (b & 0xF) : (b >> 4);
                y[i] = d * (float)sub_of(type, sc[g], j) * (float)qlm_iq4_levels[code];
            }
        }
        p += 1 + ng + 8 * c;
    }
}

// ---- scalar dot ----------------------------------------------------------------------------
static float kq_dot_scalar1(int32_t type, int64_t n, const uint8_t *p, const qlm_block_q8a *a) {
    const int64_t nc = (n + 15) / 16;
    float s = 0.0f;
    int64_t gi = 0; // global 32-group index (= activation block)
    for (int64_t c0 = 0; c0 < nc; c0 += 16) {
        const int c = (int)((nc - c0) < 16 ? (nc - c0) : 16);
        const int ng = (c + 1) / 2;
        const float d = e8_to_f32(p[0]);
        const uint8_t *sc = p + 1, *codes = p + 1 + ng;
        for (int g = 0; g < ng; g++, gi++) {
            const int m = (16 * c - 32 * g) >= 32 ? 32 : 16, h = m / 2;
            int32_t is = 0;
            for (int j = 0; j < m; j++) {
                const uint8_t b = codes[16 * g + (j % h)];
                const int code = j < h ? (b & 0xF) : (b >> 4);
                is += sub_of(type, sc[g], j) * (int32_t)qlm_iq4_levels[code] * (int32_t)a[gi].qs[j];
            }
            s += (d * a[gi].d) * (float)is;
        }
        p += 1 + ng + 8 * c;
    }
    return s;
}

static void kq_dotn_k16_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    for (int r = 0; r < nr; r++) out[r] = kq_dot_scalar1(QLM_TYPE_IQ4_K16, n, (const uint8_t *)w + r * rs, (const qlm_block_q8a *)act);
}
static void kq_dotn_k32_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    for (int r = 0; r < nr; r++) out[r] = kq_dot_scalar1(QLM_TYPE_IQ4_K32, n, (const uint8_t *)w + r * rs, (const qlm_block_q8a *)act);
}

// ---- AVX2 / AVX-512 dots -------------------------------------------------------------------
#if QLM_X86
// Codes of a full group: 16 bytes -> 32 indices (low half elements 0..15, high half 16..31),
// looked up in the codebook (pshufb within each 128-bit lane), then the sign trick gives
// |w| (u8) x sign(a, w) (s8) -> int32 lanes (lane i = elements 4i..4i+3).
#define KQ_KERNEL(P, TGT, DOTUS)                                                                    \
TGT static float kq_dot_##P(int32_t type, int64_t n, const uint8_t *p, const qlm_block_q8a *a) {   \
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qlm_iq4_levels)); \
    const __m256i m4 = _mm256_set1_epi8(0x0F);                                                     \
    const int64_t nc = (n + 15) / 16;                                                              \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                                 \
    float tail = 0.0f;                                                                             \
    int64_t gi = 0;                                                                                \
    const int k16 = type == QLM_TYPE_IQ4_K16;                                                      \
    for (int64_t c0 = 0; c0 < nc; c0 += 16) {                                                      \
        const int c = (int)((nc - c0) < 16 ? (nc - c0) : 16);                                      \
        const int ng = (c + 1) / 2, nfull = c / 2;                                                 \
        const float d = e8_to_f32(p[0]);                                                           \
        const uint8_t *sc = p + 1, *codes = p + 1 + ng;                                            \
        int g = 0;                                                                                 \
        for (; g < nfull; g++, gi++) {                                                             \
            const __m256i x = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(codes + 16 * g))); \
            const __m256i idx = _mm256_and_si256(_mm256_srlv_epi64(x, _mm256_setr_epi64x(0, 0, 4, 4)), m4); \
            const __m256i wv = _mm256_shuffle_epi8(lut, idx);                                      \
            const __m256i av = _mm256_loadu_si256((const __m256i *)a[gi].qs);                      \
            __m256i is = DOTUS(_mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv));                     \
            const int lo = k16 ? (sc[g] & 0xF) : sc[g], hi = k16 ? (sc[g] >> 4) : sc[g];           \
            is = _mm256_mullo_epi32(is, _mm256_setr_epi32(lo, lo, lo, lo, hi, hi, hi, hi));         \
            const __m256 f = _mm256_set1_ps(d * a[gi].d);                                          \
            if (g & 1) acc1 = _mm256_fmadd_ps(f, _mm256_cvtepi32_ps(is), acc1);                    \
            else acc0 = _mm256_fmadd_ps(f, _mm256_cvtepi32_ps(is), acc0);                          \
        }                                                                                          \
        if (g < ng) { /* half group */                                                             \
            int32_t is = 0;                                                                        \
            const int sub = k16 ? (sc[g] & 0xF) : sc[g];                                           \
            /* not vectorized: the AVX-512 auto-vectorized form of this loop gave wrong sums here */ \
            _Pragma("clang loop vectorize(disable) unroll(disable)") for (int j = 0; j < 16; j++) { \
                const uint8_t b = codes[16 * g + (j % 8)];                                         \
                const int code = j < 8 ? (b & 0xF) : (b >> 4);                                     \
                is += (int32_t)qlm_iq4_levels[code] * (int32_t)a[gi].qs[j];                        \
            }                                                                                      \
            tail += (d * a[gi].d) * (float)(is * sub);                                             \
            gi++;                                                                                  \
        }                                                                                          \
        p += 1 + ng + 8 * c;                                                                       \
    }                                                                                              \
    __m256 v = _mm256_add_ps(acc0, acc1);                                                          \
    __m128 l = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));                 \
    l = _mm_add_ps(l, _mm_movehl_ps(l, l));                                                        \
    l = _mm_add_ss(l, _mm_movehdup_ps(l));                                                         \
    return _mm_cvtss_f32(l) + tail;                                                                \
}

QLM_AVX2_TARGET QLM_INLINE __m256i kq_dotus_avx2(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
QLM_AVX512_TARGET QLM_INLINE __m256i kq_dotus_avx512(__m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}
KQ_KERNEL(avx2, QLM_AVX2_TARGET, kq_dotus_avx2)
KQ_KERNEL(avx512, QLM_AVX512_TARGET, kq_dotus_avx512)

#define KQ_DOTN(NAME, TYPE, FN, TGT)                                                                \
TGT static void NAME(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {            \
    for (int r = 0; r < nr; r++) out[r] = FN(TYPE, n, (const uint8_t *)w + r * rs, (const qlm_block_q8a *)act); \
}
KQ_DOTN(kq_dotn_k16_avx2, QLM_TYPE_IQ4_K16, kq_dot_avx2, QLM_AVX2_TARGET)
KQ_DOTN(kq_dotn_k32_avx2, QLM_TYPE_IQ4_K32, kq_dot_avx2, QLM_AVX2_TARGET)
KQ_DOTN(kq_dotn_k16_avx512, QLM_TYPE_IQ4_K16, kq_dot_avx512, QLM_AVX512_TARGET)
KQ_DOTN(kq_dotn_k32_avx512, QLM_TYPE_IQ4_K32, kq_dot_avx512, QLM_AVX512_TARGET)
#endif

// ---- GPTQ sweep of one row (called by gptq.c) ------------------------------------------------
// w: the row (n floats, updated in place); U: upper Cholesky factor of H^-1 ([n, n] row-major).
// The super-scale is chosen when the sweep reaches a super-block's first column, each sub-scale
// at its sub-block's first column, both from the current (error-compensated) weights; every
// column is then coded with those scales and its error pushed onto the later columns.
// Scales are chosen by code_err weighted with wt[j] = 1 / U_jj^2 (the weight GPTQ
// gives a column's rounding error: the loss increase of coding column j is err_j^2 / U_jj^2).
static void kq_gptq_row(int32_t type, float *w, int64_t n, const double *U, void *dst) {
    const int sub = kq_sub(type), qmax = kq_qmax(type);
    uint8_t *out = (uint8_t *)dst;
    const int64_t nc = (n + 15) / 16;
    float buf[256], wt[256];
    uint8_t q[256];
    for (int64_t c0 = 0; c0 < nc; c0 += 16) {
        const int c = (int)((nc - c0) < 16 ? (nc - c0) : 16);
        const int ng = (c + 1) / 2;
        const int64_t i0 = c0 * 16;
        const int m_total = 16 * c;
        // super-scale from the current values
        memset(buf, 0, sizeof buf);
        for (int j = 0; j < m_total; j++) {
            const int64_t i = i0 + j;
            if (i < n) { buf[j] = w[i]; const double u = U[i * n + i]; wt[j] = (float)(1.0 / (u * u)); }
            else wt[j] = 0.0f;
        }
        float s[16];
        int ns = 0;
        for (int o = 0; o < m_total; o += sub) s[ns++] = qlm_iq4_best_scale(buf + o, wt + o, (m_total - o) < sub ? (m_total - o) : sub);
        const uint8_t e = choose_e8(s, ns, qmax);
        const float d = e8_to_f32(e);
        out[0] = e;
        uint8_t *sc = out + 1, *codes = out + 1 + ng;
        memset(sc, 0, (size_t)ng);
        memset(q, 8, sizeof q);
        for (int sbi = 0, o = 0; o < m_total; o += sub, sbi++) {
            const int m = (m_total - o) < sub ? (m_total - o) : sub;
            for (int j = 0; j < m; j++) buf[o + j] = (i0 + o + j < n) ? w[i0 + o + j] : 0.0f;
            const int qs = best_sub(buf + o, wt + o, m, d, qlm_iq4_best_scale(buf + o, wt + o, m), qmax, 2);
            set_sub(type, sc, sbi, qs);
            const float ss = d * (float)qs;
            const float is = ss != 0.0f ? 1.0f / ss : 0.0f;
            for (int j = 0; j < m; j++) {
                const int64_t i = i0 + o + j;
                if (i >= n) break;
                const int code = ss != 0.0f ? nearest_level(w[i] * is) : 8;
                q[o + j] = (uint8_t)code;
                const float deq = ss * (float)qlm_iq4_levels[code];
                qlm_gptq_step(w, n, U, i, deq);
            }
        }
        for (int g = 0; g < ng; g++) {
            const int m = (m_total - 32 * g) >= 32 ? 32 : 16;
            pack_codes(q + 32 * g, m, codes + 16 * g);
        }
        out += 1 + ng + 8 * c;
    }
}

// ---- table rows ------------------------------------------------------------------------------
static void k16_quantize_row(int32_t path, const float *x, void *dst, int64_t n) { (void)path; kq_quantize_row(QLM_TYPE_IQ4_K16, x, NULL, dst, n); }
static void k32_quantize_row(int32_t path, const float *x, void *dst, int64_t n) { (void)path; kq_quantize_row(QLM_TYPE_IQ4_K32, x, NULL, dst, n); }
static void k16_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) { kq_quantize_row(QLM_TYPE_IQ4_K16, x, imp, dst, n); }
static void k32_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) { kq_quantize_row(QLM_TYPE_IQ4_K32, x, imp, dst, n); }
static void k16_dequantize_row(const void *src, float *y, int64_t n) { kq_dequantize_row(QLM_TYPE_IQ4_K16, src, y, n); }
static void k32_dequantize_row(const void *src, float *y, int64_t n) { kq_dequantize_row(QLM_TYPE_IQ4_K32, src, y, n); }
static void k16_gptq_row(float *w, int64_t n, const double *U, void *dst) { kq_gptq_row(QLM_TYPE_IQ4_K16, w, n, U, dst); }
static void k32_gptq_row(float *w, int64_t n, const double *U, void *dst) { kq_gptq_row(QLM_TYPE_IQ4_K32, w, n, U, dst); }

// zstd filter record: one super-block (super-scale byte + 8 sub-scale bytes lead it) when rows
// are whole 256-weight super-blocks, else the whole row (super-scale + its ceil(c/2) sub-scale
// bytes of the first super-block lead it).
static void kq_zstd_record(int64_t n, int32_t *record, int32_t *head) {
    if (n % 256 == 0) { *record = (int32_t)qlm_kq_row_size(256); *head = 1 + 8; return; }
    const int64_t c = ((n < 256 ? n : 256) + 15) / 16;
    *record = (int32_t)qlm_kq_row_size(n);
    *head = (int32_t)(1 + (c + 1) / 2);
}

// block = one full 256-weight super-block (rows use qlm_kq_row_size); one (scalar) quantizer on every path.
#define KQ_ROW(NAME, K)                                                                              \
    .name = NAME, .block_size = 256, .block_bytes = 1 + 8 + 128, .is_quantized = 1,                 \
    .act_type = QLM_ACT_Q8A, .row_group = 1, .code_bits = 4, .fp16_count = 0,                       \
    .row_size = qlm_kq_row_size, .quantize_row = K##_quantize_row, .dequantize_row = K##_dequantize_row, \
    .act_row_size = qlm_act_size_q8a, .prepare_act = qlm_prepare_q8a,                               \
    .dotn = {[QLM_PATH_SCALAR] = kq_dotn_##K##_scalar, [QLM_PATH_AVX2] = QLM_IF_X86(kq_dotn_##K##_avx2), \
             [QLM_PATH_AVX512] = QLM_IF_X86(kq_dotn_##K##_avx512)},                                  \
    .zstd_record = kq_zstd_record, .gptq_row = K##_gptq_row, .quantize_row_imp = K##_quantize_row_imp,
const qlm_type_traits qlm_traits_iq4_k16 = {KQ_ROW("iq4_k16", k16)};
const qlm_type_traits qlm_traits_iq4_k32 = {KQ_ROW("iq4_k32", k32)};
