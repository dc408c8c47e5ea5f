// ggml tensor types as GGUF files store them: type ids, block sizes, and row dequantizers to
// float (ggml_blocks.c). Used by the GGUF reader to turn already-quantized tensors into floats
// (or to recognise blocks that are byte-identical to a QuantLM type and pass them through).
#ifndef QLM_GGML_H
#define QLM_GGML_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ggml_type values (as stored in GGUF tensor infos). Only the ones QuantLM can read are listed.
typedef enum {
    QLM_GGML_F32 = 0,
    QLM_GGML_F16 = 1,
    QLM_GGML_Q4_0 = 2,
    QLM_GGML_Q4_1 = 3,
    QLM_GGML_Q5_0 = 6,
    QLM_GGML_Q5_1 = 7,
    QLM_GGML_Q8_0 = 8,
    QLM_GGML_Q2_K = 10,
    QLM_GGML_Q3_K = 11,
    QLM_GGML_Q4_K = 12,
    QLM_GGML_Q5_K = 13,
    QLM_GGML_Q6_K = 14,
    QLM_GGML_IQ4_NL = 20,
    QLM_GGML_IQ4_XS = 23,
    QLM_GGML_BF16 = 30,
} qlm_ggml_type;

// Elements per block and bytes per block of a ggml type; returns 0 for a type this file
// cannot dequantize (then *block_size / *block_bytes are left unchanged), 1 otherwise.
int qlm_ggml_type_info(int32_t type, int64_t *block_size, int64_t *block_bytes);
// Name ("q4_k", ...) of any ggml type id, including ones QuantLM cannot read; "unknown" if unknown.
const char *qlm_ggml_type_name(int32_t type);
// Dequantize n elements (a multiple of the block size) of `type` from src into y.
// Returns 0, or -1 for an unsupported type or an n that is not whole blocks.
int qlm_ggml_dequantize_row(int32_t type, const void *src, float *y, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
