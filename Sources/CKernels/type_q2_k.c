// q2_k: ggml's Q2_K 256-weight super-blocks byte for byte (docs/format.md), 84 bytes:
//   u8 scales[16], u8 qs[64], u16 d, u16 dmin (fp16)
// Weight L (0..255): code q (0..3) = qs[32 * (L / 128) + L % 32] >> (2 * ((L % 128) / 32)) & 3;
// 16-weight group j = L / 16 has scale sc = scales[j] & 15 and min m = scales[j] >> 4;
// weight = d * sc * q - dmin * m.
// Pairs with q8a activations (qlm_sb32.h): per 32-weight sub-block the integer sums
// sum sc * q * a and sum m * a are exact in int32; the float steps are
// acc += (d * d_a) * lanes and acm += (dmin * d_a) * min lanes, result acc - acm.
#include "qlm_sb32.h"
#include "qlm_ggml.h"

#pragma clang fp contract(off)

#define Q2K_QK 256
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d; uint16_t dmin; } q2_k_block;
_Static_assert(sizeof(q2_k_block) == 84, "q2_k block is 84 bytes (ggml block_q2_K)");

static size_t q2_k_row_size(int64_t n) { return (size_t)((n + Q2K_QK - 1) / Q2K_QK) * sizeof(q2_k_block); }

QLM_INLINE int q2k_code(const q2_k_block *b, int L) { return (b->qs[32 * (L / 128) + L % 32] >> (2 * ((L % 128) / 32))) & 3; }

// ---- quantizer (scalar on every path) --------------------------------------------------------------
// Per 16-weight group: mn = -min(0, min x) >= 0 and the step s with the least squared error over
// codes clamp(round((x + mn) / s), 0, 3) among (max - min) / 3 * (1 + k / 16), k = -4..4; then
// d = max s / 15, dmin = max mn / 15 (fp16), sc = round(s / d) (the best of +- 1), m = round(mn / dmin)
// (clamped to 15), and the codes at the stored numbers.
static float q2k_err(const float *x, float s, float mn, uint8_t *q) {
    float e = 0.0f;
    const float is = s != 0.0f ? 1.0f / s : 0.0f;
    for (int i = 0; i < 16; i++) {
        const int c = s != 0.0f ? (int)fminf(fmaxf(roundf((x[i] + mn) * is), 0.0f), 3.0f) : 0;
        const float r = x[i] - (s * (float)c - mn);
        e += r * r;
        if (q) q[i] = (uint8_t)c;
    }
    return e;
}
static void q2_k_block_scalar(const float *x, void *bv) {
    q2_k_block *b = (q2_k_block *)bv;
    float s[16], mn[16], smax = 0.0f, mmax = 0.0f;
    for (int j = 0; j < 16; j++) {
        float lo = 0.0f, hi = 0.0f;
        for (int i = 0; i < 16; i++) { lo = fminf(lo, x[16 * j + i]); hi = fmaxf(hi, x[16 * j + i]); }
        mn[j] = -lo;
        s[j] = 0.0f;
        float be = INFINITY;
        for (int k = -4; k <= 4 && hi > lo; k++) {
            const float c = (hi - lo) / 3.0f * (1.0f + (float)k / 16.0f);
            const float e = q2k_err(x + 16 * j, c, mn[j], NULL);
            if (e < be) { be = e; s[j] = c; }
        }
        smax = fmaxf(smax, s[j]);
        mmax = fmaxf(mmax, mn[j]);
    }
    memset(b, 0, sizeof *b);
    b->d = qlm_f2h(smax / 15.0f);
    b->dmin = qlm_f2h(mmax / 15.0f);
    const float d = qlm_h2f(b->d), dmin = qlm_h2f(b->dmin);
    for (int j = 0; j < 16; j++) {
        const int m = dmin != 0.0f ? (int)fminf(roundf(mn[j] / dmin), 15.0f) : 0;
        const float mf = dmin * (float)m;
        int sc = 0;
        if (d != 0.0f) {
            const int l0 = (int)fminf(roundf(s[j] / d), 15.0f);
            float be = INFINITY;
            for (int c = l0 - 1; c <= l0 + 1; c++) {
                if (c < 0 || c > 15) continue;
                const float e = q2k_err(x + 16 * j, d * (float)c, mf, NULL);
                if (e < be) { be = e; sc = c; }
            }
        }
        uint8_t q[16];
        q2k_err(x + 16 * j, d * (float)sc, mf, q);
        b->scales[j] = (uint8_t)(sc | (m << 4));
        for (int i = 0; i < 16; i++) {
            const int L = 16 * j + i;
            b->qs[32 * (L / 128) + L % 32] |= (uint8_t)(q[i] << (2 * ((L % 128) / 32)));
        }
    }
}
// Importance-weighted (quant_imp.c): per group a weighted fit of step and min, d / dmin the largest
// over 15, each group's sc and m the best of round +- 1 by the weighted error.
static void q2_k_imp_block(const float *x, const float *w, void *bv) {
    q2_k_block *b = (q2_k_block *)bv;
    uint8_t sc[16], mn[16], q[Q2K_QK];
    memset(b, 0, sizeof *b);
    qlm_imp_affine_super(x, w, 16, 16, 3, 15, &b->d, &b->dmin, sc, mn, q);
    for (int j = 0; j < 16; j++) b->scales[j] = (uint8_t)(sc[j] | (mn[j] << 4));
    for (int L = 0; L < Q2K_QK; L++) b->qs[32 * (L / 128) + L % 32] |= (uint8_t)(q[L] << (2 * ((L % 128) / 32)));
}
static void q2_k_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) {
    qlm_imp_rows(q2_k_imp_block, Q2K_QK, sizeof(q2_k_block), x, imp, dst, n);
}
static void q2_k_quantize_row(int32_t path, const float *x, void *dst, int64_t n) {
    (void)path;
    sb32_quantize_row(q2_k_block_scalar, sizeof(q2_k_block), x, dst, n);
}
static void q2_k_dequantize_row(const void *src, float *y, int64_t n) {
    qlm_dequantize_ggml_blocks(QLM_GGML_Q2_K, Q2K_QK, sizeof(q2_k_block), src, y, n);
}

// ---- dots ------------------------------------------------------------------------------------------
static float dot_q2_k_scalar1(int64_t n, const q2_k_block *w, const qlm_block_q8a *a) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    float s = 0.0f, sm = 0.0f;
    for (int64_t g = 0; g < nb; g++) {
        const q2_k_block *b = w + g / 8;
        const int j8 = (int)(g % 8);
        int32_t is = 0, im = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t sc = b->scales[2 * j8 + h];
            int32_t gs = 0, ga = 0;
            for (int i = 16 * h; i < 16 * h + 16; i++) { gs += q2k_code(b, 32 * j8 + i) * (int32_t)a[g].qs[i]; ga += a[g].qs[i]; }
            is += gs * (sc & 0xF);
            im += ga * (sc >> 4);
        }
        s += (qlm_h2f(b->d) * a[g].d) * (float)is;
        sm += (qlm_h2f(b->dmin) * a[g].d) * (float)im;
    }
    return s - sm;
}
SCALAR_DOTN(dotn_q2_k_scalar, dot_q2_k_scalar1, q2_k_block, qlm_block_q8a)

#if QLM_X86
// Sub-block g = 32 consecutive weights: codes = the 32 bytes qs[32 * (j / 4) ...] shifted by
// 2 * (j % 4); lanes 0..3 (the first 16 weights) times the first group's scale, 4..7 the second's;
// the min lanes are the groups' mins (bytes) times the activation codes, summed in fours.
#define Q2K_SETUP const __m256i three = _mm256_set1_epi8(3);
#define Q2K_SUB(P, g, k) {                                                                         \
        const q2_k_block *B = wb + (g) / 8;                                                        \
        const int j = (int)((g) % 8);                                                              \
        if (j == 0) PF((const char *)B + QLM_PF_DIST);                                             \
        const __m256i qv = _mm256_loadu_si256((const __m256i *)(B->qs + 32 * (j / 4)));           \
        const __m256i wq = _mm256_and_si256(_mm256_srl_epi16(qv, _mm_cvtsi32_si128(2 * (j % 4))), three); \
        const int c0 = B->scales[2 * j], c1 = B->scales[2 * j + 1];                                \
        const __m256i scv = _mm256_setr_epi32(c0 & 15, c0 & 15, c0 & 15, c0 & 15, c1 & 15, c1 & 15, c1 & 15, c1 & 15); \
        const __m256i mv = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi8((char)(c0 >> 4))), \
                                                   _mm_set1_epi8((char)(c1 >> 4)), 1);            \
        const float dw = SB32_H2F(B->d), dm = SB32_H2F(B->dmin);                                   \
        for (int t = 0; t < NT; t++) {                                                             \
            const qlm_block_q8a *ab = (const qlm_block_q8a *)(act + t * as) + (g);                 \
            const __m256i av = _mm256_loadu_si256((const __m256i *)ab->qs);                        \
            const __m256i is = _mm256_mullo_epi32(dot_us_##P(wq, av), scv);                        \
            acc[t][k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * ab->d), _mm256_cvtepi32_ps(is), acc[t][k]); \
            acm[t][k] = _mm256_fmadd_ps(_mm256_set1_ps(dm * ab->d), _mm256_cvtepi32_ps(dot_us_##P(mv, av)), acm[t][k]); \
        } }
#define Q2K_FIN(P, t) (hsum8_##P(_mm256_add_ps(acc[t][0], acc[t][1])) - hsum8_##P(_mm256_add_ps(acm[t][0], acm[t][1])))
SB32_FAMILY(q2_k, avx2, QLM_AVX2_TARGET, q2_k_block, Q2K_SETUP, Q2K_SUB, Q2K_FIN)
SB32_FAMILY(q2_k, avx512, QLM_AVX512_TARGET, q2_k_block, Q2K_SETUP, Q2K_SUB, Q2K_FIN)
#endif

const qlm_type_traits qlm_traits_q2_k = {
    .name = "q2_k", .block_size = Q2K_QK, .block_bytes = sizeof(q2_k_block), .is_quantized = 1,
    .act_type = QLM_ACT_Q8A, .row_group = 1, .code_bits = 2,
    .fp16_count = 2, .fp16_offsets = {offsetof(q2_k_block, d), offsetof(q2_k_block, dmin)},
    .row_size = q2_k_row_size, .quantize_row = q2_k_quantize_row, .dequantize_row = q2_k_dequantize_row,
    .quantize_row_imp = q2_k_quantize_row_imp,
    .whole_blocks = 1, .row_fallback = QLM_TYPE_IQ4_NL, // as llama.cpp falls back
    .act_row_size = qlm_act_size_q8a, .prepare_act = qlm_prepare_q8a,
    SB32_ROW_KERNELS(q2_k)
};
