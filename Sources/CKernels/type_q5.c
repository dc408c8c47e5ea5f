// q5_0 and q5_1: ggml's 5-bit 32-weight blocks, byte for byte (docs/format.md), so GGUF Q5_0 /
// Q5_1 tensors pass through `convert --type keep` unchanged. Pair with q8a activations.
//   q5_0: fp16 d, qh[4], qs[16]; weight j = d * (q_j - 16)
//   q5_1: fp16 d, fp16 m, qh[4], qs[16]; weight j = d * q_j + m
// with q_j = low nibble of qs[j] (j < 16) or high nibble of qs[j - 16], plus bit j of the
// little-endian 32-bit qh as its fifth bit (value 16).
// Products: per block the integer sum over (q - 16) * a (q5_0) or q * a (q5_1) is exact in
// int32 on every path; the float steps are q4_0's (q5_0) and q4_1's (q5_1, with the min term
// m * s_a), so the SIMD kernels have the same even/odd accumulators and fixed-order reduction.
// AVX2 and AVX-512 dot kernels, the few-token kernels and the prefill tiles agree bit for bit
// (their int32 lanes are the same sums, their float steps the same operations).
#include "qlm_pair512.h"
#include "qlm_ggml.h"

#pragma clang fp contract(off)

typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QLM_QK / 2]; } q5_0_block;
typedef struct { uint16_t d; uint16_t m; uint8_t qh[4]; uint8_t qs[QLM_QK / 2]; } q5_1_block;
_Static_assert(sizeof(q5_0_block) == 22, "q5_0 block is 22 bytes (ggml block_q5_0)");
_Static_assert(sizeof(q5_1_block) == 24, "q5_1 block is 24 bytes (ggml block_q5_1)");

size_t qlm_q5_0_row_size(int64_t n) { return (size_t)((n + QLM_QK - 1) / QLM_QK) * sizeof(q5_0_block); }
size_t qlm_q5_1_row_size(int64_t n) { return (size_t)((n + QLM_QK - 1) / QLM_QK) * sizeof(q5_1_block); }

// ---- quantizers (scalar on every path: conversion only) -----------------------------------------
// Codes 0..31 -> qs nibbles and qh bits.
static void q5_pack(const int *q, uint8_t *qs, uint8_t *qhb) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
        qh |= (uint32_t)(q[j] >> 4) << j;
        qh |= (uint32_t)(q[j + 16] >> 4) << (j + 16);
    }
    for (int i = 0; i < 4; i++) qhb[i] = (uint8_t)(qh >> (8 * i));
}
static inline int q5_code(float v) { return (int)fminf(fmaxf(v, 0.0f), 31.0f); } // v >= 0: truncation
// q5_0 (ggml's rule): d = max / -16 with max the signed value of largest magnitude,
// q = min(31, (int)(x / d + 16.5)).
static void q5_0_block_scalar(const float *x, void *bv) {
    q5_0_block *b = (q5_0_block *)bv;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QLM_QK; j++) if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    const float d = max / -16.0f + 0.0f; // + 0: an all-zero block gets d = +0
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = qlm_f2h(d);
    int q[QLM_QK];
    for (int j = 0; j < QLM_QK; j++) q[j] = q5_code(x[j] * id + 16.5f);
    q5_pack(q, b->qs, b->qh);
}
// q5_1: d = (max - min) / 31, m = min, q = min(31, (int)((x - min) / d + 0.5)).
static void q5_1_block_scalar(const float *x, void *bv) {
    q5_1_block *b = (q5_1_block *)bv;
    float min = x[0], max = x[0];
    for (int j = 1; j < QLM_QK; j++) { if (x[j] < min) min = x[j]; if (x[j] > max) max = x[j]; }
    min += 0.0f; max += 0.0f;
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = qlm_f2h(d);
    b->m = qlm_f2h(min);
    int q[QLM_QK];
    for (int j = 0; j < QLM_QK; j++) q[j] = q5_code((x[j] - min) * id + 0.5f);
    q5_pack(q, b->qs, b->qh);
}
// Importance-weighted (quant_imp.c's searches; imp = the calibration's mean square per input):
// q5_0 the fp16 scale minimizing sum w (x - d c)^2 over codes c = clamp(round(x / d), -16, 15),
// the plain rule's d among the candidates; q5_1 q4_1's weighted (d, m) search with 32 levels.
static void q5_0_imp_block(const float *x, const float *w, void *bv) {
    q5_0_block *b = (q5_0_block *)bv;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QLM_QK; j++) if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
    b->d = qlm_f2h(qlm_imp_sym_scale(x, w, QLM_QK, max / -16.0f + 0.0f, -16.0f, 15.0f));
    int q[QLM_QK];
    qlm_imp_sym_err(x, w, QLM_QK, qlm_h2f(b->d), -16.0f, 15.0f, q);
    for (int j = 0; j < QLM_QK; j++) q[j] += 16;
    q5_pack(q, b->qs, b->qh);
}
static void q5_1_imp_block(const float *x, const float *w, void *bv) {
    q5_1_block *b = (q5_1_block *)bv;
    int q[QLM_QK];
    qlm_imp_asym_block(x, w, 31, &b->d, &b->m, q);
    q5_pack(q, b->qs, b->qh);
}
void qlm_q5_0_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) {
    qlm_imp_rows(q5_0_imp_block, QLM_QK, sizeof(q5_0_block), x, imp, dst, n);
}
void qlm_q5_1_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) {
    qlm_imp_rows(q5_1_imp_block, QLM_QK, sizeof(q5_1_block), x, imp, dst, n);
}
void qlm_q5_0_quantize_row(int32_t path, const float *x, void *dst, int64_t n) {
    (void)path;
    qlm_quantize_blocks(q5_0_block_scalar, sizeof(q5_0_block), x, dst, n);
}
void qlm_q5_1_quantize_row(int32_t path, const float *x, void *dst, int64_t n) {
    (void)path;
    qlm_quantize_blocks(q5_1_block_scalar, sizeof(q5_1_block), x, dst, n);
}

// ---- dequantizers: ggml_blocks.c's (checked against the gguf package), the row's padded last block
// through a whole-block copy.
void qlm_dequantize_ggml_blocks(int32_t ggml_type, int bs, size_t block_bytes, const void *src, float *y, int64_t n) {
    const int64_t whole = n / bs * bs;
    if (whole) qlm_ggml_dequantize_row(ggml_type, src, y, whole);
    if (whole < n) {
        float tmp[256];
        qlm_ggml_dequantize_row(ggml_type, (const char *)src + (size_t)(whole / bs) * block_bytes, tmp, bs);
        memcpy(y + whole, tmp, (size_t)(n - whole) * sizeof(float));
    }
}
void qlm_q5_0_dequantize_row(const void *src, float *y, int64_t n) { qlm_dequantize_ggml_blocks(QLM_GGML_Q5_0, QLM_QK, sizeof(q5_0_block), src, y, n); }
void qlm_q5_1_dequantize_row(const void *src, float *y, int64_t n) { qlm_dequantize_ggml_blocks(QLM_GGML_Q5_1, QLM_QK, sizeof(q5_1_block), src, y, n); }

// ---- q5_0 activation rows: q8a blocks, then from byte q5pair_offset(nb) one q5pair per two blocks,
// which the AVX-512 dot kernel reads (below; built on every path by q5_0_prepare_act)
typedef struct {
    int8_t qs[64];    // the codes of blocks 2p, 2p+1 (zero past the last block)
    int32_t c[16];    // c[8k + j] = -16 * (sum of qs[32k + 4j .. 32k + 4j + 3])
    float d[16];      // d of block 2p x 8, then of block 2p+1 x 8 (zero past the last block)
} q5pair;
_Static_assert(sizeof(q5pair) == 192, "q5pair is 192 bytes");
QLM_INLINE size_t q5pair_offset(int64_t nb) { return ((size_t)nb * sizeof(qlm_block_q8a) + 63) & ~(size_t)63; }
static size_t q5_0_act_row_size(int64_t n) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    return q5pair_offset(nb) + (size_t)((nb + 1) / 2) * sizeof(q5pair);
}
// ---- scalar dots -------------------------------------------------------------------------------
static inline uint32_t q5_qh(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline int32_t q5_isum(const uint8_t *qs, uint32_t qh, const int8_t *a, int off) {
    int32_t is = 0;
    for (int j = 0; j < 16; j++) {
        is += ((int32_t)(qs[j] & 0xF) + (int32_t)(((qh >> j) & 1) << 4) - off) * (int32_t)a[j];
        is += ((int32_t)(qs[j] >> 4) + (int32_t)(((qh >> (j + 16)) & 1) << 4) - off) * (int32_t)a[j + 16];
    }
    return is;
}
static float dot_q5_0_scalar1(int64_t n, const q5_0_block *w, const qlm_block_q8a *a) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    float s = 0.0f;
    for (int64_t b = 0; b < nb; b++)
        s += (qlm_h2f(w[b].d) * a[b].d) * (float)q5_isum(w[b].qs, q5_qh(w[b].qh), a[b].qs, 16);
    return s;
}
static float dot_q5_1_scalar1(int64_t n, const q5_1_block *w, const qlm_block_q8a *a) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    float s = 0.0f, sm = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        s += (qlm_h2f(w[b].d) * a[b].d) * (float)q5_isum(w[b].qs, q5_qh(w[b].qh), a[b].qs, 0);
        sm += qlm_h2f(w[b].m) * a[b].s;
    }
    return s + sm;
}
SCALAR_DOTN(dotn_q5_0_scalar, dot_q5_0_scalar1, q5_0_block, qlm_block_q8a)
SCALAR_DOTN(dotn_q5_1_scalar, dot_q5_1_scalar1, q5_1_block, qlm_block_q8a)

#if QLM_X86
// The fifth bits as bytes: 0x10 in byte j where bit j of qh is set (byte j = element j, as in
// unpack_nibbles). AVX-512: a byte mask move; AVX2: each byte picks its qh byte, tests its bit.
QLM_AVX512_TARGET QLM_INLINE __m256i q5_hbits_avx512(const uint8_t *qh) {
    return _mm256_maskz_mov_epi8((__mmask32)q5_qh(qh), _mm256_set1_epi8(0x10));
}
QLM_AVX2_TARGET QLM_INLINE __m256i q5_hmask_avx2(const uint8_t *qh) { // 0xFF where the bit is set
    return bytemask32_avx2(q5_qh(qh));
}
QLM_AVX2_TARGET QLM_INLINE __m256i q5_hbits_avx2(const uint8_t *qh) {
    return _mm256_and_si256(q5_hmask_avx2(qh), _mm256_set1_epi8(0x10));
}
// The 32 codes 0..31 of a block.
#define Q5_CODES(P, blk) _mm256_or_si256(unpack_nibbles_##P((blk).qs), q5_hbits_##P((blk).qh))

// Dot kernels (qlm_simd.h's QK frame, as q4_0 / q4_1 on AVX2). q5_0: dot(q, a) - 16 * sum(a) per
// int32 lane (the 16 * sum lanes once per activation block, shared by the rows).
#define Q5_0_BODY(P, bb, k) {                                                                     \
        const __m256i av = _mm256_loadu_si256((const __m256i *)a[bb].qs);                         \
        const __m256i s16 = dot_us_##P(sixteen, av);                                              \
        const __m256 da = _mm256_set1_ps(a[bb].d);                                                \
        for (int r = 0; r < nr; r++) {                                                            \
            PF((const char *)(wr[r] + bb) + QLM_PF_DIST);                                         \
            const __m256i is = _mm256_sub_epi32(dot_us_##P(Q5_CODES(P, wr[r][bb]), av), s16);     \
            const __m256 sc = _mm256_mul_ps(bh2f_##P(&wr[r][bb].d), da);                          \
            acc[r][k] = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(is), acc[r][k]);                   \
        } }
#define Q5_1_BODY(P, bb, k) {                                                                     \
        const __m256i av = _mm256_loadu_si256((const __m256i *)a[bb].qs);                         \
        const __m256 da = _mm256_set1_ps(a[bb].d);                                                \
        const float sa = a[bb].s;                                                                 \
        for (int r = 0; r < nr; r++) {                                                            \
            PF((const char *)(wr[r] + bb) + QLM_PF_DIST);                                         \
            const __m256i is = dot_us_##P(Q5_CODES(P, wr[r][bb]), av);                            \
            uint32_t dm32;                                                                        \
            memcpy(&dm32, &wr[r][bb].d, 4);                                                       \
            const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dm32)); /* [d, m, 0, 0] */      \
            const __m256 sc = _mm256_mul_ps(_mm256_broadcastss_ps(dm), da);                       \
            acc[r][k] = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(is), acc[r][k]);                   \
            sm[r][k] += _mm_cvtss_f32(_mm_movehdup_ps(dm)) * sa;                                  \
        } }
#define Q5_0_AVX2(bb, k) Q5_0_BODY(avx2, bb, k)
#define Q5_1_AVX2(bb, k) Q5_1_BODY(avx2, bb, k)
#define Q5_1_AVX512(bb, k) Q5_1_BODY(avx512, bb, k)
#define Q5_KERNEL(F, T, P, BODY, TGT)                                                             \
TGT QLM_INLINE void k_##F##_##P(int64_t n, const void *w, size_t rs, const void *act, float *out, const int nr) { \
    const __m256i sixteen = _mm256_set1_epi8(16);                                                 \
    (void)sixteen;                                                                                \
    QK_BEGIN(T) QK_LOOP(BODY) QK_END(P)                                                           \
}                                                                                                 \
NR_DISPATCH(F, P, TGT)
Q5_KERNEL(q5_0, q5_0_block, avx2, Q5_0_AVX2, QLM_AVX2_TARGET)

// q5_0's AVX-512 one-token dot (decode): the one-block kernel above minus the work that depends
// only on the activation. That kernel is compute-bound on the AVX-512 machine (Zen 4, 2 vCPU):
// per 32 weights it forms 16 * sum(a) with a dpbusd and subtracts it, broadcasts d_a, and
// builds the fifth bits with a masked move plus an OR, about 15 GB/s per core from L2 (the
// SmolLM2 Q4_K_M decode's largest kernel, 41% of its time). Here the activation row carries
// q5pair (built once per token): the codes, the exact -16 * sum of each int32 lane as the
// dpbusd start value, and d_a already broadcast; the fifth bits are a masked add of 0x10.
// Per block: a 128-bit broadcast load, shift and mask for the nibbles, the masked add, one
// dpbusd, the fp16 scale times d_a, one conversion and one FMA.
// Arithmetic: dpbusd(-16 * sum, codes, a) = dot(codes, a) - 16 * sum exactly (the one-block
// kernel's int32 lanes), and the float steps are the same operations in the same order (even
// blocks into acc0, odd into acc1, hsum8(acc0 + acc1)), so results are bit-identical to it and
// to the AVX2 path. Measured (a scratch micro-benchmark calling both kernels alternately on one
// thread, CPU 0, 30 rounds, medians): 576 x 1536 from L2 15.2 -> 16.9 GB/s (x1.12), 1536 x 576
// 18.0 -> 20.4 (x1.13); from memory (61 MB, host load 7-9) 7.4 -> 7.3-7.5 (memory-bound).
// Tried: two blocks per 512-bit step (one masked 44-byte load, word permutes for the nibbles
// and the two scales): x0.92-0.99 from L2 (Zen 4 runs 512-bit ops as two 256-bit halves, so it
// saves front-end slots, not work, and the permutes cost more than the loads they replace).
// Prefetch 256 / 1024 bytes ahead instead of 512: same from L2, -1% / -4% from memory.
#ifndef QLM_Q5PAIR_PF
#define QLM_Q5PAIR_PF 512
#endif
// One block b of the row (bytes wb) against its activation half (ap = pair b / 2, h = b & 1).
#define Q5BLK_STEP(wb, ap, h, acc) {                                                               \
        const __m256i x_ = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)((wb) + 6))); \
        const __m256i nib = _mm256_and_si256(_mm256_srlv_epi64(x_, sh), m4);                       \
        const __m256i codes = _mm256_mask_add_epi8(nib, (__mmask32)q5_qh((const uint8_t *)(wb) + 2), nib, x10); \
        const __m256i is = _mm256_dpbusd_epi32(_mm256_loadu_si256((const __m256i *)((ap)->c + 8 * (h))), codes, \
                                               _mm256_loadu_si256((const __m256i *)((ap)->qs + 32 * (h)))); \
        const __m256 sc = _mm256_mul_ps(bh2f_avx512((const uint16_t *)(wb)), _mm256_loadu_ps((ap)->d + 8 * (h))); \
        acc = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(is), acc); }
QLM_AVX512_TARGET static float q5_0_row_avx512(int64_t n, const char *w, const void *act) {
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    const q5pair *ap = (const q5pair *)((const char *)act + q5pair_offset(nb));
    const __m256i sh = _mm256_setr_epi64x(0, 0, 4, 4), m4 = _mm256_set1_epi8(0x0F), x10 = _mm256_set1_epi8(0x10);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2, w += 2 * sizeof(q5_0_block), ap++) {
        _mm_prefetch(w + QLM_Q5PAIR_PF, _MM_HINT_T0);
        Q5BLK_STEP(w, ap, 0, acc0)
        Q5BLK_STEP(w + sizeof(q5_0_block), ap, 1, acc1)
    }
    if (b < nb) Q5BLK_STEP(w, ap, 0, acc0)
    return hsum8_avx512(_mm256_add_ps(acc0, acc1));
}
QLM_AVX512_TARGET static void dotn_q5_0_avx512(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    for (int r = 0; r < nr; r++) out[r] = q5_0_row_avx512(n, (const char *)w + r * rs, act);
}
Q5_KERNEL(q5_1, q5_1_block, avx2, Q5_1_AVX2, QLM_AVX2_TARGET)
Q5_KERNEL(q5_1, q5_1_block, avx512, Q5_1_AVX512, QLM_AVX512_TARGET)

// AVX2 few-token kernels and 1 row x 4 tokens tiles (qlm_simd.h FEW2_FAMILY): their int32 lanes
// equal both dot kernels' (maddubs pair sums cannot saturate: 2 * 31 * 127 < 32767) and their
// float steps are the same operations. (The AVX-512 path has its own, below.)
// q5_0 by the sign trick on q - 16 (as q4_0 on q - 8): q - 16 is the nibble when the fifth bit is
// set, else the nibble - 16 = nibble | 0xF0 as int8.
#define Q50_ROW2(bb)                                                                               \
    const __m256i wsg = _mm256_or_si256(unpack_nibbles_avx2(wr[bb].qs),                            \
                                        _mm256_andnot_si256(q5_hmask_avx2(wr[bb].qh), _mm256_set1_epi8((char)0xF0))); \
    const __m256i wab = _mm256_abs_epi8(wsg);
#define Q50_PAIR2 _mm256_madd_epi16(_mm256_maddubs_epi16(wab, _mm256_sign_epi8(av, wsg)), ones)
FEW2_FAMILY(few_q5_0, q5_0_block, Q50_ROW2, Q50_PAIR2, FEW2_NONE)
#define Q51_ROW2(bb)                                                                               \
    const __m256i wq = Q5_CODES(avx2, wr[bb]);                                                     \
    const float mw = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128((int)wr[bb].m)));
#define Q51_PAIR2 dot_us_avx2(wq, av)
#define Q51_MIN2(t, k) sm[t][k] += mw * ab->s;
FEW2_FAMILY(few_q5_1, q5_1_block, Q51_ROW2, Q51_PAIR2, Q51_MIN2)

// AVX-512 tiles and few-token kernels, two blocks per register (qlm_pair512.h). The fifth bits of
// both blocks: one 64-bit byte mask. q5_0's signed codes q - 16; q5_1's codes as they are, its
// min pair [m_b, m_{b+1}] beside the scales.
#define Q5_P512_CODES(wr, b)                                                                       \
    _mm512_or_si512(p512_nibbles((wr)[b].qs, (wr)[(b) + 1].qs),                                    \
                    _mm512_maskz_mov_epi8((__mmask64)q5_qh((wr)[b].qh) | ((__mmask64)q5_qh((wr)[(b) + 1].qh) << 32), \
                                          _mm512_set1_epi8(0x10)))
#define Q50_P512_PAIR(wr, b)                                                                       \
    const __m512i w = _mm512_sub_epi8(Q5_P512_CODES(wr, b), _mm512_set1_epi8(0x10));               \
    const __m512 dw = p512_dw(&(wr)[b].d, &(wr)[(b) + 1].d);
#define Q50_P512_TAIL(wr, b)                                                                       \
    const __m256i w = _mm256_sub_epi8(Q5_CODES(avx512, (wr)[b]), _mm256_set1_epi8(0x10));          \
    const __m256 dw = bh2f_avx512(&(wr)[b].d);
P512_FAMILY(q5_0, q5_0_block, 4, Q50_P512_PAIR, Q50_P512_TAIL, P512_NOMIN, P512_NOMIN, P512_SUMNOMIN, P512_IS, P512_IS, P512_PF32)
#define Q51_P512_PAIR(wr, b)                                                                       \
    const __m512i w = Q5_P512_CODES(wr, b);                                                        \
    uint32_t dm0_, dm1_;                                                                           \
    memcpy(&dm0_, &(wr)[b].d, 4);                                                                  \
    memcpy(&dm1_, &(wr)[(b) + 1].d, 4);                                                            \
    const __m128 dm_ = _mm_cvtph_ps(_mm_setr_epi32((int)dm0_, (int)dm1_, 0, 0)); /* d0 m0 d1 m1 */ \
    const __m512 dw = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2), \
                                            _mm512_castps128_ps512(dm_));                          \
    const __m128 mw = _mm_shuffle_ps(dm_, dm_, _MM_SHUFFLE(3, 3, 3, 1)); /* m0 m1 . . */
#define Q51_P512_TAIL(wr, b)                                                                       \
    const __m256i w = Q5_CODES(avx512, (wr)[b]);                                                   \
    const __m256 dw = bh2f_avx512(&(wr)[b].d);                                                     \
    const __m128 mw = _mm256_castps256_ps128(bh2f_avx512(&(wr)[b].m));
P512_FAMILY(q5_1, q5_1_block, 2, Q51_P512_PAIR, Q51_P512_TAIL, P512_MIN, P512_TMIN, P512_SUMMIN, P512_IS, P512_IS, P512_PF32)
#define Q5_SIMD(F, NR) P512_ROW_KERNELS(F, NR)
#else
#define Q5_SIMD(F, NR)
#endif

// The pairs after the q8a blocks, on every path (the row is the same bytes whichever path made
// it, as the other types' activation rows; a few hundred bytes per token).
static void q5pair_build(void *act, int64_t nb) {
    const qlm_block_q8a *a = (const qlm_block_q8a *)act;
    q5pair *p = (q5pair *)((char *)act + q5pair_offset(nb));
    memset((char *)act + (size_t)nb * sizeof(qlm_block_q8a), 0, q5pair_offset(nb) - (size_t)nb * sizeof(qlm_block_q8a));
    for (int64_t b = 0; b < nb; b += 2, p++) {
        memset(p, 0, sizeof *p);
        for (int k = 0; k < 2 && b + k < nb; k++) {
            memcpy(p->qs + 32 * k, a[b + k].qs, 32);
            for (int j = 0; j < 8; j++) {
                p->c[8 * k + j] = -16 * (a[b + k].qs[4 * j] + a[b + k].qs[4 * j + 1] + a[b + k].qs[4 * j + 2] + a[b + k].qs[4 * j + 3]);
                p->d[8 * k + j] = a[b + k].d;
            }
        }
    }
}
static void q5_0_prepare_act(int32_t path, const float *x, void *act, int64_t n) {
    qlm_prepare_q8a(path, x, act, n);
    q5pair_build(act, (n + QLM_QK - 1) / QLM_QK);
}

// The scalar q5_0 / q5_1 row dots, for the q5_0x8 / q5_1x8 rows past the last group (rowgroup.c);
// the q5_0 row functions and q5_1's row size and dequantizer are exported for the same reason.
void qlm_q5_0_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    dotn_q5_0_scalar(n, w, rs, act, out, nr);
}
void qlm_q5_1_dotn_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {
    dotn_q5_1_scalar(n, w, rs, act, out, nr);
}

// ---- table rows --------------------------------------------------------------------------------
#define Q5_KERNELS(F, ACT_SIZE, PREP)                                                              \
    .act_row_size = ACT_SIZE, .prepare_act = PREP,                                                 \
    .dotn = {[QLM_PATH_SCALAR] = dotn_##F##_scalar, [QLM_PATH_AVX2] = QLM_IF_X86(dotn_##F##_avx2),  \
             [QLM_PATH_AVX512] = QLM_IF_X86(dotn_##F##_avx512)},
const qlm_type_traits qlm_traits_q5_0 = {
    .name = "q5_0", .block_size = QLM_QK, .block_bytes = sizeof(q5_0_block), .is_quantized = 1,
    .act_type = QLM_ACT_Q8A, .row_group = 1, .code_bits = 5,
    .fp16_count = 1, .fp16_offsets = {offsetof(q5_0_block, d)},
    .row_size = qlm_q5_0_row_size, .quantize_row = qlm_q5_0_quantize_row, .dequantize_row = qlm_q5_0_dequantize_row,
    .quantize_row_imp = qlm_q5_0_quantize_row_imp,
    Q5_KERNELS(q5_0, q5_0_act_row_size, q5_0_prepare_act) Q5_SIMD(q5_0, 4)
};
const qlm_type_traits qlm_traits_q5_1 = {
    .name = "q5_1", .block_size = QLM_QK, .block_bytes = sizeof(q5_1_block), .is_quantized = 1,
    .act_type = QLM_ACT_Q8A, .row_group = 1, .code_bits = 5,
    .fp16_count = 2, .fp16_offsets = {offsetof(q5_1_block, d), offsetof(q5_1_block, m)},
    .row_size = qlm_q5_1_row_size, .quantize_row = qlm_q5_1_quantize_row, .dequantize_row = qlm_q5_1_dequantize_row,
    .quantize_row_imp = qlm_q5_1_quantize_row_imp,
    Q5_KERNELS(q5_1, qlm_act_size_q8a, qlm_prepare_q8a) Q5_SIMD(q5_1, 2)
};
