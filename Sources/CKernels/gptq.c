// GPTQ error-compensating quantization (Frantar et al. 2022), for the converter.
// docs/quantization.md describes the algorithm; in short, for W [rows, n] and the inputs'
// second moment H = sum x x^T [n, n]:
//   H += damp * mean(diag H) * I (dead inputs, H_ii = 0: H_ii = 1 and W[:, i] = 0)
//   U = upper Cholesky factor of H^-1 (H^-1 = U^T U)
//   for each column i in order, for every row: q = quant(w_i) with the group's scales (chosen
//   from the current weights when the sweep reaches the group's first column),
//   err = (w_i - q) / U_ii, w_k -= err * U_ik for k > i.
// Rows are independent given U, so they run on n_threads threads.
#include "qlm_internal.h"
#include <pthread.h>
#include <stdlib.h>

void qlm_accum_xtx(double *H, const float *X, int64_t T, int64_t n) {
    double *xd = (double *)malloc((size_t)n * sizeof(double));
    for (int64_t t = 0; t < T; t++) {
        const float *x = X + t * n;
        for (int64_t i = 0; i < n; i++) xd[i] = x[i];
        for (int64_t i = 0; i < n; i++) {
            const double xi = xd[i];
            if (xi == 0.0) continue;
            double *hi = H + i * n;
            for (int64_t j = 0; j <= i; j++) hi[j] += xi * xd[j];
        }
    }
    free(xd);
    // mirror the lower triangle (callers read the whole matrix)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) H[i * n + j] = H[j * n + i];
}

// Lower Cholesky in place (A = L L^T, L in the lower triangle). 0 on success.
static int cholesky(double *A, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double s = A[j * n + j];
        for (int64_t k = 0; k < j; k++) s -= A[j * n + k] * A[j * n + k];
        if (!(s > 0.0)) return -1;
        const double l = sqrt(s);
        A[j * n + j] = l;
        for (int64_t i = j + 1; i < n; i++) {
            double t = A[i * n + j];
            for (int64_t k = 0; k < j; k++) t -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = t / l;
        }
        for (int64_t i = 0; i < j; i++) A[i * n + j] = 0.0;
    }
    return 0;
}

// U (upper, H^-1 = U^T U) from H. 0 on success.
static int inverse_upper_factor(const double *H, int64_t n, double *U) {
    double *L = (double *)malloc((size_t)(n * n) * sizeof(double));
    double *Li = (double *)calloc((size_t)(n * n), sizeof(double));
    memcpy(L, H, (size_t)(n * n) * sizeof(double));
    int rc = cholesky(L, n);
    if (rc == 0) {
        // Li = L^-1 (lower), column by column
        for (int64_t j = 0; j < n; j++) {
            Li[j * n + j] = 1.0 / L[j * n + j];
            for (int64_t i = j + 1; i < n; i++) {
                double s = 0.0;
                for (int64_t k = j; k < i; k++) s -= L[i * n + k] * Li[k * n + j];
                Li[i * n + j] = s / L[i * n + i];
            }
        }
        // H^-1 = Li^T Li
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j <= i; j++) {
                double s = 0.0;
                for (int64_t k = i; k < n; k++) s += Li[k * n + i] * Li[k * n + j];
                U[i * n + j] = U[j * n + i] = s;
            }
        rc = cholesky(U, n); // lower factor Lh of H^-1; U = Lh^T
        if (rc == 0) {
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = i + 1; j < n; j++) { U[i * n + j] = U[j * n + i]; U[j * n + i] = 0.0; }
        }
    }
    free(L);
    free(Li);
    return rc;
}

// Each row goes through the type's gptq_row (its table row): the scale(s) chosen by the type's own
// rule from the current weights when the sweep reaches them, then each column coded and its
// error pushed onto the later columns.
typedef struct {
    void (*row)(float *w, int64_t n, const double *U, void *dst); float *W; int64_t rows, n; const double *U; char *dst; size_t rs; int64_t r0, r1;
} gptq_job;

static void *gptq_worker(void *p) {
    gptq_job *j = (gptq_job *)p;
    for (int64_t r = j->r0; r < j->r1; r++) {
        float *w = j->W + r * j->n;
        void *d = j->dst + (size_t)r * j->rs;
        j->row(w, j->n, j->U, d);
    }
    return NULL;
}

int qlm_gptq_quantize(int32_t type, float *W, int64_t rows, int64_t n, const double *H, double damp,
                      void *dst, int n_threads) {
    const qlm_type_traits *tr = qlm_traits(type);
    if (!tr || !tr->gptq_row) return -2;
    for (int64_t i = 0; i < rows * n; i++) if (!isfinite(W[i])) return -1;
    double *Hd = (double *)malloc((size_t)(n * n) * sizeof(double));
    double *U = (double *)malloc((size_t)(n * n) * sizeof(double));
    memcpy(Hd, H, (size_t)(n * n) * sizeof(double));
    double mean = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (Hd[i * n + i] == 0.0) {
            Hd[i * n + i] = 1.0;
            for (int64_t r = 0; r < rows; r++) W[r * n + i] = 0.0f;
        }
        mean += Hd[i * n + i];
    }
    mean /= (double)n;
    int rc = -1;
    double dmp = damp > 0 ? damp : 0.01;
    for (int attempt = 0; attempt < 6 && rc != 0; attempt++, dmp *= 10.0) {
        double *Ht = (double *)malloc((size_t)(n * n) * sizeof(double));
        memcpy(Ht, Hd, (size_t)(n * n) * sizeof(double));
        for (int64_t i = 0; i < n; i++) Ht[i * n + i] += dmp * mean;
        rc = inverse_upper_factor(Ht, n, U);
        free(Ht);
    }
    free(Hd);
    if (rc != 0) { free(U); return -1; }
    const size_t rs = qlm_row_size(type, n);
    memset(dst, 0, rs * (size_t)rows);
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
    if (n_threads > rows) n_threads = (int)rows;
    gptq_job jobs[64];
    pthread_t th[64];
    int started[64] = {0};
    for (int t = 0; t < n_threads; t++)
        jobs[t] = (gptq_job){tr->gptq_row, W, rows, n, U, (char *)dst, rs, rows * t / n_threads, rows * (t + 1) / n_threads};
    for (int t = 1; t < n_threads; t++) started[t] = pthread_create(&th[t], NULL, gptq_worker, &jobs[t]) == 0;
    gptq_worker(&jobs[0]);
    for (int t = 1; t < n_threads; t++) { if (started[t]) pthread_join(th[t], NULL); else gptq_worker(&jobs[t]); }
    free(U);
    // row-grouped types (q4_0x8): plain rows, then the groups
    return qlm_pack_rows(type, dst, rows, n) == 0 ? 0 : -1;
}
