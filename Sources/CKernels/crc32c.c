// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78). qlm_crc32c(0, "123456789", 9) == 0xE3069283;
// pass the previous result as crc to continue over concatenated data.
// SSE4.2 crc32 instruction (3 interleaved streams for long inputs) with a slicing-by-8 fallback.
#include "qlm_internal.h"

static uint32_t k_tab[8][256];
static int k_tab_ready;

static void init_tab(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
        k_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) k_tab[t][i] = (k_tab[t - 1][i] >> 8) ^ k_tab[0][k_tab[t - 1][i] & 0xFF];
    __atomic_store_n(&k_tab_ready, 1, __ATOMIC_RELEASE);
}

static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t n) {
    if (!__atomic_load_n(&k_tab_ready, __ATOMIC_ACQUIRE)) init_tab();
    while (n && ((uintptr_t)p & 7)) { c = (c >> 8) ^ k_tab[0][(c ^ *p++) & 0xFF]; n--; }
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= c;
        c = k_tab[7][v & 0xFF] ^ k_tab[6][(v >> 8) & 0xFF] ^ k_tab[5][(v >> 16) & 0xFF] ^ k_tab[4][(v >> 24) & 0xFF] ^
            k_tab[3][(v >> 32) & 0xFF] ^ k_tab[2][(v >> 40) & 0xFF] ^ k_tab[1][(v >> 48) & 0xFF] ^ k_tab[0][v >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ k_tab[0][(c ^ *p++) & 0xFF];
    return c;
}

#if QLM_X86
// Shift a CRC state forward over `len` zero bytes using the table (GF(2) multiply by x^(8len)).
// Used to combine three independent streams; computed with the precomputed operator below.
static uint32_t gf2_times(const uint32_t *mat, uint32_t v) {
    uint32_t s = 0;
    for (int i = 0; v; i++, v >>= 1) if (v & 1) s ^= mat[i];
    return s;
}
static void gf2_square(uint32_t *sq, const uint32_t *mat) {
    for (int i = 0; i < 32; i++) sq[i] = gf2_times(mat, mat[i]);
}
// Operator that advances a raw CRC state over `len` zero bytes.
static void zeros_op(uint32_t *even, size_t len) {
    uint32_t odd[32];
    odd[0] = 0x82F63B78u;
    uint32_t row = 1;
    for (int i = 1; i < 32; i++) { odd[i] = row; row <<= 1; }
    gf2_square(even, odd); // 2 bits
    gf2_square(odd, even); // 4 bits
    // now odd = 4 zero bits; square to 8 bits = 1 byte, then by binary powers of len
    uint32_t res[32];
    int have = 0;
    gf2_square(even, odd); // even = 1 byte
    uint32_t *cur = even, *other = odd;
    while (len) {
        if (len & 1) {
            if (!have) { memcpy(res, cur, sizeof(res)); have = 1; }
            else { uint32_t t[32]; for (int i = 0; i < 32; i++) t[i] = gf2_times(cur, res[i]); memcpy(res, t, sizeof(t)); }
        }
        len >>= 1;
        if (!len) break;
        gf2_square(other, cur);
        uint32_t *tmp = cur; cur = other; other = tmp;
    }
    memcpy(even, res, sizeof(res));
}

#define CRC_BLOCK 8192 // bytes per stream per round
static uint32_t k_shift_op[32];
static int k_shift_ready;

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n) {
    uint64_t c0 = c;
    while (n && ((uintptr_t)p & 7)) { c0 = _mm_crc32_u8((uint32_t)c0, *p++); n--; }
    if (n >= 3 * CRC_BLOCK) {
        if (!__atomic_load_n(&k_shift_ready, __ATOMIC_ACQUIRE)) {
            uint32_t op[32];
            zeros_op(op, CRC_BLOCK);
            memcpy(k_shift_op, op, sizeof(op));
            __atomic_store_n(&k_shift_ready, 1, __ATOMIC_RELEASE);
        }
        while (n >= 3 * CRC_BLOCK) {
            uint64_t c1 = 0, c2 = 0;
            const uint8_t *p1 = p + CRC_BLOCK, *p2 = p + 2 * CRC_BLOCK;
            for (size_t i = 0; i < CRC_BLOCK; i += 8) {
                uint64_t v0, v1, v2;
                memcpy(&v0, p + i, 8);
                memcpy(&v1, p1 + i, 8);
                memcpy(&v2, p2 + i, 8);
                c0 = _mm_crc32_u64(c0, v0);
                c1 = _mm_crc32_u64(c1, v1);
                c2 = _mm_crc32_u64(c2, v2);
            }
            c0 = gf2_times(k_shift_op, (uint32_t)c0) ^ (uint32_t)c1;
            c0 = gf2_times(k_shift_op, (uint32_t)c0) ^ (uint32_t)c2;
            p += 3 * CRC_BLOCK;
            n -= 3 * CRC_BLOCK;
        }
    }
    while (n >= 8) { uint64_t v; memcpy(&v, p, 8); c0 = _mm_crc32_u64(c0, v); p += 8; n -= 8; }
    while (n--) c0 = _mm_crc32_u8((uint32_t)c0, *p++);
    return (uint32_t)c0;
}
#endif

// Table implementation (scalar path, and CPUs without SSE4.2).
static uint32_t qlm_crc32c_table(uint32_t crc, const void *data, size_t n) {
    return ~crc_sw(~crc, (const uint8_t *)data, n);
}

uint32_t qlm_crc32c(uint32_t crc, const void *data, size_t n) {
#if QLM_X86
    __builtin_cpu_init();
    if (qlm_get_path() != QLM_PATH_SCALAR && __builtin_cpu_supports("sse4.2"))
        return ~crc_hw(~crc, (const uint8_t *)data, n);
#endif
    return qlm_crc32c_table(crc, data, n);
}
