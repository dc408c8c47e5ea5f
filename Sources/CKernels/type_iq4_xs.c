// iq4_xs: ggml's IQ4_XS 256-weight super-blocks byte for byte (docs/format.md), 136 bytes:
//   u16 d (fp16), u16 scales_h, u8 scales_l[4], u8 qs[128]
// Sub-block j (32 weights) has the 6-bit scale l_j = (nibble j of scales_l) | (bits 2j..2j+1 of
// scales_h) << 4, and weight i of it = d * (l_j - 32) * K[index], the indices in qs[16j..16j+16)
// in q4_0's nibble order and K the IQ4 codebook (qlm_iq4_levels). A row of n weights is
// ceil(n / 256) super-blocks (zero padded), so GGUF IQ4_XS rows pass through unchanged.
// Pairs with q8a activations: a sub-block is exactly one q8a block, so its integer sum
// (l_j - 32) * sum K[c] * a is exact in int32 and the float step per sub-block is q4_0's:
// acc += (d * d_a) * isum (SIMD: 8 int32 lanes, even/odd sub-block accumulators).
// The SIMD kernels are qlm_sb32.h's frame (dot, few-token, 1 x 4 tile: bit-identical); AVX2 and
// AVX-512 (maddubs vs dpbusd on the same int32 lanes) agree bit for bit too.
#include "qlm_sb32.h"
#include "qlm_pair512.h"
#include "qlm_ggml.h"

#pragma clang fp contract(off)

#define XS_QK 256
typedef struct { uint16_t d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[XS_QK / 2]; } iq4_xs_block;
_Static_assert(sizeof(iq4_xs_block) == 136, "iq4_xs block is 136 bytes (ggml block_iq4_xs)");

size_t qlm_iq4_xs_row_size(int64_t n) { return (size_t)((n + XS_QK - 1) / XS_QK) * sizeof(iq4_xs_block); }

// The signed sub-block scale l_j - 32 (-32..31).
QLM_INLINE int xs_scale(const iq4_xs_block *b, int j) {
    return (((b->scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((b->scales_h >> (2 * j)) & 3) << 4)) - 32;
}

// ---- quantizer (scalar on every path) --------------------------------------------------------------
// Per sub-block the best scale of either sign (the codebook is asymmetric: qlm_iq4_best_scale on x
// and on -x); d = the largest |scale| over 32 (negative scales reach -32 d, positive 31 d), fp16;
// each l_j the best of round(s_j / d) +- 1 by coding error; codes the nearest levels at d * l_j.
// With importance weights w (quantize_row_imp) every error is the weighted one, and d is also the
// best of 9 factors 0.9..1.1 of that rule by the super-block's total weighted error.
static float xs_signed_scale(const float *x, const float *w) {
    float nx[32];
    for (int i = 0; i < 32; i++) nx[i] = -x[i];
    const float sp = qlm_iq4_best_scale(x, w, 32), sn = -qlm_iq4_best_scale(nx, w, 32);
    return qlm_iq4_code_err(x, w, 32, sn, NULL) < qlm_iq4_code_err(x, w, 32, sp, NULL) ? sn : sp;
}
// Sub-block j's level l (-32..31) at super-scale d: the best of round(s / d) +- 1; *err its error.
static int xs_level(const float *x, const float *w, float d, float s, float *err) {
    int l = 0;
    float be = INFINITY;
    if (d != 0.0f) {
        const int l0 = (int)fminf(fmaxf(roundf(s / d), -32.0f), 31.0f);
        for (int c = l0 - 1; c <= l0 + 1; c++) {
            if (c < -32 || c > 31) continue;
            const float e = qlm_iq4_code_err(x, w, 32, d * (float)c, NULL);
            if (e < be) { be = e; l = c; }
        }
    }
    if (err) *err = be;
    return l;
}
static void iq4_xs_block_w(const float *x, const float *w, void *bv) {
    iq4_xs_block *b = (iq4_xs_block *)bv;
    float s[8], dmax = 0.0f;
    for (int j = 0; j < 8; j++) {
        s[j] = xs_signed_scale(x + 32 * j, w ? w + 32 * j : NULL);
        const float need = s[j] >= 0.0f ? s[j] / 31.0f : -s[j] / 32.0f;
        if (need > dmax) dmax = need;
    }
    b->d = qlm_f2h(dmax);
    if (w) {
        float be = INFINITY;
        for (int k = -4; k <= 4; k++) {
            const uint16_t cand = qlm_f2h(dmax * (1.0f + 0.025f * (float)k));
            const float dc = qlm_h2f(cand);
            if (!isfinite(dc)) continue;
            float tot = 0.0f, e;
            for (int j = 0; j < 8; j++) { xs_level(x + 32 * j, w + 32 * j, dc, s[j], &e); tot += e; }
            if (tot < be) { be = tot; b->d = cand; }
        }
    }
    const float d = qlm_h2f(b->d);
    b->scales_h = 0;
    memset(b->scales_l, 0, sizeof b->scales_l);
    for (int j = 0; j < 8; j++) {
        const float *wj = w ? w + 32 * j : NULL;
        const int l = xs_level(x + 32 * j, wj, d, s[j], NULL);
        uint8_t q[32];
        qlm_iq4_code_err(x + 32 * j, wj, 32, d * (float)l, q);
        for (int i = 0; i < 16; i++) b->qs[16 * j + i] = (uint8_t)(q[i] | (q[i + 16] << 4));
        const int u = l + 32;
        b->scales_l[j / 2] |= (uint8_t)((u & 0xF) << (4 * (j % 2)));
        b->scales_h |= (uint16_t)(((u >> 4) & 3) << (2 * j));
    }
}
static void iq4_xs_block_scalar(const float *x, void *bv) { iq4_xs_block_w(x, NULL, bv); }
void qlm_iq4_xs_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) {
    qlm_imp_rows(iq4_xs_block_w, XS_QK, sizeof(iq4_xs_block), x, imp, dst, n);
}
void qlm_iq4_xs_quantize_row(int32_t path, const float *x, void *dst, int64_t n) {
    (void)path;
    sb32_quantize_row(iq4_xs_block_scalar, sizeof(iq4_xs_block), x, dst, n);
}
void qlm_iq4_xs_dequantize_row(const void *src, float *y, int64_t n) {
    qlm_dequantize_ggml_blocks(QLM_GGML_IQ4_XS, XS_QK, sizeof(iq4_xs_block), src, y, n);
}

// ---- dots ------------------------------------------------------------------------------------------
int32_t qlm_iq4_xs_isum(const void *block, int j, const int8_t *a) {
    const iq4_xs_block *b = (const iq4_xs_block *)block;
    const uint8_t *qs = b->qs + 16 * j;
    int32_t is = 0;
    for (int i = 0; i < 16; i++) {
        is += (int32_t)qlm_iq4_levels[qs[i] & 0xF] * (int32_t)a[i];
        is += (int32_t)qlm_iq4_levels[qs[i] >> 4] * (int32_t)a[i + 16];
    }
    return is * xs_scale(b, j);
}
static float dot_iq4_xs_scalar1(int64_t n, const iq4_xs_block *w, const qlm_block_q8a *a) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    float s = 0.0f;
    for (int64_t g = 0; g < nb; g++) {
        const iq4_xs_block *b = w + g / 8;
        s += (qlm_h2f(b->d) * a[g].d) * (float)qlm_iq4_xs_isum(b, (int)(g % 8), a[g].qs);
    }
    return s;
}
SCALAR_DOTN(dotn_iq4_xs_scalar, dot_iq4_xs_scalar1, iq4_xs_block, qlm_block_q8a)
// The scalar row dot, for the iq4_xsx8 rows past the last group (rowgroup_sb.c).
void qlm_iq4_xs_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    dotn_iq4_xs_scalar(n, w, rs, act, out, nr);
}

#if QLM_X86
// Sub-block g: the int32 lanes are |K[c]| (u8) x sign(a, K[c]) (s8) summed in fours, times l - 32
// (|lane| <= 4 * 127 * 127 * 32 < 2^24: exact as float).
#define XS_SETUP const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qlm_iq4_levels));
#define XS_SUB(P, g, k) {                                                                          \
        const iq4_xs_block *B = wb + (g) / 8;                                                      \
        const int j = (int)((g) % 8);                                                              \
        if (j == 0) PF((const char *)B + QLM_PF_DIST);                                             \
        const __m256i wv = _mm256_shuffle_epi8(lut, unpack_nibbles_##P(B->qs + 16 * j));           \
        const __m256i wab = _mm256_abs_epi8(wv), lsv = _mm256_set1_epi32(xs_scale(B, j));          \
        const float dw = SB32_H2F(B->d);                                                           \
        for (int t = 0; t < NT; t++) {                                                             \
            const qlm_block_q8a *ab = (const qlm_block_q8a *)(act + t * as) + (g);                 \
            const __m256i av = _mm256_loadu_si256((const __m256i *)ab->qs);                        \
            const __m256i is = _mm256_mullo_epi32(dot_us_##P(wab, _mm256_sign_epi8(av, wv)), lsv); \
            acc[t][k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * ab->d), _mm256_cvtepi32_ps(is), acc[t][k]); \
        } }
SB32_FAMILY(iq4_xs, avx2, QLM_AVX2_TARGET, iq4_xs_block, XS_SETUP, XS_SUB, SB32_FIN)
SB32_FAMILY(iq4_xs, avx512, QLM_AVX512_TARGET, iq4_xs_block, XS_SETUP, XS_SUB, SB32_FIN)

// AVX-512 tile and few-token kernels, two sub-blocks (one pair of the same super-block) per
// register (qlm_pair512.h): the codebook values as signed codes, the exact sums times the
// sub-block scales l - 32 (IS), then XS_SUB's float step.
#define XS_P512_PAIR(wr, b)                                                                        \
    const iq4_xs_block *B_ = (wr) + (b) / 8;                                                       \
    const int j_ = (int)((b) % 8);                                                                 \
    const __m512i w = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qlm_iq4_levels)), \
                                          p512_nibbles(B_->qs + 16 * j_, B_->qs + 16 * j_ + 16));   \
    const __m512 dw = _mm512_set1_ps(SB32_H2F(B_->d));                                              \
    const __m512i ls = _mm512_inserti64x4(_mm512_set1_epi32(xs_scale(B_, j_)), _mm256_set1_epi32(xs_scale(B_, j_ + 1)), 1);
#define XS_P512_TAIL(wr, b)                                                                        \
    const iq4_xs_block *B_ = (wr) + (b) / 8;                                                       \
    const int j_ = (int)((b) % 8);                                                                 \
    const __m256i w = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qlm_iq4_levels)), \
                                          unpack_nibbles_avx512(B_->qs + 16 * j_));                \
    const __m256 dw = _mm256_set1_ps(SB32_H2F(B_->d));                                              \
    const __m256i ls = _mm256_set1_epi32(xs_scale(B_, j_));
#define XS_P512_IS(x) _mm512_mullo_epi32(x, ls)
#define XS_P512_TIS(x) _mm256_mullo_epi32(x, ls)
#define XS_P512_PF(wr, b) ((wr) + (b) / 8)
P512_FAMILY(iq4_xs_p, iq4_xs_block, 4, XS_P512_PAIR, XS_P512_TAIL, P512_NOMIN, P512_NOMIN, P512_SUMNOMIN, XS_P512_IS, XS_P512_TIS, XS_P512_PF)
#endif

const qlm_type_traits qlm_traits_iq4_xs = {
    .name = "iq4_xs", .block_size = XS_QK, .block_bytes = sizeof(iq4_xs_block), .is_quantized = 1,
    .act_type = QLM_ACT_Q8A, .row_group = 1, .code_bits = 4,
    .fp16_count = 1, .fp16_offsets = {offsetof(iq4_xs_block, d)},
    .row_size = qlm_iq4_xs_row_size, .quantize_row = qlm_iq4_xs_quantize_row, .dequantize_row = qlm_iq4_xs_dequantize_row,
    .quantize_row_imp = qlm_iq4_xs_quantize_row_imp,
    .whole_blocks = 1, .row_fallback = QLM_TYPE_IQ4_NL, // as llama.cpp falls back
    .act_row_size = qlm_act_size_q8a, .prepare_act = qlm_prepare_q8a,
#if QLM_X86
    .dotn = {[QLM_PATH_SCALAR] = dotn_iq4_xs_scalar, [QLM_PATH_AVX2] = dotn_iq4_xs_avx2, [QLM_PATH_AVX512] = dotn_iq4_xs_avx512},
    .tile = {[QLM_PATH_AVX2] = {tile_iq4_xs_avx2, 1, 4}, [QLM_PATH_AVX512] = {tile_iq4_xs_p_avx512z, 4, P512_NT}},
    .few = {[QLM_PATH_AVX2] = few_iq4_xs_avx2, [QLM_PATH_AVX512] = few_iq4_xs_p_avx512},
    P512_PACK
#else
    SB32_ROW_KERNELS(iq4_xs)
#endif
};
