// K-quant super-blocks in 8-row groups: q4_kx8 (type 21), q6_kx8 (type 22) and q5_kx8 (type 23)
// hold ggml's Q4_K / Q6_K / Q5_K blocks of 8 consecutive rows, the bytes permuted (docs/format.md),
// and the 8-row kernels that read them.
//
// Why: the one-token q4_k / q6_k row dots ran at about half the speed per byte of q5_0x8 (SmolLM2
// Q4_K_M decode, 1 thread, perf: q6_k 1.33 and q4_k 0.98 % of the run per MiB against q5_0x8's
// 0.58; docs/benchmarks-log.md, "q4_kx8 / q6_kx8"). With 8 rows interleaved, 32-bit lane r of every
// product register is row r: the 4 activation bytes of a chunk are broadcast once for 8 rows, the
// 8 rows' sub-scales come in one vector per 32-weight group, and no row needs a horizontal sum.
//
// Arithmetic: the scheme of ksuper.h. Per row, super-block and 32-weight group g the exact integers
//   isum_g = sum_{k in g} sc_k sum_{e in k} q(e) a(e)   [q6_k: + sum_k (-32 sc_k) bsums_k]
//   imin_g = m_g (bsums_2g + bsums_2g+1)                   (q4_k, q5_k; q6_k: none)
// then S_g += (d * d_a[g]) * (float)isum_g and M_g += (dmin * d_a[g]) * (float)imin_g, in
// super-block order, and the row's result ((S0 + S4) + (S2 + S6)) + ((S1 + S5) + (S3 + S7)) minus
// the same of M (kq_hsum8): here lane r of vector S_g is row r's S_g, so the float steps are the
// scalar dot's, in its order, and every product on every path equals the scalar q4_k / q6_k dot of
// the de-interleaved row bit for bit. Rows past the last whole group are plain rows.
#include "ksuper.h"
#include <stdlib.h>

#pragma clang fp contract(off)

#define G 8

// ---- layouts: where byte i of row r's block goes in the group block ---------------------------
// q4_kx8 (1152 bytes): d[r] at 2r, dmin[r] at 16 + 2r, scale byte s at 32 + 8s + r, code byte j at
// 128 + 32 (j / 4) + 4r + j % 4. q6_kx8 (1680 bytes): ql byte j at 32 (j / 4) + 4r + j % 4, qh byte j
// at 1024 + 32 (j / 4) + 4r + j % 4, scale k at 1536 + 8k + r, d[r] at 1664 + 2r. q5_kx8 (1408
// bytes): as q4_kx8 with qh byte j at 128 + 32 (j / 4) + 4r + j % 4 and code byte j at 384 + ....
QLM_INLINE int chunk_at(int r, int j) { return 32 * (j >> 2) + 4 * r + (j & 3); }
static int at_q4_k(int r, int i) {
    if (i < 4) return 16 * (i >> 1) + 2 * r + (i & 1);
    if (i < 16) return 32 + 8 * (i - 4) + r;
    return 128 + chunk_at(r, i - 16);
}
static int at_q5_k(int r, int i) {
    if (i < 16) return at_q4_k(r, i);
    if (i < 48) return 128 + chunk_at(r, i - 16);
    return 384 + chunk_at(r, i - 48);
}
static int at_q6_k(int r, int i) {
    if (i < 128) return chunk_at(r, i);
    if (i < 192) return 1024 + chunk_at(r, i - 128);
    if (i < 208) return 1536 + 8 * (i - 192) + r;
    return 1664 + 2 * r + (i - 208);
}

typedef struct {
    int bb;                       // bytes of a row's super-block
    int (*at)(int r, int i);      // byte i of row r's block -> offset in the group block
    const qlm_type_traits *plain; // q4_k / q6_k: row size, dequantizer, lone-row dots
} kx_layout;
static const kx_layout k_q4k = {sizeof(qlm_block_q4_k), at_q4_k, &qlm_traits_q4_k};
static const kx_layout k_q6k = {sizeof(qlm_block_q6_k), at_q6_k, &qlm_traits_q6_k};
static const kx_layout k_q5k = {sizeof(qlm_block_q5_k), at_q5_k, &qlm_traits_q5_k};

QLM_INLINE int64_t kx_blocks(int64_t n) { return (n + QK_K - 1) / QK_K; }

// Row r's plain block out of a group block, and back.
static void kx_row_block(const kx_layout *L, const uint8_t *gb, int r, uint8_t *out) {
    for (int i = 0; i < L->bb; i++) out[i] = gb[L->at(r, i)];
}

static int kx_regroup(const kx_layout *L, void *data, int64_t rows, int64_t n, int pack) {
    if (rows < G || n <= 0) return 0;
    const size_t rs = L->plain->row_size(n);
    const int64_t nb = kx_blocks(n);
    uint8_t *tmp = (uint8_t *)malloc(G * rs);
    if (!tmp) return -1;
    for (int64_t g = 0; g < rows / G; g++) {
        uint8_t *p = (uint8_t *)data + (size_t)g * G * rs;
        for (int r = 0; r < G; r++)
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *gb = (pack ? tmp : p) + (size_t)b * G * L->bb;
                uint8_t *rb = (pack ? p : tmp) + (size_t)r * rs + (size_t)b * L->bb;
                for (int i = 0; i < L->bb; i++) {
                    if (pack) gb[L->at(r, i)] = rb[i];
                    else rb[i] = gb[L->at(r, i)];
                }
            }
        memcpy(p, tmp, G * rs);
    }
    free(tmp);
    return 0;
}

static void kx_plain_row(const kx_layout *L, const void *src, int64_t rows, int64_t n, int64_t r, void *dst) {
    const size_t rs = L->plain->row_size(n);
    if (r >= rows / G * G) { memcpy(dst, (const char *)src + (size_t)r * rs, rs); return; }
    const uint8_t *g = (const uint8_t *)src + (size_t)(r / G) * G * rs;
    for (int64_t b = 0; b < kx_blocks(n); b++) kx_row_block(L, g + (size_t)b * G * L->bb, (int)(r % G), (uint8_t *)dst + b * L->bb);
}

static void kx_get_row(const kx_layout *L, const void *src, int64_t rows, int64_t n, int64_t r, float *y) {
    const size_t rs = L->plain->row_size(n);
    if (r >= rows / G * G) { L->plain->dequantize_row((const char *)src + (size_t)r * rs, y, n); return; }
    const uint8_t *g = (const uint8_t *)src + (size_t)(r / G) * G * rs;
    for (int64_t b = 0; b < kx_blocks(n); b++) { // block b rebuilt and read by the row dequantizer
        uint8_t blk[sizeof(qlm_block_q6_k)];     // the largest block
        kx_row_block(L, g + (size_t)b * G * L->bb, (int)(r % G), blk);
        L->plain->dequantize_row(blk, y + b * QK_K, n - b * QK_K < QK_K ? n - b * QK_K : QK_K);
    }
}

// ---- scalar: each row's block rebuilt, decoded and stepped as the scalar q4_k / q6_k dot -----
#define KX_SCALAR(T, WT, OI, DEC)                                                                            \
    static void group_##T##_scalar(int64_t nb, const void *g_, const char *act, size_t as, float *Y, int64_t ldy, int nt) { \
        const uint8_t *g = (const uint8_t *)g_;                                                           \
        for (int r = 0; r < G; r++) {                                                                     \
            float S[4][8], M[4][8];                                                                       \
            memset(S, 0, sizeof S);                                                                       \
            memset(M, 0, sizeof M);                                                                       \
            for (int64_t b = 0; b < nb; b++) {                                                            \
                WT blk;                                                                                   \
                kq_dec D;                                                                                 \
                kx_row_block(&k_##T, g + (size_t)b * G * sizeof(WT), r, (uint8_t *)&blk);                 \
                DEC(&blk, &D);                                                                            \
                for (int t = 0; t < nt; t++)                                                              \
                    kq_step_scalar(&D, (const qlm_block_q8k *)(act + (size_t)t * as) + b, OI, S[t], M[t]); \
            }                                                                                             \
            for (int t = 0; t < nt; t++) Y[t * ldy + r] = kq_hsum8(S[t]) - kq_hsum8(M[t]);               \
        }                                                                                                 \
    }
KX_SCALAR(q4k, qlm_block_q4_k, 0, kq_dec_q4_k_scalar)
KX_SCALAR(q6k, qlm_block_q6_k, 1, kq_dec_q6_k_scalar)
KX_SCALAR(q5k, qlm_block_q5_k, 0, kq_dec_q5_k_scalar)

#if QLM_X86
// ---- AVX2 / AVX-512 ---------------------------------------------------------------------------
// Per chunk (4 consecutive weights of 8 rows, 32 bytes) and token, the chunk's 4 activation bytes
// broadcast; vpdpbusd (AVX-512 VNNI) or maddubs + madd (AVX2; pairs <= 2 * 63 * 127, no
// saturation) leave lane r's exact integer sum; the sub-scales multiply per 16 / 32 weights in int32.
QLM_INLINE int32_t kx_ld32(const int8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }
#define KX_DPB_AVX512(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#define KX_DPB_AVX2(acc, u, s) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
#define KX_BCAST(ab, e) _mm256_set1_epi32(kx_ld32((ab)->qs + (e)))
// 8 unsigned bytes at p (one per row) as int32 lanes.
#define KX_LANES(p) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p)))
#define KX_LANES_S(p) _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p)))
// The row results: kq_hsum8's order over the groups, lane r = row r.
#define KX_HSUM(v) _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(v[0], v[4]), _mm256_add_ps(v[2], v[6])), \
                                 _mm256_add_ps(_mm256_add_ps(v[1], v[5]), _mm256_add_ps(v[3], v[7])))
#define KX_STEP(acc, dv, da, isum) acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(dv, _mm256_set1_ps(da)), _mm256_cvtepi32_ps(isum)))

// q4_kx8: group pair j (groups 2j, 2j + 1) is code chunks 8j..8j+7, low nibbles group 2j (weights
// 64j + 4c'..), high nibbles group 2j + 1; the 8 rows' 6-bit scales and mins unpacked from their
// scale bytes (byte s of every row in one 8-byte lane set) with the packing of kq_unpack_words.
// q5_kx8 (FIFTH = KX_Q5_BITS): the same, each code given its fifth bit (bit g of the qh byte of its
// position in the sub-block: qh chunk 4h + c, moved to bit 4 by a shift within each byte); codes
// 0..31, maddubs pairs <= 2 * 31 * 127.
#define KX_NO_BITS(lo, hi, gb, j, h, c)
#define KX_BIT4(v, b) _mm256_and_si256((b) <= 4 ? _mm256_slli_epi16(v, 4 - (b)) : _mm256_srli_epi16(v, (b) - 4), _mm256_set1_epi8(0x10))
#define KX_Q5_BITS(lo, hi, gb, j, h, c) {                                                                \
        const __m256i qh = _mm256_loadu_si256((const __m256i *)((gb) + 128 + 32 * (4 * (h) + (c))));   \
        lo = _mm256_or_si256(lo, KX_BIT4(qh, 2 * (j)));                                                 \
        hi = _mm256_or_si256(hi, KX_BIT4(qh, 2 * (j) + 1)); }
#define KX_AFFINE_KERNEL(Q, WT, QS, FIFTH, P, TGT, DPB)                                                  \
TGT QLM_INLINE void group_##Q##_##P##_nt(int64_t nb, const uint8_t *g, const char *act, size_t as, float *Y, int64_t ldy, const int nt) { \
    const __m256i m4 = _mm256_set1_epi8(0x0F), m6 = _mm256_set1_epi8(0x3F), m30 = _mm256_set1_epi8(0x30); \
    __m256 S[4][8], M[4][8];                                                                            \
    for (int t = 0; t < 4; t++) for (int k = 0; k < 8; k++) S[t][k] = M[t][k] = _mm256_setzero_ps();    \
    for (int64_t b = 0; b < nb; b++) {                                                                  \
        const uint8_t *gb = g + (size_t)b * G * sizeof(WT);                                             \
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)gb));                        \
        const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(gb + 16)));                 \
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)(gb + 32));                             \
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)(gb + 64));                             \
        const __m256i x2 = _mm256_loadu_si256((const __m256i *)(gb + 96));                             \
        uint8_t sc[64] __attribute__((aligned(32))), mn[64] __attribute__((aligned(32)));                \
        _mm256_store_si256((__m256i *)sc, _mm256_and_si256(x0, m6));                                    \
        _mm256_store_si256((__m256i *)mn, _mm256_and_si256(x1, m6));                                    \
        _mm256_store_si256((__m256i *)(sc + 32), _mm256_or_si256(_mm256_and_si256(x2, m4), _mm256_and_si256(_mm256_srli_epi16(x0, 2), m30))); \
        _mm256_store_si256((__m256i *)(mn + 32), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(x2, 4), m4), _mm256_and_si256(_mm256_srli_epi16(x1, 2), m30))); \
        for (int j = 0; j < 4; j++) {                                                                   \
            __m256i ia[4], ib[4];                                                                       \
            for (int t = 0; t < 4; t++) ia[t] = ib[t] = _mm256_setzero_si256();                         \
            for (int h = 0; h < 2; h++) {                                                               \
                __m256i lo[4], hi[4];                                                                   \
                for (int c = 0; c < 4; c++) {                                                           \
                    const __m256i x = _mm256_loadu_si256((const __m256i *)(gb + (QS) + 32 * (8 * j + 4 * h + c))); \
                    lo[c] = _mm256_and_si256(x, m4);                                                    \
                    hi[c] = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);                              \
                    FIFTH(lo[c], hi[c], gb, j, h, c)                                                    \
                }                                                                                       \
                for (int t = 0; t < nt; t++) {                                                          \
                    const qlm_block_q8k *ab = (const qlm_block_q8k *)(act + (size_t)t * as) + b;        \
                    for (int c = 0; c < 4; c++) {                                                       \
                        ia[t] = DPB(ia[t], lo[c], KX_BCAST(ab, 64 * j + 16 * h + 4 * c));               \
                        ib[t] = DPB(ib[t], hi[c], KX_BCAST(ab, 64 * j + 32 + 16 * h + 4 * c));          \
                    }                                                                                   \
                }                                                                                       \
            }                                                                                           \
            const __m256i sa = KX_LANES(sc + 16 * j), sb = KX_LANES(sc + 16 * j + 8);                   \
            const __m256i ma = KX_LANES(mn + 16 * j), mb = KX_LANES(mn + 16 * j + 8);                   \
            for (int t = 0; t < nt; t++) {                                                              \
                const qlm_block_q8k *ab = (const qlm_block_q8k *)(act + (size_t)t * as) + b;            \
                const __m256i pa = _mm256_set1_epi32((int32_t)ab->bsums[4 * j] + ab->bsums[4 * j + 1]);   \
                const __m256i pb = _mm256_set1_epi32((int32_t)ab->bsums[4 * j + 2] + ab->bsums[4 * j + 3]); \
                KX_STEP(S[t][2 * j], dw, ab->d[2 * j], _mm256_mullo_epi32(ia[t], sa));                  \
                KX_STEP(M[t][2 * j], mw, ab->d[2 * j], _mm256_mullo_epi32(pa, ma));                     \
                KX_STEP(S[t][2 * j + 1], dw, ab->d[2 * j + 1], _mm256_mullo_epi32(ib[t], sb));          \
                KX_STEP(M[t][2 * j + 1], mw, ab->d[2 * j + 1], _mm256_mullo_epi32(pb, mb));             \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(Y + t * ldy, _mm256_sub_ps(KX_HSUM(S[t]), KX_HSUM(M[t]))); \
}

// q6_kx8: per half hf and qh chunk c (bytes 4c..4c+3 of the half's 32 qh bytes), ql chunks c and
// 8 + c give the codes of weights 128 hf + 32 jj + 4c.. (jj = 0..3: ql chunk c low / 8 + c low / c
// high / 8 + c high nibbles, with qh bits 2 jj); group g = 4 hf + jj, sub-block 2g + (c >= 4). A
// sub-block's sum starts at -32 bsums_k (its offset term), then times the int8 scale.
#define KX_Q6K_KERNEL(P, TGT, DPB)                                                                       \
TGT QLM_INLINE void group_q6k_##P##_nt(int64_t nb, const uint8_t *g, const char *act, size_t as, float *Y, int64_t ldy, const int nt) { \
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);                            \
    __m256 S[4][8];                                                                                     \
    for (int t = 0; t < 4; t++) for (int k = 0; k < 8; k++) S[t][k] = _mm256_setzero_ps();              \
    for (int64_t b = 0; b < nb; b++) {                                                                  \
        const uint8_t *gb = g + (size_t)b * G * sizeof(qlm_block_q6_k);                                  \
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(gb + 1664)));               \
        for (int hf = 0; hf < 2; hf++) {                                                                \
            __m256i is[4][4], ts[4][4];                                                                 \
            for (int sub = 0; sub < 2; sub++) {                                                         \
                for (int t = 0; t < nt; t++) {                                                          \
                    const qlm_block_q8k *ab = (const qlm_block_q8k *)(act + (size_t)t * as) + b;        \
                    for (int jj = 0; jj < 4; jj++)                                                      \
                        ts[t][jj] = _mm256_set1_epi32(-32 * (int32_t)ab->bsums[2 * (4 * hf + jj) + sub]); \
                }                                                                                       \
                for (int c = 4 * sub; c < 4 * sub + 4; c++) {                                           \
                    const __m256i qh = _mm256_loadu_si256((const __m256i *)(gb + 1024 + 32 * (8 * hf + c))); \
                    const __m256i l0 = _mm256_loadu_si256((const __m256i *)(gb + 32 * (16 * hf + c)));  \
                    const __m256i l1 = _mm256_loadu_si256((const __m256i *)(gb + 32 * (16 * hf + 8 + c))); \
                    const __m256i q[4] = {                                                              \
                        _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)), \
                        _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)), \
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30)), \
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30))}; \
                    for (int t = 0; t < nt; t++) {                                                      \
                        const qlm_block_q8k *ab = (const qlm_block_q8k *)(act + (size_t)t * as) + b;    \
                        for (int jj = 0; jj < 4; jj++)                                                  \
                            ts[t][jj] = DPB(ts[t][jj], q[jj], KX_BCAST(ab, 128 * hf + 32 * jj + 4 * c)); \
                    }                                                                                   \
                }                                                                                       \
                for (int jj = 0; jj < 4; jj++) {                                                        \
                    const __m256i s = KX_LANES_S(gb + 1536 + 8 * (2 * (4 * hf + jj) + sub));            \
                    for (int t = 0; t < nt; t++) {                                                      \
                        const __m256i v = _mm256_mullo_epi32(ts[t][jj], s);                             \
                        is[t][jj] = sub ? _mm256_add_epi32(is[t][jj], v) : v;                           \
                    }                                                                                   \
                }                                                                                       \
            }                                                                                           \
            for (int t = 0; t < nt; t++) {                                                              \
                const qlm_block_q8k *ab = (const qlm_block_q8k *)(act + (size_t)t * as) + b;            \
                for (int jj = 0; jj < 4; jj++) KX_STEP(S[t][4 * hf + jj], dw, ab->d[4 * hf + jj], is[t][jj]); \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
    for (int t = 0; t < nt; t++) _mm256_storeu_ps(Y + t * ldy, KX_HSUM(S[t]));                          \
}
KX_AFFINE_KERNEL(q4k, qlm_block_q4_k, 128, KX_NO_BITS, avx2, QLM_AVX2_TARGET, KX_DPB_AVX2)
KX_AFFINE_KERNEL(q4k, qlm_block_q4_k, 128, KX_NO_BITS, avx512, QLM_AVX512_TARGET, KX_DPB_AVX512)
KX_AFFINE_KERNEL(q5k, qlm_block_q5_k, 384, KX_Q5_BITS, avx2, QLM_AVX2_TARGET, KX_DPB_AVX2)
KX_AFFINE_KERNEL(q5k, qlm_block_q5_k, 384, KX_Q5_BITS, avx512, QLM_AVX512_TARGET, KX_DPB_AVX512)
KX_Q6K_KERNEL(avx2, QLM_AVX2_TARGET, KX_DPB_AVX2)
KX_Q6K_KERNEL(avx512, QLM_AVX512_TARGET, KX_DPB_AVX512)
GROUP_DISPATCH(q4k, avx2, QLM_AVX2_TARGET, uint8_t)
GROUP_DISPATCH(q4k, avx512, QLM_AVX512_TARGET, uint8_t)
GROUP_DISPATCH(q6k, avx2, QLM_AVX2_TARGET, uint8_t)
GROUP_DISPATCH(q6k, avx512, QLM_AVX512_TARGET, uint8_t)
GROUP_DISPATCH(q5k, avx2, QLM_AVX2_TARGET, uint8_t)
GROUP_DISPATCH(q5k, avx512, QLM_AVX512_TARGET, uint8_t)
#endif
GROUP_PICK(q4k)
GROUP_PICK(q6k)
GROUP_PICK(q5k)

// ---- table entry points -----------------------------------------------------------------------
// The lone rows (and rows past the last group) through the plain type's dot of the same path: the
// K-quant dots are bit-identical on every path (ksuper.h).
#define KX_ENTRIES(Q)                                                                                                        \
    static void product_##Q(qlm_pool *pool, int32_t path, const void *W, int64_t rows, int64_t n, const void *act, size_t as, \
                            int64_t T, float *Y, int64_t ldy) {                                                              \
        const qlm_type_traits *p = k_##Q.plain;                                                                              \
        qlm_group_product(group_##Q##_kernel(path), p->row_size(n), kx_blocks(n), p->dotn[qlm_kernel_path(p, path)], pool, W, rows, n, \
                          act, as, T, Y, ldy);                                                                               \
    }                                                                                                                        \
    static int regroup_##Q(void *data, int64_t rows, int64_t n, int pack) { return kx_regroup(&k_##Q, data, rows, n, pack); } \
    static void get_row_##Q(const void *src, int64_t rows, int64_t n, int64_t r, float *y) { kx_get_row(&k_##Q, src, rows, n, r, y); } \
    static void plain_row_##Q(const void *src, int64_t rows, int64_t n, int64_t r, void *dst) { kx_plain_row(&k_##Q, src, rows, n, r, dst); } \
    static size_t row_size_##Q(int64_t n) { return k_##Q.plain->row_size(n); }                                              \
    static void quantize_row_##Q(int32_t path, const float *x, void *dst, int64_t n) { k_##Q.plain->quantize_row(path, x, dst, n); } \
    static void quantize_row_imp_##Q(const float *x, const float *imp, void *dst, int64_t n) { k_##Q.plain->quantize_row_imp(x, imp, dst, n); } \
    static void dequantize_row_##Q(const void *src, float *y, int64_t n) { k_##Q.plain->dequantize_row(src, y, n); }         \
    static void dotn_##Q(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) {                         \
        k_##Q.plain->dotn[QLM_PATH_SCALAR](n, w, rs, act, out, nr);                                                          \
    }
KX_ENTRIES(q4k)
KX_ENTRIES(q6k)
KX_ENTRIES(q5k)

// The fields a K x8 row shares: q8k activations, whole super-blocks, the plain type's functions.
#define KX_ROW(Q)                                                                                        \
    .block_size = QK_K, .is_quantized = 1, .whole_blocks = 1, .row_group = G,                            \
    .act_type = QLM_ACT_Q8K, .act_row_size = qlm_act_size_q8k, .prepare_act = qlm_prepare_q8k,           \
    .row_size = row_size_##Q, .quantize_row = quantize_row_##Q, .dequantize_row = dequantize_row_##Q,    \
    .quantize_row_imp = quantize_row_imp_##Q,                                                           \
    .dotn = {[QLM_PATH_SCALAR] = dotn_##Q}, /* lone rows only (products go through `product`) */        \
    .product = product_##Q, .regroup = regroup_##Q, .get_row = get_row_##Q, .plain_row = plain_row_##Q,

// fp16 field o of row r at o * 8 + 2r (the traits' rule): q4_k's / q5_k's d (0) and dmin (2), q6_k's d (208).
const qlm_type_traits qlm_traits_q4_kx8 = {
    .name = "q4_kx8", .summary = "q4_k stored in 8-row groups for the 8-row kernels",
    .block_bytes = sizeof(qlm_block_q4_k), .plain_type = QLM_TYPE_Q4_K, .code_bits = 4,
    .fp16_count = 2, .fp16_offsets = {offsetof(qlm_block_q4_k, d), offsetof(qlm_block_q4_k, dmin)},
    .row_fallback = QLM_TYPE_Q5_0, // q4_k's
    KX_ROW(q4k)
};
const qlm_type_traits qlm_traits_q6_kx8 = {
    .name = "q6_kx8", .summary = "q6_k stored in 8-row groups for the 8-row kernels",
    .block_bytes = sizeof(qlm_block_q6_k), .plain_type = QLM_TYPE_Q6_K, .code_bits = 6,
    .fp16_count = 1, .fp16_offsets = {offsetof(qlm_block_q6_k, d)},
    .row_fallback = QLM_TYPE_Q8_0, // q6_k's
    KX_ROW(q6k)
};
const qlm_type_traits qlm_traits_q5_kx8 = {
    .name = "q5_kx8", .summary = "q5_k stored in 8-row groups for the 8-row kernels",
    .block_bytes = sizeof(qlm_block_q5_k), .plain_type = QLM_TYPE_Q5_K, .code_bits = 5,
    .fp16_count = 2, .fp16_offsets = {offsetof(qlm_block_q5_k, d), offsetof(qlm_block_q5_k, dmin)},
    .row_fallback = QLM_TYPE_Q5_1, // q5_k's
    KX_ROW(q5k)
};
_Static_assert(offsetof(qlm_block_q5_k, qh) == 16 && offsetof(qlm_block_q5_k, qs) == 48 && offsetof(qlm_block_q6_k, d) == 208 && offsetof(qlm_block_q4_k, scales) == 4 && offsetof(qlm_block_q4_k, qs) == 16,
               "the byte maps at_q4_k / at_q6_k follow ggml's block layouts");
