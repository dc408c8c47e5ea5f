// q8_0: 32-weight blocks, fp16 scale d = absmax / 127, int8 codes (docs/format.md). Pairs with
// q8a activations. Vectorized quantizers are bit-identical to the scalar one; the AVX2 and
// AVX-512 dot kernels give identical results (same int32 lanes, same float order), see dot.c.
#include "qlm_simd.h"

#pragma clang fp contract(off)

size_t qlm_q8_0_row_size(int64_t n) { return (size_t)((n + QLM_QK - 1) / QLM_QK) * sizeof(qlm_block_q8_0); }

// ---- quantizers ------------------------------------------------------------------------------
static void q8_0_block_scalar(const float *x, void *bv) {
    qlm_block_q8_0 *b = (qlm_block_q8_0 *)bv;
    float amax = 0.0f;
    for (int j = 0; j < QLM_QK; j++) { float a = fabsf(x[j]); if (a > amax) amax = a; }
    const float d = amax / 127.0f;
    b->d = qlm_f2h(d);
    for (int j = 0; j < QLM_QK; j++) b->qs[j] = (int8_t)q8_code(x[j], d);
}


#if QLM_X86
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


QLM_AVX2_TARGET static void q8_0_block_avx2(const float *x, void *bv) {
    qlm_block_q8_0 *b = (qlm_block_q8_0 *)bv;
    const float amax = amax_avx2(x);
    const float d = amax / 127.0f;
    b->d = qlm_f2h(d);
    __m256i q[4];
    q8_codes_avx2(x, d, q);
    store_i8x32(b->qs, q[0], q[1], q[2], q[3]);
}

#endif

void qlm_q8_0_quantize_row(int32_t path, const float *x, void *dst, int64_t n) {
    qlm_block_fn f = q8_0_block_scalar;
#if QLM_X86
    if (path == QLM_PATH_AVX512) f = q8_0_block_avx512;
    else if (path == QLM_PATH_AVX2) f = q8_0_block_avx2;
#endif
    (void)path;
    qlm_quantize_blocks(f, sizeof(qlm_block_q8_0), x, dst, n);
}

void qlm_q8_0_dequantize_row(const void *src, float *y, int64_t n) {
    const qlm_block_q8_0 *b = (const qlm_block_q8_0 *)src;
    for (int64_t i = 0; i < n; i++) {
        const qlm_block_q8_0 *bk = &b[i / QLM_QK];
        y[i] = qlm_h2f(bk->d) * (float)bk->qs[i % QLM_QK];
    }
}

// ---- dots --------------------------------------------------------------------------------------
static float dot_q8_0_scalar1(int64_t n, const qlm_block_q8_0 *w, const qlm_block_q8a *a) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    float s = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int32_t is = 0;
        for (int j = 0; j < QLM_QK; j++) is += (int32_t)w[b].qs[j] * (int32_t)a[b].qs[j];
        s += (qlm_h2f(w[b].d) * a[b].d) * (float)is;
    }
    return s;
}
SCALAR_DOTN(dotn_q8_0_scalar, dot_q8_0_scalar1, qlm_block_q8_0, qlm_block_q8a)
void qlm_q8_0_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    dotn_q8_0_scalar(n, w, rs, act, out, nr);
}

#if QLM_X86
#define Q8_0_BODY(P, bb, k) {                                                                     \
        const __m256i av = _mm256_loadu_si256((const __m256i *)a[bb].qs);                         \
        const __m256 da = _mm256_set1_ps(a[bb].d);                                                \
        for (int r = 0; r < nr; r++) {                                                            \
            PF((const char *)(wr[r] + bb) + QLM_PF_DIST);                                         \
            const __m256i wv = _mm256_loadu_si256((const __m256i *)wr[r][bb].qs);                 \
            const __m256i is = dot_us_##P(_mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv));         \
            const __m256 sc = _mm256_mul_ps(bh2f_##P(&wr[r][bb].d), da);                          \
            acc[r][k] = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(is), acc[r][k]);                   \
        } }
#define Q8_0_AVX2(bb, k) Q8_0_BODY(avx2, bb, k)
#define Q8_0_AVX512(bb, k) Q8_0_BODY(avx512, bb, k)
#define Q8_0_KERNEL(P, PU, TGT)                                                                   \
TGT QLM_INLINE void k_q8_0_##P(int64_t n, const void *w, size_t rs, const void *act, float *out, const int nr) { \
    QK_BEGIN(qlm_block_q8_0) QK_LOOP(Q8_0_##PU) QK_END(P)                                         \
}                                                                                                 \
NR_DISPATCH(q8_0, P, TGT)
Q8_0_KERNEL(avx2, AVX2, QLM_AVX2_TARGET)
Q8_0_KERNEL(avx512, AVX512, QLM_AVX512_TARGET)

// ---- prefill tile and few-token kernel (AVX-512) on packed activations ---------------------------
// Packed activation row ("q8p", qlm_matmul makes it from the q8a row): per pair of blocks 2p, 2p+1,
// 128 bytes: the 64 codes + 128 (a ^ 0x80, unsigned) and 16 floats, the block scales d[2p] x 8 then
// d[2p+1] x 8 (an odd last block: its half, the rest zero). Each register then holds an even block
// in its low half and the odd block after it in the high half, i.e. the dot kernel's acc[r][0] and
// acc[r][1] side by side. Per lane the integers (a + 128 against w, the dpbusd started at
// -128 * sum(w): sum(a * w) exactly), the scale product bh2f(d_w) * d_a and the FMA are the dot
// kernel's, and the result is hsum8(low + high): every output is bit-identical to k_q8_0_avx512's.
#define Q8P_PAIR 128
static size_t q8p_size(int64_t n) { return (size_t)((n + 2 * QLM_QK - 1) / (2 * QLM_QK)) * Q8P_PAIR; }
QLM_AVX512_TARGET static void q8p_pack(const void *act, int64_t n, void *packed) {
    qlm_pack_q8a_pairs(act, n, packed, Q8P_PAIR, 0);
}
// Weight pair state: codes, -128 * sum(w) per lane, the two scales.
#define Q8P_W(wr, b, wq, wc, dw)                                                                   \
    const __m512i wq = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(wr)[b].qs)), \
                                          _mm256_loadu_si256((const __m256i *)(wr)[(b) + 1].qs), 1); \
    const __m512i wc = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), c80, wq)); \
    const __m512 dw = _mm512_insertf32x8(_mm512_castps256_ps512(bh2f_avx512(&(wr)[b].d)), bh2f_avx512(&(wr)[(b) + 1].d), 1);
#define Q8P_STEP(acc, wq, wc, dw, pp)                                                              \
    acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_load_ps((const float *)((pp) + 64))),           \
                          _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(wc, _mm512_load_si512((const void *)(pp)), wq)), acc);
// A last even block: the low halves only (acc[r][0] of the dot kernel).
#define Q8P_TAIL(acc, wr, b, pp)                                                                   \
    {                                                                                              \
        const __m256i wq = _mm256_loadu_si256((const __m256i *)(wr)[b].qs);                        \
        const __m256i wc = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), wq)); \
        const __m256i is = _mm256_dpbusd_epi32(wc, _mm256_load_si256((const __m256i *)(pp)), wq);  \
        const __m256 lo = _mm256_fmadd_ps(_mm256_mul_ps(bh2f_avx512(&(wr)[b].d), _mm256_load_ps((const float *)((pp) + 64))), \
                                          _mm256_cvtepi32_ps(is), _mm512_castps512_ps256(acc));    \
        acc = _mm512_insertf32x8(acc, lo, 0);                                                      \
    }
#define Q8P_SUM(acc) hsum8_avx512(_mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1)))

// Prefill tile: 4 rows x 4 tokens, 4 x 4 outputs sharing each weight and token load.
#define Q8Z_NR 4
#define Q8Z_NT 4
QLM_AVX512_TARGET static void tile_q8_0_avx512z(int64_t n, const void *w_, size_t rs, const void *act_, size_t as,
                                                float *Y, int64_t ldy) {
    const char *w = (const char *)w_, *act = (const char *)act_;
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    const qlm_block_q8_0 *wr[Q8Z_NR];
    for (int r = 0; r < Q8Z_NR; r++) wr[r] = (const qlm_block_q8_0 *)(w + r * rs);
    const __m512i c80 = _mm512_set1_epi8((char)0x80);
    __m512 acc[Q8Z_NR][Q8Z_NT];
    for (int r = 0; r < Q8Z_NR; r++)
        for (int t = 0; t < Q8Z_NT; t++) acc[r][t] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        const char *pp = act + b / 2 * Q8P_PAIR;
        for (int r = 0; r < Q8Z_NR; r++) {
            Q8P_W(wr[r], b, wq, wc, dw)
            for (int t = 0; t < Q8Z_NT; t++) Q8P_STEP(acc[r][t], wq, wc, dw, pp + t * as)
        }
    }
    if (b < nb)
        for (int r = 0; r < Q8Z_NR; r++)
            for (int t = 0; t < Q8Z_NT; t++) Q8P_TAIL(acc[r][t], wr[r], b, act + t * as + b / 2 * Q8P_PAIR)
    for (int t = 0; t < Q8Z_NT; t++)
        for (int r = 0; r < Q8Z_NR; r++) Y[t * ldy + r] = Q8P_SUM(acc[r][t]);
}

// Few-token kernel: one weight row at a time, i.e. one contiguous weight stream the hardware
// prefetcher follows (four interleaved rows reach about half the bandwidth, see matmul.c), each
// weight pair loaded once for all nt tokens.
#define Q8F_FN(NT)                                                                                 \
QLM_AVX512_TARGET static void few_q8_0_avx512_##NT(int64_t n, const void *w_, const void *act_, size_t as, float *Y, int64_t ldy) { \
    const qlm_block_q8_0 *wr = (const qlm_block_q8_0 *)w_;                                         \
    const char *act = (const char *)act_;                                                          \
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;                                                  \
    const __m512i c80 = _mm512_set1_epi8((char)0x80);                                              \
    __m512 acc[NT];                                                                                \
    for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();                                     \
    int64_t b = 0;                                                                                 \
    for (; b + 1 < nb; b += 2) {                                                                   \
        PF((const char *)(wr + b) + QLM_PF_DIST);                                                  \
        Q8P_W(wr, b, wq, wc, dw)                                                                   \
        const char *pp = act + b / 2 * Q8P_PAIR;                                                   \
        for (int t = 0; t < NT; t++) Q8P_STEP(acc[t], wq, wc, dw, pp + t * as)                     \
    }                                                                                              \
    if (b < nb)                                                                                    \
        for (int t = 0; t < NT; t++) Q8P_TAIL(acc[t], wr, b, act + t * as + b / 2 * Q8P_PAIR)      \
    for (int t = 0; t < NT; t++) Y[t * ldy] = Q8P_SUM(acc[t]);                                     \
}
Q8F_FN(1) Q8F_FN(2) Q8F_FN(3) Q8F_FN(4) Q8F_FN(5) Q8F_FN(6) Q8F_FN(7) Q8F_FN(8)
FEW_DISPATCH(few_q8_0_avx512, QLM_AVX512_TARGET)

#define Q80_ROW2(bb)                                                                               \
    const __m256i wq = _mm256_loadu_si256((const __m256i *)wr[bb].qs);                             \
    const __m256i wa = _mm256_abs_epi8(wq);
#define Q80_PAIR2 _mm256_madd_epi16(_mm256_maddubs_epi16(wa, _mm256_sign_epi8(av, wq)), ones)
FEW2_FAMILY(few_q8_0_avx2, qlm_block_q8_0, Q80_ROW2, Q80_PAIR2, FEW2_NONE)
#endif

// ---- GPTQ (gptq.c): block scale chosen by the quantizer at the block's first column from the
// current weights, then each column coded with that scale and its error pushed on.
static void q8_0_gptq_pack(void *blk, const int *codes) {
    for (int j = 0; j < QLM_QK; j++) ((qlm_block_q8_0 *)blk)->qs[j] = (int8_t)codes[j];
}
void qlm_q8_0_gptq_row(float *w, int64_t n, const double *U, void *dst) {
    qlm_gptq_blocks(w, n, U, dst, sizeof(qlm_block_q8_0), offsetof(qlm_block_q8_0, d), q8_0_block_scalar, -127.0f, 127.0f,
                    q8_0_gptq_pack);
}
void qlm_q8_0_gptq_rows(float *W, int64_t rows, int64_t n, const double *U, void *dst) {
    qlm_gptq_blocks_rows(W, rows, n, U, dst, sizeof(qlm_block_q8_0), offsetof(qlm_block_q8_0, d), q8_0_block_scalar, -127.0f, 127.0f,
                         q8_0_gptq_pack);
}

// ---- table row -------------------------------------------------------------------------------
const qlm_type_traits qlm_traits_q8_0 = {
    .name = "q8_0", .block_size = QLM_QK, .block_bytes = sizeof(qlm_block_q8_0), .is_quantized = 1,
    .act_type = QLM_ACT_Q8A, .row_group = 1, .code_bits = 8,
    .fp16_count = 1, .fp16_offsets = {offsetof(qlm_block_q8_0, d)},
    .row_size = qlm_q8_0_row_size, .quantize_row = qlm_q8_0_quantize_row, .dequantize_row = qlm_q8_0_dequantize_row,
    .act_row_size = qlm_act_size_q8a, .prepare_act = qlm_prepare_q8a,
    .dotn = {[QLM_PATH_SCALAR] = dotn_q8_0_scalar, [QLM_PATH_AVX2] = QLM_IF_X86(dotn_q8_0_avx2),
             [QLM_PATH_AVX512] = QLM_IF_X86(dotn_q8_0_avx512)},
    .tile = {[QLM_PATH_AVX2] = {QLM_IF_X86(few_q8_0_avx2_tile), 1, FEW2_NT},
             [QLM_PATH_AVX512] = {QLM_IF_X86(tile_q8_0_avx512z), Q8Z_NR, Q8Z_NT}},
    .few = {[QLM_PATH_AVX2] = QLM_IF_X86(few_q8_0_avx2), [QLM_PATH_AVX512] = QLM_IF_X86(few_q8_0_avx512)},
    .pack = {[QLM_PATH_AVX512] = {QLM_IF_X86(q8p_pack), QLM_IF_X86(q8p_size)}},
    .gptq_row = qlm_q8_0_gptq_row, .quantize_row_imp = qlm_q8_0_quantize_row_imp, .gptq_rows = qlm_q8_0_gptq_rows,
};
