// What a decode step over T sequences costs in the weight products alone: SmolLM2-135M's 211
// products (30 layers x {576x576 q, 192x576 k, 192x576 v, 576x576 o, 1536x576 gate, 1536x576 up,
// 576x1536 down} and the 49152x576 classifier) through qlm_matmul with T = 1..8 activation rows,
// alternated N times in one process. Prints per T the median pass time and its ratio to T = 1
// (1.0 = T rows for the price of one; T = the rows cost as much as T separate passes). Built by
// scripts/bench/rows_cost.sh against Sources/CKernels (this tree or an earlier commit); not part of the package.
//
//   rows_cost TYPE THREADS N [T ...]      (default T = 1 2 3 4 5 6 7 8; up to 512)
#include "harness.h"
int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s TYPE THREADS N [T ...]\n", argv[0]); return 2; }
    const int threads = atoi(argv[2]), N = atoi(argv[3]);
    int Ts[32], nt = 0;
    for (int i = 4; i < argc && nt < 32; i++) Ts[nt++] = atoi(argv[i]);
    if (nt == 0) for (int T = 1; T <= 8; T++) Ts[nt++] = T;
    if (threads < 1 || N < 1) { fprintf(stderr, "error: THREADS and N must be positive\n"); return 2; }
    for (int i = 0; i < nt; i++) if (Ts[i] < 1 || Ts[i] > 512) { fprintf(stderr, "error: T must be 1..512, got %d\n", Ts[i]); return 2; }
    const int type = quantized_type(argv[1]);
    if (type < 0) return 2;
    enum { NM = 30 * 7 + 1 };
    int64_t shape[NM][2];
    int nm = 0;
    for (int l = 0; l < 30; l++) {
        const int64_t s[7][2] = {{576, 576}, {192, 576}, {192, 576}, {576, 576}, {1536, 576}, {1536, 576}, {576, 1536}};
        for (int k = 0; k < 7; k++, nm++) { shape[nm][0] = s[k][0]; shape[nm][1] = s[k][1]; }
    }
    shape[nm][0] = 49152; shape[nm][1] = 576; nm++;
    size_t off[NM], total = 0;
    char *W = random_weights(type, shape, nm, off, &total, threads);
    float *x = malloc(4 * 1536 * 512), *y = malloc(4 * (size_t)49152 * 512);
    void *act = malloc(qlm_act_row_size(type, 1536) * 512);
    if (!W || !x || !y || !act) { fprintf(stderr, "error: out of memory\n"); return 1; }
    for (int j = 0; j < 1536 * 512; j++) x[j] = (float)(j % 1536) / 1536.0f - 0.5f + 0.01f * (j / 1536);
    qlm_pool *pool = threads > 1 ? qlm_pool_create(threads) : NULL;
    double *tp = malloc(sizeof(double) * N * (nt + 1)), macs = 0;
    for (int i = 0; i < nm; i++) macs += (double)shape[i][0] * shape[i][1];
    for (int it = -2; it < N; it++) // two warm-up rounds; each round runs T = 1 and every T asked once
        for (int k = 0; k <= nt; k++) {
            const int T = k == 0 ? 1 : Ts[k - 1];
            const double t0 = now();
            for (int i = 0; i < nm; i++) qlm_matmul(pool, type, W + off[i], shape[i][0], shape[i][1], x, T, y, shape[i][0], act);
            if (it >= 0) tp[k * N + it] = now() - t0;
        }
    const double base = median(tp, N);
    printf("%s threads %d, %.1f MB of weights, medians of %d rounds\n", argv[1], threads, total / 1e6, N);
    for (int k = 1; k <= nt; k++) {
        const int T = Ts[k - 1];
        const double m = median(tp + k * N, N);
        printf("  T=%3d  %8.3f ms  x%.2f of T=1  (%.2f rows per T=1 cost, weights %.1f GB/s, %.1f GFLOP/s)\n", T, m * 1e3, m / base,
               T * base / m, total / m / 1e9, 2 * macs * T / m / 1e9);
    }
    return 0;
}
