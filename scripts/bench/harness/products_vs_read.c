// GPT-2-small's 49 decode products (12 layers x {2304x768, 768x768, 3072x768, 768x3072} and the
// 50257x768 classifier) through qlm_matvec, alternated N times with a sequential read of the same
// bytes (qlm_probe_read) by the same pool, so each products pass is compared with a read of the
// same memory a moment later. Ratio = products GB/s / read GB/s, median over the N pairs. Built by scripts/bench/products_vs_read.sh against Sources/CKernels (of
// this tree or of an earlier commit); not part of the package.
//
//   products_vs_read TYPE THREADS N      -> one line: type, threads, MB, medians, ratio
#include "harness.h"
int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s TYPE THREADS N\n", argv[0]); return 2; }
    const int threads = atoi(argv[2]), N = atoi(argv[3]);
    if (threads < 1 || N < 1) { fprintf(stderr, "error: THREADS and N must be positive, got '%s' '%s'\n", argv[2], argv[3]); return 2; }
    const int type = quantized_type(argv[1]);
    if (type < 0) return 2;
    int64_t shape[49][2];
    int nm = 0;
    for (int l = 0; l < 12; l++) {
        const int64_t s[4][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}};
        for (int k = 0; k < 4; k++, nm++) { shape[nm][0] = s[k][0]; shape[nm][1] = s[k][1]; }
    }
    shape[nm][0] = 50257; shape[nm][1] = 768; nm++;
    size_t off[49], total = 0;
    char *W = random_weights(type, shape, nm, off, &total, threads);
    float *x = malloc(4 * 3072), *y = malloc(4 * 50257);
    void *act = malloc(qlm_act_row_size(type, 3072));
    if (!W || !x || !y || !act) { fprintf(stderr, "error: out of memory\n"); return 1; }
    for (int j = 0; j < 3072; j++) x[j] = (float)j / 3072.0f - 0.5f;
    qlm_pool *pool = threads > 1 ? qlm_pool_create(threads) : NULL;
    double *tp = malloc(N * sizeof(double)), *tr = malloc(N * sizeof(double)), *ratio = malloc(N * sizeof(double)), sink = 0;
    for (int it = -2; it < N; it++) { // two warm-up passes
        const double t0 = now();
        for (int i = 0; i < nm; i++) qlm_matvec(pool, type, W + off[i], shape[i][0], shape[i][1], x, y, act);
        const double t1 = now();
        sink += qlm_probe_read(pool, (const float *)W, total / 4);
        const double t2 = now();
        if (it >= 0) { tp[it] = t1 - t0; tr[it] = t2 - t1; ratio[it] = tr[it] / tp[it]; }
    }
    const double r = median(ratio, N), p = median(tp, N), q = median(tr, N);
    if (sink == 12345.0) fputc('.', stderr); // keeps the read's sum alive
    printf("%s threads %d, %.1f MB: products %.3f ms, read of the same bytes %.3f ms (medians of %d); products GB/s / read GB/s %.3f\n",
           argv[1], threads, total / 1e6, p * 1e3, q * 1e3, N, r);
    return 0;
}
