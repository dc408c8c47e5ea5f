// What the benchmark harnesses (rows_cost.c, products_vs_read.c) share: a clock and medians (clock.h), a type
// looked up by name, and a model's matrices filled with the same pseudo-random weights.
#pragma once
#include "qlm_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

// The quantized type called `name`, or -1 (after an error line).
static int quantized_type(const char *name) {
    int type = -1;
    for (int t = 0; t < 32; t++) { const qlm_type_traits *tr = qlm_traits(t); if (tr && !strcmp(tr->name, name)) type = t; }
    if (type < 0 || !qlm_traits(type)->is_quantized) { fprintf(stderr, "error: unknown or unquantized type '%s'\n", name); return -1; }
    return type;
}

// nm matrices of shape[i] = {rows, cols} in `type`, each 4096-aligned at off[i] in one buffer,
// quantized from uniform weights in [-0.05, 0.05) of a fixed LCG; *bytes = the buffer's size. NULL (after an error line) on failure.
static char *random_weights(int type, int64_t (*shape)[2], int nm, size_t *off, size_t *bytes, int threads) {
    size_t total = 0;
    int64_t most = 0;
    for (int i = 0; i < nm; i++) {
        off[i] = total;
        total += (qlm_row_size(type, shape[i][1]) * shape[i][0] + 4095) & ~(size_t)4095;
        if (shape[i][0] * shape[i][1] > most) most = shape[i][0] * shape[i][1];
    }
    char *W = aligned_alloc(4096, total);
    float *tmp = malloc(sizeof(float) * (size_t)most);
    if (!W || !tmp) { fprintf(stderr, "error: out of memory\n"); free(W); free(tmp); return NULL; }
    uint64_t rng = 1;
    for (int i = 0; i < nm; i++) {
        const int64_t n = shape[i][0] * shape[i][1];
        for (int64_t j = 0; j < n; j++) { rng = rng * 6364136223846793005ull + 1442695040888963407ull; tmp[j] = ((float)(rng >> 40) / 16777216.0f - 0.5f) * 0.1f; }
        if (qlm_quantize_rows(type, tmp, W + off[i], shape[i][0], shape[i][1], threads) != -1) {
            fprintf(stderr, "error: quantize failed\n"); free(W); free(tmp); return NULL;
        }
    }
    free(tmp);
    *bytes = total;
    return W;
}
