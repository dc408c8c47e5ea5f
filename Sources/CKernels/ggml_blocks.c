// ggml block formats, dequantized to float.
//
// Why this exists: GGUF checkpoints (llama.cpp's format) arrive already quantized in ggml's
// block types. QuantLM converts them by dequantizing each row here (then requantizing to a
// QuantLM type, or keeping the floats), or, for the three types whose bytes are identical to
// QuantLM's (Q8_0, Q4_0, Q4_1), by copying the blocks unchanged. Written from the block layout
// descriptions (and checked against the `gguf` Python package's dequantizers, see
// Tests/reference/gguf_oracle.py), not from ggml's code. Scalar: it runs once per conversion.
//
// Arithmetic matches the reference bit for bit: every product is a separately rounded float
// multiply (no contraction into FMA), in the reference's order: scale = d * sub_scale first,
// then scale * q (and - min / + m).
#include "qlm_ggml.h"
#include "qlm_internal.h"

#pragma clang fp contract(off)

#define QK_K 256

typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } g_q5_0;
typedef struct { uint16_t d; uint16_t m; uint8_t qh[4]; uint8_t qs[16]; } g_q5_1;
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d; uint16_t dmin; } g_q2_k;
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; } g_q3_k;
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } g_q4_k;
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } g_q5_k;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } g_q6_k;
typedef struct { uint16_t d; uint8_t qs[16]; } g_iq4_nl;
typedef struct { uint16_t d; uint16_t scales_h; uint8_t scales_l[QK_K / 64]; uint8_t qs[QK_K / 2]; } g_iq4_xs;

// Q8_0, Q4_0, Q4_1 are QuantLM's own qlm_block_q8_0 / q4_0 / q4_1 (same fields, same order).
_Static_assert(sizeof(qlm_block_q8_0) == 34, "ggml q8_0 block is 34 bytes");
_Static_assert(sizeof(qlm_block_q4_0) == 18, "ggml q4_0 block is 18 bytes");
_Static_assert(sizeof(qlm_block_q4_1) == 20, "ggml q4_1 block is 20 bytes");
_Static_assert(sizeof(g_q5_0) == 22, "ggml q5_0 block is 22 bytes");
_Static_assert(sizeof(g_q5_1) == 24, "ggml q5_1 block is 24 bytes");
_Static_assert(sizeof(g_q2_k) == 84, "ggml q2_K block is 84 bytes");
_Static_assert(sizeof(g_q3_k) == 110, "ggml q3_K block is 110 bytes");
_Static_assert(sizeof(g_q4_k) == 144, "ggml q4_K block is 144 bytes");
_Static_assert(sizeof(g_q5_k) == 176, "ggml q5_K block is 176 bytes");
_Static_assert(sizeof(g_q6_k) == 210, "ggml q6_K block is 210 bytes");
_Static_assert(sizeof(g_iq4_nl) == 18, "ggml iq4_nl block is 18 bytes");
_Static_assert(sizeof(g_iq4_xs) == 136, "ggml iq4_xs block is 136 bytes");

// The IQ4_NL non-uniform levels: QuantLM's iq4 codebook (kquant.c).
#define k_iq4nl qlm_iq4_levels

static float h(uint16_t x) { return qlm_h2f(x); }

int qlm_ggml_type_info(int32_t type, int64_t *bs, int64_t *bb) {
    int64_t s, b;
    switch (type) {
    case QLM_GGML_F32: s = 1; b = 4; break;
    case QLM_GGML_F16: case QLM_GGML_BF16: s = 1; b = 2; break;
    case QLM_GGML_Q4_0: s = 32; b = sizeof(qlm_block_q4_0); break;
    case QLM_GGML_Q4_1: s = 32; b = sizeof(qlm_block_q4_1); break;
    case QLM_GGML_Q5_0: s = 32; b = sizeof(g_q5_0); break;
    case QLM_GGML_Q5_1: s = 32; b = sizeof(g_q5_1); break;
    case QLM_GGML_Q8_0: s = 32; b = sizeof(qlm_block_q8_0); break;
    case QLM_GGML_Q2_K: s = QK_K; b = sizeof(g_q2_k); break;
    case QLM_GGML_Q3_K: s = QK_K; b = sizeof(g_q3_k); break;
    case QLM_GGML_Q4_K: s = QK_K; b = sizeof(g_q4_k); break;
    case QLM_GGML_Q5_K: s = QK_K; b = sizeof(g_q5_k); break;
    case QLM_GGML_Q6_K: s = QK_K; b = sizeof(g_q6_k); break;
    case QLM_GGML_IQ4_NL: s = 32; b = sizeof(g_iq4_nl); break;
    case QLM_GGML_IQ4_XS: s = QK_K; b = sizeof(g_iq4_xs); break;
    default: return 0;
    }
    if (bs) *bs = s;
    if (bb) *bb = b;
    return 1;
}

const char *qlm_ggml_type_name(int32_t type) {
    static const char *names[] = {
        "f32", "f16", "q4_0", "q4_1", "q4_2", "q4_3", "q5_0", "q5_1", "q8_0", "q8_1",
        "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",
        "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32", "i64", "f64", "iq1_m",
        "bf16", "q4_0_4_4", "q4_0_4_8", "q4_0_8_8", "tq1_0", "tq2_0", "iq4_nl_4_4", "iq4_nl_4_8", "iq4_nl_8_8", "mxfp4",
    };
    if (type < 0 || type >= (int32_t)(sizeof(names) / sizeof(names[0]))) return "unknown";
    return names[type];
}

// Sub-block j (0..7) scale and min of Q4_K / Q5_K: 6-bit values packed in 12 bytes.
static void k_scale_min(const uint8_t *s, int j, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

static void deq_q8_0(const qlm_block_q8_0 *b, float *y) {
    float d = h(b->d);
    for (int i = 0; i < 32; i++) y[i] = (float)b->qs[i] * d;
}
static void deq_q4_0(const qlm_block_q4_0 *b, float *y) {
    float d = h(b->d);
    for (int i = 0; i < 16; i++) {
        y[i] = d * (float)((b->qs[i] & 0x0F) - 8);
        y[i + 16] = d * (float)((b->qs[i] >> 4) - 8);
    }
}
static void deq_q4_1(const qlm_block_q4_1 *b, float *y) {
    float d = h(b->d), m = h(b->m);
    for (int i = 0; i < 16; i++) {
        y[i] = d * (float)(b->qs[i] & 0x0F) + m;
        y[i + 16] = d * (float)(b->qs[i] >> 4) + m;
    }
}
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void deq_q5_0(const g_q5_0 *b, float *y) {
    float d = h(b->d);
    uint32_t qh = le32(b->qh);
    for (int i = 0; i < 16; i++) {
        int lo = (b->qs[i] & 0x0F) | (((qh >> i) & 1) << 4);
        int hi = (b->qs[i] >> 4) | (((qh >> (i + 16)) & 1) << 4);
        y[i] = d * (float)(lo - 16);
        y[i + 16] = d * (float)(hi - 16);
    }
}
static void deq_q5_1(const g_q5_1 *b, float *y) {
    float d = h(b->d), m = h(b->m);
    uint32_t qh = le32(b->qh);
    for (int i = 0; i < 16; i++) {
        int lo = (b->qs[i] & 0x0F) | (((qh >> i) & 1) << 4);
        int hi = (b->qs[i] >> 4) | (((qh >> (i + 16)) & 1) << 4);
        y[i] = d * (float)lo + m;
        y[i + 16] = d * (float)hi + m;
    }
}
// Q2_K: 16 sub-blocks of 16; scales byte = 4-bit scale | 4-bit min << 4. Element L's 2-bit code:
// byte qs[32 * (L / 128) + L % 32], bits 2 * ((L % 128) / 32).
static void deq_q2_k(const g_q2_k *b, float *y) {
    float d = h(b->d), dmin = h(b->dmin);
    for (int L = 0; L < QK_K; L++) {
        uint8_t s = b->scales[L / 16];
        float dl = d * (float)(s & 0x0F), ml = dmin * (float)(s >> 4);
        int q = (b->qs[32 * (L / 128) + L % 32] >> (2 * ((L % 128) / 32))) & 3;
        y[L] = dl * (float)q - ml;
    }
}
// Q3_K: 16 sub-blocks of 16 with 6-bit signed scales (low 4 bits: nibble j%8 of bytes 0..7,
// high 2 bits: bits 2*(j/4) of byte 8 + j%4); codes = 2 low bits as Q2_K plus a high bit from
// hmask[L % 32] bit L / 32, where a CLEAR high bit subtracts 4.
static void deq_q3_k(const g_q3_k *b, float *y) {
    float d = h(b->d);
    int sc[16];
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? (b->scales[j] & 0x0F) : (b->scales[j - 8] >> 4);
        int hi = (b->scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (lo | (hi << 4)) - 32;
    }
    for (int L = 0; L < QK_K; L++) {
        float dl = d * (float)sc[L / 16];
        int q = (b->qs[32 * (L / 128) + L % 32] >> (2 * ((L % 128) / 32))) & 3;
        if (!((b->hmask[L % 32] >> (L / 32)) & 1)) q -= 4;
        y[L] = dl * (float)q;
    }
}
// Q4_K: 8 sub-blocks of 32; sub-block s's codes are the low (s even) or high (s odd) nibbles
// of qs[32 * (s / 2) ...].
static void deq_q4_k(const g_q4_k *b, float *y) {
    float d = h(b->d), dmin = h(b->dmin);
    for (int s = 0; s < 8; s++) {
        uint8_t sc, m;
        k_scale_min(b->scales, s, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        const uint8_t *q = b->qs + 32 * (s / 2);
        int sh = 4 * (s % 2);
        for (int i = 0; i < 32; i++) y[32 * s + i] = dl * (float)((q[i] >> sh) & 0x0F) - ml;
    }
}
// Q5_K: Q4_K plus a fifth bit per element: qh[i] bit s for element i of sub-block s.
static void deq_q5_k(const g_q5_k *b, float *y) {
    float d = h(b->d), dmin = h(b->dmin);
    for (int s = 0; s < 8; s++) {
        uint8_t sc, m;
        k_scale_min(b->scales, s, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        const uint8_t *q = b->qs + 32 * (s / 2);
        int sh = 4 * (s % 2);
        for (int i = 0; i < 32; i++) {
            int v = ((q[i] >> sh) & 0x0F) | (((b->qh[i] >> s) & 1) << 4);
            y[32 * s + i] = dl * (float)v - ml;
        }
    }
}
// Q6_K: per half of 128: 4 low bits from ql[64 * half + r % 64] (nibble (r / 64)), 2 high bits
// from qh[32 * half + r % 32] bits 2 * (r / 32); minus 32; 16 int8 scales per 16 elements.
static void deq_q6_k(const g_q6_k *b, float *y) {
    float d = h(b->d);
    for (int L = 0; L < QK_K; L++) {
        int half = L / 128, r = L % 128;
        int lo = (b->ql[64 * half + r % 64] >> (4 * (r / 64))) & 0x0F;
        int hi = (b->qh[32 * half + r % 32] >> (2 * (r / 32))) & 3;
        float dl = d * (float)b->scales[L / 16];
        y[L] = dl * (float)((lo | (hi << 4)) - 32);
    }
}
static void deq_iq4_nl(const g_iq4_nl *b, float *y) {
    float d = h(b->d);
    for (int i = 0; i < 16; i++) {
        y[i] = d * (float)k_iq4nl[b->qs[i] & 0x0F];
        y[i + 16] = d * (float)k_iq4nl[b->qs[i] >> 4];
    }
}
// IQ4_XS: 8 sub-blocks of 32 with 6-bit scales (4 low bits: nibbles of scales_l, 2 high bits:
// scales_h bits 2j), minus 32; codes laid out as IQ4_NL per sub-block (16 bytes each).
static void deq_iq4_xs(const g_iq4_xs *b, float *y) {
    float d = h(b->d);
    for (int j = 0; j < 8; j++) {
        int lo = (b->scales_l[j / 2] >> (4 * (j % 2))) & 0x0F;
        int hi = (b->scales_h >> (2 * j)) & 3;
        float dl = d * (float)((lo | (hi << 4)) - 32);
        const uint8_t *q = b->qs + 16 * j;
        for (int i = 0; i < 16; i++) {
            y[32 * j + i] = dl * (float)k_iq4nl[q[i] & 0x0F];
            y[32 * j + i + 16] = dl * (float)k_iq4nl[q[i] >> 4];
        }
    }
}

int qlm_ggml_dequantize_row(int32_t type, const void *src, float *y, int64_t n) {
    int64_t bs, bb;
    if (n < 0 || !qlm_ggml_type_info(type, &bs, &bb) || n % bs != 0) return -1;
    const uint8_t *p = (const uint8_t *)src;
    int64_t nb = n / bs;
    switch (type) {
    case QLM_GGML_F32: memcpy(y, src, (size_t)n * 4); return 0;
    case QLM_GGML_F16:
        for (int64_t i = 0; i < n; i++) { uint16_t v; memcpy(&v, p + 2 * i, 2); y[i] = qlm_h2f(v); }
        return 0;
    case QLM_GGML_BF16:
        for (int64_t i = 0; i < n; i++) { uint16_t v; memcpy(&v, p + 2 * i, 2); y[i] = qlm_bits_f32((uint32_t)v << 16); }
        return 0;
    default: break;
    }
    // Blocks are read through aligned copies: GGUF data need not be aligned to the struct.
    union {
        qlm_block_q8_0 q8_0; qlm_block_q4_0 q4_0; qlm_block_q4_1 q4_1; g_q5_0 q5_0; g_q5_1 q5_1;
        g_q2_k q2_k; g_q3_k q3_k; g_q4_k q4_k; g_q5_k q5_k; g_q6_k q6_k; g_iq4_nl iq4_nl; g_iq4_xs iq4_xs;
    } blk;
    for (int64_t i = 0; i < nb; i++) {
        memcpy(&blk, p + i * bb, (size_t)bb);
        float *out = y + i * bs;
        switch (type) {
        case QLM_GGML_Q8_0: deq_q8_0(&blk.q8_0, out); break;
        case QLM_GGML_Q4_0: deq_q4_0(&blk.q4_0, out); break;
        case QLM_GGML_Q4_1: deq_q4_1(&blk.q4_1, out); break;
        case QLM_GGML_Q5_0: deq_q5_0(&blk.q5_0, out); break;
        case QLM_GGML_Q5_1: deq_q5_1(&blk.q5_1, out); break;
        case QLM_GGML_Q2_K: deq_q2_k(&blk.q2_k, out); break;
        case QLM_GGML_Q3_K: deq_q3_k(&blk.q3_k, out); break;
        case QLM_GGML_Q4_K: deq_q4_k(&blk.q4_k, out); break;
        case QLM_GGML_Q5_K: deq_q5_k(&blk.q5_k, out); break;
        case QLM_GGML_Q6_K: deq_q6_k(&blk.q6_k, out); break;
        case QLM_GGML_IQ4_NL: deq_iq4_nl(&blk.iq4_nl, out); break;
        case QLM_GGML_IQ4_XS: deq_iq4_xs(&blk.iq4_xs, out); break;
        default: return -1;
        }
    }
    return 0;
}
