// q4_0: 32-weight blocks, fp16 scale d = max / -8 (ggml convention), 4-bit codes with offset 8
// (docs/format.md). Pairs with q8a activations, to which the activation row appends the same
// codes regrouped for the AVX-512 kernel (qlm_q4quad, below). Vectorized quantizers are
// bit-identical to the scalar one. The q4_0x8 row (rowgroup.c) reuses this file's row functions.
#include "qlm_simd.h"

#pragma clang fp contract(off)

size_t qlm_q4_0_row_size(int64_t n) { return (size_t)((n + QLM_QK - 1) / QLM_QK) * sizeof(qlm_block_q4_0); }

// ---- activations: q8a blocks, then the regrouped copy ------------------------------------------
// A q4_0 activation row is its q8a blocks, then, from byte qlm_q4quad_offset(nb), one
// qlm_q4quad per 4 blocks (zero past the last block): the same codes regrouped for the AVX-512
// q4_0 kernels, built once per activation row instead of once per weight row.
typedef struct {
    int8_t lo[64];    // lo[16k + i] = qs[i] of block 4q+k (i < 16)
    int8_t hi[64];    // hi[16k + i] = qs[16 + i] of block 4q+k
    int32_t corr[16]; // corr[4k + j] = -8 * (sum of qs[4j..4j+3] and qs[16+4j..16+4j+3]) of block 4q+k
    float d[16];      // d[4k + j] = d of block 4q+k
} qlm_q4quad;
QLM_INLINE size_t qlm_q4quad_offset(int64_t nb) { return ((size_t)nb * sizeof(qlm_block_q8a) + 63) & ~(size_t)63; }

// ---- quantizers ------------------------------------------------------------------------------
static void q4_0_block_scalar(const float *x, void *bv) {
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


#if QLM_X86
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
#endif

void qlm_q4_0_quantize_row(int32_t path, const float *x, void *dst, int64_t n) {
    qlm_block_fn f = q4_0_block_scalar;
#if QLM_X86
    if (path == QLM_PATH_AVX512) f = q4_0_block_avx512;
    else if (path == QLM_PATH_AVX2) f = q4_0_block_avx2;
#endif
    (void)path;
    qlm_quantize_blocks(f, sizeof(qlm_block_q4_0), x, dst, n);
}

void qlm_q4_0_dequantize_row(const void *src, float *y, int64_t n) {
    const qlm_block_q4_0 *b = (const qlm_block_q4_0 *)src;
    for (int64_t i = 0; i < n; i++) {
        const qlm_block_q4_0 *bk = &b[i / QLM_QK];
        const int j = (int)(i % QLM_QK);
        const int q = j < 16 ? (bk->qs[j] & 0xF) : (bk->qs[j - 16] >> 4);
        y[i] = qlm_h2f(bk->d) * (float)(q - 8);
    }
}

// ---- dots --------------------------------------------------------------------------------------
static float dot_q4_0_scalar1(int64_t n, const qlm_block_q4_0 *w, const qlm_block_q8a *a) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    float s = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int32_t is = 0;
        for (int j = 0; j < 16; j++) {
            is += ((int32_t)(w[b].qs[j] & 0xF) - 8) * (int32_t)a[b].qs[j];
            is += ((int32_t)(w[b].qs[j] >> 4) - 8) * (int32_t)a[b].qs[j + 16];
        }
        s += (qlm_h2f(w[b].d) * a[b].d) * (float)is;
    }
    return s;
}
void qlm_q4_0_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    for (int r = 0; r < nr; r++) out[r] = dot_q4_0_scalar1(n, (const qlm_block_q4_0 *)((const char *)w + r * rs), (const qlm_block_q8a *)act);
}

#if QLM_X86
// AVX2: the 8-lane block kernel (qlm_simd.h's QK_* frame).
#define Q4_0_BODY(P, bb, k) {                                                                     \
        const __m256i av = _mm256_loadu_si256((const __m256i *)a[bb].qs);                         \
        const __m256i s8 = dot_us_##P(eight, av); /* 8 * sum(a) per lane */                       \
        const __m256 da = _mm256_set1_ps(a[bb].d);                                                \
        for (int r = 0; r < nr; r++) {                                                            \
            PF((const char *)(wr[r] + bb) + QLM_PF_DIST);                                         \
            const __m256i is = _mm256_sub_epi32(dot_us_##P(unpack_nibbles_##P(wr[r][bb].qs), av), s8); \
            const __m256 sc = _mm256_mul_ps(bh2f_##P(&wr[r][bb].d), da);                          \
            acc[r][k] = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(is), acc[r][k]);                   \
        } }
#define Q4_0_AVX2(bb, k) Q4_0_BODY(avx2, bb, k)
QLM_AVX2_TARGET QLM_INLINE void k_q4_0_avx2(int64_t n, const void *w, size_t rs, const void *act, float *out, const int nr) {
    const __m256i eight = _mm256_set1_epi8(8);
    QK_BEGIN(qlm_block_q4_0) QK_LOOP(Q4_0_AVX2) QK_END(avx2)
}
NR_DISPATCH(q4_0, avx2, QLM_AVX2_TARGET)

// ---- q4_0 on AVX-512: four blocks per 512-bit step --------------------------------------------
// The 8-lane block kernel above (still used on AVX2) is compute-bound on AVX-512 machines: per
// 32 weights it unpacks 16 bytes, forms the -8 * sum(a) correction from the activation, converts
// and broadcasts one fp16 scale and folds 8 int32 lanes into float. Measured (Zen 4 EPYC, 2 vCPU,
// GPT-2-small decode matrices, alternating in one process): 14.8 GB/s per thread from L2, 0.60
// of a one-thread read of the same bytes from memory.
// Here one step covers 4 blocks (72 weight bytes, two 64-byte loads): one word permute gathers
// the 4 x 16 code bytes into one register (block k in bytes 16k..16k+15), another gathers the 4
// scales (each repeated 4 times, one vcvtph2ps for all); the activation side comes regrouped
// from qlm_prepare_act (qlm_q4quad: low/high-nibble codes, the exact -8 * sum corrections as the
// dpbusd start value, the 4 scales repeated), so per weight row and 4 blocks the work is
// 2 loads, 2 permutes, 3 logic ops, 2 dpbusd, 1 conversion each way and 1 mul + 1 FMA.
// Measured as above (a scratch micro-benchmark): 25 GB/s per thread from L2 (q8_0's row
// kernel: 22); the prefill tile (1 thread, T = 64) went 1.5-1.8x faster. Whole decode products,
// this kernel and the two chains below against the one-block kernel
// (`scripts/bench/products_vs_read.sh --base e89cc6f q4_0`, docs/benchmarks.md): 2.44-2.53 -> 2.32-2.38
// ms per token, 0.76 -> 0.79 of a read of the same bytes on 2 threads; still short of the memory
// bound that q4_0x8 reaches.
// Tried without gain: GFNI for the high nibbles (+1-2% from L2), halving the float lanes by
// adding lane pairs of two steps (0%), the last 8 step bytes by a 16-byte load (-4%), rows
// sharing activation loads (QLM_MV_NR 2 / 4: +16% / +31% from L2 but 0.61-0.65 / 0.55-0.58 vs 0.78-0.86 of
// the read on 2 threads, the interleaved streams again).
// Arithmetic: lane 4k+j of a step is block k's exact integer over elements 4j..4j+3 and
// 16+4j..16+4j+3 (minus 8 * their activation sum); acc[q & 1] = fma(d_w * d_a, (float)lane,
// acc[q & 1]) over the steps q in order, result = hsum16(acc[0] + acc[1]). Two chains instead of
// one: +3-5% on the whole decode products from memory (scratch A/B in one process, 2 threads;
// `run bench` tg128 351 -> 403 tok/s, docs/benchmarks.md). A partial last step loads only its blocks (the rest reads as 0,
// against zero activation entries: fma(0, 0, acc) = acc). The prefill tile below does the same
// per (row, token), so matvec, matmul and vec_dot agree bit for bit.
static const int16_t q4quad_qs_idx[32] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17,  // words of the
                                          19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31,           // 72-byte step;
                                          32 + 28, 32 + 29, 32 + 30, 32 + 31};                      // L1 = bytes 8..71
static const int16_t q4quad_d_idx[32] = {0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27};

#define Q4QUAD_SETUP                                                                              \
    const __m512i m4 = _mm512_set1_epi8(0x0F);                                                    \
    const __m512i iq = _mm512_loadu_si512(q4quad_qs_idx), id = _mm512_loadu_si512(q4quad_d_idx);
// Weight side of one step: L0 = bytes 0..63, L1 = bytes 8..71 of the step.
#define Q4QUAD_W(L0, L1, lo, hi, dw) {                                                            \
        const __m512i x_ = _mm512_permutex2var_epi16(L0, iq, L1);                                 \
        lo = _mm512_and_si512(x_, m4);                                                            \
        hi = _mm512_and_si512(_mm512_srli_epi16(x_, 4), m4);                                      \
        dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(id, L0)));           \
    }
#define Q4QUAD_A(aq)                                                                              \
    const __m512i alo = _mm512_loadu_si512((aq)->lo), ahi = _mm512_loadu_si512((aq)->hi);         \
    const __m512i corr = _mm512_loadu_si512((aq)->corr);                                          \
    const __m512 da = _mm512_loadu_ps((aq)->d);
#define Q4QUAD_FMA(acc, lo, hi, dw)                                                               \
    acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, da),                                                  \
                          _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_dpbusd_epi32(corr, lo, alo), hi, ahi)), acc);
// Loads of step q of a row; the partial last step (rem = 1..3 blocks) masks the rest to zero.
#define Q4QUAD_LOAD(p, L0, L1, q, nq, rem)                                                        \
    if ((q) < (nq)) { L0 = _mm512_loadu_si512(p); L1 = _mm512_loadu_si512((p) + 8); }             \
    else {                                                                                        \
        L0 = _mm512_maskz_loadu_epi8(((__mmask64)1 << (18 * (rem))) - 1, p);                      \
        L1 = _mm512_maskz_loadu_epi8(((__mmask64)1 << (18 * (rem) - 8)) - 1, (p) + 8);            \
    }

// Software prefetch 256 bytes (3.5 steps) ahead, one per step. Measured (GPT-2-small decode
// matrices, alternating in one process, 4 rounds): 0.65-0.69 -> 0.73-0.75 of a read of the same
// bytes on 1 thread, 0.65-0.83 -> 0.71-0.88 on 2 threads; 128, 192, 384, 512 and 1024 bytes and
// two prefetches per step gained less, an L2 prefetch (T1) 2-4 KB ahead lost.
#define Q4QUAD_PF 256
// Step q of a row accumulates into acc[r][q & 1] (two FMA chains; result hsum16(acc0 + acc1)).
#define Q4QUAD_STEP(q, P) {                                                                       \
        Q4QUAD_A(aq + (q))                                                                        \
        for (int r = 0; r < nr; r++) {                                                            \
            const char *p = wr[r] + 72 * (q);                                                     \
            _mm_prefetch(p + Q4QUAD_PF, _MM_HINT_T0);                                             \
            const __m512i L0 = _mm512_loadu_si512(p), L1 = _mm512_loadu_si512(p + 8);            \
            __m512i lo, hi;                                                                       \
            __m512 dw;                                                                            \
            Q4QUAD_W(L0, L1, lo, hi, dw)                                                          \
            Q4QUAD_FMA(acc[r][P], lo, hi, dw)                                                     \
        } }
QLM_AVX512_TARGET QLM_INLINE void k_q4_0_avx512(int64_t n, const void *w, size_t rs, const void *act, float *out, const int nr) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK, nq = nb / 4, rem = nb % 4, steps = (nb + 3) / 4;
    const qlm_q4quad *aq = (const qlm_q4quad *)((const char *)act + qlm_q4quad_offset(nb));
    const char *wr[4];
    __m512 acc[4][2];
    for (int r = 0; r < 4; r++) {
        wr[r] = (const char *)w + (r < nr ? r : 0) * rs;
        acc[r][0] = _mm512_setzero_ps();
        acc[r][1] = _mm512_setzero_ps();
    }
    Q4QUAD_SETUP
    int64_t q = 0;
    for (; q + 1 < nq; q += 2) { Q4QUAD_STEP(q, 0) Q4QUAD_STEP(q + 1, 1) }
    if (q < nq) { Q4QUAD_STEP(q, 0) q++; }
    for (; q < steps; q++) { // the partial last step (at most one), into acc[r][q & 1]
        Q4QUAD_A(aq + q)
        for (int r = 0; r < nr; r++) {
            const char *p = wr[r] + 72 * q;
            __m512i L0, L1, lo, hi;
            __m512 dw;
            Q4QUAD_LOAD(p, L0, L1, q, nq, rem)
            Q4QUAD_W(L0, L1, lo, hi, dw)
            if (q & 1) { Q4QUAD_FMA(acc[r][1], lo, hi, dw) } else { Q4QUAD_FMA(acc[r][0], lo, hi, dw) }
        }
    }
    for (int r = 0; r < nr; r++) out[r] = hsum16_avx512(_mm512_add_ps(acc[r][0], acc[r][1]));
}
NR_DISPATCH(q4_0, avx512, QLM_AVX512_TARGET)

// Regrouping (AVX2 and AVX-512 paths): 16-byte copies, and the corrections as
// madd(maddubs(8, codes), 1) negated (exact integers, no saturation: 2 * 8 * 127 per pair), the
// same as the scalar sums. Adds 0.07 us (n = 768) / 0.3 us (n = 3072) per activation row to the
// q8a quantization's 0.35 / 1.4 us (Zen 4, AVX-512 path, best of 50 x 100 calls).
QLM_AVX2_TARGET static void q4quad_build_avx2(void *act, int64_t nb) {
    const qlm_block_q8a *a = (const qlm_block_q8a *)act;
    qlm_q4quad *q = (qlm_q4quad *)((char *)act + qlm_q4quad_offset(nb));
    const __m256i eight = _mm256_set1_epi8(8), ones = _mm256_set1_epi16(1);
    for (int64_t g = 0; g < (nb + 3) / 4; g++) {
        if (4 * g + 4 > nb) memset(&q[g], 0, sizeof(qlm_q4quad));
        for (int k = 0; k < 4 && 4 * g + k < nb; k++) {
            const qlm_block_q8a *b = &a[4 * g + k];
            _mm_storeu_si128((__m128i *)(q[g].lo + 16 * k), _mm_loadu_si128((const __m128i *)b->qs));
            _mm_storeu_si128((__m128i *)(q[g].hi + 16 * k), _mm_loadu_si128((const __m128i *)(b->qs + 16)));
            _mm_storeu_ps(q[g].d + 4 * k, _mm_set1_ps(b->d));
        }
        for (int h = 0; h < 2; h++) { // lanes 8h..8h+7 = blocks 2h, 2h+1
            const __m256i sl = _mm256_madd_epi16(_mm256_maddubs_epi16(eight, _mm256_loadu_si256((const __m256i *)(q[g].lo + 32 * h))), ones);
            const __m256i sh = _mm256_madd_epi16(_mm256_maddubs_epi16(eight, _mm256_loadu_si256((const __m256i *)(q[g].hi + 32 * h))), ones);
            _mm256_storeu_si256((__m256i *)(q[g].corr + 8 * h), _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_add_epi32(sl, sh)));
        }
    }
}

// ---- prefill tiles ----------------------------------------------------------------------------
// q4_0: the 4-block steps of k_q4_0_avx512 (same loads, same per-(row, token) arithmetic, so
// bit-identical to it); the weight side of a step (codes, scales) is done once per row and
// shared by the 4 tokens, the activation loads once per token and shared by the 2 rows.
#define Q4TILE_STEP(q, P) {                                                                        \
        __m512i lo[TILE_NR], hi[TILE_NR];                                                         \
        __m512 dw[TILE_NR];                                                                       \
        for (int r = 0; r < TILE_NR; r++) {                                                       \
            const char *p = w + r * rs + 72 * (q);                                                \
            __m512i L0, L1;                                                                       \
            Q4QUAD_LOAD(p, L0, L1, (q), nq, rem)                                                  \
            Q4QUAD_W(L0, L1, lo[r], hi[r], dw[r])                                                 \
        }                                                                                         \
        for (int t = 0; t < TILE_NT; t++) {                                                       \
            Q4QUAD_A((const qlm_q4quad *)(act + t * as + off) + (q))                              \
            for (int r = 0; r < TILE_NR; r++) { Q4QUAD_FMA(acc[r][t][P], lo[r], hi[r], dw[r]) }   \
        } }
QLM_AVX512_TARGET static void tile_q4_0_avx512(int64_t n, const void *w_, size_t rs, const void *act_, size_t as,
                                               float *Y, int64_t ldy) {
    const char *w = (const char *)w_, *act = (const char *)act_;
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK, nq = nb / 4, rem = nb % 4, steps = (nb + 3) / 4;
    const size_t off = qlm_q4quad_offset(nb);
    __m512 acc[TILE_NR][TILE_NT][2];
    for (int r = 0; r < TILE_NR; r++)
        for (int t = 0; t < TILE_NT; t++) acc[r][t][0] = acc[r][t][1] = _mm512_setzero_ps();
    Q4QUAD_SETUP
    int64_t q = 0;
    for (; q + 1 < steps; q += 2) { Q4TILE_STEP(q, 0) Q4TILE_STEP(q + 1, 1) }
    if (q < steps) Q4TILE_STEP(q, 0)
    for (int t = 0; t < TILE_NT; t++)
        for (int r = 0; r < TILE_NR; r++) Y[t * ldy + r] = hsum16_avx512(_mm512_add_ps(acc[r][t][0], acc[r][t][1]));
}
// AVX2: the few-token kernel and 1 row x 4 tokens tile (qlm_simd.h FEW2_FAMILY), the lanes of
// k_q4_0_avx2. Per row block the codes become signed (c - 8, in [-8, 7]) and their magnitudes;
// per token the q8_0 sign trick, |c - 8| * sign(a, c - 8) summed in fours, is exactly
// dot(c, a) - 8 * sum(a) in each int32 lane (no saturation: 2 * 8 * 127 < 32767), so the lanes
// equal the dot kernel's with three integer ops per token instead of five.
#define Q40_ROW2(bb)                                                                               \
    const __m256i wsg = _mm256_sub_epi8(unpack_nibbles_avx2(wr[bb].qs), eight);                    \
    const __m256i wab = _mm256_abs_epi8(wsg);
#define Q40_PAIR2 _mm256_madd_epi16(_mm256_maddubs_epi16(wab, _mm256_sign_epi8(av, wsg)), ones)
FEW2_FAMILY(few_q4_0_avx2, qlm_block_q4_0, Q40_ROW2, Q40_PAIR2, FEW2_NONE)
#endif

// q4_0 activation quads (qlm_q4quad): the same bytes on every path.
static void q4quad_build_scalar(void *act, int64_t nb) {
    const qlm_block_q8a *a = (const qlm_block_q8a *)act;
    qlm_q4quad *q = (qlm_q4quad *)((char *)act + qlm_q4quad_offset(nb));
    for (int64_t g = 0; g < (nb + 3) / 4; g++) {
        for (int k = 0; k < 4; k++) {
            const int64_t b = 4 * g + k;
            for (int i = 0; i < 16; i++) {
                q[g].lo[16 * k + i] = b < nb ? a[b].qs[i] : 0;
                q[g].hi[16 * k + i] = b < nb ? a[b].qs[16 + i] : 0;
            }
            for (int j = 0; j < 4; j++) {
                int32_t s = 0;
                for (int e = 0; e < 4; e++) s += q[g].lo[16 * k + 4 * j + e] + q[g].hi[16 * k + 4 * j + e];
                q[g].corr[4 * k + j] = -8 * s;
                q[g].d[4 * k + j] = b < nb ? a[b].d : 0.0f;
            }
        }
    }
}

static void q4quad_build(int32_t path, void *act, int64_t nb) {
    const size_t end = (size_t)nb * sizeof(qlm_block_q8a); // zero the gap up to the quads
    memset((char *)act + end, 0, qlm_q4quad_offset(nb) - end);
#if QLM_X86
    if (path != QLM_PATH_SCALAR) { q4quad_build_avx2(act, nb); return; }
#endif
    (void)path;
    q4quad_build_scalar(act, nb);
}

static size_t q4_0_act_row_size(int64_t n) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    return qlm_q4quad_offset(nb) + (size_t)((nb + 3) / 4) * sizeof(qlm_q4quad);
}
static void q4_0_prepare_act(int32_t path, const float *x, void *act, int64_t n) {
    qlm_prepare_q8a(path, x, act, n);
    q4quad_build(path, act, (n + QLM_QK - 1) / QLM_QK);
}

// ---- GPTQ (gptq.c): qlm_gptq_blocks with the q4_0 code rule (codes -8..7, stored +8).
static void q4_0_gptq_pack(void *blk, const int *codes) {
    for (int j = 0; j < 16; j++) ((qlm_block_q4_0 *)blk)->qs[j] = (uint8_t)((codes[j] + 8) | ((codes[j + 16] + 8) << 4));
}
void qlm_q4_0_gptq_row(float *w, int64_t n, const double *U, void *dst) {
    qlm_gptq_blocks(w, n, U, dst, sizeof(qlm_block_q4_0), offsetof(qlm_block_q4_0, d), q4_0_block_scalar, -8.0f, 7.0f,
                    q4_0_gptq_pack);
}
void qlm_q4_0_gptq_rows(float *W, int64_t rows, int64_t n, const double *U, void *dst) {
    qlm_gptq_blocks_rows(W, rows, n, U, dst, sizeof(qlm_block_q4_0), offsetof(qlm_block_q4_0, d), q4_0_block_scalar, -8.0f, 7.0f,
                         q4_0_gptq_pack);
}

// ---- table row -------------------------------------------------------------------------------
const qlm_type_traits qlm_traits_q4_0 = {
    .name = "q4_0", .block_size = QLM_QK, .block_bytes = sizeof(qlm_block_q4_0), .is_quantized = 1,
    .act_type = QLM_ACT_Q8A, .row_group = 1, .code_bits = 4,
    .fp16_count = 1, .fp16_offsets = {offsetof(qlm_block_q4_0, d)},
    .row_size = qlm_q4_0_row_size, .quantize_row = qlm_q4_0_quantize_row, .dequantize_row = qlm_q4_0_dequantize_row,
    .act_row_size = q4_0_act_row_size, .prepare_act = q4_0_prepare_act,
    .dotn = {[QLM_PATH_SCALAR] = qlm_q4_0_dotn_scalar, [QLM_PATH_AVX2] = QLM_IF_X86(dotn_q4_0_avx2),
             [QLM_PATH_AVX512] = QLM_IF_X86(dotn_q4_0_avx512)},
    .tile = {[QLM_PATH_AVX2] = {QLM_IF_X86(few_q4_0_avx2_tile), 1, FEW2_NT},
             [QLM_PATH_AVX512] = {QLM_IF_X86(tile_q4_0_avx512), TILE_NR, TILE_NT}},
    .few = {[QLM_PATH_AVX2] = QLM_IF_X86(few_q4_0_avx2)},
    .gptq_row = qlm_q4_0_gptq_row, .quantize_row_imp = qlm_q4_0_quantize_row_imp, .gptq_rows = qlm_q4_0_gptq_rows,
};
