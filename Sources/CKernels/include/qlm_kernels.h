// CKernels — QuantLM's hot loops in C.
//
// Why C: Swift cannot put a per-function target attribute on code, so a Swift binary either
// targets the lowest CPU (and `addProduct` becomes calls to fmaf, int8 dot products
// scalarize) or needs unsafeFlags (which makes the package unusable as a dependency).
// C functions carry `__attribute__((target("...")))` and are picked at run time with
// `__builtin_cpu_supports`, so one build runs on any x86-64 (or other) CPU and uses
// AVX512-VNNI / AVX2 where present. Every fast path has a scalar twin it is tested against.
//
// Conventions (see docs/format.md):
// - A weight matrix is row-major [rows, n]: each row is one output feature, quantized on its
//   own. Quantized rows hold ceil(n / 32) blocks; the last block is padded with zeros, so
//   the row's byte size is qlm_row_size(type, n). F32/F16 rows are not padded.
// - Activations for integer formats (Q8_0, Q4_0, Q4_1) are quantized per 32-block to
//   qlm_block_q8a (float scale + int8 codes + float sum); F32/F16 weights take float
//   activations as they are. A Q4_0 activation row has the q8a blocks followed by the same
//   codes regrouped for the AVX-512 kernel (internal). qlm_act_row_size() gives the bytes one
//   activation row needs.
#ifndef QLM_KERNELS_H
#define QLM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- Types (values are stored in .qlm files: never renumber) ------------------------------
typedef enum {
    QLM_TYPE_F32 = 0,
    QLM_TYPE_F16 = 1,
    QLM_TYPE_Q8_0 = 2,
    QLM_TYPE_Q4_0 = 3,
    QLM_TYPE_Q4_1 = 4,
    // Super-block 4-bit types with the IQ4_NL codebook (kquant.c, docs/format.md): rows are
    // 16-weight chunks in super-blocks of up to 256 weights (1-byte log super-scale), 4-bit codes.
    QLM_TYPE_IQ4_K16 = 5, // 16-weight sub-blocks, 4-bit sub-scales (one byte per 32 weights)
    QLM_TYPE_IQ4_K32 = 6, // 32-weight sub-blocks, 8-bit sub-scales (one byte per 32 weights)
    // q4_0 blocks (same numbers, same bytes per row) stored row-interleaved in groups of 8 rows
    // so one 8-row kernel reads 8 scales in one load and keeps each row's sum in one SIMD lane
    // (rowgroup.c, docs/format.md). Rows past the last whole group are stored as plain q4_0 rows.
    QLM_TYPE_Q4_0X8 = 7,
    // q8_0 blocks stored the same way (rowgroup.c): lane r of every product register is row r, so
    // the scale product, the int -> float step and the sums are shared by 8 rows.
    QLM_TYPE_Q8_0X8 = 8,
    // ggml's K-quant super-blocks, byte for byte (GGUF tensors pass through): 256 weights per block,
    // rows a whole number of blocks (traits.whole_blocks). Pair with q8k activations (ksuper.h).
    QLM_TYPE_Q4_K = 9,  // 8 x 32 weights, 6-bit scale and min each, fp16 d and dmin, 4-bit codes
    QLM_TYPE_Q5_K = 10, // as q4_k with a fifth code bit
    QLM_TYPE_Q6_K = 11, // 16 x 16 weights, int8 scale each, fp16 d, 6-bit codes - 32
    // ggml's 32-weight Q5_0, Q5_1 and IQ4_NL blocks byte for byte (type_q5.c, type_iq4_nl.c).
    QLM_TYPE_Q5_0 = 12, QLM_TYPE_Q5_1 = 13, QLM_TYPE_IQ4_NL = 14,
    // ggml's 256-weight IQ4_XS, Q3_K and Q2_K super-blocks byte for byte, on q8a activations (one q8a
    // block per 32-weight sub-block; type_iq4_xs.c, type_q3_k.c, type_q2_k.c).
    QLM_TYPE_IQ4_XS = 15, QLM_TYPE_Q3_K = 16, QLM_TYPE_Q2_K = 17,
    // q5_0 blocks stored row-interleaved in groups of 8 rows (rowgroup.c, qlm_block_q5_0x8), the
    // fifth bits regrouped into one 32-bit mask per code chunk, same bytes per row. `convert --type
    // q5_0x8` stores it, and `--type keep` regroups a GGUF's q5_0 matrices into it.
    QLM_TYPE_Q5_0X8 = 18,
    // q5_1 blocks stored the same way (rowgroup.c, qlm_block_q5_1x8): scales, then minimums, then
    // the fifth-bit masks and codes as in q5_0x8; same bytes per row. `convert --type q5_1x8`
    // stores it, and `--type keep` regroups a GGUF's q5_1 matrices into it.
    QLM_TYPE_Q5_1X8 = 19,
    // iq4_nl blocks stored row-interleaved in groups of 8 rows (rowgroup.c, qlm_block_iq4_nlx8: the
    // bytes of q4_0x8's group block, the codes being codebook indices), same bytes per row. `convert
    // --type iq4_nlx8` stores it, and `--type keep` regroups a GGUF's iq4_nl matrices into it.
    QLM_TYPE_IQ4_NLX8 = 20,
    // ggml's Q4_K / Q6_K / Q5_K super-blocks stored row-interleaved in groups of 8 rows (rowgroup_k.c):
    // the same bytes per row permuted so 32-bit lane r of every product register is row r; `--type
    // keep` regroups a GGUF's q4_k / q6_k / q5_k matrices into them.
    QLM_TYPE_Q4_KX8 = 21, QLM_TYPE_Q6_KX8 = 22, QLM_TYPE_Q5_KX8 = 23,
    // iq4_xs / q3_k super-blocks stored row-interleaved in groups of 8 rows (rowgroup_sb.c,
    // qlm_block_iq4_xsx8 / qlm_block_q3_kx8: each field of the 8 rows' blocks interleaved in place),
    // same bytes per row. `convert --type iq4_xsx8` / `q3_kx8` stores them, and `--type keep`
    // regroups a GGUF's iq4_xs / q3_k matrices into them. (26: q2_kx8, reserved.)
    QLM_TYPE_IQ4_XSX8 = 24, QLM_TYPE_Q3_KX8 = 25,
    QLM_TYPE_U8 = 31, // opaque bytes (embedded tokenizer blobs); no arithmetic
} qlm_type;

#define QLM_QK 32

// d = absmax / 127 (fp16), q = round(x / d) in [-127, 127]
typedef struct { uint16_t d; int8_t qs[QLM_QK]; } qlm_block_q8_0;
// ggml convention: d = max / -8 where max is the signed value of largest magnitude;
// q = clamp(round(x / d) + 8, 0, 15); qs[j] low nibble = element j, high nibble = element j+16.
typedef struct { uint16_t d; uint8_t qs[QLM_QK / 2]; } qlm_block_q4_0;
// d = (max - min) / 15, m = min; q = clamp(round((x - m) / d), 0, 15); same nibble layout.
typedef struct { uint16_t d; uint16_t m; uint8_t qs[QLM_QK / 2]; } qlm_block_q4_1;
// Activation block for the integer formats: x ~= d * qs, s = d * sum(qs).
typedef struct { float d; float s; int8_t qs[QLM_QK]; } qlm_block_q8a;
// Activation block for the K-quants (q8k): one per 256 elements, one scale per 32 (as q8a's):
// x[32g + i] ~= d[g] * qs[32g + i]; bsums[k] = the sum of qs[16k .. 16k+15] (exact), which the
// products' min and offset terms read.
typedef struct { float d[8]; int8_t qs[256]; int16_t bsums[16]; } qlm_block_q8k;
// Activation block for the 4- and 5-bit x8 types: as q8a, with the exact -8 * sum(qs) (q5_0x8: -16 * sum(qs), iq4_nlx8: -128 * sum(qs))
// in place of s (the zero-point correction every row of the block shares, added once in integer
// arithmetic).
typedef struct { float d; int32_t nsum8; int8_t qs[QLM_QK]; } qlm_block_q8i;
// One Q4_0X8 group block: block b of 8 consecutive rows. d[r] = row r's q4_0 scale; qs holds
// four 32-byte chunks c = 0..3, chunk c = rows 0..7's q4_0 qs[4c..4c+3] (4 bytes per row), so
// after a nibble split, 32-bit lane r of a chunk holds row r's codes for 4 consecutive elements.
typedef struct { uint16_t d[8]; uint8_t qs[8 * QLM_QK / 2]; } qlm_block_q4_0x8;
// One Q8_0X8 group block: block b of 8 consecutive rows. d[r] = row r's q8_0 scale; qs holds
// eight 32-byte chunks c = 0..7, chunk c = rows 0..7's q8_0 qs[4c..4c+3], so 32-bit lane r of a
// chunk holds row r's codes for 4 consecutive elements.
typedef struct { uint16_t d[8]; int8_t qs[8 * QLM_QK]; } qlm_block_q8_0x8;
// One Q5_0X8 group block: block b of 8 consecutive rows. d[r] = row r's q5_0 scale; qs as in
// q4_0x8 (chunk c = rows 0..7's qs[4c..4c+3]); hm[m] bit 4r + k = the fifth bit of row r's element
// 4m + k (m < 4: the low nibbles of chunk m, m >= 4: the high nibbles of chunk m - 4), so hm[m] is
// the byte mask of chunk m's codes after the nibble split.
typedef struct { uint16_t d[8]; uint32_t hm[8]; uint8_t qs[8 * QLM_QK / 2]; } qlm_block_q5_0x8;
// One Q5_1X8 group block: as q5_0x8 with m[r] = row r's q5_1 minimum after the scales (fp16 field
// at byte offset 2 of a q5_1 block: at 2 * 8 + 2r, the traits' rule); codes unsigned (0..31).
typedef struct { uint16_t d[8]; uint16_t m[8]; uint32_t hm[8]; uint8_t qs[8 * QLM_QK / 2]; } qlm_block_q5_1x8;
// One IQ4_NLX8 group block: q4_0x8's arrangement of 8 iq4_nl blocks (an iq4_nl block has q4_0's
// bytes: fp16 d, then 16 bytes of index nibbles), so chunk c's lane r holds row r's indices of
// elements 4c..4c+3 (low nibbles) and 16+4c..16+4c+3 (high nibbles).
typedef qlm_block_q4_0x8 qlm_block_iq4_nlx8;
// One Q3_KX8 group block: super-block b of 8 consecutive q3_k rows (110 bytes each: hmask[32],
// qs[64], scales[12], d), every field of the 8 blocks at 8 x its offset in a q3_k block, the rows
// interleaved in units of 4 bytes (hmask, qs: row r's bytes 4c..4c+3 at 32c + 4r, so after a shift
// lane r of chunk c holds row r's codes of 4 elements), 1 byte (scales: row r's byte k at 8k + r)
// and 2 bytes (d: row r's at 2r, the traits' fp16 rule).
typedef struct { uint8_t hmask[8 * 32]; uint8_t qs[8 * 64]; uint8_t scales[8 * 12]; uint16_t d[8]; } qlm_block_q3_kx8;
// One IQ4_XSX8 group block: super-block b of 8 consecutive iq4_xs rows (136 bytes each: fp16 d, u16
// scales_h, scales_l[4], qs[128]) by the same rule: d[r], scales_h[r], scales_l byte k of row r at
// 8k + r, qs in 4-byte units (row r's bytes 4c..4c+3 at 32c + 4r: sub-block j's codes are chunks
// 4j..4j+3, each laid out as an iq4_nlx8 chunk).
typedef struct { uint16_t d[8]; uint16_t scales_h[8]; uint8_t scales_l[8 * 4]; uint8_t qs[8 * 128]; } qlm_block_iq4_xsx8;

_Static_assert(sizeof(qlm_block_q8_0) == 34, "q8_0 block is 34 bytes");
_Static_assert(sizeof(qlm_block_q4_0) == 18, "q4_0 block is 18 bytes");
_Static_assert(sizeof(qlm_block_q4_1) == 20, "q4_1 block is 20 bytes");
_Static_assert(sizeof(qlm_block_q8a) == 40, "q8a block is 40 bytes");
_Static_assert(sizeof(qlm_block_q8i) == 40, "q8i block is 40 bytes");
_Static_assert(sizeof(qlm_block_q3_kx8) == 8 * 110, "a q3_kx8 group block is 8 q3_k blocks");
_Static_assert(sizeof(qlm_block_iq4_xsx8) == 8 * 136, "an iq4_xsx8 group block is 8 iq4_xs blocks");
_Static_assert(sizeof(qlm_block_q8k) == 320, "q8k block is 320 bytes");
_Static_assert(sizeof(qlm_block_q4_0x8) == 8 * sizeof(qlm_block_q4_0), "q4_0x8 group block is 8 q4_0 blocks");
_Static_assert(sizeof(qlm_block_q8_0x8) == 8 * sizeof(qlm_block_q8_0), "q8_0x8 group block is 8 q8_0 blocks");
_Static_assert(sizeof(qlm_block_q5_0x8) == 8 * 22, "q5_0x8 group block is 8 q5_0 blocks");
_Static_assert(sizeof(qlm_block_q5_1x8) == 8 * 24, "q5_1x8 group block is 8 q5_1 blocks");

// ---- Type traits: one table row per type, ggml type-traits style ---------------------------
// Everything a type does is reached through its row: sizes, conversions, the activation format it
// pairs with, and its product kernels per CPU path. The products call the row's kernel once per
// row range (or tile), never per block. Adding a type = its enum value above, one C file defining
// its row (see type_q8_0.c for the pattern), one entry in the table in types.c (and its Swift
// QuantType case, whose raw value is the file format's type number).
typedef enum { QLM_PATH_SCALAR = 0, QLM_PATH_AVX2 = 1, QLM_PATH_AVX512 = 2, QLM_PATH_COUNT = 3 } qlm_path;

// The activation format a weight type pairs with.
typedef enum {
    QLM_ACT_F32 = 0, // the floats as they are (f32, f16; u8 too, though it has no products)
    QLM_ACT_Q8A = 1, // qlm_block_q8a per 32 elements (q4_0 appends its regrouped copy, see qlm_act_row_size)
    QLM_ACT_Q8I = 2, // qlm_block_q8i per 32 elements (q4_0x8; q5_0x8 and iq4_nlx8 with their own zero points)
    QLM_ACT_Q8K = 3, // qlm_block_q8k per 256 elements, a scale per 32 (q4_k, q5_k, q6_k)
} qlm_act_type;

#define QLM_FP16_MAX 2 // most fp16 fields one block holds

typedef struct qlm_pool qlm_pool;
// Dot of nr (1..4) consecutive weight rows (stride rs bytes) with one prepared activation row.
typedef void (*qlm_dotn_fn)(int64_t n, const void *w, size_t rs, const void *act, float *out, int nr);
// Register tile for prefill: Y[t * ldy + r] for the tile's nr rows x nt activation rows (`as`
// bytes apart); bit-identical to the same path's dot kernel per (row, token).
typedef void (*qlm_tile_fn)(int64_t n, const void *w, size_t rs, const void *act, size_t as, float *Y, int64_t ldy);
typedef struct { qlm_tile_fn fn; int32_t nr, nt; } qlm_tile_kernel;
// Few-token kernel (decode of several sequences at once): Y[t * ldy] = row . act[t] for one
// weight row and nt (1..QLM_FEW_MAX) activation rows `as` bytes apart; bit-identical to the same
// path's dot kernel per token. Streams one row at a time and loads each weight block once.
#define QLM_FEW_MAX 8
typedef void (*qlm_few_fn)(int64_t n, const void *w, const void *act, size_t as, float *Y, int64_t ldy, int nt);
// Optional activation repacking for a path's tile and few-token kernels: qlm_matmul prepares the
// activation rows as usual (the dot kernel reads those), then packs each into `size(n)` bytes
// (64-byte aligned, rows size(n) apart) that the tile and few kernels read instead. It moves work
// that every weight row would repeat (code offsets, scale broadcasts) to once per token.
// few_only: only the few-token kernel reads the packed rows (the tile reads the prepared ones).
typedef struct { void (*fn)(const void *act, int64_t n, void *packed); size_t (*size)(int64_t n); int32_t few_only; } qlm_pack_kernel;
// A whole product Y[t, 0..rows) = W . act[t] (t < T, activation rows `as` bytes apart), for
// types whose layout needs its own product loop (row-grouped types).
typedef void (*qlm_product_fn)(qlm_pool *pool, int32_t path, const void *W, int64_t rows, int64_t n,
                               const void *act, size_t as, int64_t T, float *Y, int64_t ldy);

typedef struct {
    const char *name;       // "f32", "f16", "q8_0", ...
    const char *summary;    // extra words for `convert --help` (NULL: none)
    int32_t block_size;     // elements per block (1 for f32/f16/u8; 256 = one full super-block for iq4_k*)
    int32_t block_bytes;    // bytes per block
    int32_t is_quantized;   // 1 for block formats
    qlm_act_type act_type;  // the activation format its products take
    int32_t row_group;      // rows stored interleaved per group (8 for Q4_0X8, else 1). A group
                            // block (row_group blocks) stores fp16 field o of row r at o * row_group + 2r.
    int32_t code_bits;      // bits per stored weight code (32 f32, 16 f16, 8 q8_0/u8, 4 q4_*/iq4_*)
    int32_t fp16_count;     // fp16 numbers per block (f16 values; q8_0/q4_0 scale; q4_1 scale and min)
    int32_t fp16_offsets[QLM_FP16_MAX]; // their byte offsets within a block (scales lead the block)
    // 1: only rows that are whole blocks may be stored as this type (the K-quants: GGUF never pads
    // them, and a padded 640-weight row would cost 768). The converter stores other rows as
    // row_fallback (a type number; q8_0 when the table lacks it) and the reader refuses them.
    int32_t whole_blocks;
    int32_t row_fallback;
    // Row-grouped types (row_group > 1): the type number of their rows (q5_0x8: q5_0), whose bytes
    // and numbers a group holds regrouped (GGUF export writes that type; `convert --type keep`
    // regroups a tensor of that type into this layout). Not read for other types.
    int32_t plain_type;

    // Bytes of one row of n elements.
    size_t (*row_size)(int64_t n);
    // One row of n finite floats on CPU path `path` (NULL: the type cannot be quantized to).
    void (*quantize_row)(int32_t path, const float *x, void *dst, int64_t n);
    // One row as stored on its own (for grouped types: a plain row, as past the last group).
    void (*dequantize_row)(const void *src, float *y, int64_t n);
    // Activation row: bytes for n elements, and its preparation from n floats.
    size_t (*act_row_size)(int64_t n);
    void (*prepare_act)(int32_t path, const float *x, void *act, int64_t n);
    // Kernels per CPU path (index qlm_path). A NULL dot kernel falls back to the next lower path;
    // the tile (optional) is the one of the path the dot kernel came from, so both agree bit for bit.
    qlm_dotn_fn dotn[QLM_PATH_COUNT];
    qlm_tile_kernel tile[QLM_PATH_COUNT];
    qlm_few_fn few[QLM_PATH_COUNT]; // optional, of the dot kernel's path (NULL: tile / dot kernel)
    qlm_pack_kernel pack[QLM_PATH_COUNT]; // optional: the layout that path's tile and few kernels read
    // Optional (NULL for ungrouped types): the type's own product loop; the row-group layout
    // (pack != 0: plain rows -> groups, else back; 0 or -1 if out of memory); row r of a tensor.
    qlm_product_fn product;
    int (*regroup)(void *data, int64_t rows, int64_t n, int pack);
    void (*get_row)(const void *src, int64_t rows, int64_t n, int64_t r, float *y);
    // Row-grouped types: row r's bytes in the plain row layout (NULL: rows are stored plain).
    void (*plain_row)(const void *src, int64_t rows, int64_t n, int64_t r, void *dst);
    // Optional: the zstd filter record (bytes) and head (scale bytes leading it) for rows of n
    // elements. NULL: the block (row_group blocks when rows are whole group blocks), head = its fp16 scales.
    void (*zstd_record)(int64_t n, int32_t *record, int32_t *head);
    // Optional: one row quantized with GPTQ error compensation (gptq.c; U = upper Cholesky factor
    // of H^-1, w updated in place). NULL: no GPTQ for this type.
    void (*gptq_row)(float *w, int64_t n, const double *U, void *dst);
    // Optional: one row of n finite floats quantized minimizing the importance-weighted error
    // sum_j imp[j] (x_j - q_j)^2 (imp >= 0 per column: the calibration text's mean square of
    // input j). Same stored layout as quantize_row. NULL: quantize_row is used (imp ignored).
    void (*quantize_row_imp)(const float *x, const float *imp, void *dst, int64_t n);
    // Optional: gptq_row for `rows` consecutive rows of W (dst rows qlm_row_size apart) at once,
    // the same numbers bit for bit (each row's arithmetic unchanged; U's rows are read once per
    // group of rows instead of once per row). A row-grouped type uses its plain type's.
    void (*gptq_rows)(float *W, int64_t rows, int64_t n, const double *U, void *dst);
} qlm_type_traits;

// NULL for an unknown type value.
const qlm_type_traits *qlm_traits(int32_t type);

// Bytes of one row of n elements (padded to whole blocks for block formats; IQ4_K* rows are
// padded to 16 weights and sized by the super-block rule, see qlm_kq_row_size).
size_t qlm_row_size(int32_t type, int64_t n);
// The IQ4_NL codebook the IQ4_K* types share (16 int8 levels, ascending).
extern const int8_t qlm_iq4_levels[16];

// ---- GPTQ (gptq.c), for the converter ------------------------------------------------------
// Quantizes W [rows, n] (modified in place: it ends holding the error-compensated weights)
// into dst with GPTQ error compensation, given H = sum x x^T of the inputs ([n, n], double,
// row-major). damp: fraction of mean(diag H) added to the diagonal (0.01 typical).
// Supports q8_0, q4_0, q4_0x8, iq4_k16, iq4_k32 (other types: returns -2). Returns 0, -1 if W holds
// a non-finite value or H cannot be factored even after raising the dampening.
int qlm_gptq_quantize(int32_t type, float *W, int64_t rows, int64_t n, const double *H, double damp,
                      void *dst, int n_threads);

// Calibration statistics. H [n, n] (double, row-major) += X^T X for X [T, n] floats, the upper
// triangle only (j >= i; the diagonal's 32-column tiles also get entries below it): 8 x 32 tiles
// of f32 sums over <= 512 tokens each, added into H, the tiles shared over the pool (NULL: one
// thread). qlm_sym_mirror_upper then copies the upper triangle onto the lower.
void qlm_xtx_upper(qlm_pool *pool, double *H, const float *X, int64_t T, int64_t n);
void qlm_sym_mirror_upper(double *H, int64_t n);
// s[j] += x[t][j]^2 (the square in f32, summed in double, tokens in order) for X [T, n].
void qlm_accum_sumsq(double *s, const float *X, int64_t T, int64_t n);

// ---- Conversions -------------------------------------------------------------------------
// Dequantize one row of n elements into y. For Q4_0X8 the row is read as a plain q4_0 row
// (how rows past the last whole group are stored); use qlm_get_row for a row of a tensor.
void qlm_dequantize_row(int32_t type, const void *src, float *y, int64_t n);
// Row r of a whole tensor [rows, n] stored at src, dequantized into y (any type; handles the
// row groups of Q4_0X8). A tensor slice starting at a multiple of the type's row_group is
// itself a tensor of its own row count.
void qlm_get_row(int32_t type, const void *src, int64_t rows, int64_t n, int64_t r, float *y);
// Row r of a tensor [rows, n] at src as a plain row of qlm_row_size(type, n) bytes at dst: a copy
// for ungrouped types; for grouped ones (row_group > 1: the x8 types) the row rebuilt out of its group, which
// a 1-row product of the same type then reads as the plain row it is.
void qlm_plain_row(int32_t type, const void *src, int64_t rows, int64_t n, int64_t r, void *dst);
// Row-group layout of grouped types (row_group > 1: the x8 types), in place on a tensor [rows, n] of row
// size qlm_row_size(type, n): pack turns plain rows (of the type's plain_type) into the interleaved
// layout, unpack back. No-ops for ungrouped types. Return 0, or -1 if out of memory.
int qlm_pack_rows(int32_t type, void *data, int64_t rows, int64_t n);
int qlm_unpack_rows(int32_t type, void *data, int64_t rows, int64_t n);
// Quantize `rows` rows of n floats (x is [rows, n] contiguous, dst gets rows * row_size;
// Q4_0X8: quantized as q4_0, then packed).
// Uses up to n_threads threads (plain pthreads, for the converter). Returns the index of
// the first row holding a non-finite value, QLM_QUANTIZE_NOMEM if a row group could not be
// packed (no memory for its 8-row scratch), or -1 when all went well.
#define QLM_QUANTIZE_NOMEM (-2)
int64_t qlm_quantize_rows(int32_t type, const float *x, void *dst, int64_t rows, int64_t n, int n_threads);
// The same with per-column importance imp[n] (the type's quantize_row_imp; types without one,
// or imp == NULL, quantize as qlm_quantize_rows does).
int64_t qlm_quantize_rows_imp(int32_t type, const float *x, const float *imp, void *dst, int64_t rows, int64_t n, int n_threads);

void qlm_f16_to_f32(const uint16_t *x, float *y, int64_t n);
void qlm_bf16_to_f32(const uint16_t *x, float *y, int64_t n);

// ---- Activations --------------------------------------------------------------------------
// Bytes one activation row of n elements needs for weights of `wtype`
// (float for f32/f16, q8a blocks otherwise; for q4_0 the q8a blocks plus 256 bytes per 4 blocks).
size_t qlm_act_row_size(int32_t wtype, int64_t n);


// ---- CPU paths ----------------------------------------------------------------------------
int qlm_path_supported(int32_t path);  // 1 if this CPU can run it
void qlm_set_path(int32_t path);       // force a path (tests, bench); ignored if unsupported
int32_t qlm_get_path(void);
const char *qlm_path_name(int32_t path);

// ---- Thread pool --------------------------------------------------------------------------
// Persistent workers that spin briefly, then sleep; one job runs fn(ctx, ith, nth) on every
// thread (the caller is thread 0) and returns when all are done. Not reentrant.
typedef void (*qlm_task_fn)(void *ctx, int ith, int nth);
qlm_pool *qlm_pool_create(int n_threads);
void qlm_pool_destroy(qlm_pool *pool);
int qlm_pool_size(const qlm_pool *pool);
void qlm_pool_run(qlm_pool *pool, qlm_task_fn fn, void *ctx);
// fn(ctx, lo, hi) over [0, total): every item exactly once, on the calling thread alone (one
// call, [0, total)) when !parallel, pool is NULL or single, or one piece covers everything.
typedef void (*qlm_range_fn)(void *ctx, int64_t lo, int64_t hi);
// Pieces of `chunk` items handed out from one atomic counter (a thread that starts late just
// takes fewer). Used where work is compute-bound (prefill).
void qlm_pool_for(qlm_pool *pool, int parallel, int64_t total, int64_t chunk, qlm_range_fn fn, void *ctx);
// The same, fn also told which thread runs the piece (0 <= ith < qlm_pool_size: per-thread scratch).
typedef void (*qlm_range_ith_fn)(void *ctx, int ith, int64_t lo, int64_t hi);
void qlm_pool_for_ith(qlm_pool *pool, int parallel, int64_t total, int64_t chunk, qlm_range_ith_fn fn, void *ctx);
// Each thread owns a contiguous share ([total*i/n, total*(i+1)/n)) and works through it front to
// back, `chunk` items at a time; a thread whose share is done takes chunks from the back of the
// share with the most left. Each thread reads one forward stream (what the hardware prefetcher
// follows best) and the end stays balanced. Used where work streams weights from memory (decode).
void qlm_pool_for_shares(qlm_pool *pool, int parallel, int64_t total, int64_t chunk, qlm_range_fn fn, void *ctx);

// ---- Products (dequantization fused into the product) -------------------------------------
// y[rows] = W[rows, n] . x[n]. `act` is scratch of qlm_act_row_size(wtype, n) bytes.
// pool may be NULL (single thread). Small products run on one thread regardless.
void qlm_matvec(qlm_pool *pool, int32_t wtype, const void *W, int64_t rows, int64_t n,
                const float *x, float *y, void *act);
// Y[T, rows] = X[T, n] . W[rows, n]^T. `act` is scratch of T * qlm_act_row_size(wtype, n).
// Y row t has stride ldy floats (ldy >= rows).
void qlm_matmul(qlm_pool *pool, int32_t wtype, const void *W, int64_t rows, int64_t n,
                const float *X, int64_t T, float *Y, int64_t ldy, void *act);

// ---- Elementwise and small ops (float) ----------------------------------------------------
void qlm_add_f32(float *y, const float *x, int64_t n);                    // y += x
void qlm_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);
void qlm_layernorm(float *out, const float *x, const float *w, const float *b, int64_t n, float eps);
void qlm_gelu_tanh(float *x, int64_t n);   // GPT-2's tanh approximation, in place
void qlm_silu_mul(float *a, const float *b, int64_t n); // a = silu(a) * b
void qlm_gelu_mul(float *a, const float *b, int64_t n); // a = gelu_tanh(a) * b (GeGLU: Gemma)
void qlm_softmax(float *x, int64_t n);     // in place, max-subtracted
int64_t qlm_argmax_f32(const float *x, int64_t n); // first index of the max (NaNs skipped); -1 if n <= 0

// ---- Attention over a run of cached positions (attention.c) --------------------------------
// Scores, softmax and the weighted sum over cached rows of any KV type (f32, f16, q8_0 per head vector:
// a float scale then hd int8). k / v: the run's first head vector; stride_bytes between positions.
// hd must be ≤ 1024.
#define QLM_KV_F32 0
#define QLM_KV_F16 1
#define QLM_KV_Q8_0 2
int64_t qlm_kv_head_bytes(int32_t kv_type, int64_t hd);
// Writes one position's n_head head vectors (n_head*hd floats) into dst in kv_type layout.
void qlm_kv_store_row(int32_t kv_type, const float *x, void *dst, int64_t n_head, int64_t hd);
void qlm_attn_scores(int32_t kv_type, const float *q, const void *k, int64_t stride_bytes, int64_t n, int64_t hd,
                     float scale, float *scores);
void qlm_attn_accum(int32_t kv_type, const float *w, const void *v, int64_t stride_bytes, int64_t n, int64_t hd,
                    float *out);
// nq query heads (q + g*hd) against the same keys / values (grouped-query attention), every
// result bit-identical to the one-head call: scores[g*scores_stride + i] as qlm_attn_scores of
// head g; out[g*hd ..< (g+1)*hd] += as qlm_attn_accum with weights w + g*w_stride.
void qlm_attn_scores_heads(int32_t kv_type, const float *q, int64_t nq, const void *k, int64_t stride_bytes, int64_t n,
                           int64_t hd, float scale, float *scores, int64_t scores_stride);
void qlm_attn_accum_heads(int32_t kv_type, const float *w, int64_t w_stride, int64_t nq, const void *v, int64_t stride_bytes,
                          int64_t n, int64_t hd, float *out);

// ---- Bandwidth probe (probe.c) ---------------------------------------------------------------
// Reads n_floats floats sequentially, split across the pool's threads (pool may be NULL);
// returns their sum so the reads cannot be optimized away.
double qlm_probe_read(qlm_pool *pool, const float *buf, size_t n_floats);

// ---- SHA-256 (sha256.c), for provenance hashes -------------------------------------------
typedef struct { uint32_t h[8]; uint64_t len; uint8_t buf[64]; size_t nbuf; int hw; } qlm_sha256_ctx;
void qlm_sha256_init(qlm_sha256_ctx *c, int use_hw);         // use_hw = 0 forces the portable path
void qlm_sha256_update(qlm_sha256_ctx *c, const void *data, size_t n);
void qlm_sha256_final(qlm_sha256_ctx *c, uint8_t out[32]);

// ---- Resident memory (statm.c) ---------------------------------------------------------------
// Resident bytes and file-backed resident bytes of this process now, from /proc/self/statm,
// without allocating. Returns 0, or -1 where unavailable.
int qlm_statm(int64_t *resident_bytes, int64_t *file_bytes);

// ---- Checksums ----------------------------------------------------------------------------
// CRC-32C (Castagnoli); SSE4.2 instruction where available. Start with crc = 0.
uint32_t qlm_crc32c(uint32_t crc, const void *data, size_t n);

// checks.c: the first row of a stored tensor with an infinite or NaN fp16 field (value, scale,
// min), -1 if none, -2 for an unknown type; and the guard that turns SIGBUS on a registered
// mapping (a model file truncated under a running process) into `message` on stderr and exit 74.
int64_t qlm_first_nonfinite_fp16_row(int32_t type, const void *data, int64_t rows, int64_t n);
int qlm_guard_map(const void *base, size_t len, const char *message);
void qlm_guard_unmap(int slot);
// checks.c: a temporary file to unlink if SIGINT or SIGTERM (still at their default action)
// ends the process first; slot id or -1.
int qlm_temp_register(const char *path);
void qlm_temp_unregister(int slot);

#ifdef __cplusplus
}
#endif
#endif
