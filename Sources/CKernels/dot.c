// Dot products of weight rows with prepared activation rows, per CPU path.
//
// Integer formats: per 32-block the integer dot is exact in int32; the float accumulation is
// sum += (d_w * d_a) * isum (Q4_1: plus m_w * s_a, kept in a separate scalar sum).
//  - scalar: one float accumulator, block order.
//  - AVX2 / AVX-512: the block's isum is kept as 8 int32 lanes (lane i = elements 4i..4i+3),
//    each lane accumulated in float with FMA (even and odd blocks in two accumulators); the
//    lanes are summed at the end in a fixed order. AVX2 builds the lanes with maddubs+madd, AVX-512 with VNNI dpbusd; the lanes are the
//    same integers, so both paths give identical results. Exception: q4_0 on AVX-512 works on 4
//    blocks per step with 16 lanes (k_q4_0_avx512, below), a different float order.
// Multi-row kernels (nr rows sharing the activation loads) do exactly the per-row arithmetic
// of the single-row kernel, so matvec/matmul results are bit-identical to qlm_vec_dot.
#include "qlm_internal.h"

#pragma clang fp contract(off)

// ---- scalar ------------------------------------------------------------------------------
static float dot_f32_scalar1(int64_t n, const float *w, const float *a) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += w[i] * a[i];
    return s;
}
static float dot_f16_scalar1(int64_t n, const uint16_t *w, const float *a) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += qlm_h2f(w[i]) * a[i];
    return s;
}
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
static float dot_q4_1_scalar1(int64_t n, const qlm_block_q4_1 *w, const qlm_block_q8a *a) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    float s = 0.0f, sm = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int32_t is = 0;
        for (int j = 0; j < 16; j++) {
            is += (int32_t)(w[b].qs[j] & 0xF) * (int32_t)a[b].qs[j];
            is += (int32_t)(w[b].qs[j] >> 4) * (int32_t)a[b].qs[j + 16];
        }
        s += (qlm_h2f(w[b].d) * a[b].d) * (float)is;
        sm += qlm_h2f(w[b].m) * a[b].s;
    }
    return s + sm;
}

#define SCALAR_DOTN(name, fn, wt, at)                                                            \
    static void name(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) { \
        for (int r = 0; r < nr; r++) out[r] = fn(n, (const wt *)((const char *)w + r * rs), (const at *)act); \
    }
SCALAR_DOTN(dotn_f32_scalar, dot_f32_scalar1, float, float)
SCALAR_DOTN(dotn_f16_scalar, dot_f16_scalar1, uint16_t, float)
SCALAR_DOTN(dotn_q8_0_scalar, dot_q8_0_scalar1, qlm_block_q8_0, qlm_block_q8a)
SCALAR_DOTN(dotn_q4_0_scalar, dot_q4_0_scalar1, qlm_block_q4_0, qlm_block_q8a)
SCALAR_DOTN(dotn_q4_1_scalar, dot_q4_1_scalar1, qlm_block_q4_1, qlm_block_q8a)

#if QLM_X86
// ---- shared helpers ------------------------------------------------------------------------
// Fixed-order horizontal sum of 8 floats (same on both SIMD paths).
#define HSUM8_BODY(v)                                                        \
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1); \
    lo = _mm_add_ps(lo, hi);                                                 \
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));                              \
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));                                \
    return _mm_cvtss_f32(lo);
QLM_AVX2_TARGET QLM_INLINE float hsum8_avx2(__m256 v) { HSUM8_BODY(v) }
QLM_AVX512_TARGET QLM_INLINE float hsum8_avx512(__m256 v) { HSUM8_BODY(v) }

// fp16 at p converted and broadcast to 8 lanes (vpbroadcastw + vcvtph2ps).
QLM_AVX2_TARGET QLM_INLINE __m256 bh2f_avx2(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_set1_epi16((short)*p));
}
QLM_AVX512_TARGET QLM_INLINE __m256 bh2f_avx512(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_set1_epi16((short)*p));
}

// 16 bytes of nibbles -> 32 codes: low half = low nibbles (elements 0..15), high half = high
// nibbles (16..31). Broadcast load, shift the upper 128 bits right by 4, mask.
#define UNPACK_NIBBLES_BODY                                                                        \
    const __m256i x = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));           \
    return _mm256_and_si256(_mm256_srlv_epi64(x, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0F));
QLM_AVX2_TARGET QLM_INLINE __m256i unpack_nibbles_avx2(const uint8_t *qs) { UNPACK_NIBBLES_BODY }
QLM_AVX512_TARGET QLM_INLINE __m256i unpack_nibbles_avx512(const uint8_t *qs) { UNPACK_NIBBLES_BODY }

// int32 lanes of (u8 x s8) products, lane i = bytes 4i..4i+3.
QLM_AVX2_TARGET QLM_INLINE __m256i dot_us_avx2(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
QLM_AVX512_TARGET QLM_INLINE __m256i dot_us_avx512(__m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
}

#ifndef QLM_PF_DIST
#define QLM_PF_DIST 512
#endif
#define PF(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)

// Specialize the kernels on a constant row count (no per-row branches in the block loop).
#define NR_DISPATCH(F, P, TGT)                                                                        \
TGT static void dotn_##F##_##P(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) { \
    switch (nr) {                                                                                 \
    case 4: k_##F##_##P(n, w, rs, act, out, 4); break;                                            \
    case 3: k_##F##_##P(n, w, rs, act, out, 3); break;                                            \
    case 2: k_##F##_##P(n, w, rs, act, out, 2); break;                                            \
    default: k_##F##_##P(n, w, rs, act, out, 1); break;                                           \
    }                                                                                             \
}

// ---- quantized kernels, stamped for both paths ----------------------------------------------
// Each row keeps two float accumulators: even blocks go to acc0, odd blocks to acc1 (two
// independent FMA chains, so a single streaming row is not bound by FMA latency); the row's
// result is hsum8(acc0 + acc1) (+ sm0 + sm1 for Q4_1). Up to 4 rows share the activation loads.
#define QK_BEGIN(T)                                                                               \
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;                                                  \
    const qlm_block_q8a *a = (const qlm_block_q8a *)act;                                          \
    const T *wr[4];                                                                               \
    __m256 acc[4][2];                                                                             \
    float sm[4][2] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}};                                            \
    (void)sm;                                                                                     \
    for (int r = 0; r < 4; r++) {                                                                 \
        wr[r] = (const T *)((const char *)w + (r < nr ? r : 0) * rs);                             \
        acc[r][0] = _mm256_setzero_ps(); acc[r][1] = _mm256_setzero_ps();                         \
    }
// Block loop unrolled by two so the accumulator index is a constant (registers, not stack).
#define QK_LOOP(BODY)                                                                             \
    int64_t b = 0;                                                                                \
    for (; b + 1 < nb; b += 2) { BODY(b, 0) BODY(b + 1, 1) }                                      \
    if (b < nb) { BODY(b, 0) }
#define QK_END(P)                                                                                 \
    for (int r = 0; r < nr; r++)                                                                  \
        out[r] = hsum8_##P(_mm256_add_ps(acc[r][0], acc[r][1])) + (sm[r][0] + sm[r][1]);

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
#define Q4_1_BODY(P, bb, k) {                                                                     \
        const __m256i av = _mm256_loadu_si256((const __m256i *)a[bb].qs);                         \
        const __m256 da = _mm256_set1_ps(a[bb].d);                                                \
        const float sa = a[bb].s;                                                                 \
        for (int r = 0; r < nr; r++) {                                                            \
            PF((const char *)(wr[r] + bb) + QLM_PF_DIST);                                         \
            const __m256i is = dot_us_##P(unpack_nibbles_##P(wr[r][bb].qs), av);                  \
            /* d and m are adjacent: one 32-bit load, one conversion -> [d, m, 0, 0] */           \
            uint32_t dm32;                                                                        \
            memcpy(&dm32, &wr[r][bb].d, 4);                                                       \
            const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dm32));                         \
            const __m256 sc = _mm256_mul_ps(_mm256_broadcastss_ps(dm), da);                       \
            acc[r][k] = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(is), acc[r][k]);                   \
            sm[r][k] += _mm_cvtss_f32(_mm_movehdup_ps(dm)) * sa;                                  \
        } }
#define Q8_0_AVX2(bb, k) Q8_0_BODY(avx2, bb, k)
#define Q8_0_AVX512(bb, k) Q8_0_BODY(avx512, bb, k)
#define Q4_0_AVX2(bb, k) Q4_0_BODY(avx2, bb, k)
#define Q4_1_AVX2(bb, k) Q4_1_BODY(avx2, bb, k)
#define Q4_1_AVX512(bb, k) Q4_1_BODY(avx512, bb, k)

#define QUANT_KERNELS(P, PU, TGT)                                                                 \
TGT QLM_INLINE void k_q8_0_##P(int64_t n, const void *w, size_t rs, const void *act, float *out, const int nr) { \
    QK_BEGIN(qlm_block_q8_0) QK_LOOP(Q8_0_##PU) QK_END(P)                                         \
}                                                                                                 \
TGT QLM_INLINE void k_q4_1_##P(int64_t n, const void *w, size_t rs, const void *act, float *out, const int nr) { \
    QK_BEGIN(qlm_block_q4_1) QK_LOOP(Q4_1_##PU) QK_END(P)                                         \
}                                                                                                 \
NR_DISPATCH(q8_0, P, TGT)                                                                         \
NR_DISPATCH(q4_1, P, TGT)

QUANT_KERNELS(avx2, AVX2, QLM_AVX2_TARGET)
QUANT_KERNELS(avx512, AVX512, QLM_AVX512_TARGET)
// q4_0 on AVX2 (AVX-512: k_q4_0_avx512 below).
QLM_AVX2_TARGET QLM_INLINE void k_q4_0_avx2(int64_t n, const void *w, size_t rs, const void *act, float *out, const int nr) {
    const __m256i eight = _mm256_set1_epi8(8);
    QK_BEGIN(qlm_block_q4_0) QK_LOOP(Q4_0_AVX2) QK_END(avx2)
}
NR_DISPATCH(q4_0, avx2, QLM_AVX2_TARGET)

// ---- float kernels -----------------------------------------------------------------------
// AVX2: two 8-wide accumulators per row over 16-element steps, scalar tail added after the
// fixed-order reduction.
QLM_AVX2_TARGET static void dotn_f32_avx2(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    const float *x = (const float *)act;
    for (int r = 0; r < nr; r++) {
        const float *wr = (const float *)((const char *)w + r * rs);
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i), _mm256_loadu_ps(x + i), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        }
        float s = hsum8_avx2(_mm256_add_ps(a0, a1));
        for (; i < n; i++) s += wr[i] * x[i];
        out[r] = s;
    }
}
QLM_AVX2_TARGET static void dotn_f16_avx2(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    const float *x = (const float *)act;
    for (int r = 0; r < nr; r++) {
        const uint16_t *wr = (const uint16_t *)((const char *)w + r * rs);
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
            a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wr + i))), _mm256_loadu_ps(x + i), a0);
            a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wr + i + 8))), _mm256_loadu_ps(x + i + 8), a1);
        }
        float s = hsum8_avx2(_mm256_add_ps(a0, a1));
        for (; i < n; i++) s += _cvtsh_ss(wr[i]) * x[i];
        out[r] = s;
    }
}
// AVX-512: 16-wide, up to 4 rows share the activation loads; two accumulators per row
// (elements [32i, 32i+16) and [32i+16, 32i+32)), a leftover 16 goes to the first, the masked
// tail to the second; result = hsum(acc0 + acc1).
QLM_AVX512_TARGET QLM_INLINE float hsum16_avx512(__m512 v) {
    return hsum8_avx512(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}
#define FLOAT_KERNEL_AVX512(NAME, WT, LOADW, LOADW_MASKED)                                         \
QLM_AVX512_TARGET QLM_INLINE void k_##NAME(int64_t n, const void *w, size_t rs, const void *act, float *out, const int nr) { \
    const float *x = (const float *)act;                                                           \
    const WT *wr[4];                                                                               \
    __m512 acc[4][2];                                                                              \
    for (int r = 0; r < 4; r++) {                                                                  \
        wr[r] = (const WT *)((const char *)w + (r < nr ? r : 0) * rs);                             \
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();                                               \
    }                                                                                              \
    int64_t i = 0;                                                                                 \
    for (; i + 32 <= n; i += 32) {                                                                 \
        const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);               \
        for (int r = 0; r < nr; r++) {                                                             \
            acc[r][0] = _mm512_fmadd_ps(LOADW(wr[r] + i), x0, acc[r][0]);                          \
            acc[r][1] = _mm512_fmadd_ps(LOADW(wr[r] + i + 16), x1, acc[r][1]);                     \
        }                                                                                          \
    }                                                                                              \
    if (i + 16 <= n) {                                                                             \
        const __m512 x0 = _mm512_loadu_ps(x + i);                                                  \
        for (int r = 0; r < nr; r++) acc[r][0] = _mm512_fmadd_ps(LOADW(wr[r] + i), x0, acc[r][0]); \
        i += 16;                                                                                   \
    }                                                                                              \
    if (i < n) {                                                                                   \
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                                      \
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);                                         \
        for (int r = 0; r < nr; r++) acc[r][1] = _mm512_fmadd_ps(LOADW_MASKED(m, wr[r] + i), xv, acc[r][1]); \
    }                                                                                              \
    for (int r = 0; r < nr; r++) out[r] = hsum16_avx512(_mm512_add_ps(acc[r][0], acc[r][1]));      \
}
#define LOAD_F32(p) _mm512_loadu_ps(p)
#define LOAD_F32_M(m, p) _mm512_maskz_loadu_ps(m, p)
#define LOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define LOAD_F16_M(m, p) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p))
FLOAT_KERNEL_AVX512(f32_avx512, float, LOAD_F32, LOAD_F32_M)
FLOAT_KERNEL_AVX512(f16_avx512, uint16_t, LOAD_F16, LOAD_F16_M)
NR_DISPATCH(f32, avx512, QLM_AVX512_TARGET)
NR_DISPATCH(f16, avx512, QLM_AVX512_TARGET)

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
// (`scripts/products_vs_read.sh --base e89cc6f q4_0`, docs/benchmarks.md): 2.44-2.53 -> 2.32-2.38
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
#endif

#if QLM_X86
// ---- AVX-512 register tiles for prefill: 2 weight rows x 4 tokens ---------------------------
// Per block the integer lanes are the same integers as in k_q8_0/k_q4_1 (exact), the scale is
// the same vector product bh2f(d_w) * set1(d_a), and the FMA goes into the same even/odd
// accumulator, so each output is bit-identical to the dot kernel's. What changes is the reuse:
// weight work (load, sign correction, scale) is done once per row and shared by 4 tokens, and
// activation work once per token and shared by 2 rows.
//  q8_0: a is made unsigned (a ^ 0x80 = a + 128) and the row's 128 * sum(w) lanes are
//        subtracted up front: dpbusd(-128*sum(w), a + 128, w) = sum(a * w) per lane.
//  (q4_0 has its own tile, after the q8_0 one.)
#define TILE_NR 2
#define TILE_NT 4
#define TILE_BODY(PREP_ROW, PREP_TOK, PAIR, bb, k)                                                \
    {                                                                                              \
        __m256i wq[TILE_NR], wc[TILE_NR];                                                          \
        __m256 dw[TILE_NR];                                                                        \
        for (int r = 0; r < TILE_NR; r++) { PREP_ROW(r, bb) }                                     \
        for (int t = 0; t < TILE_NT; t++) {                                                        \
            const qlm_block_q8a *ab = (const qlm_block_q8a *)(act + t * as) + (bb);                \
            PREP_TOK(ab)                                                                           \
            const __m256 da = _mm256_set1_ps(ab->d);                                               \
            for (int r = 0; r < TILE_NR; r++) {                                                    \
                const __m256i is = PAIR(r);                                                        \
                acc[r][t][k] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], da), _mm256_cvtepi32_ps(is), acc[r][t][k]); \
            }                                                                                      \
        }                                                                                          \
    }

#define TILE_FN(NAME, WT, PREP_ROW, PREP_TOK, PAIR, SETUP)                                         \
QLM_AVX512_TARGET static void NAME(int64_t n, const char *w, size_t rs, const char *act, size_t as,  \
                                   float *Y, int64_t ldy) {                                        \
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;                                                  \
    const WT *wr[TILE_NR];                                                                         \
    for (int r = 0; r < TILE_NR; r++) wr[r] = (const WT *)(w + r * rs);                            \
    __m256 acc[TILE_NR][TILE_NT][2];                                                               \
    for (int r = 0; r < TILE_NR; r++)                                                              \
        for (int t = 0; t < TILE_NT; t++) acc[r][t][0] = acc[r][t][1] = _mm256_setzero_ps();       \
    SETUP                                                                                          \
    int64_t b = 0;                                                                                 \
    for (; b + 1 < nb; b += 2) { TILE_BODY(PREP_ROW, PREP_TOK, PAIR, b, 0) TILE_BODY(PREP_ROW, PREP_TOK, PAIR, b + 1, 1) } \
    if (b < nb) { TILE_BODY(PREP_ROW, PREP_TOK, PAIR, b, 0) }                                      \
    for (int t = 0; t < TILE_NT; t++)                                                              \
        for (int r = 0; r < TILE_NR; r++)                                                          \
            Y[t * ldy + r] = hsum8_avx512(_mm256_add_ps(acc[r][t][0], acc[r][t][1]));              \
}

#define Q80_ROW(r, bb)                                                                             \
    wq[r] = _mm256_loadu_si256((const __m256i *)wr[r][bb].qs);                                     \
    wc[r] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), c80, wq[r])); \
    dw[r] = bh2f_avx512(&wr[r][bb].d);
#define Q80_TOK(ab) const __m256i au = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(ab)->qs), c80);
#define Q80_PAIR(r) _mm256_dpbusd_epi32(wc[r], au, wq[r])
TILE_FN(tile_q8_0_avx512, qlm_block_q8_0, Q80_ROW, Q80_TOK, Q80_PAIR, const __m256i c80 = _mm256_set1_epi8((char)0x80);)

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
QLM_AVX512_TARGET static void tile_q4_0_avx512(int64_t n, const char *w, size_t rs, const char *act, size_t as,
                                               float *Y, int64_t ldy) {
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

// q4_1: 8-lane blocks as k_q4_1 (codes unpacked as on AVX2, no -8 offset), plus the min term m_w * s_a. The min terms of the 4 tokens
// sit in the 4 lanes of one __m128 per (row, parity): lane t does exactly the scalar kernel's
// `sm += m_w * s_a` (separate multiply and add), so the results stay bit-identical.
QLM_AVX512_TARGET static void tile_q4_1_avx512(int64_t n, const char *w, size_t rs, const char *act, size_t as,
                                               float *Y, int64_t ldy) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    const qlm_block_q4_1 *wr[TILE_NR];
    for (int r = 0; r < TILE_NR; r++) wr[r] = (const qlm_block_q4_1 *)(w + r * rs);
    __m256 acc[TILE_NR][TILE_NT][2];
    __m128 sm[TILE_NR][2];
    for (int r = 0; r < TILE_NR; r++) {
        sm[r][0] = sm[r][1] = _mm_setzero_ps();
        for (int t = 0; t < TILE_NT; t++) acc[r][t][0] = acc[r][t][1] = _mm256_setzero_ps();
    }
#define Q41_TILE_BODY(bb, k)                                                                       \
    {                                                                                              \
        __m256i wq[TILE_NR];                                                                       \
        __m256 dw[TILE_NR];                                                                        \
        for (int r = 0; r < TILE_NR; r++) {                                                        \
            wq[r] = unpack_nibbles_avx512(wr[r][bb].qs);                                           \
            dw[r] = bh2f_avx512(&wr[r][bb].d);                                                     \
        }                                                                                          \
        const qlm_block_q8a *ab0 = (const qlm_block_q8a *)act + (bb);                              \
        const qlm_block_q8a *ab1 = (const qlm_block_q8a *)(act + as) + (bb);                       \
        const qlm_block_q8a *ab2 = (const qlm_block_q8a *)(act + 2 * as) + (bb);                   \
        const qlm_block_q8a *ab3 = (const qlm_block_q8a *)(act + 3 * as) + (bb);                   \
        const __m128 sa = _mm_setr_ps(ab0->s, ab1->s, ab2->s, ab3->s);                             \
        for (int r = 0; r < TILE_NR; r++)                                                          \
            sm[r][k] = _mm_add_ps(sm[r][k], _mm_mul_ps(_mm256_castps256_ps128(bh2f_avx512(&wr[r][bb].m)), sa)); \
        for (int t = 0; t < TILE_NT; t++) {                                                        \
            const qlm_block_q8a *ab = (const qlm_block_q8a *)(act + t * as) + (bb);                \
            const __m256i av = _mm256_loadu_si256((const __m256i *)ab->qs);                        \
            const __m256 da = _mm256_set1_ps(ab->d);                                               \
            for (int r = 0; r < TILE_NR; r++) {                                                    \
                const __m256i is = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wq[r], av);         \
                acc[r][t][k] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], da), _mm256_cvtepi32_ps(is), acc[r][t][k]); \
            }                                                                                      \
        }                                                                                          \
    }
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) { Q41_TILE_BODY(b, 0) Q41_TILE_BODY(b + 1, 1) }
    if (b < nb) { Q41_TILE_BODY(b, 0) }
#undef Q41_TILE_BODY
    for (int r = 0; r < TILE_NR; r++) {
        float s0[4], s1[4];
        _mm_storeu_ps(s0, sm[r][0]);
        _mm_storeu_ps(s1, sm[r][1]);
        for (int t = 0; t < TILE_NT; t++)
            Y[t * ldy + r] = hsum8_avx512(_mm256_add_ps(acc[r][t][0], acc[r][t][1])) + (s0[t] + s1[t]);
    }
}

// AVX2 tiles: 1 weight row x 4 tokens (16 ymm registers: 8 accumulators + row state). The
// integer lanes are those of k_q8_0_avx2 / k_q4_0_avx2 (sign trick / -8*sum(a) offset), so the
// results are bit-identical to the AVX2 dot kernel.
#define TILE2_NT 4
#define TILE2_BODY(PREP_ROW, PREP_TOK, PAIR, bb, k)                                               \
    {                                                                                              \
        PREP_ROW(bb)                                                                               \
        const __m256 dw = bh2f_avx2(&wr[bb].d);                                                    \
        for (int t = 0; t < TILE2_NT; t++) {                                                       \
            const qlm_block_q8a *ab = (const qlm_block_q8a *)(act + t * as) + (bb);                \
            const __m256i av = _mm256_loadu_si256((const __m256i *)ab->qs);                        \
            const __m256i is = PAIR;                                                               \
            acc[t][k] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(ab->d)), _mm256_cvtepi32_ps(is), acc[t][k]); \
        }                                                                                          \
    }
#define TILE2_FN(NAME, WT, PREP_ROW, PAIR)                                                         \
QLM_AVX2_TARGET static void NAME(int64_t n, const char *w, const char *act, size_t as, float *Y, int64_t ldy) { \
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;                                                  \
    const WT *wr = (const WT *)w;                                                                  \
    const __m256i ones = _mm256_set1_epi16(1), eight = _mm256_set1_epi8(8);                        \
    (void)eight;                                                                                   \
    __m256 acc[TILE2_NT][2];                                                                       \
    for (int t = 0; t < TILE2_NT; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();                \
    int64_t b = 0;                                                                                 \
    for (; b + 1 < nb; b += 2) { TILE2_BODY(PREP_ROW, , PAIR, b, 0) TILE2_BODY(PREP_ROW, , PAIR, b + 1, 1) } \
    if (b < nb) { TILE2_BODY(PREP_ROW, , PAIR, b, 0) }                                             \
    for (int t = 0; t < TILE2_NT; t++) Y[t * ldy] = hsum8_avx2(_mm256_add_ps(acc[t][0], acc[t][1])); \
}
#define Q80_ROW2(bb)                                                                               \
    const __m256i wq = _mm256_loadu_si256((const __m256i *)wr[bb].qs);                             \
    const __m256i wa = _mm256_abs_epi8(wq);
#define Q80_PAIR2 _mm256_madd_epi16(_mm256_maddubs_epi16(wa, _mm256_sign_epi8(av, wq)), ones)
TILE2_FN(tile_q8_0_avx2, qlm_block_q8_0, Q80_ROW2, Q80_PAIR2)
#define Q40_ROW2(bb) const __m256i wq = unpack_nibbles_avx2(wr[bb].qs);
#define Q40_PAIR2 _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wq, av), ones), \
                                   _mm256_madd_epi16(_mm256_maddubs_epi16(eight, av), ones))
TILE2_FN(tile_q4_0_avx2, qlm_block_q4_0, Q40_ROW2, Q40_PAIR2)
#endif

int qlm_matmul_tile(int32_t path, int32_t type, int64_t n, const void *w, size_t rs, const void *act, size_t as,
                    float *Y, int64_t ldy, int *nr, int *nt) {
#if QLM_X86
    if (path == QLM_PATH_AVX512 && (type == QLM_TYPE_Q8_0 || type == QLM_TYPE_Q4_0 || type == QLM_TYPE_Q4_1)) {
        if (Y) {
            if (type == QLM_TYPE_Q8_0) tile_q8_0_avx512(n, (const char *)w, rs, (const char *)act, as, Y, ldy);
            else if (type == QLM_TYPE_Q4_0) tile_q4_0_avx512(n, (const char *)w, rs, (const char *)act, as, Y, ldy);
            else tile_q4_1_avx512(n, (const char *)w, rs, (const char *)act, as, Y, ldy);
        }
        *nr = TILE_NR;
        *nt = TILE_NT;
        return 1;
    }
    if (path == QLM_PATH_AVX2 && (type == QLM_TYPE_Q8_0 || type == QLM_TYPE_Q4_0)) {
        if (Y) {
            if (type == QLM_TYPE_Q8_0) tile_q8_0_avx2(n, (const char *)w, (const char *)act, as, Y, ldy);
            else tile_q4_0_avx2(n, (const char *)w, (const char *)act, as, Y, ldy);
        }
        (void)rs;
        *nr = 1;
        *nt = TILE2_NT;
        return 1;
    }
#endif
    (void)path; (void)type; (void)n; (void)w; (void)rs; (void)act; (void)as; (void)Y; (void)ldy; (void)nr; (void)nt;
    return 0;
}

qlm_dotn_fn qlm_get_dotn(int32_t path, int32_t type) {
#if QLM_X86
    if (path == QLM_PATH_AVX512) {
        switch (type) {
        case QLM_TYPE_F32: return dotn_f32_avx512;
        case QLM_TYPE_F16: return dotn_f16_avx512;
        case QLM_TYPE_Q8_0: return dotn_q8_0_avx512;
        case QLM_TYPE_Q4_0: return dotn_q4_0_avx512;
        case QLM_TYPE_Q4_1: return dotn_q4_1_avx512;
        case QLM_TYPE_IQ4_K16: return qlm_kq_dotn_k16_avx512;
        case QLM_TYPE_IQ4_K32: return qlm_kq_dotn_k32_avx512;
        }
    } else if (path == QLM_PATH_AVX2) {
        switch (type) {
        case QLM_TYPE_F32: return dotn_f32_avx2;
        case QLM_TYPE_F16: return dotn_f16_avx2;
        case QLM_TYPE_Q8_0: return dotn_q8_0_avx2;
        case QLM_TYPE_Q4_0: return dotn_q4_0_avx2;
        case QLM_TYPE_Q4_1: return dotn_q4_1_avx2;
        case QLM_TYPE_IQ4_K16: return qlm_kq_dotn_k16_avx2;
        case QLM_TYPE_IQ4_K32: return qlm_kq_dotn_k32_avx2;
        }
    }
#endif
    (void)path;
    switch (type) {
    case QLM_TYPE_F32: return dotn_f32_scalar;
    case QLM_TYPE_F16: return dotn_f16_scalar;
    case QLM_TYPE_Q8_0: return dotn_q8_0_scalar;
    case QLM_TYPE_Q4_0: return dotn_q4_0_scalar;
    case QLM_TYPE_Q4_1: return dotn_q4_1_scalar;
    case QLM_TYPE_IQ4_K16: return qlm_kq_dotn_k16_scalar;
    case QLM_TYPE_IQ4_K32: return qlm_kq_dotn_k32_scalar;
    case QLM_TYPE_Q4_0X8: return dotn_q4_0_scalar; // a lone row is a q4_0 row, dotted exactly (every path; q4x8.c)
    }
    return NULL;
}

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

void qlm_q4quad_build(void *act, int64_t nb) {
    const size_t end = (size_t)nb * sizeof(qlm_block_q8a); // zero the gap up to the quads
    memset((char *)act + end, 0, qlm_q4quad_offset(nb) - end);
#if QLM_X86
    if (qlm_active_path() != QLM_PATH_SCALAR) { q4quad_build_avx2(act, nb); return; }
#endif
    q4quad_build_scalar(act, nb);
}

float qlm_vec_dot(int32_t wtype, int64_t n, const void *wrow, const void *act) {
    qlm_dotn_fn f = qlm_get_dotn(qlm_active_path(), wtype);
    if (!f || n <= 0) return 0.0f;
    float out;
    f(n, wrow, 0, act, &out, 1);
    return out;
}
