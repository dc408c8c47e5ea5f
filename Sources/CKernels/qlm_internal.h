// Private helpers shared by the CKernels translation units. Not part of the public API.
#ifndef QLM_INTERNAL_H
#define QLM_INTERNAL_H

#include "qlm_kernels.h"
#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define QLM_X86 1
#include <immintrin.h>
#define QLM_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c,bmi2")))
#define QLM_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#else
#define QLM_X86 0
#endif

#define QLM_INLINE static inline __attribute__((always_inline))

// ---- fp16 (bit-exact software conversions, round to nearest even) ---------------------------
QLM_INLINE float qlm_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
QLM_INLINE uint32_t qlm_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

// Matches F16C vcvtph2ps: denormals exact, inf kept, NaN quieted (payload kept).
QLM_INLINE float qlm_h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    uint32_t u;
    if (exp == 0x1F) {
        u = sign | 0x7F800000u | (man << 13);
        if (man) u |= 0x00400000u; // quiet
    } else if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else {
            // denormal: value = man * 2^-24, normalize
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            man &= 0x3FF;
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
        }
    } else {
        u = sign | ((exp + 112) << 23) | (man << 13);
    }
    return qlm_bits_f32(u);
}

// Matches F16C vcvtps2ph with round-to-nearest-even (NaN: quiet bit set, top payload bits kept).
QLM_INLINE uint16_t qlm_f2h(float f) {
    uint32_t u = qlm_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) {
        if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00 | ((a >> 13) & 0x3FF));
        return (uint16_t)(sign | 0x7C00);
    }
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00); // rounds to >= 65520 -> inf
    if (a >= 0x38800000u) { // normal half range (>= 2^-14)
        uint32_t mant_odd = (a >> 13) & 1;
        a += 0xFFFu + mant_odd;       // round to nearest even on bit 13
        a -= (uint32_t)(127 - 15) << 23;
        return (uint16_t)(sign | (a >> 13));
    }
    // half denormal or zero: value / 2^-24, rounded to nearest even
    if (a < 0x33000000u) return sign; // < 2^-25: rounds to 0 (2^-25 exactly ties to even 0)
    uint32_t e = a >> 23;             // biased exponent, 102..112
    uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
    uint32_t shift = 126 - e;         // value = m * 2^(e-127-23); in units 2^-24: m >> (126 - e) ... see below
    // units of 2^-24: m * 2^(e - 150 + 24) = m >> (126 - e)
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return (uint16_t)(sign | q);
}

// ---- paths -------------------------------------------------------------------------------
int32_t qlm_active_path(void);
// q4x8.c: replaces each q8a block's s by the exact -8 * sum(qs) (qlm_block_q8i), in place.
void qlm_q8a_to_q8i(void *act, int64_t nb);
// dot.c: a q4_0 activation row is its q8a blocks, then, from byte qlm_q4quad_offset(nb), one
// qlm_q4quad per 4 blocks (zero past the last block): the same codes regrouped for the AVX-512
// q4_0 kernels, built once per activation row instead of once per weight row.
typedef struct {
    int8_t lo[64];    // lo[16k + i] = qs[i] of block 4q+k (i < 16)
    int8_t hi[64];    // hi[16k + i] = qs[16 + i] of block 4q+k
    int32_t corr[16]; // corr[4k + j] = -8 * (sum of qs[4j..4j+3] and qs[16+4j..16+4j+3]) of block 4q+k
    float d[16];      // d[4k + j] = d of block 4q+k
} qlm_q4quad;
QLM_INLINE size_t qlm_q4quad_offset(int64_t nb) { return ((size_t)nb * sizeof(qlm_block_q8a) + 63) & ~(size_t)63; }
// Fills the quads from the row's nb q8a blocks (same bytes on every path).
void qlm_q4quad_build(void *act, int64_t nb);
// q4x8.c: Y[t, 0..rows) = W . act[t] for T prepared (q8i) activation rows `as` bytes apart;
// every output bit-identical to the scalar q4_0 dot of the row, on every path.
void qlm_q4x8_product(qlm_pool *pool, const void *W, int64_t rows, int64_t n, const void *act, size_t as,
                      int64_t T, float *Y, int64_t ldy);
#define QLM_SMALL_PRODUCT 262144 // rows * n below this: single thread (~10 us of q8_0 work; a pool job costs 1-3 us, more under load)

// Round half away from zero, as roundf.
QLM_INLINE float qlm_roundf(float x) { return roundf(x); }

// Scalar quantizers for one 32-block (used by every path for partial blocks).
void qlm_quant_block_q8_0(const float *x, void *b);
void qlm_quant_block_q4_0(const float *x, void *b);
void qlm_quant_block_q4_1(const float *x, void *b);
void qlm_quant_block_q8a(const float *x, void *b);

// ---- IQ4_K* super-block types (kquant.c) ----------------------------------------------------
size_t qlm_kq_row_size(int64_t n);
void qlm_kq_quantize_row(int32_t type, const float *x, void *dst, int64_t n);
void qlm_kq_dequantize_row(int32_t type, const void *src, float *y, int64_t n);
void qlm_kq_dotn_k16_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);
void qlm_kq_dotn_k32_scalar(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);
#if QLM_X86
void qlm_kq_dotn_k16_avx2(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);
void qlm_kq_dotn_k32_avx2(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);
void qlm_kq_dotn_k16_avx512(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);
void qlm_kq_dotn_k32_avx512(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);
#endif

// ---- pool (pool.c) -------------------------------------------------------------------------
// Like qlm_pool_run, but fn may run on fewer threads: workers that have not picked the job up
// by the time the caller finished its own call skip it. fn must share work dynamically (e.g. an
// atomic chunk counter in ctx) and not rely on ith. Not reentrant.
void qlm_pool_run_dynamic(qlm_pool *pool, qlm_task_fn fn, void *ctx);
// qlm_pool_for and qlm_pool_for_shares are declared in qlm_kernels.h (tests call them).

// ---- dots (dot.c) ------------------------------------------------------------------------
// Dot of nr (1..4) consecutive weight rows (stride `rs` bytes) with one activation row.
typedef void (*qlm_dotn_fn)(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);
qlm_dotn_fn qlm_get_dotn(int32_t path, int32_t type);
// Register tile for prefill: if the path/type has one, computes Y[t*ldy + r] for nr rows x nt tokens
// (Y may be NULL to just query nr/nt) and returns 1; results are bit-identical to the dot kernel.
int qlm_matmul_tile(int32_t path, int32_t type, int64_t n, const void *w, size_t rs, const void *act, size_t as,
                    float *Y, int64_t ldy, int *nr, int *nt);
// Tiled product: rows [r0,r1) x tokens [0,T); Y[t*ldy + r]. Bit-identical to qlm_dotn per (row, token).
void qlm_matmul_range(int32_t path, int32_t type, const void *W, size_t rs, int64_t r0, int64_t r1, int64_t n,
                      const void *act, size_t as, int64_t T, float *Y, int64_t ldy);

#endif
