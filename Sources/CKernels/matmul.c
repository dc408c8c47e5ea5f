// Matrix-vector (decode) and matrix-matrix (prefill) products over pool threads.
// Both use the weight type's multi-row dot kernel and prefill tile of one CPU path (its table
// row, qlm_type_traits), looked up once per product, so every output equals
// qlm_vec_dot(row, activation) bit for bit on the same path.
#include "qlm_internal.h"
#include <stdlib.h>

qlm_dotn_fn qlm_get_dotn(int32_t path, int32_t type) {
    const qlm_type_traits *t = qlm_traits(type);
    if (!t || path < 0) return NULL;
    const int32_t p = qlm_kernel_path(t, path);
    return p < 0 ? NULL : t->dotn[p];
}

float qlm_vec_dot(int32_t wtype, int64_t n, const void *wrow, const void *act) {
    qlm_dotn_fn f = qlm_get_dotn(qlm_get_path(), wtype);
    if (!f || n <= 0) return 0.0f;
    float out;
    f(n, wrow, 0, act, &out, 1);
    return out;
}

typedef struct {
    qlm_dotn_fn f;
    qlm_tile_kernel tile; // tile.fn NULL: none
    qlm_few_fn few;       // used for T <= QLM_FEW_MAX when present
    const char *W;
    size_t rs, as;
    int64_t rows, n, T, ldy;
    const char *act;
    float *y;
    const char *pact;     // the tile and few kernels' activation rows (packed, ps apart; else act, as)
    size_t ps;
} prod_ctx;

// Rows are handed out in chunks (qlm_pool_for / qlm_pool_for_shares), so a thread that starts
// late (or not at all) just takes fewer chunks. Every row is computed by exactly one thread with the same kernel, so
// results do not depend on the split.
static int64_t chunk_rows(int64_t rows, int nth) {
    int64_t c = rows / (8 * (int64_t)nth);
    if (c < 16) c = 16;
    return (c + 3) & ~(int64_t)3;
}

// Rows per kernel call in matvec. Measured (4096x4096, 1 thread, AVX-512): one row at a time
// streams the contiguous matrix at 27 GB/s (q8_0) / 17 GB/s (q4_0); four interleaved rows
// (sharing activation loads) only reach 14 / 9 GB/s, because four short streams 1 row apart
// defeat the hardware prefetcher. The activation row stays in L1 either way.
#ifndef QLM_MV_NR
#define QLM_MV_NR 1
#endif
static void matvec_range(void *p, int64_t r0, int64_t r1) {
    const prod_ctx *c = (const prod_ctx *)p;
    int64_t r = r0;
    for (; r + QLM_MV_NR <= r1; r += QLM_MV_NR) c->f(c->n, c->W + (size_t)r * c->rs, c->rs, c->act, c->y + r, QLM_MV_NR);
    if (r < r1) c->f(c->n, c->W + (size_t)r * c->rs, c->rs, c->act, c->y + r, (int)(r1 - r));
}

void qlm_matvec(qlm_pool *pool, int32_t wtype, const void *W, int64_t rows, int64_t n,
                const float *x, float *y, void *act) {
    if (rows <= 0 || n <= 0) return;
    const qlm_type_traits *t = qlm_traits(wtype);
    if (!t) return;
    const int32_t path = qlm_get_path(), kp = qlm_kernel_path(t, path);
    if (kp < 0) return;
    t->prepare_act(path, x, act, n);
    if (t->product) { t->product(pool, path, W, rows, n, act, 0, 1, y, rows); return; }
    prod_ctx c = {t->dotn[kp], t->tile[kp], NULL, (const char *)W, t->row_size(n), 0, rows, n, 1, 0, (const char *)act, y, NULL, 0};
    // One contiguous share of rows per thread (see qlm_pool_for_shares): q8_0 decode products
    // went from 1.01 to 1.06 of a read of the same bytes (2 threads, scripts/bench/products_vs_read.sh).
    qlm_pool_for_shares(pool, rows * n >= QLM_SMALL_PRODUCT && rows >= 8, rows, 32, matvec_range, &c);
}

// Prefill. With a register tile (e.g. AVX-512 q8_0/q4_0): 2 rows x 4 tokens per call, the two weight
// rows staying in L1 while all token groups stream past. Otherwise (and for the edges): 4 rows
// per dot-kernel call (activation loads shared), looping over tokens with the rows in L1.
static void matmul_generic(const prod_ctx *c, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
    float tmp[4];
    for (int64_t r = r0; r < r1; r += 4) {
        const int nr = (int)(r1 - r < 4 ? r1 - r : 4);
        const char *w = c->W + (size_t)r * c->rs;
        for (int64_t t = t0; t < t1; t++) {
            c->f(c->n, w, c->rs, c->act + (size_t)t * c->as, tmp, nr);
            float *yt = c->y + t * c->ldy + r;
            for (int i = 0; i < nr; i++) yt[i] = tmp[i];
        }
    }
}

static void matmul_range(void *p, int64_t r0, int64_t r1) {
    const prod_ctx *c = (const prod_ctx *)p;
    const int tr = c->tile.nr, tt = c->tile.nt;
    if (c->few && c->T <= QLM_FEW_MAX) {
        for (int64_t r = r0; r < r1; r++) c->few(c->n, c->W + (size_t)r * c->rs, c->pact, c->ps, c->y + r, c->ldy, (int)c->T);
        return;
    }
    if (!c->tile.fn || c->T < tt) {
        matmul_generic(c, r0, r1, 0, c->T);
        return;
    }
    const int64_t tfull = c->T / tt * tt;
    int64_t r = r0;
    for (; r + tr <= r1; r += tr) {
        const char *w = c->W + (size_t)r * c->rs;
        for (int64_t t = 0; t < tfull; t += tt)
            c->tile.fn(c->n, w, c->rs, c->pact + (size_t)t * c->ps, c->ps, c->y + t * c->ldy + r, c->ldy);
    }
    if (r < r1) matmul_generic(c, r, r1, 0, tfull);
    if (tfull < c->T) matmul_generic(c, r0, r1, tfull, c->T);
}

typedef struct {
    void (*prepare)(int32_t, const float *, void *, int64_t);
    int32_t path;
    const float *X;
    char *act;
    size_t as;
    int64_t n;
    qlm_pack_kernel pack; // pack.fn NULL: none
    char *pact;
    size_t ps;
} prep_ctx;
static void prep_range(void *p, int64_t t0, int64_t t1) {
    const prep_ctx *c = (const prep_ctx *)p;
    for (int64_t t = t0; t < t1; t++) {
        c->prepare(c->path, c->X + t * c->n, c->act + (size_t)t * c->as, c->n);
        if (c->pack.fn) c->pack.fn(c->act + (size_t)t * c->as, c->n, c->pact + (size_t)t * c->ps);
    }
}

// The packed activation rows live in a buffer of the calling thread, grown when a product needs
// more (so steady-state decode and prefill allocate nothing); pool threads only read it during
// the product. NULL if out of memory (the product then runs without the tile and few kernels).
static _Thread_local char *pack_buf;
static _Thread_local size_t pack_cap;
static char *pack_space(size_t bytes) {
    if (bytes > pack_cap) {
        size_t cap = pack_cap ? pack_cap : 65536;
        while (cap < bytes) cap *= 2;
        char *b = aligned_alloc(64, cap);
        if (!b) return NULL;
        free(pack_buf);
        pack_buf = b;
        pack_cap = cap;
    }
    return pack_buf;
}

void qlm_matmul(qlm_pool *pool, int32_t wtype, const void *W, int64_t rows, int64_t n,
                const float *X, int64_t T, float *Y, int64_t ldy, void *act) {
    if (rows <= 0 || n <= 0 || T <= 0) return;
    if (T == 1) { qlm_matvec(pool, wtype, W, rows, n, X, Y, act); return; }
    const qlm_type_traits *t = qlm_traits(wtype);
    if (!t) return;
    const int32_t path = qlm_get_path(), kp = qlm_kernel_path(t, path);
    if (kp < 0) return;
    const size_t as = t->act_row_size(n);
    const int parallel = pool && qlm_pool_size(pool) > 1 && rows * n * T >= QLM_SMALL_PRODUCT && rows >= 8;
    qlm_tile_kernel tile = t->tile[kp];
    qlm_few_fn few = T <= QLM_FEW_MAX ? t->few[kp] : NULL;
    const int uses_pack = few || (tile.fn && T >= tile.nt && rows >= tile.nr && !t->pack[kp].few_only);
    qlm_pack_kernel pack = uses_pack ? t->pack[kp] : (qlm_pack_kernel){NULL, NULL, 0};
    const size_t ps = pack.fn ? pack.size(n) : as;
    char *pact = pack.fn ? pack_space(ps * (size_t)T) : (char *)act;
    if (!pact) { pack.fn = NULL; tile.fn = NULL; few = NULL; pact = (char *)act; } // no memory: dot kernel only
    prep_ctx pc = {t->prepare_act, path, X, (char *)act, as, n, pack, pact, ps};
    qlm_pool_for(pool, parallel && T * n >= QLM_SMALL_PRODUCT, T, 4, prep_range, &pc); // 4 tokens per item
    if (t->product) { t->product(pool, path, W, rows, n, act, as, T, Y, ldy); return; }
    prod_ctx c = {t->dotn[kp], tile, few, (const char *)W, t->row_size(n), as, rows, n, T, ldy, (const char *)act, Y, pact, ps};
    qlm_pool_for(pool, parallel, rows, chunk_rows(rows, qlm_pool_size(pool)), matmul_range, &c);
}
