// The clock and medians every harness uses (harness.h includes it; disk_reads.c, which needs no
// kernels, includes only this).
#pragma once
#include <stdlib.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
static double median(double *x, int n) { qsort(x, n, sizeof(double), cmp); return x[n / 2]; }
