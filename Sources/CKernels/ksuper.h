// The K-quant super-block types (q4_k, q5_k, q6_k): ggml's block layouts (a format fact: GGUF
// tensors are copied unchanged), the shared scale packing, the quantizer's scale searches
// (ksuper.c), and one product scheme every path and every kernel shape runs. Internal.
//
// Products. Each weight super-block is first decoded into a kq_dec (codes as unsigned bytes,
// the scale of each 16 weights, the factor of each 16-sum of the activation codes); then per
// activation row (a q8k block: a scale d_a[g] per 32 codes, codes a, bsums) and per 32-weight
// group g (q4_k / q5_k: sub-block g; q6_k: sub-blocks 2g, 2g + 1) two exact integers
//     isum_g = sum_{e in g} sc(e) q(e) a(e)  [+ sum_{k in g} off(k) bsums(k)   q6_k: off = -32 sc]
//     imin_g =                                 sum_{k in g} off(k) bsums(k)    q4_k, q5_k: off = m
// and the float steps S[g] += (d * d_a[g]) * (float)isum_g, M[g] += (dmin * d_a[g]) *
// (float)imin_g: eight lanes (lane g = group g of every super-block), in super-block order;
// result kq_hsum8(S) - kq_hsum8(M), the lanes summed in one fixed order (HSUM8_BODY's). One
// activation scale per 32 (not one per 256, ggml's Q8_K) keeps the small activations next to an
// outlier (ffn_down's SwiGLU input) from being crushed. Every path forms the same integers (exact
// in int32: |isum_g| < 2^26) and does the same float steps, so the scalar, AVX2 and AVX-512 dot
// kernels, the few-token kernels and the prefill tiles are bit-identical. The decoded block is
// shared by all the tokens of a few-token call or tile (decoded once per row and call).
#ifndef QLM_KSUPER_H
#define QLM_KSUPER_H
#include "qlm_simd.h"

#pragma clang fp contract(off)

#define QK_K 256

// ggml block layouts (ggml-common.h / gguf's quants.py): see docs/format.md.
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } qlm_block_q4_k;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } qlm_block_q5_k;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } qlm_block_q6_k;
_Static_assert(sizeof(qlm_block_q4_k) == 144, "q4_k block is 144 bytes");
_Static_assert(sizeof(qlm_block_q5_k) == 176, "q5_k block is 176 bytes");
_Static_assert(sizeof(qlm_block_q6_k) == 210, "q6_k block is 210 bytes");

// A decoded weight super-block (see above): s16[k] the scale of weights 16k..16k+15, filled by the
// scalar decoders for kq_step_scalar; sw[k] the same scales as the words of the 32-weight chunk
// pair 2k, 2k+1 as kq_groups16 lays their products out (s16[4k] x4, s16[4k+2] x4 | s16[4k+1] x4,
// s16[4k+3] x4), filled by the SIMD decoders for the SIMD steps. Each path reads only its own.
typedef struct {
    uint8_t q[QK_K];
    int16_t sw[4][16];
    int16_t off[QK_K / 16];
    int8_t s16[16];
    float d, dmin;
} __attribute__((aligned(64))) kq_dec;


// ---- the 12-byte scale/min packing of q4_k and q5_k ----------------------------------------
// Sub-block j < 4: scale = s[j] & 63, min = s[j+4] & 63; j >= 4: scale = (s[j+4] & 15) |
// (s[j-4] >> 6) << 4, min = (s[j+4] >> 4) | (s[j] >> 6) << 4. Unpacked four at a time in
// 32-bit words.
static inline void kq_unpack_words(const uint8_t s[12], uint32_t *sc_lo, uint32_t *sc_hi, uint32_t *m_lo, uint32_t *m_hi) {
    uint32_t w0, w1, w2;
    memcpy(&w0, s, 4); memcpy(&w1, s + 4, 4); memcpy(&w2, s + 8, 4);
    *sc_lo = w0 & 0x3F3F3F3Fu;
    *m_lo = w1 & 0x3F3F3F3Fu;
    *sc_hi = (w2 & 0x0F0F0F0Fu) | ((w0 >> 2) & 0x30303030u);
    *m_hi = ((w2 >> 4) & 0x0F0F0F0Fu) | ((w1 >> 2) & 0x30303030u);
}
static inline void kq_unpack_scales(const uint8_t s[12], uint8_t sc[8], uint8_t m[8]) {
    uint32_t a, c, b, e;
    kq_unpack_words(s, &a, &c, &b, &e);
    memcpy(sc, &a, 4); memcpy(sc + 4, &c, 4);
    memcpy(m, &b, 4); memcpy(m + 4, &e, 4);
}
static inline void kq_pack_scales(const uint8_t sc[8], const uint8_t m[8], uint8_t s[12]) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}
// q4_k / q5_k: the 8 scales and mins into the decoded block (each scale covers two 16s).
static inline void kq_dec_scales_min(kq_dec *D, const uint8_t s[12], uint16_t d, uint16_t dmin) {
    uint8_t sc[8], m[8];
    kq_unpack_scales(s, sc, m);
    for (int k = 0; k < 16; k++) {
        D->off[k] = m[k / 2];
        D->s16[k] = (int8_t)sc[k / 2];
    }
    D->d = qlm_h2f(d);
    D->dmin = qlm_h2f(dmin);
}

// The scalar decoders (q4_k: codes 0..15, q5_k: 0..31, off = m into imin; q6_k: codes 0..63, off = -32 sc into
// isum, no min term), shared by the type files' scalar kernels and the 8-row layouts' (rowgroup_k.c).
static inline void kq_dec_q4_k_scalar(const qlm_block_q4_k *b, kq_dec *D) {
    kq_dec_scales_min(D, b->scales, b->d, b->dmin);
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < 32; i++) {
            D->q[64 * j + i] = b->qs[32 * j + i] & 0x0F;
            D->q[64 * j + 32 + i] = b->qs[32 * j + i] >> 4;
        }
}
static inline void kq_dec_q5_k_scalar(const qlm_block_q5_k *b, kq_dec *D) {
    kq_dec_scales_min(D, b->scales, b->d, b->dmin);
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < 32; i++)
            D->q[32 * j + i] = (uint8_t)(((b->qs[32 * (j / 2) + i] >> (4 * (j % 2))) & 0x0F) | (((b->qh[i] >> j) & 1) << 4));
}
static inline void kq_dec_q6_k_scalar(const qlm_block_q6_k *b, kq_dec *D) {
    for (int L = 0; L < QK_K; L++) {
        const int half = L / 128, r = L % 128;
        D->q[L] = (uint8_t)(((b->ql[64 * half + r % 64] >> (4 * (r / 64))) & 0x0F) |
                            (((b->qh[32 * half + r % 32] >> (2 * (r / 32))) & 3) << 4));
    }
    for (int k = 0; k < 16; k++) {
        D->off[k] = (int16_t)(-32 * b->scales[k]);
        D->s16[k] = b->scales[k];
    }
    D->d = qlm_h2f(b->d);
    D->dmin = 0.0f;
}

#if QLM_X86
QLM_AVX2_TARGET QLM_INLINE float kq_h2f_f16c(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }
// The 8 scales (bytes 0..7) and 8 mins (bytes 8..15) of a q4_k / q5_k block in one register,
// built from general registers (no store-to-load round trip).
QLM_AVX2_TARGET QLM_INLINE __m128i kq_scales_min_vec(const uint8_t s[12]) {
    uint32_t a, c, b, e;
    kq_unpack_words(s, &a, &c, &b, &e);
    return _mm_setr_epi32((int)a, (int)c, (int)b, (int)e);
}
// sw from the 16 scales s16 (bytes, |s| <= 127) in one register.
QLM_AVX2_TARGET QLM_INLINE __m256i kq_sw_pair(__m128i s16, int k) {
    const char a = (char)(4 * k), b = (char)(4 * k + 1), c = (char)(4 * k + 2), e = (char)(4 * k + 3);
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s16, _mm_setr_epi8(a, a, a, a, c, c, c, c, b, b, b, b, e, e, e, e)));
}
QLM_AVX2_TARGET QLM_INLINE void kq_dec_sw_avx2(kq_dec *D, __m128i s16) {
    for (int k = 0; k < 4; k++) _mm256_store_si256((__m256i *)D->sw[k], kq_sw_pair(s16, k));
}
QLM_AVX2_TARGET QLM_INLINE void kq_dec_scales_min_avx2(kq_dec *D, const uint8_t s[12], uint16_t d, uint16_t dmin) {
    const __m128i v = kq_scales_min_vec(s);
    kq_dec_sw_avx2(D, _mm_unpacklo_epi8(v, v)); // sc0 sc0 sc1 sc1 ... sc7 sc7: the scale of each 16
    _mm256_store_si256((__m256i *)D->off, _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(v, v)));
    D->d = kq_h2f_f16c(d);
    D->dmin = kq_h2f_f16c(dmin);
}
#endif

// Lanes summed in the fixed order of HSUM8_BODY: ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)).
static inline float kq_hsum8(const float v[8]) {
    const float l0 = v[0] + v[4], l1 = v[1] + v[5], l2 = v[2] + v[6], l3 = v[3] + v[7];
    return (l0 + l2) + (l1 + l3);
}

#if QLM_X86
// The group integers from the maddubs words: h[k] = hadd16(p_2k, p_2k+1), p_c the u8 x s8 pair
// words of chunk c (32 weights; words of weights 0..15 in the low 128 bits, 16..31 in the high).
// Lane c of the result = the exact sum over chunk c of scale * code * activation.
// kq_groups16 (a scale per 16, codes <= 63: |h word| <= 4 * 63 * 127 < 2^15): madd with the scale
// words sw[k] gives lanes (2k, 2k, 2k+1, 2k+1 | the same for the high 16s), hadd32 and the halves
// added put chunk c in lane c.
QLM_AVX2_TARGET QLM_INLINE __m256i kq_halves(__m256i a, __m256i b) { // a: c0..c3 | c0..c3, b: c4..c7 | c4..c7
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}
QLM_AVX2_TARGET QLM_INLINE __m256i kq_groups16(const __m256i h[4], __m256i s0, __m256i s1, __m256i s2, __m256i s3) {
    return kq_halves(_mm256_hadd_epi32(_mm256_madd_epi16(h[0], s0), _mm256_madd_epi16(h[1], s1)),
                     _mm256_hadd_epi32(_mm256_madd_epi16(h[2], s2), _mm256_madd_epi16(h[3], s3)));
}
// kq_groups32 (one scale per 32, codes <= 31): a second hadd16 (|word| <= 8 * 31 * 127 = 31496 <
// 2^15, exact) leaves two words per chunk, 4 chunks per register half; madd with the scale words
// s03 = (sc0 sc0 sc1 sc1 sc2 sc2 sc3 sc3) in both halves, s47 likewise.
QLM_AVX2_TARGET QLM_INLINE __m256i kq_groups32(const __m256i h[4], __m256i s03, __m256i s47) {
    return kq_halves(_mm256_madd_epi16(_mm256_hadd_epi16(h[0], h[1]), s03), _mm256_madd_epi16(_mm256_hadd_epi16(h[2], h[3]), s47));
}
// h[k] of a 512-bit maddubs result holding chunks 2k (low 256 bits) and 2k + 1.
QLM_AVX512_TARGET QLM_INLINE __m256i kq_pair512(__m512i p) {
    return _mm256_hadd_epi16(_mm512_castsi512_si256(p), _mm512_extracti64x4_epi64(p, 1));
}
// The float steps of one super-block (lane g = group g): S += (d * d_a) * isum, M += (dmin * d_a) * imin.
QLM_AVX2_TARGET QLM_INLINE void kq_floats8(__m256i isum, __m256i imin, float d, float dmin, const float *da, __m256 *S, __m256 *M) {
    const __m256 va = _mm256_loadu_ps(da);
    *S = _mm256_add_ps(*S, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(d), va), _mm256_cvtepi32_ps(isum)));
    *M = _mm256_add_ps(*M, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(dmin), va), _mm256_cvtepi32_ps(imin)));
}
// q6_k's: no min term (M stays +0, as the scalar path's (0 * d_a) * 0 steps leave it).
QLM_AVX2_TARGET QLM_INLINE void kq_floats8_sym(__m256i isum, float d, const float *da, __m256 *S) {
    *S = _mm256_add_ps(*S, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(d), _mm256_loadu_ps(da)), _mm256_cvtepi32_ps(isum)));
}

// One super-block of a one-token q4_k / q5_k dot (decode) without the decoded block: the codes
// and scale lanes go straight into the product registers. qh: q5_k's fifth bits (bit s of qh[i]
// for element i of sub-block s), NULL for q4_k. The same exact integers per group (isum_g,
// imin_g) and the same float steps as kq_rows, so the results are the few-token kernels' and the
// tiles' bit for bit.
QLM_AVX512_TARGET QLM_INLINE void kq_dot1_affine_avx512(const uint8_t scales[12], const uint8_t *qs, const uint8_t *qh, uint16_t d,
                                                        uint16_t dmin, const qlm_block_q8k *a, __m256 *S, __m256 *M) {
    const __m512i lo4 = _mm512_set1_epi8(0x0F), b4 = _mm512_set1_epi8(0x10);
    const __m128i v8 = kq_scales_min_vec(scales);
    const __m512i h = qh ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh)) : _mm512_setzero_si512();
    __m256i h4[4];
    for (int g = 0; g < 4; g++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
        __m512i q = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1), lo4);
        if (qh) { // sub-block 2g: bit 2g of qh[i]; 2g + 1: bit 2g + 1 (low / high 256 bits)
            const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * g))), _mm256_set1_epi8((char)(1 << (2 * g + 1))), 1);
            q = _mm512_or_si512(q, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(h, bit), b4));
        }
        h4[g] = kq_pair512(_mm512_maddubs_epi16(q, _mm512_loadu_si512((const void *)(a->qs + 64 * g))));
    }
    const __m128i u = _mm_unpacklo_epi8(v8, v8);
    const __m256i isum = kq_groups32(h4, _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(u)), _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_srli_si128(u, 8))));
    const __m256i o = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a->bsums), _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(v8, v8)));
    kq_floats8(isum, o, kq_h2f_f16c(d), kq_h2f_f16c(dmin), a->d, S, M);
}
QLM_AVX2_TARGET QLM_INLINE void kq_dot1_affine_avx2(const uint8_t scales[12], const uint8_t *qs, const uint8_t *qh, uint16_t d,
                                                    uint16_t dmin, const qlm_block_q8k *a, __m256 *S, __m256 *M) {
    const __m256i lo4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    const __m128i v8 = kq_scales_min_vec(scales);
    const __m256i h = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m256i h4[4];
    for (int g = 0; g < 4; g++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
        __m256i c0 = _mm256_and_si256(v, lo4), c1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
        if (qh) {
            const __m256i m0 = _mm256_set1_epi8((char)(1 << (2 * g))), m1 = _mm256_set1_epi8((char)(1 << (2 * g + 1)));
            c0 = _mm256_or_si256(c0, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, m0), m0), b4));
            c1 = _mm256_or_si256(c1, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, m1), m1), b4));
        }
        const __m256i p0 = _mm256_maddubs_epi16(c0, _mm256_loadu_si256((const __m256i *)(a->qs + 64 * g)));
        const __m256i p1 = _mm256_maddubs_epi16(c1, _mm256_loadu_si256((const __m256i *)(a->qs + 64 * g + 32)));
        h4[g] = _mm256_hadd_epi16(p0, p1);
    }
    const __m128i u = _mm_unpacklo_epi8(v8, v8);
    const __m256i isum = kq_groups32(h4, _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(u)), _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_srli_si128(u, 8))));
    const __m256i o = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a->bsums), _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(v8, v8)));
    kq_floats8(isum, o, kq_h2f_f16c(d), kq_h2f_f16c(dmin), a->d, S, M);
}
#endif

// ---- quantizer searches (ksuper.c) -----------------------------------------------------------
// x[0..n) ~= scale * q - min with q in [0, nmax], min >= 0 (an offset <= 0, as q4_k/q5_k store
// it): a grid of candidate scales, each refit by weighted least squares; returns the scale, *min.
float kq_fit_affine(const float *x, int n, int nmax, float *min);
// q4_k / q5_k: a super-block's 8 sub-block fits (codes 0..nmax), its fp16 d = max scale / 63 and
// dmin = max min / 63, the 6-bit scales and mins rounded against them and packed; dl[j], ml[j]
// the numbers the dequantizer forms (d * sc_j, dmin * m_j), which the codes are rounded against.
void kq_fit_scales_mins(const float *x, int nmax, uint16_t *d, uint16_t *dmin, uint8_t scales[12], float dl[8], float ml[8]);
// x[0..n) ~= scale * q with q in [-nmax, nmax - 1] (q6_k: nmax 32): returns the scale.
float kq_fit_symmetric(const float *x, int n, int nmax);
// Rounds v / s to the nearest integer, clamped to [lo, hi]; s == 0 gives `zero`.
static inline int kq_code(float v, float s, int lo, int hi, int zero) {
    if (s == 0.0f) return zero;
    const float q = roundf(v / s);
    return (int)fminf(fmaxf(q, (float)lo), (float)hi);
}
// A row of whole super-blocks (the last one zero-padded) through a per-block quantizer.
void kq_quantize_row(void (*block)(const float *x, void *dst), size_t bb, const float *x, void *dst, int64_t n);
// A row through ggml's dequantizer (ggml_blocks.c, tested against the gguf package), the last
// partial super-block (if any) through a padded copy.
void kq_dequantize_row(int32_t ggml_type, size_t bb, const void *src, float *y, int64_t n);
size_t kq_row_size_bytes(int64_t n, size_t bb);

// ---- one super-block x one token, per path: the group integers and the float steps ------------
// oi: 1 when off feeds isum (q6_k), 0 when it is imin (q4_k, q5_k). S, M: the token's 8 lanes.
static inline void kq_step_scalar(const kq_dec *D, const qlm_block_q8k *a, int oi, float *S, float *M) {
    for (int g = 0; g < 8; g++) {
        int32_t s = 0, o = 0;
        for (int k = 2 * g; k < 2 * g + 2; k++) {
            int32_t t = 0;
            for (int j = 0; j < 16; j++) t += (int32_t)D->q[16 * k + j] * (int32_t)a->qs[16 * k + j];
            s += D->s16[k] * t;
            o += D->off[k] * (int32_t)a->bsums[k];
        }
        const int32_t isum = oi ? s + o : s, imin = oi ? 0 : o;
        S[g] += (D->d * a->d[g]) * (float)isum;
        M[g] += (D->dmin * a->d[g]) * (float)imin;
    }
}

#if QLM_X86
// Codes are < 64 and activation codes within +-127, so maddubs' pair sums (< 2 * 63 * 127) never
// saturate.
QLM_AVX2_TARGET QLM_INLINE void kq_step_fin(const kq_dec *D, const qlm_block_q8k *a, int oi, __m256i isum, float *S, float *M) {
    const __m256i o = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a->bsums), _mm256_load_si256((const __m256i *)D->off));
    __m256 s = _mm256_loadu_ps(S), m = _mm256_loadu_ps(M);
    if (oi) kq_floats8_sym(_mm256_add_epi32(isum, o), D->d, a->d, &s);
    else kq_floats8(isum, o, D->d, D->dmin, a->d, &s, &m);
    _mm256_storeu_ps(S, s);
    _mm256_storeu_ps(M, m);
}
QLM_AVX2_TARGET QLM_INLINE __m256i kq_groups_dec(const kq_dec *D, const __m256i h[4]) {
    return kq_groups16(h, _mm256_load_si256((const __m256i *)D->sw[0]), _mm256_load_si256((const __m256i *)D->sw[1]),
                       _mm256_load_si256((const __m256i *)D->sw[2]), _mm256_load_si256((const __m256i *)D->sw[3]));
}
QLM_AVX2_TARGET QLM_INLINE void kq_step_avx2(const kq_dec *D, const qlm_block_q8k *a, int oi, float *S, float *M) {
    __m256i h[4];
    for (int k = 0; k < 4; k++) {
        const __m256i p0 = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(D->q + 64 * k)), _mm256_loadu_si256((const __m256i *)(a->qs + 64 * k)));
        const __m256i p1 = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(D->q + 64 * k + 32)), _mm256_loadu_si256((const __m256i *)(a->qs + 64 * k + 32)));
        h[k] = _mm256_hadd_epi16(p0, p1);
    }
    kq_step_fin(D, a, oi, kq_groups_dec(D, h), S, M);
}
QLM_AVX512_TARGET QLM_INLINE void kq_step_avx512(const kq_dec *D, const qlm_block_q8k *a, int oi, float *S, float *M) {
    __m256i h[4];
    for (int k = 0; k < 4; k++)
        h[k] = kq_pair512(_mm512_maddubs_epi16(_mm512_load_si512((const void *)(D->q + 64 * k)), _mm512_loadu_si512((const void *)(a->qs + 64 * k))));
    kq_step_fin(D, a, oi, kq_groups_dec(D, h), S, M);
}
#endif

// ---- kernels stamped per type and path -----------------------------------------------------
// KQ_KERNELS(T, P, TGT, DEC, OI, WT): T the type's name, P the path suffix (scalar/avx2/avx512),
// DEC(const WT *block, kq_dec *D) the decoder, OI as above. Defines
//   kq_rows_T_P(n, w, act, as, Y, ldy, nt): one row x nt (1..KQ_TILE_NT) tokens,
//   dotn_T_P (qlm_dotn_fn), few_T_P (qlm_few_fn), tile_T_P (qlm_tile_fn, 1 row x KQ_TILE_NT).
#define KQ_TILE_NT 16
#define KQ_KERNELS(T, P, TGT, DEC, OI, WT)                                                         \
TGT static void kq_rows_##T##_##P(int64_t n, const void *w, const void *act_, size_t as, float *Y, int64_t ldy, int nt) { \
    const WT *wb = (const WT *)w;                                                                  \
    const char *act = (const char *)act_;                                                          \
    const int64_t nb = (n + QK_K - 1) / QK_K;                                                      \
    float S[KQ_TILE_NT][8] __attribute__((aligned(32))), M[KQ_TILE_NT][8] __attribute__((aligned(32))); \
    memset(S, 0, sizeof(float) * 8 * (size_t)nt);                                                  \
    memset(M, 0, sizeof(float) * 8 * (size_t)nt);                                                  \
    kq_dec D;                                                                                      \
    for (int64_t b = 0; b < nb; b++) {                                                             \
        DEC(wb + b, &D);                                                                           \
        for (int t = 0; t < nt; t++)                                                               \
            kq_step_##P(&D, (const qlm_block_q8k *)(act + (size_t)t * as) + b, OI, S[t], M[t]);    \
    }                                                                                              \
    for (int t = 0; t < nt; t++) Y[t * ldy] = kq_hsum8(S[t]) - kq_hsum8(M[t]);                     \
}                                                                                                  \
TGT __attribute__((unused)) static void dotn_##T##_##P(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) { \
    for (int r = 0; r < nr; r++) kq_rows_##T##_##P(n, (const char *)w + (size_t)r * rs, act, 0, out + r, 1, 1); \
}                                                                                                  \
TGT static void few_##T##_##P(int64_t n, const void *w, const void *act, size_t as, float *Y, int64_t ldy, int nt) { \
    kq_rows_##T##_##P(n, w, act, as, Y, ldy, nt);                                                  \
}                                                                                                  \
TGT static void tile_##T##_##P(int64_t n, const void *w, size_t rs, const void *act, size_t as, float *Y, int64_t ldy) { \
    (void)rs;                                                                                      \
    kq_rows_##T##_##P(n, w, act, as, Y, ldy, KQ_TILE_NT);                                          \
}

// A qlm_dotn_fn over a type's fused one-token dot dot1_T_P(n, row, act) (the row's .dotn then
// names dot1n_T_P in place of KQ_ROW_KERNELS' dotn_T_P).
#define KQ_DOT1_DOTN(T, P, TGT, WT)                                                                \
TGT static void dot1n_##T##_##P(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr) { \
    for (int r = 0; r < nr; r++) out[r] = dot1_##T##_##P(n, (const WT *)((const char *)w + (size_t)r * rs), (const qlm_block_q8k *)act); \
}

// The table-row fields every K type shares (kernels named as KQ_KERNELS makes them; DN = dotn,
// or dot1n for a type with fused one-token dots on the SIMD paths).
#define KQ_ROW_KERNELS(T, DN)                                                                      \
    .act_type = QLM_ACT_Q8K, .act_row_size = qlm_act_size_q8k, .prepare_act = qlm_prepare_q8k,     \
    .row_group = 1, .is_quantized = 1, .block_size = QK_K, .whole_blocks = 1,                      \
    .dotn = {[QLM_PATH_SCALAR] = dotn_##T##_scalar, [QLM_PATH_AVX2] = QLM_IF_X86(DN##_##T##_avx2),  \
             [QLM_PATH_AVX512] = QLM_IF_X86(DN##_##T##_avx512)},                                   \
    .tile = {[QLM_PATH_SCALAR] = {tile_##T##_scalar, 1, KQ_TILE_NT},                               \
             [QLM_PATH_AVX2] = {QLM_IF_X86(tile_##T##_avx2), 1, KQ_TILE_NT},                       \
             [QLM_PATH_AVX512] = {QLM_IF_X86(tile_##T##_avx512), 1, KQ_TILE_NT}},                  \
    .few = {[QLM_PATH_SCALAR] = few_##T##_scalar, [QLM_PATH_AVX2] = QLM_IF_X86(few_##T##_avx2),     \
            [QLM_PATH_AVX512] = QLM_IF_X86(few_##T##_avx512)},

#endif
