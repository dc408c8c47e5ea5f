// q3_k: ggml's Q3_K 256-weight super-blocks byte for byte (docs/format.md), 110 bytes:
//   u8 hmask[32], u8 qs[64], u8 scales[12], u16 d (fp16)
// Weight L (0..255): 2 low bits from qs[32 * (L / 128) + L % 32] at bit 2 * ((L % 128) / 32); a
// high bit hmask[L % 32] bit L / 32 whose being CLEAR subtracts 4 (code -4..3); weight =
// d * (sc_j - 32) * code with sc_j the 6-bit scale of 16-weight group j = L / 16 (low 4 bits: nibble
// j / 8 of scales[j % 8], high 2 bits: bits 2 * (j / 4) of scales[8 + j % 4]).
// Pairs with q8a activations (qlm_sb32.h): per 32-weight sub-block the two groups' integer sums times
// their scales are exact in int32; one float step per sub-block.
#include "qlm_sb32.h"
#include "qlm_ggml.h"

#pragma clang fp contract(off)

#define Q3K_QK 256
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } q3_k_block;
_Static_assert(sizeof(q3_k_block) == 110, "q3_k block is 110 bytes (ggml block_q3_K)");

size_t qlm_q3_k_row_size(int64_t n) { return (size_t)((n + Q3K_QK - 1) / Q3K_QK) * sizeof(q3_k_block); }

// The signed scale (-32..31) of 16-weight group j.
QLM_INLINE int q3k_scale(const q3_k_block *b, int j) {
    const int lo = (b->scales[j % 8] >> (4 * (j / 8))) & 0xF;
    const int hi = (b->scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}
// The code (-4..3) of weight L.
QLM_INLINE int q3k_code(const q3_k_block *b, int L) {
    const int q = (b->qs[32 * (L / 128) + L % 32] >> (2 * ((L % 128) / 32))) & 3;
    return ((b->hmask[L % 32] >> (L / 32)) & 1) ? q : q - 4;
}

// ---- quantizer (scalar on every path) --------------------------------------------------------------
// Per 16-weight group the scale s with the least squared error over codes clamp(round(x / s), -4, 3)
// among max / -4 * (1 + k / 16), k = -4..8 (max: the signed value of largest magnitude, as q4_0);
// d = max |s| / 32 (fp16); each group's integer scale the best of round(s / d) +- 1; codes at d * l.
static float q3k_err(const float *x, float s, int8_t *q) {
    float e = 0.0f;
    const float is = s != 0.0f ? 1.0f / s : 0.0f;
    for (int i = 0; i < 16; i++) {
        const int c = s != 0.0f ? (int)fminf(fmaxf(roundf(x[i] * is), -4.0f), 3.0f) : 0;
        const float r = x[i] - s * (float)c;
        e += r * r;
        if (q) q[i] = (int8_t)c;
    }
    return e;
}
static void q3_k_block_scalar(const float *x, void *bv) {
    q3_k_block *b = (q3_k_block *)bv;
    float s[16], smax = 0.0f;
    for (int j = 0; j < 16; j++) {
        float amax = 0.0f, max = 0.0f;
        for (int i = 0; i < 16; i++) if (fabsf(x[16 * j + i]) > amax) { amax = fabsf(x[16 * j + i]); max = x[16 * j + i]; }
        s[j] = 0.0f;
        float be = INFINITY;
        for (int k = -4; k <= 8 && amax > 0.0f; k++) {
            const float c = max / -4.0f * (1.0f + (float)k / 16.0f);
            const float e = q3k_err(x + 16 * j, c, NULL);
            if (e < be) { be = e; s[j] = c; }
        }
        if (fabsf(s[j]) > smax) smax = fabsf(s[j]);
    }
    memset(b, 0, sizeof *b);
    b->d = qlm_f2h(smax / 32.0f);
    const float d = qlm_h2f(b->d);
    for (int j = 0; j < 16; j++) {
        int l = 0;
        if (d != 0.0f) {
            const int l0 = (int)fminf(fmaxf(roundf(s[j] / d), -32.0f), 31.0f);
            float be = INFINITY;
            for (int c = l0 - 1; c <= l0 + 1; c++) {
                if (c < -32 || c > 31) continue;
                const float e = q3k_err(x + 16 * j, d * (float)c, NULL);
                if (e < be) { be = e; l = c; }
            }
        }
        int8_t q[16];
        q3k_err(x + 16 * j, d * (float)l, q);
        const int u = l + 32;
        b->scales[j % 8] |= (uint8_t)((u & 0xF) << (4 * (j / 8)));
        b->scales[8 + j % 4] |= (uint8_t)(((u >> 4) & 3) << (2 * (j / 4)));
        for (int i = 0; i < 16; i++) {
            const int L = 16 * j + i, c = q[i] + 4; // 0..7: bit 2 = the high bit (set: no -4)
            b->qs[32 * (L / 128) + L % 32] |= (uint8_t)((c & 3) << (2 * ((L % 128) / 32)));
            if (c & 4) b->hmask[L % 32] |= (uint8_t)(1 << (L / 32));
        }
    }
}
// Importance-weighted (quant_imp.c): per group the weighted scale search, d the best of 9 factors
// around max |s| / 32 by the total weighted error, each l the best of round(s / d) +- 1.
static void q3_k_imp_block(const float *x, const float *w, void *bv) {
    q3_k_block *b = (q3_k_block *)bv;
    int l[16], q[Q3K_QK];
    memset(b, 0, sizeof *b);
    qlm_imp_sym_super(x, w, 16, 16, -4, 3, -32, 31, 32.0f, &b->d, l, q);
    for (int j = 0; j < 16; j++) {
        const int u = l[j] + 32;
        b->scales[j % 8] |= (uint8_t)((u & 0xF) << (4 * (j / 8)));
        b->scales[8 + j % 4] |= (uint8_t)(((u >> 4) & 3) << (2 * (j / 4)));
    }
    for (int L = 0; L < Q3K_QK; L++) {
        const int c = q[L] + 4;
        b->qs[32 * (L / 128) + L % 32] |= (uint8_t)((c & 3) << (2 * ((L % 128) / 32)));
        if (c & 4) b->hmask[L % 32] |= (uint8_t)(1 << (L / 32));
    }
}
void qlm_q3_k_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) {
    qlm_imp_rows(q3_k_imp_block, Q3K_QK, sizeof(q3_k_block), x, imp, dst, n);
}
void qlm_q3_k_quantize_row(int32_t path, const float *x, void *dst, int64_t n) {
    (void)path;
    sb32_quantize_row(q3_k_block_scalar, sizeof(q3_k_block), x, dst, n);
}
void qlm_q3_k_dequantize_row(const void *src, float *y, int64_t n) {
    qlm_dequantize_ggml_blocks(QLM_GGML_Q3_K, Q3K_QK, sizeof(q3_k_block), src, y, n);
}

// ---- dots ------------------------------------------------------------------------------------------
int32_t qlm_q3_k_isum(const void *block, int j, const int8_t *a) {
    const q3_k_block *b = (const q3_k_block *)block;
    int32_t is = 0;
    for (int h = 0; h < 2; h++) {
        int32_t gs = 0;
        for (int i = 16 * h; i < 16 * h + 16; i++) gs += q3k_code(b, 32 * j + i) * (int32_t)a[i];
        is += gs * q3k_scale(b, 2 * j + h);
    }
    return is;
}
static float dot_q3_k_scalar1(int64_t n, const q3_k_block *w, const qlm_block_q8a *a) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    float s = 0.0f;
    for (int64_t g = 0; g < nb; g++) {
        const q3_k_block *b = w + g / 8;
        s += (qlm_h2f(b->d) * a[g].d) * (float)qlm_q3_k_isum(b, (int)(g % 8), a[g].qs);
    }
    return s;
}
SCALAR_DOTN(dotn_q3_k_scalar, dot_q3_k_scalar1, q3_k_block, qlm_block_q8a)
// The scalar row dot, for the q3_kx8 rows past the last group (rowgroup_sb.c).
void qlm_q3_k_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    dotn_q3_k_scalar(n, w, rs, act, out, nr);
}

#if QLM_X86
// Sub-block g = 32 consecutive weights: low bits = the 32 bytes qs[32 * (j / 4) ...] shifted by
// 2 * (j % 4), high bits = bit j of hmask[0..32); codes by the sign trick (|c| <= 4), lanes 0..3 times
// the first group's scale, 4..7 the second's (|lane| <= 4 * 4 * 127 * 32).
#define Q3K_SETUP const __m256i three = _mm256_set1_epi8(3); const __m256i four = _mm256_set1_epi8(4);
#define Q3K_SUB(P, g, k) {                                                                         \
        const q3_k_block *B = wb + (g) / 8;                                                        \
        const int j = (int)((g) % 8);                                                              \
        if (j == 0) PF((const char *)B + QLM_PF_DIST);                                             \
        const __m256i qv = _mm256_loadu_si256((const __m256i *)(B->qs + 32 * (j / 4)));           \
        const __m256i lo = _mm256_and_si256(_mm256_srl_epi16(qv, _mm_cvtsi32_si128(2 * (j % 4))), three); \
        const __m256i hm = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)B->hmask), _mm256_set1_epi8((char)(1 << j))); \
        const __m256i ws = _mm256_sub_epi8(lo, _mm256_and_si256(_mm256_cmpeq_epi8(hm, _mm256_setzero_si256()), four)); \
        const __m256i wab = _mm256_abs_epi8(ws);                                                   \
        const int s0 = q3k_scale(B, 2 * j), s1 = q3k_scale(B, 2 * j + 1);                          \
        const __m256i scv = _mm256_setr_epi32(s0, s0, s0, s0, s1, s1, s1, s1);                     \
        const float dw = SB32_H2F(B->d);                                                           \
        for (int t = 0; t < NT; t++) {                                                             \
            const qlm_block_q8a *ab = (const qlm_block_q8a *)(act + t * as) + (g);                 \
            const __m256i av = _mm256_loadu_si256((const __m256i *)ab->qs);                        \
            const __m256i is = _mm256_mullo_epi32(dot_us_##P(wab, _mm256_sign_epi8(av, ws)), scv); \
            acc[t][k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * ab->d), _mm256_cvtepi32_ps(is), acc[t][k]); \
        } }
SB32_FAMILY(q3_k, avx2, QLM_AVX2_TARGET, q3_k_block, Q3K_SETUP, Q3K_SUB, SB32_FIN)
SB32_FAMILY(q3_k, avx512, QLM_AVX512_TARGET, q3_k_block, Q3K_SETUP, Q3K_SUB, SB32_FIN)
#endif

const qlm_type_traits qlm_traits_q3_k = {
    .name = "q3_k", .block_size = Q3K_QK, .block_bytes = sizeof(q3_k_block), .is_quantized = 1,
    .act_type = QLM_ACT_Q8A, .row_group = 1, .code_bits = 3,
    .fp16_count = 1, .fp16_offsets = {offsetof(q3_k_block, d)},
    .row_size = qlm_q3_k_row_size, .quantize_row = qlm_q3_k_quantize_row, .dequantize_row = qlm_q3_k_dequantize_row,
    .quantize_row_imp = qlm_q3_k_quantize_row_imp,
    .whole_blocks = 1, .row_fallback = QLM_TYPE_IQ4_NL, // as llama.cpp falls back
    .act_row_size = qlm_act_size_q8a, .prepare_act = qlm_prepare_q8a,
    SB32_ROW_KERNELS(q3_k)
};
