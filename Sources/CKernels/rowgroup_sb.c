// Row-grouped super-block types: q3_k (Q3_KX8) and iq4_xs (IQ4_XSX8) rows stored row-interleaved in
// groups of 8 rows (qlm_block_q3_kx8, qlm_block_iq4_xsx8), and the 8-row kernels that read them. The 32-weight row-grouped types are in
// rowgroup.c, whose product loop (qlm_group_product) these layouts share.
//
// Why: a q3_k row dot is compute-bound (SmolLM2 Q2_K's 1536-wide ffn_down rows are q3_k: 13% of the
// decode's bytes, 50% of its product time, 1 thread; docs/benchmarks-log.md, "q3_kx8"). Per 32
// weights a row kernel decodes two 6-bit scales in scalar code, builds a scale vector, and folds its
// lanes per row. With 8 rows interleaved, one 256-bit load gives 4 codes of each of the 8 rows (lane
// r = row r, no horizontal sums), the activation bytes are broadcast once for 8 rows, the 128 scales
// of a super-block are decoded with a few vector ops, and the float steps run on 8 rows at once.
//
// Arithmetic: per row and 32-weight sub-block the integer sum is exact; the float steps are the
// scalar q3_k dot's, in sub-block order (s += (d_w * d_a) * (float)isum, no FMA), so every product
// on every path equals the scalar dot of the de-interleaved row bit for bit. Rows past the last
// whole group are stored as plain rows and use the scalar row dot.
#include "qlm_simd.h"
#include <stddef.h>
#include <stdlib.h>

#pragma clang fp contract(off)

#define G 8 // rows per group

// ---- layout ---------------------------------------------------------------------------------
// A group block holds super-block b of 8 rows: every field of the row block (offset off, size bytes)
// at 8 * off, the 8 rows interleaved in units of u bytes: row r's byte j of the field at
// 8 * off + 8u * (j / u) + u * r + j % u (u = 2 for an fp16 field keeps the traits' rule: fp16 field
// o of row r at 8 * o + 2r).
typedef struct { int off, size, unit; } sb_field;
typedef struct {
    int bytes;                                           // bytes of a row's super-block
    sb_field f[4];
    int nf;
    size_t (*row_size)(int64_t n);
    void (*dequantize_row)(const void *src, float *y, int64_t n);
    qlm_dotn_fn row_dot;                                 // scalar dot of a plain row
} sb_layout;
static const sb_layout k_q3k = {110, {{0, 32, 4}, {32, 64, 4}, {96, 12, 1}, {108, 2, 2}}, 4,
                                qlm_q3_k_row_size, qlm_q3_k_dequantize_row, qlm_q3_k_dotn_scalar};

QLM_INLINE size_t sb_index(const sb_field *f, int r, int j) {
    return (size_t)(G * f->off + G * f->unit * (j / f->unit) + f->unit * r + j % f->unit);
}
// Row r's plain super-block out of a group block, or into one (to_group).
static void sb_move(const sb_layout *L, char *gb, int r, char *rb, int to_group) {
    for (int k = 0; k < L->nf; k++) {
        const sb_field *f = &L->f[k];
        for (int j = 0; j < f->size; j++) {
            if (to_group) gb[sb_index(f, r, j)] = rb[f->off + j];
            else rb[f->off + j] = gb[sb_index(f, r, j)];
        }
    }
}

static int sb_regroup(const sb_layout *L, void *data, int64_t rows, int64_t n, int pack) {
    if (rows < G || n <= 0) return 0;
    const size_t rs = L->row_size(n);
    const int64_t nsb = (int64_t)(rs / (size_t)L->bytes);
    char *tmp = (char *)malloc(G * rs);
    if (!tmp) return -1;
    for (int64_t g = 0; g < rows / G; g++) {
        char *p = (char *)data + (size_t)g * G * rs;
        for (int r = 0; r < G; r++)
            for (int64_t b = 0; b < nsb; b++) {
                char *gb = (pack ? tmp : p) + (size_t)b * G * L->bytes;
                char *rb = (pack ? p : tmp) + (size_t)r * rs + (size_t)b * L->bytes;
                sb_move(L, gb, r, rb, pack);
            }
        memcpy(p, tmp, G * rs);
    }
    free(tmp);
    return 0;
}

static void sb_plain_row(const sb_layout *L, const void *src, int64_t rows, int64_t n, int64_t r, void *dst) {
    const size_t rs = L->row_size(n);
    if (r >= rows / G * G) { memcpy(dst, (const char *)src + (size_t)r * rs, rs); return; }
    const char *g = (const char *)src + (size_t)(r / G) * G * rs;
    for (int64_t b = 0; b < (int64_t)(rs / (size_t)L->bytes); b++)
        sb_move(L, (char *)g + (size_t)b * G * L->bytes, (int)(r % G), (char *)dst + (size_t)b * L->bytes, 0);
}

static void sb_get_row(const sb_layout *L, const void *src, int64_t rows, int64_t n, int64_t r, float *y) {
    const size_t rs = L->row_size(n);
    if (r >= rows / G * G) { L->dequantize_row((const char *)src + (size_t)r * rs, y, n); return; }
    const char *g = (const char *)src + (size_t)(r / G) * G * rs;
    for (int64_t b = 0; b * 256 < n; b++) { // row r's super-block b, rebuilt and read by the row dequantizer
        char blk[256];
        sb_move(L, (char *)g + (size_t)b * G * L->bytes, (int)(r % G), blk, 0);
        L->dequantize_row(blk, y + b * 256, n - b * 256 < 256 ? n - b * 256 : 256);
    }
}

// ---- activations ------------------------------------------------------------------------------
// q3_kx8 takes q8a blocks whose s is replaced by two int16 (qlm_block_q8i's nsum8): the exact
// -4 * sum(qs[0..15]) (low half) and -4 * sum(qs[16..31]) (high half), the start of each 16-weight
// group's sum over the unsigned codes (code + 4, 0..7). |4 * sum| <= 4 * 16 * 127 fits int16.
static void prepare_q8h4(int32_t path, const float *x, void *act, int64_t n) {
    qlm_prepare_q8a(path, x, act, n);
    qlm_block_q8i *a = (qlm_block_q8i *)act;
    for (int64_t b = 0; b < (n + QLM_QK - 1) / QLM_QK; b++) {
        int32_t s0 = 0, s1 = 0;
        for (int j = 0; j < 16; j++) { s0 += a[b].qs[j]; s1 += a[b].qs[16 + j]; }
        const uint32_t h = (uint32_t)(uint16_t)(int16_t)(-4 * s0) | (uint32_t)(uint16_t)(int16_t)(-4 * s1) << 16;
        memcpy(&a[b].nsum8, &h, 4);
    }
}

// ---- scalar ---------------------------------------------------------------------------------
static void group_q3k_scalar(int64_t nb, const void *g_, const char *act, size_t as, float *Y, int64_t ldy, int nt) {
    const qlm_block_q3_kx8 *g = (const qlm_block_q3_kx8 *)g_;
    for (int t = 0; t < nt; t++) {
        const qlm_block_q8a *a = (const qlm_block_q8a *)(act + (size_t)t * as);
        for (int r = 0; r < G; r++) {
            char blk[110];
            float s = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                if (b % 8 == 0) sb_move(&k_q3k, (char *)&g[b / 8], r, blk, 0);
                uint16_t d;
                memcpy(&d, blk + 108, 2);
                s += (qlm_h2f(d) * a[b].d) * (float)qlm_q3_k_isum(blk, (int)(b % 8), a[b].qs);
            }
            Y[t * ldy + r] = s;
        }
    }
}

#if QLM_X86
// ---- AVX2 / AVX-512 ---------------------------------------------------------------------------
// Sub-block j of a super-block (weights 32j..32j+31 of each row), chunk c (its weights 4c..4c+3):
// the 2-bit parts are the qs chunk 8 * (j / 4) + c shifted by 2 * (j % 4), the high bits bit j of
// the hmask chunk c; u = q | 4h = code + 4 (0..7) as unsigned bytes. Chunks 0..3 are the first
// 16-weight group, 4..7 the second; each group's sum starts at the activation's -4 * sum(a) of those
// 16, so lane r ends at row r's sum of code * a, exact. AVX-512 VNNI: vpdpbusd; AVX2: maddubs + madd
// (pairs <= 2 * 7 * 128, no saturation). Then lane r: s0 * sum0 + s1 * sum1 (int32, exact), and the
// float step on 8 rows: acc += (d_w * d_a) * (float)isum.
QLM_INLINE int32_t sb_ld32(const int8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }
#define SB_DPB_AVX512(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#define SB_DPB_AVX2(acc, u, s) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))

// The 128 signed scales (-32..31) of a group block: sc[8 * k + r] = row r's scale of 16-weight group k.
// scales byte k of row r sits at 8k + r: bytes 0..3 (L0) hold groups 0..3 (low nibbles) and 8..11
// (high), bytes 4..7 (L1) groups 4..7 and 12..15; bytes 8..11 (H) the high 2 bits, group k's at
// bits 2 * (k / 4) of byte 8 + k % 4.
#define Q3KX8_SCALES(TGT, P)                                                                         \
TGT static inline void q3kx8_scales_##P(const qlm_block_q3_kx8 *B, int8_t *sc) {                    \
    const __m256i L0 = _mm256_loadu_si256((const __m256i *)B->scales);                              \
    const __m256i L1 = _mm256_loadu_si256((const __m256i *)(B->scales + 32));                       \
    const __m256i H = _mm256_loadu_si256((const __m256i *)(B->scales + 64));                        \
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), o = _mm256_set1_epi8(32); \
    const __m256i g0 = _mm256_or_si256(_mm256_and_si256(L0, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30)); \
    const __m256i g4 = _mm256_or_si256(_mm256_and_si256(L1, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30)); \
    const __m256i g8 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L0, 4), m4), _mm256_and_si256(H, m30)); \
    const __m256i g12 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(H, 2), m30)); \
    _mm256_storeu_si256((__m256i *)sc, _mm256_sub_epi8(g0, o));                                     \
    _mm256_storeu_si256((__m256i *)(sc + 32), _mm256_sub_epi8(g4, o));                              \
    _mm256_storeu_si256((__m256i *)(sc + 64), _mm256_sub_epi8(g8, o));                              \
    _mm256_storeu_si256((__m256i *)(sc + 96), _mm256_sub_epi8(g12, o));                             \
}

#define Q3KX8_KERNEL(TGT, P, DPB)                                                                   \
TGT static inline void group_q3k_##P##_nt(int64_t nb, const qlm_block_q3_kx8 *gb, const char *act, size_t as, \
                                          float *Y, int64_t ldy, const int NT) {                    \
    const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);                           \
    _Alignas(32) int8_t sc[16 * G];                                                                 \
    __m256 f[4], dv = _mm256_setzero_ps();                                                          \
    for (int t = 0; t < NT; t++) f[t] = _mm256_setzero_ps();                                        \
    for (int64_t g = 0; g < nb; g++) {                                                              \
        const qlm_block_q3_kx8 *B = gb + g / 8;                                                     \
        const int j = (int)(g % 8);                                                                 \
        if (j == 0) {                                                                               \
            q3kx8_scales_##P(B, sc);                                                                \
            dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)B->d));                           \
        }                                                                                           \
        const __m128i sq = _mm_cvtsi32_si128(2 * (j % 4)), sh = _mm_cvtsi32_si128(j);               \
        const uint8_t *qs = B->qs + 256 * (j / 4);                                                  \
        const qlm_block_q8i *a[4];                                                                  \
        __m256i s0[4], s1[4];                                                                       \
        for (int t = 0; t < NT; t++) {                                                              \
            a[t] = (const qlm_block_q8i *)(act + (size_t)t * as) + g;                               \
            uint32_t h;                                                                             \
            memcpy(&h, &a[t]->nsum8, 4);                                                            \
            s0[t] = _mm256_set1_epi32((int16_t)(h & 0xFFFF));                                       \
            s1[t] = _mm256_set1_epi32((int16_t)(h >> 16));                                          \
        }                                                                                           \
        for (int c = 0; c < 8; c++) {                                                               \
            const __m256i lo = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(qs + 32 * c)), sq), three); \
            const __m256i hb = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(B->hmask + 32 * c)), sh), one); \
            const __m256i u = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 2));                        \
            for (int t = 0; t < NT; t++) {                                                          \
                const __m256i av = _mm256_set1_epi32(sb_ld32(a[t]->qs + 4 * c));                    \
                if (c < 4) s0[t] = DPB(s0[t], u, av);                                               \
                else s1[t] = DPB(s1[t], u, av);                                                     \
            }                                                                                       \
        }                                                                                           \
        const __m256i k0 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(sc + 16 * j)));  \
        const __m256i k1 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(sc + 16 * j + 8))); \
        for (int t = 0; t < NT; t++) {                                                              \
            const __m256i is = _mm256_add_epi32(_mm256_mullo_epi32(s0[t], k0), _mm256_mullo_epi32(s1[t], k1)); \
            f[t] = _mm256_add_ps(f[t], _mm256_mul_ps(_mm256_mul_ps(dv, _mm256_set1_ps(a[t]->d)), _mm256_cvtepi32_ps(is))); \
        }                                                                                           \
    }                                                                                               \
    for (int t = 0; t < NT; t++) _mm256_storeu_ps(Y + t * ldy, f[t]);                               \
}                                                                                                   \
GROUP_DISPATCH(q3k, P, TGT, qlm_block_q3_kx8)
Q3KX8_SCALES(QLM_AVX2_TARGET, avx2)
Q3KX8_SCALES(QLM_AVX512_TARGET, avx512)
Q3KX8_KERNEL(QLM_AVX2_TARGET, avx2, SB_DPB_AVX2)
Q3KX8_KERNEL(QLM_AVX512_TARGET, avx512, SB_DPB_AVX512)
#endif

// ---- iq4_xsx8 -----------------------------------------------------------------------------------
// iq4_xs rows (136 bytes per super-block: fp16 d, u16 scales_h, scales_l[4], qs[128]) in 8-row
// groups, the same rule: d at 2r, scales_h at 16 + 2r, scales_l byte k at 32 + 8k + r, qs in 4-byte
// units at 64 + 32c + 4r (c = 0..31), so sub-block j's codes are the chunks 4j..4j+3, each
// iq4_nlx8's chunk (low nibbles: elements 4c'..4c'+3, high nibbles: 16 + 4c'..).
static const sb_layout k_iq4xs = {136, {{0, 2, 2}, {2, 2, 2}, {4, 4, 1}, {8, 128, 4}}, 4,
                                  qlm_iq4_xs_row_size, qlm_iq4_xs_dequantize_row, qlm_iq4_xs_dotn_scalar};

static void group_iq4xs_scalar(int64_t nb, const void *g_, const char *act, size_t as, float *Y, int64_t ldy, int nt) {
    const qlm_block_iq4_xsx8 *g = (const qlm_block_iq4_xsx8 *)g_;
    for (int t = 0; t < nt; t++) {
        const qlm_block_q8a *a = (const qlm_block_q8a *)(act + (size_t)t * as);
        for (int r = 0; r < G; r++) {
            char blk[136];
            float s = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                if (b % 8 == 0) sb_move(&k_iq4xs, (char *)&g[b / 8], r, blk, 0);
                uint16_t d;
                memcpy(&d, blk, 2);
                s += (qlm_h2f(d) * a[b].d) * (float)qlm_iq4_xs_isum(blk, (int)(b % 8), a[b].qs);
            }
            Y[t * ldy + r] = s;
        }
    }
}

#if QLM_X86
// Per sub-block j and chunk c' (0..3): the low nibbles pair with activation bytes 4c'.., the high
// with 16 + 4c'..; the codebook by pshufb. AVX-512: K + 128 (unsigned) by vpdpbusd from the q8i
// activation's -128 * sum(a); AVX2: |K| x sign(a, K) from 0 (iq4_nlx8's two forms). Lane r = row r's
// sum of K * a, exact; times its 6-bit scale - 32 (int32, exact), then the float step on 8 rows.
#define XS8_LUT_AVX512 _mm256_xor_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qlm_iq4_levels)), _mm256_set1_epi8((char)0x80))
#define XS8_LUT_AVX2 _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qlm_iq4_levels))
#define XS8_START_AVX512(a) _mm256_set1_epi32((a)->nsum8)
#define XS8_START_AVX2(a) _mm256_setzero_si256()
#define XS8_DPB_AVX512(acc, w, av) _mm256_dpbusd_epi32(acc, w, av)
#define XS8_DPB_AVX2(acc, w, av) SB_DPB_AVX2(acc, _mm256_abs_epi8(w), _mm256_sign_epi8(av, w))
#define XS8_KERNEL(TGT, P, LUT, START, DPB)                                                                          \
TGT static inline void group_iq4xs_##P##_nt(int64_t nb, const qlm_block_iq4_xsx8 *gb, const char *act, size_t as, \
                                            float *Y, int64_t ldy, const int NT) {                  \
    const __m256i lut = LUT, m4 = _mm256_set1_epi8(0x0F);                                   \
    __m256 f[4], dv = _mm256_setzero_ps();                                                          \
    __m256i shv = _mm256_setzero_si256();                                                           \
    for (int t = 0; t < NT; t++) f[t] = _mm256_setzero_ps();                                        \
    for (int64_t g = 0; g < nb; g++) {                                                              \
        const qlm_block_iq4_xsx8 *B = gb + g / 8;                                                   \
        const int j = (int)(g % 8);                                                                 \
        if (j == 0) {                                                                               \
            dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)B->d));                           \
            shv = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)B->scales_h));             \
        }                                                                                           \
        const __m256i lsl = _mm256_srl_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(B->scales_l + 8 * (j / 2)))), \
                                             _mm_cvtsi32_si128(4 * (j % 2)));                       \
        const __m256i lsh = _mm256_and_si256(_mm256_srl_epi32(shv, _mm_cvtsi32_si128(2 * j)), _mm256_set1_epi32(3)); \
        const __m256i ls = _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(lsl, _mm256_set1_epi32(15)), _mm256_slli_epi32(lsh, 4)), \
                                            _mm256_set1_epi32(32));                                 \
        const qlm_block_q8i *a[4];                                                                  \
        __m256i acc[4];                                                                             \
        for (int t = 0; t < NT; t++) {                                                              \
            a[t] = (const qlm_block_q8i *)(act + (size_t)t * as) + g;                               \
            acc[t] = START(a[t]);                                                           \
        }                                                                                           \
        for (int c = 0; c < 4; c++) {                                                               \
            const __m256i v = _mm256_loadu_si256((const __m256i *)(B->qs + 32 * (4 * j + c)));       \
            const __m256i wl = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, m4));                   \
            const __m256i wh = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4)); \
            for (int t = 0; t < NT; t++) {                                                          \
                acc[t] = DPB(acc[t], wl, _mm256_set1_epi32(sb_ld32(a[t]->qs + 4 * c)));     \
                acc[t] = DPB(acc[t], wh, _mm256_set1_epi32(sb_ld32(a[t]->qs + 16 + 4 * c))); \
            }                                                                                       \
        }                                                                                           \
        for (int t = 0; t < NT; t++) {                                                              \
            const __m256i is = _mm256_mullo_epi32(acc[t], ls);                                      \
            f[t] = _mm256_add_ps(f[t], _mm256_mul_ps(_mm256_mul_ps(dv, _mm256_set1_ps(a[t]->d)), _mm256_cvtepi32_ps(is))); \
        }                                                                                           \
    }                                                                                               \
    for (int t = 0; t < NT; t++) _mm256_storeu_ps(Y + t * ldy, f[t]);                               \
}                                                                                                   \
GROUP_DISPATCH(iq4xs, P, TGT, qlm_block_iq4_xsx8)
XS8_KERNEL(QLM_AVX2_TARGET, avx2, XS8_LUT_AVX2, XS8_START_AVX2, XS8_DPB_AVX2)
XS8_KERNEL(QLM_AVX512_TARGET, avx512, XS8_LUT_AVX512, XS8_START_AVX512, XS8_DPB_AVX512)
#endif

GROUP_PICK(q3k)
GROUP_PICK(iq4xs)

// ---- table row --------------------------------------------------------------------------------
// A layout's table entry points: its products, regrouping, row reads.
#define SB_ENTRIES(Q)                                                                                                        \
    static void product_##Q(qlm_pool *pool, int32_t path, const void *W, int64_t rows, int64_t n, const void *act, size_t as, \
                            int64_t T, float *Y, int64_t ldy) {                                                              \
        qlm_group_product(group_##Q##_kernel(path), k_##Q.row_size(n), (n + QLM_QK - 1) / QLM_QK, k_##Q.row_dot, pool, W, rows, n, \
                          act, as, T, Y, ldy);                                                                               \
    }                                                                                                                        \
    static int regroup_##Q(void *data, int64_t rows, int64_t n, int pack) { return sb_regroup(&k_##Q, data, rows, n, pack); } \
    static void get_row_##Q(const void *src, int64_t rows, int64_t n, int64_t r, float *y) { sb_get_row(&k_##Q, src, rows, n, r, y); } \
    static void plain_row_##Q(const void *src, int64_t rows, int64_t n, int64_t r, void *dst) { sb_plain_row(&k_##Q, src, rows, n, r, dst); }
SB_ENTRIES(q3k)
SB_ENTRIES(iq4xs)

// q3_kx8: the q3_k rows of SmolLM2 Q2_K / Q3_K_M (their 1536-wide ffn_down) in 8-row groups.
// `convert --type q3_kx8` stores this layout, and `convert --type keep` regroups a GGUF's q3_k
// matrices into it. Products equal the scalar q3_k dot; its quantizers are q3_k's.
const qlm_type_traits qlm_traits_q3_kx8 = {
    .name = "q3_kx8", .summary = "q3_k stored in 8-row groups for the 8-row kernels",
    .block_size = 256, .block_bytes = 110, .is_quantized = 1,
    .act_type = QLM_ACT_Q8I, .row_group = G, .plain_type = QLM_TYPE_Q3_K, .code_bits = 3,
    .fp16_count = 1, .fp16_offsets = {108},
    .whole_blocks = 1, .row_fallback = QLM_TYPE_IQ4_NL, // as q3_k
    .row_size = qlm_q3_k_row_size, .quantize_row = qlm_q3_k_quantize_row, .dequantize_row = qlm_q3_k_dequantize_row,
    .quantize_row_imp = qlm_q3_k_quantize_row_imp,
    .act_row_size = qlm_act_size_q8a, .prepare_act = prepare_q8h4,
    // the scalar q3_k row dot on every path: lone rows only (products go through qlm_group_product)
    .dotn = {[QLM_PATH_SCALAR] = qlm_q3_k_dotn_scalar},
    .product = product_q3k, .regroup = regroup_q3k, .get_row = get_row_q3k, .plain_row = plain_row_q3k,
};
_Static_assert(offsetof(qlm_block_q3_kx8, qs) == 8 * 32 && offsetof(qlm_block_q3_kx8, scales) == 8 * 96 &&
                   offsetof(qlm_block_q3_kx8, d) == 8 * 108,
               "a q3_kx8 group block: each q3_k field at 8 x its offset");
// iq4_xsx8: the iq4_xs rows of SmolLM2 IQ4_XS (its 1536-wide ffn_down) in 8-row groups. `convert
// --type iq4_xsx8` stores this layout, and `convert --type keep` regroups a GGUF's iq4_xs matrices
// into it. Products equal the scalar iq4_xs dot; its quantizers are iq4_xs's.
const qlm_type_traits qlm_traits_iq4_xsx8 = {
    .name = "iq4_xsx8", .summary = "iq4_xs stored in 8-row groups for the 8-row kernels",
    .block_size = 256, .block_bytes = 136, .is_quantized = 1,
    .act_type = QLM_ACT_Q8I, .row_group = G, .plain_type = QLM_TYPE_IQ4_XS, .code_bits = 4,
    .fp16_count = 1, .fp16_offsets = {0},
    .whole_blocks = 1, .row_fallback = QLM_TYPE_IQ4_NL, // as iq4_xs
    .row_size = qlm_iq4_xs_row_size, .quantize_row = qlm_iq4_xs_quantize_row, .dequantize_row = qlm_iq4_xs_dequantize_row,
    .quantize_row_imp = qlm_iq4_xs_quantize_row_imp,
    .act_row_size = qlm_act_size_q8a, .prepare_act = qlm_prepare_q8i128,
    .dotn = {[QLM_PATH_SCALAR] = qlm_iq4_xs_dotn_scalar},
    .product = product_iq4xs, .regroup = regroup_iq4xs, .get_row = get_row_iq4xs, .plain_row = plain_row_iq4xs,
};
_Static_assert(offsetof(qlm_block_iq4_xsx8, scales_h) == 8 * 2 && offsetof(qlm_block_iq4_xsx8, scales_l) == 8 * 4 &&
                   offsetof(qlm_block_iq4_xsx8, qs) == 8 * 8,
               "an iq4_xsx8 group block: each iq4_xs field at 8 x its offset");
