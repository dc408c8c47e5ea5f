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

// ---- H's upper triangle, blocked (the calibration's accumulation) ----------------------------
// H[i][j] += sum_t X[t][i] X[t][j] for j >= i (and the rest of each 32-column tile the diagonal
// crosses), as tiles of 8 rows x 32 columns: each tile's T products per entry are summed in f32
// (FMA, token order) over at most XTX_TBLOCK tokens, then added into the double sums. The tiles
// (8-row bands) are shared out over the pool's threads. qlm_sym_mirror_upper makes it whole.
#define XTX_MR 8
#define XTX_NR 32
#define XTX_TBLOCK 512

typedef struct { double *H; const float *X; int64_t T, n; int32_t path; } xtx_job;

// The portable tile: rows i0 ..< i0 + mr, columns j0 ..< j0 + nc, tokens t0 ..< t1.
QLM_INLINE void xtx_tile_body(const xtx_job *jb, int64_t t0, int64_t t1, int64_t i0, int mr, int64_t j0, int nc) {
    float acc[XTX_MR][XTX_NR] = {{0}};
    const int64_t n = jb->n;
    for (int64_t t = t0; t < t1; t++) {
        const float *xt = jb->X + t * n;
        for (int r = 0; r < mr; r++) {
            const float s = xt[i0 + r];
            for (int c = 0; c < nc; c++) acc[r][c] = fmaf(s, xt[j0 + c], acc[r][c]);
        }
    }
    for (int r = 0; r < mr; r++) {
        double *h = jb->H + (i0 + r) * n + j0;
        for (int c = 0; c < nc; c++) h[c] += (double)acc[r][c];
    }
}
static void xtx_tile_c(const xtx_job *jb, int64_t t0, int64_t t1, int64_t i0, int mr, int64_t j0, int nc) {
    xtx_tile_body(jb, t0, t1, i0, mr, j0, nc);
}

#if QLM_X86
// The same sums (f32 FMA in token order per entry, so equal to xtx_tile_c bit for bit) for 8 whole rows.
QLM_AVX512_TARGET static void xtx_tile_avx512(const xtx_job *jb, int64_t t0, int64_t t1, int64_t i0, int64_t j0, int nc) {
    const int64_t n = jb->n;
    const __mmask16 m0 = nc >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nc) - 1u);
    const __mmask16 m1 = nc >= 32 ? (__mmask16)0xFFFF : nc > 16 ? (__mmask16)((1u << (nc - 16)) - 1u) : (__mmask16)0;
    __m512 a0[XTX_MR], a1[XTX_MR];
    for (int r = 0; r < XTX_MR; r++) { a0[r] = _mm512_setzero_ps(); a1[r] = _mm512_setzero_ps(); }
    for (int64_t t = t0; t < t1; t++) {
        const float *xt = jb->X + t * n;
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, xt + j0), b1 = _mm512_maskz_loadu_ps(m1, xt + j0 + 16);
        const float *xi = xt + i0;
        for (int r = 0; r < XTX_MR; r++) {
            const __m512 s = _mm512_set1_ps(xi[r]);
            a0[r] = _mm512_fmadd_ps(s, b0, a0[r]);
            a1[r] = _mm512_fmadd_ps(s, b1, a1[r]);
        }
    }
    for (int r = 0; r < XTX_MR; r++) {
        double *h = jb->H + (i0 + r) * n + j0;
        float v[XTX_NR];
        _mm512_storeu_ps(v, a0[r]);
        _mm512_storeu_ps(v + 16, a1[r]);
        if (nc == XTX_NR) {
            for (int c = 0; c < XTX_NR; c += 8)
                _mm512_storeu_pd(h + c, _mm512_add_pd(_mm512_loadu_pd(h + c), _mm512_cvtps_pd(_mm256_loadu_ps(v + c))));
        } else {
            for (int c = 0; c < nc; c++) h[c] += (double)v[c];
        }
    }
}
QLM_AVX2_TARGET static void xtx_tile_avx2(const xtx_job *jb, int64_t t0, int64_t t1, int64_t i0, int mr, int64_t j0, int nc) {
    xtx_tile_body(jb, t0, t1, i0, mr, j0, nc);
}
#endif

// 8-row bands [lo, hi): every tile from the band's diagonal tile to the last column.
static void xtx_bands(void *ctx, int64_t lo, int64_t hi) {
    const xtx_job *jb = (const xtx_job *)ctx;
#if QLM_X86
    const int avx512 = jb->path == QLM_PATH_AVX512, avx2 = jb->path == QLM_PATH_AVX2;
#endif
    const int64_t n = jb->n;
    for (int64_t band = lo; band < hi; band++) {
        const int64_t i0 = band * XTX_MR;
        const int mr = (int)(n - i0 < XTX_MR ? n - i0 : XTX_MR);
        for (int64_t t0 = 0; t0 < jb->T; t0 += XTX_TBLOCK) {
            const int64_t t1 = t0 + XTX_TBLOCK < jb->T ? t0 + XTX_TBLOCK : jb->T;
            for (int64_t j0 = i0 / XTX_NR * XTX_NR; j0 < n; j0 += XTX_NR) {
                const int nc = (int)(n - j0 < XTX_NR ? n - j0 : XTX_NR);
#if QLM_X86
                if (avx512 && mr == XTX_MR) { xtx_tile_avx512(jb, t0, t1, i0, j0, nc); continue; }
                if (avx512 || avx2) { xtx_tile_avx2(jb, t0, t1, i0, mr, j0, nc); continue; }
#endif
                xtx_tile_c(jb, t0, t1, i0, mr, j0, nc);
            }
        }
    }
}

void qlm_xtx_upper(qlm_pool *pool, double *H, const float *X, int64_t T, int64_t n) {
    if (T <= 0 || n <= 0) return;
    xtx_job jb = {H, X, T, n, qlm_get_path()};
    qlm_pool_for(pool, 1, (n + XTX_MR - 1) / XTX_MR, 1, xtx_bands, &jb);
}

void qlm_sym_mirror_upper(double *H, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) H[j * n + i] = H[i * n + j];
}

void qlm_accum_sumsq(double *s, const float *X, int64_t T, int64_t n) {
    for (int64_t t = 0; t < T; t++) {
        const float *x = X + t * n;
        for (int64_t j = 0; j < n; j++) s[j] += (double)(x[j] * x[j]);
    }
}

// ---- U, the upper Cholesky factor of H^-1 ---------------------------------------------------
// With J the order reversal, chol(J H J) = L gives H = J L L^T J, so H^-1 = (J L^-T J)(J L^-1 J):
// U = J L^-1 J is upper triangular with a positive diagonal, hence H^-1's upper Cholesky factor.
// One Cholesky and one triangular inverse (about n^3/3 multiply-adds), both row-oriented over
// panels of PANEL rows (each earlier row is read once per panel, not once per row), the panel's
// rows split over two threads.
#define PANEL 16

static double dotd(const double *a, const double *b, int64_t n) {
#pragma clang fp reassociate(on)
    double s = 0.0;
    for (int64_t k = 0; k < n; k++) s += a[k] * b[k];
    return s;
}
#if QLM_X86
QLM_AVX2_TARGET static double dotd_avx2(const double *a, const double *b, int64_t n) {
#pragma clang fp reassociate(on)
    double s = 0.0;
    for (int64_t k = 0; k < n; k++) s += a[k] * b[k];
    return s;
}
QLM_AVX2_TARGET static void axpyd_avx2(double *y, double a, const double *x, int64_t n) {
    for (int64_t k = 0; k < n; k++) y[k] += a * x[k];
}
#endif
static void axpyd(double *y, double a, const double *x, int64_t n) {
    for (int64_t k = 0; k < n; k++) y[k] += a * x[k];
}
static double (*g_dotd)(const double *, const double *, int64_t) = dotd;
static void (*g_axpyd)(double *, double, const double *, int64_t) = axpyd;

// Rows [r0, r1) of a panel, against the rows before the panel (j < i0).
typedef struct { double *A; double *X; int64_t n, i0, r0, r1; int inverse; } panel_job;

static void *panel_worker(void *p) {
    panel_job *jb = (panel_job *)p;
    const int64_t n = jb->n;
    double *A = jb->A;
    if (!jb->inverse) {
        // Cholesky: L[i][j] = (A[i][j] - L[i][0..j) . L[j][0..j)) / L[j][j], j < i0
        for (int64_t j = 0; j < jb->i0; j++) {
            const double *lj = A + j * n;
            for (int64_t i = jb->r0; i < jb->r1; i++) {
                double *li = A + i * n;
                li[j] = (li[j] - g_dotd(li, lj, j)) / lj[j];
            }
        }
    } else {
        // inverse: X[i][0..k] += L[i][k] * X[k][0..k] for k < i0 (negated and scaled later)
        double *X = jb->X;
        for (int64_t k = 0; k < jb->i0; k++) {
            const double *xk = X + k * n;
            for (int64_t i = jb->r0; i < jb->r1; i++) g_axpyd(X + i * n, A[i * n + k], xk, k + 1);
        }
    }
    return NULL;
}

static void run_panel(panel_job base, int64_t i1, int threads) {
    panel_job jobs[2];
    const int64_t mid = threads > 1 ? base.i0 + (i1 - base.i0) / 2 : i1;
    jobs[0] = base; jobs[0].r0 = base.i0; jobs[0].r1 = mid;
    jobs[1] = base; jobs[1].r0 = mid; jobs[1].r1 = i1;
    pthread_t th;
    const int started = threads > 1 && mid < i1 && base.i0 > 0 && pthread_create(&th, NULL, panel_worker, &jobs[1]) == 0;
    panel_worker(&jobs[0]);
    if (started) pthread_join(th, NULL); else panel_worker(&jobs[1]);
}

// U (upper, H^-1 = U^T U) from H. 0 on success, -1 if H is not positive definite.
static int inverse_upper_factor(const double *H, int64_t n, double *U, int threads) {
#if QLM_X86
    if (qlm_path_supported(QLM_PATH_AVX2)) { g_dotd = dotd_avx2; g_axpyd = axpyd_avx2; }
#endif
    double *A = (double *)malloc((size_t)(n * n) * sizeof(double));
    double *X = (double *)calloc((size_t)(n * n), sizeof(double));
    if (!A || !X) { free(A); free(X); return -1; }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) A[i * n + j] = H[(n - 1 - i) * n + (n - 1 - j)];
    int rc = 0;
    // Cholesky of A (lower, in place), panel by panel
    for (int64_t i0 = 0; i0 < n && rc == 0; i0 += PANEL) {
        const int64_t i1 = i0 + PANEL < n ? i0 + PANEL : n;
        run_panel((panel_job){A, X, n, i0, 0, 0, 0}, i1, threads);
        for (int64_t j = i0; j < i1 && rc == 0; j++) {
            double *lj = A + j * n;
            const double d = lj[j] - g_dotd(lj, lj, j);
            if (!(d > 0.0)) { rc = -1; break; }
            lj[j] = sqrt(d);
            for (int64_t i = j + 1; i < i1; i++) { double *li = A + i * n; li[j] = (li[j] - g_dotd(li, lj, j)) / lj[j]; }
        }
    }
    if (rc == 0) {
        // X = L^-1 (lower): X[i][i] = 1 / L_ii, X[i][j] = -(sum_{j<=k<i} L_ik X_kj) / L_ii
        for (int64_t i0 = 0; i0 < n; i0 += PANEL) {
            const int64_t i1 = i0 + PANEL < n ? i0 + PANEL : n;
            run_panel((panel_job){A, X, n, i0, 0, 0, 1}, i1, threads);
            for (int64_t i = i0; i < i1; i++) {
                double *xi = X + i * n;
                for (int64_t k = i0; k < i; k++) g_axpyd(xi, A[i * n + k], X + k * n, k + 1);
                const double inv = 1.0 / A[i * n + i];
                for (int64_t j = 0; j < i; j++) xi[j] = -xi[j] * inv;
                xi[i] = inv;
            }
        }
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) U[i * n + j] = j >= i ? X[(n - 1 - i) * n + (n - 1 - j)] : 0.0;
    }
    free(A);
    free(X);
    return rc;
}

// ---- The 32-block sweep, 8 rows at a time (qlm_gptq_blocks_rows) ------------------------------
// Each row's arithmetic is qlm_gptq_blocks' (qlm_internal.h) in the same order: the block's scale
// from the row's current weights, then per column code, err = (w_i - deq) / U_ii in double and
// w_k -= (float)(err * U_ik) for k > i. The rows of a group share each load of U's row i.
#define GPTQ_GROUP 8

// w[r][k] -= (float)(err[r] * u[k]) for k in [k0, n), r < R.
static void gptq_push_c(float *const *w, int R, const double *err, const double *u, int64_t k0, int64_t n) {
    for (int r = 0; r < R; r++) {
        float *wr = w[r];
        const double e = err[r];
        for (int64_t k = k0; k < n; k++) wr[k] -= (float)(e * u[k]);
    }
}
#if QLM_X86
QLM_AVX512_TARGET static void gptq_push_avx512(float *const *w, int R, const double *err, const double *u, int64_t k0, int64_t n) {
    int64_t k = k0;
    for (; k + 8 <= n; k += 8) {
        const __m512d uk = _mm512_loadu_pd(u + k);
        for (int r = 0; r < R; r++) {
            const __m256 d = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_set1_pd(err[r]), uk));
            _mm256_storeu_ps(w[r] + k, _mm256_sub_ps(_mm256_loadu_ps(w[r] + k), d));
        }
    }
    if (k < n) gptq_push_c(w, R, err, u, k, n);
}
QLM_AVX2_TARGET static void gptq_push_avx2(float *const *w, int R, const double *err, const double *u, int64_t k0, int64_t n) {
    int64_t k = k0;
    for (; k + 4 <= n; k += 4) {
        const __m256d uk = _mm256_loadu_pd(u + k);
        for (int r = 0; r < R; r++) {
            const __m128 d = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_set1_pd(err[r]), uk));
            _mm_storeu_ps(w[r] + k, _mm_sub_ps(_mm_loadu_ps(w[r] + k), d));
        }
    }
    if (k < n) gptq_push_c(w, R, err, u, k, n);
}
#endif

void qlm_gptq_blocks_rows(float *W, int64_t rows, int64_t n, const double *U, void *dst, size_t block_bytes, size_t d_offset,
                          qlm_block_fn quantize_block, float lo, float hi, void (*pack)(void *blk, const int *codes)) {
    void (*push)(float *const *, int, const double *, const double *, int64_t, int64_t) = gptq_push_c;
#if QLM_X86
    const int32_t path = qlm_get_path();
    if (path == QLM_PATH_AVX512) push = gptq_push_avx512;
    else if (path == QLM_PATH_AVX2) push = gptq_push_avx2;
#endif
    const int64_t nb = (n + QLM_QK - 1) / QLM_QK;
    const size_t rs = (size_t)nb * block_bytes;
    for (int64_t g0 = 0; g0 < rows; g0 += GPTQ_GROUP) {
        const int R = (int)(rows - g0 < GPTQ_GROUP ? rows - g0 : GPTQ_GROUP);
        float *w[GPTQ_GROUP];
        for (int r = 0; r < R; r++) w[r] = W + (g0 + r) * n;
        for (int64_t b = 0; b < nb; b++) {
            const int64_t i0 = b * QLM_QK;
            const int m = (int)((n - i0) < QLM_QK ? (n - i0) : QLM_QK);
            float dd[GPTQ_GROUP];
            uint8_t *blk[GPTQ_GROUP];
            int codes[GPTQ_GROUP][QLM_QK];
            for (int r = 0; r < R; r++) {
                float tmp[QLM_QK] = {0};
                memcpy(tmp, w[r] + i0, (size_t)m * sizeof(float));
                blk[r] = (uint8_t *)dst + (size_t)(g0 + r) * rs + b * (int64_t)block_bytes;
                quantize_block(tmp, blk[r]);
                uint16_t dh;
                memcpy(&dh, blk[r] + d_offset, sizeof dh);
                dd[r] = qlm_h2f(dh);
                memset(codes[r], 0, sizeof codes[r]);
            }
            for (int j = 0; j < m; j++) {
                const int64_t i = i0 + j;
                const double *ui = U + i * n;
                double err[GPTQ_GROUP];
                for (int r = 0; r < R; r++) {
                    const float qf = dd[r] != 0.0f ? fminf(fmaxf(roundf(w[r][i] / dd[r]), lo), hi) : 0.0f;
                    codes[r][j] = (int)qf;
                    const float deq = dd[r] * qf;
                    err[r] = ((double)w[r][i] - (double)deq) / ui[i];
                    w[r][i] = deq;
                }
                push(w, R, err, ui, i + 1, n);
            }
            for (int r = 0; r < R; r++) pack(blk[r], codes[r]);
        }
    }
}

// Each row goes through the type's gptq_row (its table row): the scale(s) chosen by the type's own
// rule from the current weights when the sweep reaches them, then each column coded and its
// error pushed onto the later columns.
typedef struct {
    void (*row)(float *w, int64_t n, const double *U, void *dst);
    void (*rows_fn)(float *W, int64_t rows, int64_t n, const double *U, void *dst);
    float *W; int64_t rows, n; const double *U; char *dst; size_t rs; int64_t r0, r1;
} gptq_job;

static void *gptq_worker(void *p) {
    gptq_job *j = (gptq_job *)p;
    if (j->rows_fn) {
        if (j->r1 > j->r0) j->rows_fn(j->W + j->r0 * j->n, j->r1 - j->r0, j->n, j->U, j->dst + (size_t)j->r0 * j->rs);
        return NULL;
    }
    for (int64_t r = j->r0; r < j->r1; r++) {
        float *w = j->W + r * j->n;
        void *d = j->dst + (size_t)r * j->rs;
        j->row(w, j->n, j->U, d);
    }
    return NULL;
}

int qlm_gptq_inverse_factor(const double *H, int64_t n, double *U, int n_threads) {
    return inverse_upper_factor(H, n, U, n_threads);
}

// The last U computed, keyed by (n, damp, a hash of H's bytes): matrices that share an input
// (a layer's q/k/v, its w1/w3) share H, and the converter quantizes them one after the other.
static struct { uint64_t hash; int64_t n; double damp; double *U; } g_ucache;
static pthread_mutex_t g_ucache_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t hash_doubles(const double *H, int64_t count) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)count;
    for (int64_t i = 0; i < count; i++) {
        uint64_t v;
        memcpy(&v, H + i, 8);
        h = (h ^ v) * 0x100000001B3ull;
        h ^= h >> 29;
    }
    return h;
}

// U for H after the dead-input fix and dampening (raised tenfold until H factors). 0 or -1.
static int gptq_factor(const double *H, int64_t n, double damp, double *U, int threads) {
    const uint64_t key = hash_doubles(H, n * n);
    pthread_mutex_lock(&g_ucache_lock);
    if (g_ucache.U && g_ucache.hash == key && g_ucache.n == n && g_ucache.damp == damp) {
        memcpy(U, g_ucache.U, (size_t)(n * n) * sizeof(double));
        pthread_mutex_unlock(&g_ucache_lock);
        return 0;
    }
    pthread_mutex_unlock(&g_ucache_lock);
    double *Ht = (double *)malloc((size_t)(n * n) * sizeof(double));
    if (!Ht) return -1;
    double mean = 0.0;
    for (int64_t i = 0; i < n; i++) mean += H[i * n + i] == 0.0 ? 1.0 : H[i * n + i];
    mean /= (double)n;
    int rc = -1;
    double dmp = damp > 0 ? damp : 0.01;
    for (int attempt = 0; attempt < 6 && rc != 0; attempt++, dmp *= 10.0) {
        memcpy(Ht, H, (size_t)(n * n) * sizeof(double));
        for (int64_t i = 0; i < n; i++) {
            if (Ht[i * n + i] == 0.0) Ht[i * n + i] = 1.0;  // dead input
            Ht[i * n + i] += dmp * mean;
        }
        rc = inverse_upper_factor(Ht, n, U, threads);
    }
    free(Ht);
    if (rc != 0) return -1;
    pthread_mutex_lock(&g_ucache_lock);
    double *c = (double *)realloc(g_ucache.U, (size_t)(n * n) * sizeof(double));
    if (c) {
        memcpy(c, U, (size_t)(n * n) * sizeof(double));
        g_ucache.U = c; g_ucache.hash = key; g_ucache.n = n; g_ucache.damp = damp;
    }
    pthread_mutex_unlock(&g_ucache_lock);
    return 0;
}

int qlm_gptq_quantize(int32_t type, float *W, int64_t rows, int64_t n, const double *H, double damp,
                      void *dst, int n_threads) {
    const qlm_type_traits *tr = qlm_traits(type);
    if (!tr || !tr->gptq_row) return -2;
    for (int64_t i = 0; i < rows * n; i++) if (!isfinite(W[i])) return -1;
    double *U = (double *)malloc((size_t)(n * n) * sizeof(double));
    if (!U) return -1;
    // dead inputs (H_ii = 0): their weights are zeroed (never read)
    for (int64_t i = 0; i < n; i++)
        if (H[i * n + i] == 0.0) for (int64_t r = 0; r < rows; r++) W[r * n + i] = 0.0f;
    if (gptq_factor(H, n, damp, U, n_threads) != 0) { free(U); return -1; }
    const size_t rs = qlm_row_size(type, n);
    memset(dst, 0, rs * (size_t)rows);
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
    if (n_threads > rows) n_threads = (int)rows;
    gptq_job jobs[64];
    pthread_t th[64];
    int started[64] = {0};
    // the multi-row sweep (a row-grouped type's plain rows are its plain type's), each thread a
    // share of whole 8-row groups
    const qlm_type_traits *plain = tr->row_group > 1 ? qlm_traits(tr->plain_type) : NULL;
    void (*rows_fn)(float *, int64_t, int64_t, const double *, void *) = tr->gptq_rows ? tr->gptq_rows : plain ? plain->gptq_rows : NULL;
    const int64_t groups = (rows + GPTQ_GROUP - 1) / GPTQ_GROUP;
    for (int t = 0; t < n_threads; t++) {
        int64_t r0 = rows * t / n_threads, r1 = rows * (t + 1) / n_threads;
        if (rows_fn) {
            r0 = groups * t / n_threads * GPTQ_GROUP;
            r1 = groups * (t + 1) / n_threads * GPTQ_GROUP;
            if (r0 > rows) r0 = rows;
            if (r1 > rows) r1 = rows;
        }
        jobs[t] = (gptq_job){tr->gptq_row, rows_fn, W, rows, n, U, (char *)dst, rs, r0, r1};
    }
    for (int t = 1; t < n_threads; t++) started[t] = pthread_create(&th[t], NULL, gptq_worker, &jobs[t]) == 0;
    gptq_worker(&jobs[0]);
    for (int t = 1; t < n_threads; t++) { if (started[t]) pthread_join(th[t], NULL); else gptq_worker(&jobs[t]); }
    free(U);
    // row-grouped types (q4_0x8): plain rows, then the groups
    return qlm_pack_rows(type, dst, rows, n) == 0 ? 0 : -1;
}
