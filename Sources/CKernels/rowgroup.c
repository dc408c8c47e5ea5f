// Row-grouped types: q4_0 (Q4_0X8), q8_0 (Q8_0X8), q5_0 (Q5_0X8), q5_1 (Q5_1X8) or iq4_nl (IQ4_NLX8)
// weights stored row-interleaved in groups of 8 rows (qlm_block_q4_0x8, qlm_block_q8_0x8,
// qlm_block_q5_0x8, qlm_block_q5_1x8, qlm_block_iq4_nlx8), and the 8-row kernels that read them.
//
// Why a layout and not just a kernel: decoding q4_0 row by row is compute-bound here. Per 32
// weights a row kernel converts and broadcasts one fp16 scale, forms the -8 * sum(a) correction,
// and folds 8 int32 lanes into its float sum (measured: ~0.77 G blocks/s per core, i.e. 0.3-0.5
// of the memory bound on 2 threads). With 8 rows interleaved, one 16-byte load + one
// conversion gives all 8 scales, 32-bit lane r of every dot-product register is row r (no
// horizontal sums), the activation bytes are broadcast once for 8 rows, and the correction is
// one integer precomputed per activation block (qlm_block_q8i). The file is memory-mapped as
// stored, so the layout costs nothing at load (llama.cpp repacks q4_0 at load time instead).
// q8_0 has no correction, but the same sharing: on AVX2 its row tile spends six vector ops per
// 32 weights and token (sign, maddubs, madd, convert, scale product, FMA); here the convert and
// the scale steps are shared by 8 rows (docs/benchmarks.md, "Machine of 2026-12-03, AVX2 only").
//
// Arithmetic: per row and block the integer sum is exact; the float steps are those of the
// scalar q4_0 / q8_0 dot, in block order (s += (d_w * d_a) * (float)isum, no FMA), so every
// product on every path equals the scalar dot of the de-interleaved row bit for bit.
// Rows past the last whole group are stored as plain rows and use the scalar row dot.
#include "qlm_simd.h"
#include <stddef.h>
#include <stdlib.h>

#pragma clang fp contract(off)

#define G 8 // rows per group

// ---- layout ---------------------------------------------------------------------------------
// The types keep a row block's fp16 scale (q5_1: and minimum) and Q code bytes (q4_0, q5_0: 16,
// q8_0: 32); a group block holds the 8 scales (q5_1: then the 8 minimums), then (q5_0, q5_1) the
// fifth bits as 8 chunk masks, then chunks of 32 bytes: chunk c = rows 0..7's code bytes 4c..4c+3.
typedef struct {
    int q;                                               // code bytes per row block
    int qh;                                              // fifth-bit bytes per row block after d (q5_0: 4)
    size_t (*row_size)(int64_t n);                       // bytes of a plain row
    void (*dequantize_row)(const void *src, float *y, int64_t n);
    qlm_dotn_fn row_dot;                                 // scalar dot of a plain row
    int m;                                               // 1: an fp16 minimum follows d (q5_1), else 0
} group_layout;
static const group_layout k_q4 = {QLM_QK / 2, 0, qlm_q4_0_row_size, qlm_q4_0_dequantize_row, qlm_q4_0_dotn_scalar};
static const group_layout k_q8 = {QLM_QK, 0, qlm_q8_0_row_size, qlm_q8_0_dequantize_row, qlm_q8_0_dotn_scalar};
static const group_layout k_q5 = {QLM_QK / 2, 4, qlm_q5_0_row_size, qlm_q5_0_dequantize_row, qlm_q5_0_dotn_scalar};
static const group_layout k_q51 = {QLM_QK / 2, 4, qlm_q5_1_row_size, qlm_q5_1_dequantize_row, qlm_q5_1_dotn_scalar, 1};
static const group_layout k_iq4 = {QLM_QK / 2, 0, qlm_iq4_nl_row_size, qlm_iq4_nl_dequantize_row, qlm_iq4_nl_dotn_scalar};

// Byte of the group block's code area holding row r's code byte j.
QLM_INLINE int qs_index(int r, int j) { return 32 * (j >> 2) + 4 * r + (j & 3); }
QLM_INLINE int head_bytes(const group_layout *L) { return 2 + 2 * L->m; }       // fp16 fields of a row block
QLM_INLINE int row_block_bytes(const group_layout *L) { return head_bytes(L) + L->qh + L->q; }
QLM_INLINE int mask_offset(const group_layout *L) { return G * head_bytes(L); }  // fp16 field o of row r at o * G + 2r
QLM_INLINE int code_offset(const group_layout *L) { return mask_offset(L) + G * L->qh; }
QLM_INLINE uint32_t ld_u32(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

// q5_0's / q5_1's fifth bits: row r's 32-bit qh (bit e = element e) <-> the group's masks hm[m] (bit 4r + k
// = element 4m + k of row r, qlm_block_q5_0x8): nibble m of qh is nibble r of hm[m].
static void pack_group(const group_layout *L, const char *src, size_t rs, int64_t nb, char *dst) {
    const int bb = row_block_bytes(L), hb = head_bytes(L), mo = mask_offset(L), co = code_offset(L);
    memset(dst, 0, (size_t)nb * G * bb);
    for (int r = 0; r < G; r++) {
        const char *row = src + (size_t)r * rs;
        for (int64_t b = 0; b < nb; b++) {
            char *gb = dst + (size_t)b * G * bb;
            const char *rb = row + b * bb;
            for (int o = 0; o < hb; o += 2) memcpy(gb + o * G + 2 * r, rb + o, 2);
            if (L->qh) {
                const uint32_t qh = ld_u32(rb + hb);
                for (int m = 0; m < 8; m++) {
                    const uint32_t hm = ld_u32(gb + mo + 4 * m) | ((qh >> (4 * m)) & 0xF) << (4 * r);
                    memcpy(gb + mo + 4 * m, &hm, 4);
                }
            }
            for (int j = 0; j < L->q; j++) gb[co + qs_index(r, j)] = rb[hb + L->qh + j];
        }
    }
}

// Row r's plain block out of a group block.
QLM_INLINE void row_block(const group_layout *L, const char *gb, int r, char *out) {
    const int hb = head_bytes(L), mo = mask_offset(L), co = code_offset(L);
    for (int o = 0; o < hb; o += 2) memcpy(out + o, gb + o * G + 2 * r, 2);
    if (L->qh) {
        uint32_t qh = 0;
        for (int m = 0; m < 8; m++) qh |= ((ld_u32(gb + mo + 4 * m) >> (4 * r)) & 0xF) << (4 * m);
        memcpy(out + hb, &qh, 4);
    }
    for (int j = 0; j < L->q; j++) out[hb + L->qh + j] = gb[co + qs_index(r, j)];
}

static void unpack_group(const group_layout *L, const char *src, int64_t nb, char *dst, size_t rs) {
    const int bb = row_block_bytes(L);
    for (int r = 0; r < G; r++)
        for (int64_t b = 0; b < nb; b++) row_block(L, src + (size_t)b * G * bb, r, dst + (size_t)r * rs + b * bb);
}

static int regroup(const group_layout *L, void *data, int64_t rows, int64_t n, int pack) {
    if (rows < G || n <= 0) return 0;
    const size_t rs = L->row_size(n);
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    char *tmp = (char *)malloc(G * rs);
    if (!tmp) return -1;
    for (int64_t g = 0; g < rows / G; g++) {
        char *p = (char *)data + (size_t)g * G * rs;
        if (pack) pack_group(L, p, rs, nb, tmp);
        else unpack_group(L, p, nb, tmp, rs);
        memcpy(p, tmp, G * rs);
    }
    free(tmp);
    return 0;
}

static void plain_row(const group_layout *L, const void *src, int64_t rows, int64_t n, int64_t r, void *dst) {
    const size_t rs = L->row_size(n);
    if (r >= rows / G * G) { memcpy(dst, (const char *)src + (size_t)r * rs, rs); return; }
    const int bb = row_block_bytes(L);
    const char *g = (const char *)src + (size_t)(r / G) * G * rs;
    for (int64_t b = 0; b < (n + QLM_QK - 1) / QLM_QK; b++) row_block(L, g + (size_t)b * G * bb, (int)(r % G), (char *)dst + b * bb);
}

static void get_row(const group_layout *L, const void *src, int64_t rows, int64_t n, int64_t r, float *y) {
    const size_t rs = L->row_size(n);
    if (r >= rows / G * G) { // past the last group: a plain row
        L->dequantize_row((const char *)src + (size_t)r * rs, y, n);
        return;
    }
    const int bb = row_block_bytes(L);
    const char *g = (const char *)src + (size_t)(r / G) * G * rs;
    for (int64_t b = 0; b * QLM_QK < n; b++) { // row r's block b, rebuilt and read by the row dequantizer
        char blk[2 + QLM_QK]; // the largest row block (q8_0: 34 bytes; q5_1: 24)
        row_block(L, g + (size_t)b * G * bb, (int)(r % G), blk);
        L->dequantize_row(blk, y + b * QLM_QK, n - b * QLM_QK < QLM_QK ? n - b * QLM_QK : QLM_QK);
    }
}

// ---- activations ------------------------------------------------------------------------------
// zp: the weight type's zero point (q4_0: 8, q5_0: 16); s becomes -zp * sum(qs).
static void q8i_scalar(void *act, int64_t nb, int32_t zp) {
    qlm_block_q8a *a = (qlm_block_q8a *)act;
    for (int64_t b = 0; b < nb; b++) {
        int32_t s = 0;
        for (int j = 0; j < QLM_QK; j++) s += a[b].qs[j];
        const int32_t n8 = -zp * s;
        memcpy(&a[b].s, &n8, 4);
    }
}

// ---- scalar ---------------------------------------------------------------------------------
// A plain q4_0 row (a lone row, or a row past the last group) uses the scalar q4_0 row dot: a
// q8i activation block is read there as q8a (same d and qs offsets; its s is never read).
_Static_assert(offsetof(qlm_block_q8i, d) == offsetof(qlm_block_q8a, d) && offsetof(qlm_block_q8i, qs) == offsetof(qlm_block_q8a, qs),
               "q8i must read as q8a for the q4_0 row dot");

// One group (8 rows) against nt activation rows: Y[t * ldy + r] (qlm_group_fn).
typedef qlm_group_fn group_fn;

// Row r's integer sum over group block b against one activation block, per layout.
static inline int32_t block_q4_scalar(const qlm_block_q4_0x8 *g, int r, const qlm_block_q8i *a) {
    int32_t is = 0;
    for (int j = 0; j < 16; j++) {
        const uint8_t q = g->qs[qs_index(r, j)];
        is += ((int32_t)(q & 0xF) - 8) * (int32_t)a->qs[j];
        is += ((int32_t)(q >> 4) - 8) * (int32_t)a->qs[j + 16];
    }
    return is;
}

static inline int32_t block_q8_scalar(const qlm_block_q8_0x8 *g, int r, const qlm_block_q8a *a) {
    int32_t is = 0;
    for (int j = 0; j < QLM_QK; j++) is += (int32_t)g->qs[qs_index(r, j)] * (int32_t)a->qs[j];
    return is;
}

// q5_0: code = nibble + 16 * fifth bit, weight = d * (code - 16).
static inline int32_t block_q5_scalar(const qlm_block_q5_0x8 *g, int r, const qlm_block_q8i *a) {
    int32_t is = 0;
    for (int j = 0; j < 16; j++) {
        const uint8_t q = g->qs[qs_index(r, j)];
        const int32_t hl = (int32_t)(g->hm[j >> 2] >> (4 * r + (j & 3))) & 1;
        const int32_t hh = (int32_t)(g->hm[4 + (j >> 2)] >> (4 * r + (j & 3))) & 1;
        is += ((int32_t)(q & 0xF) + 16 * hl - 16) * (int32_t)a->qs[j];
        is += ((int32_t)(q >> 4) + 16 * hh - 16) * (int32_t)a->qs[j + 16];
    }
    return is;
}

// q5_1: code = nibble + 16 * fifth bit, weight = d * code + m (the m term is added apart).
static inline int32_t block_q51_scalar(const qlm_block_q5_1x8 *g, int r, const qlm_block_q8a *a) {
    int32_t is = 0;
    for (int j = 0; j < 16; j++) {
        const uint8_t q = g->qs[qs_index(r, j)];
        const int32_t hl = (int32_t)(g->hm[j >> 2] >> (4 * r + (j & 3))) & 1;
        const int32_t hh = (int32_t)(g->hm[4 + (j >> 2)] >> (4 * r + (j & 3))) & 1;
        is += ((int32_t)(q & 0xF) + 16 * hl) * (int32_t)a->qs[j];
        is += ((int32_t)(q >> 4) + 16 * hh) * (int32_t)a->qs[j + 16];
    }
    return is;
}

// One scalar group kernel per layout: the same loop over tokens, rows and blocks around its block
// sum. MIN adds a block's minimum term to sm (q5_1: sm += m_w * s_a, the scalar q5_1 dot's second
// sum) and FIN gives the row's result (s, or s + sm), so each equals its plain scalar dot.
#define GROUP_SCALAR_M(NAME, GBLOCK, ABLOCK, BLOCKSUM, MIN, FIN)                                          \
    static void NAME(int64_t nb, const void *g_, const char *act, size_t as, float *Y, int64_t ldy, int nt) { \
        const GBLOCK *g = (const GBLOCK *)g_;                                                              \
        for (int t = 0; t < nt; t++) {                                                                     \
            const ABLOCK *a = (const ABLOCK *)(act + (size_t)t * as);                                      \
            for (int r = 0; r < G; r++) {                                                                  \
                float s = 0.0f, sm = 0.0f;                                                                 \
                for (int64_t b = 0; b < nb; b++) {                                                         \
                    s += (qlm_h2f(g[b].d[r]) * a[b].d) * (float)BLOCKSUM(&g[b], r, &a[b]);                 \
                    MIN(sm, &g[b], r, &a[b]);                                                              \
                }                                                                                          \
                (void)sm;                                                                                  \
                Y[t * ldy + r] = FIN(s, sm);                                                               \
            }                                                                                              \
        }                                                                                                  \
    }
#define NO_MIN(sm, gb, r, ab)
#define FIN_S(s, sm) (s)
#define GROUP_SCALAR(NAME, GBLOCK, ABLOCK, BLOCKSUM) GROUP_SCALAR_M(NAME, GBLOCK, ABLOCK, BLOCKSUM, NO_MIN, FIN_S)
GROUP_SCALAR(group_q4_scalar, qlm_block_q4_0x8, qlm_block_q8i, block_q4_scalar)
GROUP_SCALAR(group_q8_scalar, qlm_block_q8_0x8, qlm_block_q8a, block_q8_scalar)
GROUP_SCALAR(group_q5_scalar, qlm_block_q5_0x8, qlm_block_q8i, block_q5_scalar)
// q5_1x8: the scalar q5_1 dot's two sums (s over d_w * d_a * isum, sm over m_w * s_a), then s + sm.
#define Q51_MIN(sm, gb, r, ab) ((sm) += qlm_h2f((gb)->m[r]) * (ab)->s)
#define FIN_SM(s, sm) ((s) + (sm))
GROUP_SCALAR_M(group_q51_scalar, qlm_block_q5_1x8, qlm_block_q8a, block_q51_scalar, Q51_MIN, FIN_SM)

// iq4_nl: weight = d * K[index] (K = qlm_iq4_levels), as the scalar iq4_nl dot sums it.
static inline int32_t block_iq4_scalar(const qlm_block_iq4_nlx8 *g, int r, const qlm_block_q8i *a) {
    int32_t is = 0;
    for (int j = 0; j < 16; j++) {
        const uint8_t q = g->qs[qs_index(r, j)];
        is += (int32_t)qlm_iq4_levels[q & 0xF] * (int32_t)a->qs[j];
        is += (int32_t)qlm_iq4_levels[q >> 4] * (int32_t)a->qs[j + 16];
    }
    return is;
}
GROUP_SCALAR(group_iq4_scalar, qlm_block_iq4_nlx8, qlm_block_q8i, block_iq4_scalar)

#if QLM_X86
// ---- AVX2 / AVX-512 ---------------------------------------------------------------------------
// Per group block, each activation token broadcasts its 4 bytes matching a chunk; the
// multiply-accumulates leave row r's exact integer sum in lane r. AVX-512 VNNI does u8 x s8 ->
// s32 in one instruction (vpdpbusd); AVX2 forms the same integers with maddubs and madd (no
// saturation: pairs <= 2 * 15 * 127 for q4_0, 2 * 127 * 127 for q8_0).
QLM_INLINE int32_t ld32(const int8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }

#define DPB_AVX512(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#define DPB_AVX2(acc, u, s) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))

// q4_0: 4 loads give the 8 rows' codes (low nibbles: elements 4c..4c+3 of every row in lane r;
// high nibbles: elements 16+4c..); the sum starts at the block's -8 * sum(a).
// One kernel for both (GROUP_NIB_KERNEL). q5_0: as q4_0, each chunk's codes given their fifth bits (0x10 where the chunk's mask bit is
// set: a masked add on AVX-512, a byte mask on AVX2), the sum starting at the block's
// -16 * sum(a). Codes 0..31: maddubs pairs <= 2 * 31 * 127, no saturation.
#define Q5H_AVX512(v, m) _mm256_mask_add_epi8(v, (__mmask32)(m), v, _mm256_set1_epi8(0x10))
#define Q5H_AVX2(v, m) _mm256_or_si256(v, _mm256_and_si256(bytemask32_avx2(m), _mm256_set1_epi8(0x10)))
// q5_1 (GROUP_NIB_KERNEL_M): q8a activations, codes unsigned (the sum starts at 0), and the
// minimums' term m_w * s_a in a second accumulator per token, added last (the scalar q5_1 dot's
// s + sm); AT is the activation block, START its int32 start, MINS the 8 rows' minimums (or none).
#define GROUP_NIB_KERNEL_M(Q, BT, AT, P, TGT, DPB, H, START, MINS)                                      \
TGT QLM_INLINE void group_##Q##_##P##_nt(int64_t nb, const BT *g, const char *act, size_t as, \
                                      float *Y, int64_t ldy, const int nt) {                           \
    const __m256i m4 = _mm256_set1_epi8(0x0F);                                                          \
    __m256 acc[4], accm[4];                                                                             \
    for (int t = 0; t < 4; t++) acc[t] = accm[t] = _mm256_setzero_ps();                                 \
    for (int64_t b = 0; b < nb; b++) {                                                                  \
        const BT *gb = g + b;                                                             \
        __m256i lo[4], hi[4];                                                                           \
        for (int c = 0; c < 4; c++) {                                                                   \
            const __m256i x = _mm256_loadu_si256((const __m256i *)(gb->qs + 32 * c));                   \
            lo[c] = H(_mm256_and_si256(x, m4), gb->hm[c]);                                              \
            hi[c] = H(_mm256_and_si256(_mm256_srli_epi16(x, 4), m4), gb->hm[4 + c]);                    \
        }                                                                                               \
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)gb->d));                     \
        MINS(const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)gb->m));)              \
        for (int t = 0; t < nt; t++) {                                                                  \
            const AT *ab = (const AT *)(act + (size_t)t * as) + b;                                      \
            __m256i ia = START(ab), ib = _mm256_setzero_si256();                                        \
            for (int c = 0; c < 4; c++) {                                                               \
                ia = DPB(ia, lo[c], _mm256_set1_epi32(ld32(ab->qs + 4 * c)));                           \
                ib = DPB(ib, hi[c], _mm256_set1_epi32(ld32(ab->qs + 16 + 4 * c)));                      \
            }                                                                                           \
            const __m256 sc = _mm256_mul_ps(dw, _mm256_set1_ps(ab->d));                                 \
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(sc, _mm256_cvtepi32_ps(_mm256_add_epi32(ia, ib)))); \
            MINS(accm[t] = _mm256_add_ps(accm[t], _mm256_mul_ps(mw, _mm256_set1_ps(ab->s)));)          \
        }                                                                                               \
    }                                                                                                   \
    for (int t = 0; t < nt; t++) { MINS(acc[t] = _mm256_add_ps(acc[t], accm[t]);) _mm256_storeu_ps(Y + t * ldy, acc[t]); } \
}
#define START_Q8I(ab) _mm256_set1_epi32((ab)->nsum8)
#define NO_MINS(...)
#define GROUP_NIB_KERNEL(Q, BT, P, TGT, DPB, H) GROUP_NIB_KERNEL_M(Q, BT, qlm_block_q8i, P, TGT, DPB, H, START_Q8I, NO_MINS)
#define Q4H_NONE(v, m) (v)
#define GROUP_Q4_KERNEL(P, TGT, DPB) GROUP_NIB_KERNEL(q4, qlm_block_q4_0x8, P, TGT, DPB, Q4H_NONE)
#define GROUP_Q5_KERNEL(P, TGT, DPB, H) GROUP_NIB_KERNEL(q5, qlm_block_q5_0x8, P, TGT, DPB, H)
#define START_ZERO(ab) _mm256_setzero_si256()
#define WITH_MINS(...) __VA_ARGS__
#define GROUP_Q51_KERNEL(P, TGT, DPB, H) GROUP_NIB_KERNEL_M(q51, qlm_block_q5_1x8, qlm_block_q8a, P, TGT, DPB, H, START_ZERO, WITH_MINS)
// q8_0: per half of the block, 4 chunks of codes and their magnitudes stay in registers for all
// tokens; per token and chunk the sign trick, |w| * sign(a, w), gives the signed products.
#define GROUP_Q8_KERNEL(P, TGT, DPB)                                                                    \
TGT QLM_INLINE void group_q8_##P##_nt(int64_t nb, const qlm_block_q8_0x8 *g, const char *act, size_t as, \
                                      float *Y, int64_t ldy, const int nt) {                           \
    __m256 acc[4];                                                                                      \
    for (int t = 0; t < 4; t++) acc[t] = _mm256_setzero_ps();                                           \
    for (int64_t b = 0; b < nb; b++) {                                                                  \
        const qlm_block_q8_0x8 *gb = g + b;                                                             \
        __m256i is[4];                                                                                  \
        for (int t = 0; t < 4; t++) is[t] = _mm256_setzero_si256();                                     \
        for (int h = 0; h < 2; h++) {                                                                   \
            __m256i w[4], wa[4];                                                                        \
            for (int c = 0; c < 4; c++) {                                                               \
                w[c] = _mm256_loadu_si256((const __m256i *)(gb->qs + 32 * (4 * h + c)));                \
                wa[c] = _mm256_abs_epi8(w[c]);                                                          \
            }                                                                                           \
            for (int t = 0; t < nt; t++) {                                                              \
                const qlm_block_q8a *ab = (const qlm_block_q8a *)(act + (size_t)t * as) + b;            \
                for (int c = 0; c < 4; c++)                                                             \
                    is[t] = DPB(is[t], wa[c], _mm256_sign_epi8(_mm256_set1_epi32(ld32(ab->qs + 4 * (4 * h + c))), w[c])); \
            }                                                                                           \
        }                                                                                               \
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)gb->d));                     \
        for (int t = 0; t < nt; t++) {                                                                  \
            const qlm_block_q8a *ab = (const qlm_block_q8a *)(act + (size_t)t * as) + b;                \
            const __m256 sc = _mm256_mul_ps(dw, _mm256_set1_ps(ab->d));                                 \
            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(sc, _mm256_cvtepi32_ps(is[t])));               \
        }                                                                                               \
    }                                                                                                   \
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(Y + t * ldy, acc[t]);                                 \
}
GROUP_Q4_KERNEL(avx2, QLM_AVX2_TARGET, DPB_AVX2)
GROUP_Q4_KERNEL(avx512, QLM_AVX512_TARGET, DPB_AVX512)
GROUP_Q8_KERNEL(avx2, QLM_AVX2_TARGET, DPB_AVX2)
GROUP_Q8_KERNEL(avx512, QLM_AVX512_TARGET, DPB_AVX512)
GROUP_DISPATCH(q4, avx2, QLM_AVX2_TARGET, qlm_block_q4_0x8)
GROUP_DISPATCH(q4, avx512, QLM_AVX512_TARGET, qlm_block_q4_0x8)
GROUP_DISPATCH(q8, avx2, QLM_AVX2_TARGET, qlm_block_q8_0x8)
GROUP_DISPATCH(q8, avx512, QLM_AVX512_TARGET, qlm_block_q8_0x8)
GROUP_Q5_KERNEL(avx2, QLM_AVX2_TARGET, DPB_AVX2, Q5H_AVX2)
GROUP_Q5_KERNEL(avx512, QLM_AVX512_TARGET, DPB_AVX512, Q5H_AVX512)
GROUP_DISPATCH(q5, avx2, QLM_AVX2_TARGET, qlm_block_q5_0x8)
GROUP_DISPATCH(q5, avx512, QLM_AVX512_TARGET, qlm_block_q5_0x8)
GROUP_Q51_KERNEL(avx2, QLM_AVX2_TARGET, DPB_AVX2, Q5H_AVX2)
GROUP_Q51_KERNEL(avx512, QLM_AVX512_TARGET, DPB_AVX512, Q5H_AVX512)
GROUP_DISPATCH(q51, avx2, QLM_AVX2_TARGET, qlm_block_q5_1x8)
GROUP_DISPATCH(q51, avx512, QLM_AVX512_TARGET, qlm_block_q5_1x8)

// iq4_nl: the nibbles index the codebook by pshufb (one 16-byte table in both 128-bit lanes).
// AVX-512: the table holds K + 128 (1..241, unsigned), vpdpbusd sums them exactly and the sum
// starts at the activation's -128 * sum(a), so lane r ends at row r's sum of K * a. AVX2: maddubs
// pairs of 241 * 127 would saturate, so it takes the sign trick (|K| x sign(a, K), pairs <= 2 * 127
// * 127) and starts at 0; the |K| are per block, the signs per token.
#define IQ4_LUT _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qlm_iq4_levels))
#define IQ4H_AVX512(v, m) _mm256_shuffle_epi8(_mm256_xor_si256(IQ4_LUT, _mm256_set1_epi8((char)0x80)), v) // K ^ 0x80 = K + 128
#define IQ4H_AVX2(v, m) _mm256_shuffle_epi8(IQ4_LUT, v)
#define DPB_SIGN_AVX2(acc, w, a) DPB_AVX2(acc, _mm256_abs_epi8(w), _mm256_sign_epi8(a, w))
GROUP_NIB_KERNEL_M(iq4, qlm_block_iq4_nlx8, qlm_block_q8i, avx2, QLM_AVX2_TARGET, DPB_SIGN_AVX2, IQ4H_AVX2, START_ZERO, NO_MINS)
GROUP_NIB_KERNEL(iq4, qlm_block_iq4_nlx8, avx512, QLM_AVX512_TARGET, DPB_AVX512, IQ4H_AVX512)
GROUP_DISPATCH(iq4, avx2, QLM_AVX2_TARGET, qlm_block_iq4_nlx8)
GROUP_DISPATCH(iq4, avx512, QLM_AVX512_TARGET, qlm_block_iq4_nlx8)

// -zp * sum(qs) per block, vectorized: bias the codes to unsigned and sum with vpsadbw.
QLM_AVX2_TARGET static void q8i_avx2(void *act, int64_t nb, int32_t zp) {
    qlm_block_q8a *a = (qlm_block_q8a *)act;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++) {
        const __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)a[b].qs), bias);
        const __m256i s4 = _mm256_sad_epu8(x, _mm256_setzero_si256());
        const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
        const int64_t s = _mm_cvtsi128_si64(_mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2))) - 32 * 128;
        const int32_t n8 = (int32_t)(-zp * s);
        memcpy(&a[b].s, &n8, 4);
    }
}
#endif

GROUP_PICK(q4)
GROUP_PICK(q5)
GROUP_PICK(q51)
GROUP_PICK(q8)
GROUP_PICK(iq4)

// q8i activations: the q8a blocks, each s replaced by the exact -zp * sum(qs) (qlm_block_q8i), in
// place. Integers: the same on every path.
static void prepare_q8i_zp(int32_t path, const float *x, void *act, int64_t n, int32_t zp) {
    qlm_prepare_q8a(path, x, act, n);
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
#if QLM_X86
    if (path != QLM_PATH_SCALAR) { q8i_avx2(act, nb, zp); return; }
#endif
    (void)path;
    q8i_scalar(act, nb, zp);
}
static void prepare_q8i(int32_t path, const float *x, void *act, int64_t n) { prepare_q8i_zp(path, x, act, n, 8); }
static void prepare_q8i16(int32_t path, const float *x, void *act, int64_t n) { prepare_q8i_zp(path, x, act, n, 16); }
void qlm_prepare_q8i128(int32_t path, const float *x, void *act, int64_t n) { prepare_q8i_zp(path, x, act, n, 128); }

// ---- products ---------------------------------------------------------------------------------
typedef struct {
    group_fn f;
    const char *W;
    size_t rs, as;
    int64_t nb, T, ldy;
    const char *act;
    float *Y;
} group_ctx;

static void groups_range(void *p, int64_t g0, int64_t g1) {
    const group_ctx *c = (const group_ctx *)p;
    for (int64_t g = g0; g < g1; g++) {
        const char *w = c->W + (size_t)g * G * c->rs;
        for (int64_t t = 0; t < c->T; t += 4)
            c->f(c->nb, w, c->act + (size_t)t * c->as, c->as, c->Y + t * c->ldy + g * G, c->ldy,
                 (int)(c->T - t < 4 ? c->T - t : 4));
    }
}

// Y[t, 0..rows) = W . act[t] for T prepared activation rows `as` bytes apart (rows rs bytes, nb
// blocks each; rows past the last group through row_dot); every output bit-identical to the scalar
// dot of the row, on every path.
void qlm_group_product(qlm_group_fn f, size_t rs, int64_t nb, qlm_dotn_fn row_dot, qlm_pool *pool, const void *W, int64_t rows,
                       int64_t n, const void *act, size_t as, int64_t T, float *Y, int64_t ldy) {
    const int64_t groups = rows / G;
    const int nth = pool ? qlm_pool_size(pool) : 1;
    group_ctx c = {f, (const char *)W, rs, as, nb, T, ldy, (const char *)act, Y};
    const int parallel = rows * n * T >= QLM_SMALL_PRODUCT;
    if (T == 1) {
        // Decode streams the matrix from memory: one contiguous share per thread, 8 groups per
        // step. No software prefetch: the hardware prefetcher follows the one stream, and a
        // prefetch 4 blocks ahead made the products slower (0.81 vs 0.93 of a read of the same
        // bytes, 2 threads; 0.81 vs 0.96 on one thread; scratch A/B in one process). With the
        // shares: 0.73 -> 0.91 (scripts/bench/products_vs_read.sh --base 8d5a21b, docs/benchmarks.md).
        qlm_pool_for_shares(pool, parallel, groups, 8, groups_range, &c);
    } else {
        // Prefill is compute-bound: 8 pieces per thread from one counter, for balance.
        const int64_t per = 8 * (int64_t)nth, chunk = (groups + per - 1) / per;
        qlm_pool_for(pool, parallel, groups, chunk < 2 ? 2 : chunk, groups_range, &c);
    }
    for (int64_t r = groups * G; r < rows; r++) // rows past the last group: plain rows
        for (int64_t t = 0; t < T; t++)
            row_dot(n, (const char *)W + (size_t)r * rs, rs, (const char *)act + (size_t)t * as, Y + t * ldy + r, 1);
}
static void product(const group_layout *L, group_fn f, qlm_pool *pool, const void *W, int64_t rows, int64_t n,
                    const void *act, size_t as, int64_t T, float *Y, int64_t ldy) {
    qlm_group_product(f, L->row_size(n), (n + QLM_QK - 1) / QLM_QK, L->row_dot, pool, W, rows, n, act, as, T, Y, ldy);
}

// A layout's table entry points: its products, regrouping, row reads.
#define LAYOUT_ENTRIES(Q)                                                                                                    \
    static void product_##Q(qlm_pool *pool, int32_t path, const void *W, int64_t rows, int64_t n, const void *act, size_t as, \
                            int64_t T, float *Y, int64_t ldy) {                                                              \
        product(&k_##Q, group_##Q##_kernel(path), pool, W, rows, n, act, as, T, Y, ldy);                                     \
    }                                                                                                                        \
    static int regroup_##Q(void *data, int64_t rows, int64_t n, int pack) { return regroup(&k_##Q, data, rows, n, pack); }    \
    static void get_row_##Q(const void *src, int64_t rows, int64_t n, int64_t r, float *y) { get_row(&k_##Q, src, rows, n, r, y); } \
    static void plain_row_##Q(const void *src, int64_t rows, int64_t n, int64_t r, void *dst) { plain_row(&k_##Q, src, rows, n, r, dst); }
LAYOUT_ENTRIES(q4)
LAYOUT_ENTRIES(q5)
LAYOUT_ENTRIES(q51)
LAYOUT_ENTRIES(q8)
LAYOUT_ENTRIES(iq4)

// ---- table rows ------------------------------------------------------------------------------
// Per row: the bytes and numbers of a row of the type's plain_type, stored in groups of 8 rows; a lone row (or
// one past the last group) is a plain row, quantized, read and dotted as one.
const qlm_type_traits qlm_traits_q4_0x8 = {
    .name = "q4_0x8", .summary = "q4_0 stored in 8-row groups for the 8-row decode kernel",
    .block_size = QLM_QK, .block_bytes = sizeof(qlm_block_q4_0), .is_quantized = 1,
    .act_type = QLM_ACT_Q8I, .row_group = G, .plain_type = QLM_TYPE_Q4_0, .code_bits = 4,
    .fp16_count = 1, .fp16_offsets = {offsetof(qlm_block_q4_0, d)},
    .row_size = qlm_q4_0_row_size, .quantize_row = qlm_q4_0_quantize_row, .dequantize_row = qlm_q4_0_dequantize_row,
    .act_row_size = qlm_act_size_q8a, .prepare_act = prepare_q8i,
    // the scalar q4_0 row dot on every path: lone rows only (products go through `product`)
    .dotn = {[QLM_PATH_SCALAR] = qlm_q4_0_dotn_scalar},
    .product = product_q4, .regroup = regroup_q4, .get_row = get_row_q4, .plain_row = plain_row_q4,
    .gptq_row = qlm_q4_0_gptq_row, .quantize_row_imp = qlm_q4_0_quantize_row_imp,
};
const qlm_type_traits qlm_traits_q8_0x8 = {
    .name = "q8_0x8", .summary = "q8_0 stored in 8-row groups for the 8-row kernels",
    .block_size = QLM_QK, .block_bytes = sizeof(qlm_block_q8_0), .is_quantized = 1,
    .act_type = QLM_ACT_Q8A, .row_group = G, .plain_type = QLM_TYPE_Q8_0, .code_bits = 8,
    .fp16_count = 1, .fp16_offsets = {offsetof(qlm_block_q8_0, d)},
    .row_size = qlm_q8_0_row_size, .quantize_row = qlm_q8_0_quantize_row, .dequantize_row = qlm_q8_0_dequantize_row,
    .act_row_size = qlm_act_size_q8a, .prepare_act = qlm_prepare_q8a,
    .dotn = {[QLM_PATH_SCALAR] = qlm_q8_0_dotn_scalar},
    .product = product_q8, .regroup = regroup_q8, .get_row = get_row_q8, .plain_row = plain_row_q8,
    .gptq_row = qlm_q8_0_gptq_row, .quantize_row_imp = qlm_q8_0_quantize_row_imp,
};
// q5_0x8: decode of q5_0 rows is compute-bound (docs/benchmarks.md, issue 28: 15-17 GB/s per core
// from L2, 41% of SmolLM2 Q4_K_M's decode). `convert --type q5_0x8` stores this layout, and
// `convert --type keep` regroups a GGUF's q5_0 matrices into it. Products equal the scalar q5_0 dot.
const qlm_type_traits qlm_traits_q5_0x8 = {
    .name = "q5_0x8", .summary = "q5_0 stored in 8-row groups for the 8-row kernels",
    .block_size = QLM_QK, .block_bytes = 22, .is_quantized = 1,
    .act_type = QLM_ACT_Q8I, .row_group = G, .plain_type = QLM_TYPE_Q5_0, .code_bits = 5,
    .fp16_count = 1, .fp16_offsets = {0},
    .row_size = qlm_q5_0_row_size, .quantize_row = qlm_q5_0_quantize_row, .dequantize_row = qlm_q5_0_dequantize_row,
    .act_row_size = qlm_act_size_q8a, .prepare_act = prepare_q8i16,
    .dotn = {[QLM_PATH_SCALAR] = qlm_q5_0_dotn_scalar},
    .product = product_q5, .regroup = regroup_q5, .get_row = get_row_q5, .plain_row = plain_row_q5,
    .quantize_row_imp = qlm_q5_0_quantize_row_imp,
};
// iq4_nlx8: decode of iq4_nl rows runs at ~0.5-0.7 of the bandwidth probe (docs/benchmarks.md,
// issue 28: SmolLM2 IQ4_XS, whose 576-wide rows are iq4_nl); `convert --type iq4_nlx8` stores this
// layout, and `convert --type keep` regroups a GGUF's iq4_nl matrices into it. Products equal the
// scalar iq4_nl dot.
const qlm_type_traits qlm_traits_iq4_nlx8 = {
    .name = "iq4_nlx8", .summary = "iq4_nl stored in 8-row groups for the 8-row kernels",
    .block_size = QLM_QK, .block_bytes = sizeof(qlm_block_q4_0), .is_quantized = 1,
    .act_type = QLM_ACT_Q8I, .row_group = G, .plain_type = QLM_TYPE_IQ4_NL, .code_bits = 4,
    .fp16_count = 1, .fp16_offsets = {offsetof(qlm_block_q4_0, d)},
    .row_size = qlm_iq4_nl_row_size, .quantize_row = qlm_iq4_nl_quantize_row, .dequantize_row = qlm_iq4_nl_dequantize_row,
    .act_row_size = qlm_act_size_q8a, .prepare_act = qlm_prepare_q8i128,
    .dotn = {[QLM_PATH_SCALAR] = qlm_iq4_nl_dotn_scalar},
    .product = product_iq4, .regroup = regroup_iq4, .get_row = get_row_iq4, .plain_row = plain_row_iq4,
    .quantize_row_imp = qlm_iq4_nl_quantize_row_imp,
};
_Static_assert(offsetof(qlm_block_q5_0x8, d) == 0 && offsetof(qlm_block_q5_0x8, hm) == 2 * G && offsetof(qlm_block_q5_0x8, qs) == 6 * G,
               "a q5_0x8 group block: the 8 scales, the 8 masks, the codes");
// q5_1x8: decode of q5_1 rows is compute-bound as q5_0's (SmolLM2 Q5_1 and Q5_K_M are mostly q5_1
// rows). `convert --type q5_1x8` stores this layout, and `convert --type keep` regroups a GGUF's
// q5_1 matrices into it. Products equal the scalar q5_1 dot; its quantizers are q5_1's.
const qlm_type_traits qlm_traits_q5_1x8 = {
    .name = "q5_1x8", .summary = "q5_1 stored in 8-row groups for the 8-row kernels",
    .block_size = QLM_QK, .block_bytes = 24, .is_quantized = 1,
    .act_type = QLM_ACT_Q8A, .row_group = G, .plain_type = QLM_TYPE_Q5_1, .code_bits = 5,
    .fp16_count = 2, .fp16_offsets = {0, 2},
    .row_size = qlm_q5_1_row_size, .quantize_row = qlm_q5_1_quantize_row, .dequantize_row = qlm_q5_1_dequantize_row,
    .act_row_size = qlm_act_size_q8a, .prepare_act = qlm_prepare_q8a,
    .dotn = {[QLM_PATH_SCALAR] = qlm_q5_1_dotn_scalar},
    .product = product_q51, .regroup = regroup_q51, .get_row = get_row_q51, .plain_row = plain_row_q51,
    .quantize_row_imp = qlm_q5_1_quantize_row_imp,
};
_Static_assert(offsetof(qlm_block_q5_1x8, d) == 0 && offsetof(qlm_block_q5_1x8, m) == 2 * G && offsetof(qlm_block_q5_1x8, hm) == 4 * G &&
               offsetof(qlm_block_q5_1x8, qs) == 8 * G,
               "a q5_1x8 group block: the 8 scales, the 8 minimums, the 8 masks, the codes");
_Static_assert(offsetof(qlm_block_q4_0x8, d) == 0 && sizeof(((qlm_block_q4_0x8 *)0)->d) == G * 2 &&
               offsetof(qlm_block_q4_0x8, qs) == 2 * G,
               "a group block stores fp16 field 0 of row r at 2r, then the codes (the rule in qlm_type_traits)");
_Static_assert(offsetof(qlm_block_q8_0x8, d) == 0 && sizeof(((qlm_block_q8_0x8 *)0)->d) == G * 2 &&
               offsetof(qlm_block_q8_0x8, qs) == 2 * G,
               "a group block stores fp16 field 0 of row r at 2r, then the codes (the rule in qlm_type_traits)");
