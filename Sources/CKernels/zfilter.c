// Byte-layout filters for zstd chunks; see include/qlm_zfilter.h and docs/format.md.
#include "qlm_zfilter.h"
#include <string.h>

static int valid(int filter, size_t n, size_t rec, size_t head) {
    return filter >= 0 && filter < QLM_ZF_COUNT && rec > 0 && head <= rec && n % rec == 0;
}

// Byte-plane transpose of planes [j0, j1) of N records: plane j (N bytes) at dst + (j-j0)*N,
// optionally XOR-delta'd along the records. Tiled over TILE records so the strided side stays
// in L1 (records are up to a few hundred bytes).
#define TILE 64
static void planes_out(const uint8_t *src, uint8_t *dst, size_t N, size_t rec, size_t j0, size_t j1, int xor) {
    for (size_t i0 = 0; i0 < N; i0 += TILE) {
        size_t i1 = i0 + TILE < N ? i0 + TILE : N;
        for (size_t j = j0; j < j1; j++) {
            uint8_t *p = dst + (j - j0) * N;
            const uint8_t *s = src + j;
            if (xor) {
                uint8_t prev = i0 ? s[(i0 - 1) * rec] : 0;
                for (size_t i = i0; i < i1; i++) { uint8_t v = s[i * rec]; p[i] = (uint8_t)(v ^ prev); prev = v; }
            } else {
                for (size_t i = i0; i < i1; i++) p[i] = s[i * rec];
            }
        }
    }
}

static void planes_in(const uint8_t *src, uint8_t *dst, size_t N, size_t rec, size_t j0, size_t j1, int xor) {
    for (size_t i0 = 0; i0 < N; i0 += TILE) {
        size_t i1 = i0 + TILE < N ? i0 + TILE : N;
        for (size_t j = j0; j < j1; j++) {
            const uint8_t *p = src + (j - j0) * N;
            uint8_t *d = dst + j;
            if (xor) {
                uint8_t prev = i0 ? d[(i0 - 1) * rec] : 0;  // already decoded
                for (size_t i = i0; i < i1; i++) { uint8_t v = (uint8_t)(p[i] ^ prev); d[i * rec] = v; prev = v; }
            } else {
                for (size_t i = i0; i < i1; i++) d[i * rec] = p[i];
            }
        }
    }
}

// Codes (bytes [head, rec) of each record) gathered contiguously, record order.
static void codes_out(const uint8_t *src, uint8_t *dst, size_t N, size_t rec, size_t head) {
    size_t c = rec - head;
    for (size_t i = 0; i < N; i++) memcpy(dst + i * c, src + i * rec + head, c);
}

static void codes_in(const uint8_t *src, uint8_t *dst, size_t N, size_t rec, size_t head) {
    size_t c = rec - head;
    for (size_t i = 0; i < N; i++) memcpy(dst + i * rec + head, src + i * c, c);
}

// The M = N*(rec-head) code bytes, in record order, as two nibble planes of M/2 bytes each:
// byte k of the low plane holds the low nibbles of code bytes 2k (bits 0-3) and 2k+1 (bits 4-7),
// byte k of the high plane their high nibbles; an odd last code byte follows verbatim.
static void nibbles_out(const uint8_t *src, uint8_t *dst, size_t N, size_t rec, size_t head) {
    size_t c = rec - head, M = N * c, h = M / 2, k = 0;
    uint8_t *lo = dst, *hi = dst + h;
    if (c % 2 == 0) {
        for (size_t i = 0; i < N; i++) {
            const uint8_t *s = src + i * rec + head;
            for (size_t j = 0; j < c; j += 2, k++) {
                uint8_t a = s[j], b = s[j + 1];
                lo[k] = (uint8_t)((a & 0x0f) | (b << 4));
                hi[k] = (uint8_t)((a >> 4) | (b & 0xf0));
            }
        }
        return;
    }
    int have = 0;
    uint8_t a = 0;
    for (size_t i = 0; i < N; i++) {
        const uint8_t *s = src + i * rec + head;
        for (size_t j = 0; j < c; j++) {
            if (!have) { a = s[j]; have = 1; continue; }
            uint8_t b = s[j];
            lo[k] = (uint8_t)((a & 0x0f) | (b << 4));
            hi[k] = (uint8_t)((a >> 4) | (b & 0xf0));
            k++;
            have = 0;
        }
    }
    if (have) dst[2 * h] = a;
}

static void nibbles_in(const uint8_t *src, uint8_t *dst, size_t N, size_t rec, size_t head) {
    size_t c = rec - head, M = N * c, h = M / 2, k = 0;
    const uint8_t *lo = src, *hi = src + h;
    if (c % 2 == 0) {
        for (size_t i = 0; i < N; i++) {
            uint8_t *d = dst + i * rec + head;
            for (size_t j = 0; j < c; j += 2, k++) {
                d[j] = (uint8_t)((lo[k] & 0x0f) | (hi[k] << 4));
                d[j + 1] = (uint8_t)((lo[k] >> 4) | (hi[k] & 0xf0));
            }
        }
        return;
    }
    int second = 0;
    for (size_t i = 0; i < N; i++) {
        uint8_t *d = dst + i * rec + head;
        for (size_t j = 0; j < c; j++) {
            if (k == h) { d[j] = src[2 * h]; continue; }  // the odd last byte
            if (!second) { d[j] = (uint8_t)((lo[k] & 0x0f) | (hi[k] << 4)); second = 1; continue; }
            d[j] = (uint8_t)((lo[k] >> 4) | (hi[k] & 0xf0));
            k++;
            second = 0;
        }
    }
}

int qlm_zf_encode(int filter, const uint8_t *src, uint8_t *dst, size_t n, size_t rec, size_t head) {
    if (!valid(filter, n, rec, head)) return -1;
    size_t N = n / rec, H = N * head;
    switch (filter) {
    case QLM_ZF_NONE: memcpy(dst, src, n); break;
    case QLM_ZF_SHUFFLE: planes_out(src, dst, N, rec, 0, rec, 0); break;
    case QLM_ZF_SPLIT:
        for (size_t i = 0; i < N; i++) memcpy(dst + i * head, src + i * rec, head);
        codes_out(src, dst + H, N, rec, head);
        break;
    case QLM_ZF_DELTA:
        planes_out(src, dst, N, rec, 0, head, 1);
        codes_out(src, dst + H, N, rec, head);
        break;
    case QLM_ZF_NIBBLE:
        planes_out(src, dst, N, rec, 0, head, 1);
        nibbles_out(src, dst + H, N, rec, head);
        break;
    case QLM_ZF_PLANES:
        planes_out(src, dst, N, rec, 0, head, 0);
        codes_out(src, dst + H, N, rec, head);
        break;
    }
    return 0;
}

int qlm_zf_decode(int filter, const uint8_t *src, uint8_t *dst, size_t n, size_t rec, size_t head) {
    if (!valid(filter, n, rec, head)) return -1;
    size_t N = n / rec, H = N * head;
    switch (filter) {
    case QLM_ZF_NONE: memcpy(dst, src, n); break;
    case QLM_ZF_SHUFFLE: planes_in(src, dst, N, rec, 0, rec, 0); break;
    case QLM_ZF_SPLIT:
        for (size_t i = 0; i < N; i++) memcpy(dst + i * rec, src + i * head, head);
        codes_in(src + H, dst, N, rec, head);
        break;
    case QLM_ZF_DELTA:
        planes_in(src, dst, N, rec, 0, head, 1);
        codes_in(src + H, dst, N, rec, head);
        break;
    case QLM_ZF_NIBBLE:
        planes_in(src, dst, N, rec, 0, head, 1);
        nibbles_in(src + H, dst, N, rec, head);
        break;
    case QLM_ZF_PLANES:
        planes_in(src, dst, N, rec, 0, head, 0);
        codes_in(src + H, dst, N, rec, head);
        break;
    }
    return 0;
}
