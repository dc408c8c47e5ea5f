// What an empty pool job costs: a static job (qlm_pool_run) and a dynamic shares job of 125 chunks
// (qlm_pool_for_shares), N of each. Built by scripts/bench/products_vs_read.sh; not part of the package.
//
//   pool_cost THREADS N
#include "qlm_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static void range_fn(void *c, int64_t lo, int64_t hi) { *(volatile int64_t *)c += hi - lo; }
static void task_fn(void *c, int ith, int nth) { (void)nth; *(volatile int64_t *)c += ith; }

int main(int argc, char **argv) {
    const int threads = argc == 3 ? atoi(argv[1]) : 0, n = argc == 3 ? atoi(argv[2]) : 0;
    if (threads < 2 || n < 1) { fprintf(stderr, "usage: %s THREADS(>= 2) N\n", argv[0]); return 2; }
    qlm_pool *pool = qlm_pool_create(threads);
    volatile int64_t s = 0;
    const double t0 = now();
    for (int i = 0; i < n; i++) qlm_pool_run(pool, task_fn, (void *)&s);
    const double t1 = now();
    for (int i = 0; i < n; i++) qlm_pool_for_shares(pool, 1, 1000, 8, range_fn, (void *)&s);
    const double t2 = now();
    printf("pool, %d threads: static job %.2f us, shares job of 125 chunks %.2f us (%d jobs each)\n",
           threads, (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6, n);
    qlm_pool_destroy(pool);
    return 0;
}
