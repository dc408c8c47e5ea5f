// CKernels' entry points for tests and benchmarks: single-row and single-piece forms of what the
// engine calls through qlm_kernels.h (a row's quantizer, activation and dot product; the row
// packing; path queries; GPTQ's pieces; the float ops under the attention kernels). Swift sees
// them only through `import CKernels.Testing` (module.modulemap), which only the test targets
// write; the CKernels sources reach them through qlm_internal.h.
#ifndef QLM_TESTING_H
#define QLM_TESTING_H

#include "qlm_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- One row of a type --------------------------------------------------------------------
// Quantize n floats into one row. Returns 0, or -1 if any input is NaN/±inf (dst then
// undefined). Denormals and zeros are fine (an all-zero block gets d = 0).
int qlm_quantize_row(int32_t type, const float *x, void *dst, int64_t n);
// Whether the type has an importance-weighted quantizer.
int qlm_has_quantize_imp(int32_t type);
// Prepare one activation row for `wtype` (copies floats, or quantizes to q8a with zero padding;
// q4_0 also fills the regrouped copy).
void qlm_prepare_act(int32_t wtype, const float *x, void *act, int64_t n);
// Dot product of one weight row (n elements of `wtype`) with one prepared activation row.
float qlm_vec_dot(int32_t wtype, int64_t n, const void *wrow, const void *act);
// IQ4_K* super-scale byte -> float: 0 -> 0, else 2^((e - 208) / 8).
float qlm_e8_to_f32(uint8_t e);
void qlm_f32_to_f16(const float *x, uint16_t *y, int64_t n); // round to nearest even

// ---- CPU paths, hashes, KV rows ------------------------------------------------------------
int32_t qlm_best_path(void);
int qlm_sha256_hw(void);                                     // 1 if the SHA-NI path can run
// One head of a stored KV row back as floats.
void qlm_kv_load_head(int32_t kv_type, const void *src, int64_t hd, float *out);

// ---- GPTQ's pieces -----------------------------------------------------------------------
// U, the upper Cholesky factor of H^-1 (H^-1 = U^T U, U [n, n] row-major, zero below the
// diagonal), for a symmetric positive definite H, on up to 2 threads. 0, or -1 if H does not factor.
int qlm_gptq_inverse_factor(const double *H, int64_t n, double *U, int n_threads);
// H[n, n] += sum over t of X[t] X[t]^T (X is [T, n] floats); only correct as a whole matrix.
void qlm_accum_xtx(double *H, const float *X, int64_t T, int64_t n);

// ---- Float ops -----------------------------------------------------------------------------
float qlm_dot_f32(const float *a, const float *b, int64_t n);
void qlm_axpy_f32(float *y, float a, const float *x, int64_t n);          // y += a * x

#ifdef __cplusplus
}
#endif

#endif
