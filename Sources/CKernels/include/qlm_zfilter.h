// Reversible byte-layout filters for zstd chunks (docs/format.md, "zstd (1)" / QZC2).
// A chunk of n bytes is n / rec records of `rec` bytes; the first `head` bytes of each record
// are its scales ("header"), the rest its codes. Every filter is a permutation of the bytes
// (plus XOR with earlier bytes for the delta filters), so decode(encode(x)) == x bit for bit.
#ifndef QLM_ZFILTER_H
#define QLM_ZFILTER_H
#include <stddef.h>
#include <stdint.h>

enum {
    QLM_ZF_NONE = 0,
    QLM_ZF_SHUFFLE = 1,   // byte planes: byte j of every record together, j = 0..rec-1
    QLM_ZF_SPLIT = 2,     // every record's head bytes (record order), then every record's codes
    QLM_ZF_DELTA = 3,     // head as byte planes, each plane XOR-delta'd along records; then codes
    QLM_ZF_NIBBLE = 4,    // as DELTA, then the codes as a low-nibble plane and a high-nibble plane
    QLM_ZF_PLANES = 5,    // head as byte planes (no delta), then the codes
    QLM_ZF_COUNT = 6
};

// 0 on success; -1 when the parameters are invalid (unknown filter, rec == 0, head > rec,
// n not a multiple of rec). src and dst must not overlap.
int qlm_zf_encode(int filter, const uint8_t *src, uint8_t *dst, size_t n, size_t rec, size_t head);
int qlm_zf_decode(int filter, const uint8_t *src, uint8_t *dst, size_t n, size_t rec, size_t head);

#endif
