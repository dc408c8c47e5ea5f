// Importance-weighted quantizers (the traits rows' quantize_row_imp hook) for the 32-weight block
// types q8_0, q4_0 and q4_1. imp[j] >= 0 is the weight of column j's rounding error, in practice
// the calibration text's mean square of input j (an importance matrix): the product's output
// error is sum_j imp_j (w_j - q_j)^2 in expectation when inputs are uncorrelated.
// Per block the scale (and q4_1's min) minimizes the weighted squared error over a set of
// candidates: the plain rule's own scale (so no block gets worse than plain rounding, in this
// measure), then scales that map the block's extreme to a grid of code levels, each refitted by
// weighted least squares for the codes it gives. The stored fp16 numbers are rounded first and
// the codes chosen for them. Blocks whose weights are all zero (dead inputs) use the plain rule.
// Output bytes are the ordinary block layouts: readers cannot tell the difference.
#include "qlm_internal.h"

#pragma clang fp contract(off)

// Weighted error of symmetric codes clamp(round(x / d), lo, hi), writing them to q.
static float sym_err(const float *x, const float *w, int m, float d, float lo, float hi, int *q) {
    float e = 0.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < m; j++) {
        const float c = d != 0.0f ? fminf(fmaxf(roundf(x[j] * id), lo), hi) : 0.0f;
        if (q) q[j] = (int)c;
        const float r = x[j] - d * c;
        e += w[j] * r * r;
    }
    return e;
}

// The fp16-representable scale d for x[0..m) with codes in [lo, hi] minimizing sum w (x - d q)^2,
// among: d0 (the plain rule's), and for each level target L in the grid, d = ext / L refitted.
static float sym_search(const float *x, const float *w, int m, float d0, float lo, float hi) {
    float amax = 0.0f, ext = 0.0f;
    for (int j = 0; j < m; j++) if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); ext = x[j]; }
    float best = qlm_h2f(qlm_f2h(d0));
    float be = sym_err(x, w, m, best, lo, hi, NULL);
    if (amax == 0.0f) return best;
    int q[QLM_QK];
    // targets for the extreme: around hi and around lo (asymmetric ranges: both signs)
    for (int side = 0; side < 2; side++) {
        const float L0 = side == 0 ? hi : lo;
        if (L0 == 0.0f) continue;
        for (int k = -10; k <= 10; k++) {
            const float L = L0 + (L0 > 0 ? 0.1f : -0.1f) * (float)k * (fabsf(L0) > 20.0f ? 4.0f : 1.0f);
            if (L == 0.0f || (L > 0) != (L0 > 0)) continue;
            const float d = ext / L;
            sym_err(x, w, m, d, lo, hi, q);
            float sxq = 0.0f, sqq = 0.0f;
            for (int j = 0; j < m; j++) { sxq += w[j] * x[j] * (float)q[j]; sqq += w[j] * (float)q[j] * (float)q[j]; }
            if (!(sqq > 0.0f)) continue;
            const float dh = qlm_h2f(qlm_f2h(sxq / sqq));
            if (!isfinite(dh)) continue;
            const float e = sym_err(x, w, m, dh, lo, hi, NULL);
            if (e < be) { be = e; best = dh; }
        }
    }
    return best;
}

static int weights_usable(const float *w, int m) {
    float s = 0.0f;
    for (int j = 0; j < m; j++) s += w[j];
    return s > 0.0f && isfinite(s);
}

// Runs fn over the row's 32-weight blocks (the last one zero padded, its padding weight 0).
typedef void (*imp_block_fn)(const float *x, const float *w, void *block);
static void imp_blocks(imp_block_fn fn, size_t bb, const float *x, const float *imp, void *dst, int64_t n) {
    char *out = (char *)dst;
    for (int64_t i0 = 0; i0 < n; i0 += QLM_QK) {
        const int m = (int)((n - i0) < QLM_QK ? (n - i0) : QLM_QK);
        float xb[QLM_QK] = {0}, wb[QLM_QK] = {0};
        memcpy(xb, x + i0, (size_t)m * sizeof(float));
        for (int j = 0; j < m; j++) wb[j] = imp[i0 + j] >= 0.0f && isfinite(imp[i0 + j]) ? imp[i0 + j] : 0.0f;
        fn(xb, wb, out + (i0 / QLM_QK) * (int64_t)bb);
    }
}

// ---- q8_0 ----------------------------------------------------------------------------------
static void q8_0_imp_block(const float *x, const float *w, void *bv) {
    qlm_block_q8_0 *b = (qlm_block_q8_0 *)bv;
    float amax = 0.0f;
    for (int j = 0; j < QLM_QK; j++) if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
    float d = amax / 127.0f;
    if (weights_usable(w, QLM_QK)) d = sym_search(x, w, QLM_QK, d, -127.0f, 127.0f);
    b->d = qlm_f2h(d);
    const float dd = qlm_h2f(b->d);
    for (int j = 0; j < QLM_QK; j++) b->qs[j] = (int8_t)(dd != 0.0f ? fminf(fmaxf(roundf(x[j] / dd), -127.0f), 127.0f) : 0.0f);
}
void qlm_q8_0_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) {
    imp_blocks(q8_0_imp_block, sizeof(qlm_block_q8_0), x, imp, dst, n);
}

// ---- q4_0: codes -8..7 stored + 8, plain rule d = ext / -8 ---------------------------------
static void q4_0_imp_block(const float *x, const float *w, void *bv) {
    qlm_block_q4_0 *b = (qlm_block_q4_0 *)bv;
    float amax = 0.0f, ext = 0.0f;
    for (int j = 0; j < QLM_QK; j++) if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); ext = x[j]; }
    float d = ext / -8.0f + 0.0f;
    if (weights_usable(w, QLM_QK)) d = sym_search(x, w, QLM_QK, d, -8.0f, 7.0f);
    b->d = qlm_f2h(d);
    const float dd = qlm_h2f(b->d);
    int q[QLM_QK];
    if (dd != 0.0f) sym_err(x, w, QLM_QK, dd, -8.0f, 7.0f, q); else memset(q, 0, sizeof q);
    for (int j = 0; j < 16; j++) b->qs[j] = (uint8_t)((q[j] + 8) | ((q[j + 16] + 8) << 4));
}
void qlm_q4_0_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) {
    imp_blocks(q4_0_imp_block, sizeof(qlm_block_q4_0), x, imp, dst, n);
}

// ---- q4_1: x ~ d q + m, q in 0..15 ----------------------------------------------------------
static float asym_err(const float *x, const float *w, int m, float d, float mn, int *q) {
    float e = 0.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < m; j++) {
        const float c = fminf(fmaxf(roundf((x[j] - mn) * id), 0.0f), 15.0f);
        if (q) q[j] = (int)c;
        const float r = x[j] - (d * c + mn);
        e += w[j] * r * r;
    }
    return e;
}

static void q4_1_imp_block(const float *x, const float *w, void *bv) {
    qlm_block_q4_1 *b = (qlm_block_q4_1 *)bv;
    float mn = x[0], mx = x[0];
    for (int j = 1; j < QLM_QK; j++) { if (x[j] < mn) mn = x[j]; if (x[j] > mx) mx = x[j]; }
    mn += 0.0f; mx += 0.0f;
    float bd = qlm_h2f(qlm_f2h((mx - mn) / 15.0f)), bm = qlm_h2f(qlm_f2h(mn));
    if (weights_usable(w, QLM_QK) && mx > mn) {
        float be = asym_err(x, w, QLM_QK, bd, bm, NULL);
        int q[QLM_QK];
        for (int k = -10; k <= 10; k++) {
            float d = (mx - mn) / (15.0f + 0.1f * (float)k), m0 = mn;
            // codes for (d, m0), then (d, m) refitted by weighted least squares, twice
            for (int it = 0; it < 2; it++) {
                asym_err(x, w, QLM_QK, d, m0, q);
                double sw = 0, sq = 0, sqq = 0, sx = 0, sxq = 0;
                for (int j = 0; j < QLM_QK; j++) {
                    const double wj = w[j], qj = q[j];
                    sw += wj; sq += wj * qj; sqq += wj * qj * qj; sx += wj * x[j]; sxq += wj * x[j] * qj;
                }
                const double det = sw * sqq - sq * sq;
                if (!(det > 0)) break;
                const double dn = (sw * sxq - sq * sx) / det, mm = (sqq * sx - sq * sxq) / det;
                if (!(dn > 0)) break;
                d = (float)dn; m0 = (float)mm;
                const float dh = qlm_h2f(qlm_f2h(d)), mh = qlm_h2f(qlm_f2h(m0));
                if (!isfinite(dh) || !isfinite(mh)) break;
                const float e = asym_err(x, w, QLM_QK, dh, mh, NULL);
                if (e < be) { be = e; bd = dh; bm = mh; }
            }
        }
    }
    b->d = qlm_f2h(bd);
    b->m = qlm_f2h(bm);
    int q[QLM_QK];
    asym_err(x, w, QLM_QK, qlm_h2f(b->d), qlm_h2f(b->m), q);
    for (int j = 0; j < 16; j++) b->qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
}
void qlm_q4_1_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) {
    imp_blocks(q4_1_imp_block, sizeof(qlm_block_q4_1), x, imp, dst, n);
}
