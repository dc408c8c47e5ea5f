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

// The level targets of the block's extreme, in search order: around hi, then around lo
// (asymmetric ranges: both signs), 0.1 apart (4 x that past 20). Returns how many (<= 42).
static int sym_levels(float lo, float hi, float *Ls) {
    int nc = 0;
    for (int side = 0; side < 2; side++) {
        const float L0 = side == 0 ? hi : lo;
        if (L0 == 0.0f) continue;
        for (int k = -10; k <= 10; k++) {
            const float L = L0 + (L0 > 0 ? 0.1f : -0.1f) * (float)k * (fabsf(L0) > 20.0f ? 4.0f : 1.0f);
            if (L == 0.0f || (L > 0) != (L0 > 0)) continue;
            Ls[nc++] = L;
        }
    }
    return nc;
}

#if QLM_X86
#include "qlm_simd.h"
static float sym_pick_avx512(const float *x, const float *w, int m, float lo, float hi, float ext, const float *Ls, int nc,
                             float best, float be);
#endif

// The fp16-representable scale d for x[0..m) with codes in [lo, hi] minimizing sum w (x - d q)^2,
// among: d0 (the plain rule's), and for each level target L (sym_levels), d = ext / L refitted.
static float sym_search(const float *x, const float *w, int m, float d0, float lo, float hi) {
    float amax = 0.0f, ext = 0.0f;
    for (int j = 0; j < m; j++) if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); ext = x[j]; }
    float best = qlm_h2f(qlm_f2h(d0));
    float be = sym_err(x, w, m, best, lo, hi, NULL);
    if (amax == 0.0f) return best;
    float Ls[48];
    const int nc = sym_levels(lo, hi, Ls);
#if QLM_X86
    if (m <= 256 && qlm_get_path() == QLM_PATH_AVX512) return sym_pick_avx512(x, w, m, lo, hi, ext, Ls, nc, best, be);
#endif
    int q[QLM_QK];
    for (int c = 0; c < nc; c++) {
        const float d = ext / Ls[c];
        sym_err(x, w, m, d, lo, hi, q);
        float sxq = 0.0f, sqq = 0.0f;
        for (int j = 0; j < m; j++) { sxq += w[j] * x[j] * (float)q[j]; sqq += w[j] * (float)q[j] * (float)q[j]; }
        if (!(sqq > 0.0f)) continue;
        const float dh = qlm_h2f(qlm_f2h(sxq / sqq));
        if (!isfinite(dh)) continue;
        const float e = sym_err(x, w, m, dh, lo, hi, NULL);
        if (e < be) { be = e; best = dh; }
    }
    return best;
}

#if QLM_X86
// sym_search's candidates 16 to a vector: each lane is one candidate scale and walks the columns
// j = 0 ..< m in order, doing the scalar loop's float operations one for one (contract off: no
// fused multiply-adds), so every candidate's codes, refit and error are the scalar ones bit for
// bit; the best is then picked in the scalar order with the same strict '<'.
QLM_AVX512_TARGET static float sym_pick_avx512(const float *x, const float *w, int m, float lo, float hi, float ext, const float *Ls, int nc,
                                               float best, float be) {
    float wx[256];
    for (int j = 0; j < m; j++) wx[j] = w[j] * x[j];
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi), zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    float dhs[48], es[48];
    __mmask16 oks[3] = {0, 0, 0};
    for (int c0 = 0, v = 0; c0 < nc; c0 += 16, v++) {
        const __mmask16 lanes = nc - c0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nc - c0)) - 1u);
        const __m512 L = _mm512_mask_loadu_ps(one, lanes, Ls + c0);
        const __m512 d = _mm512_div_ps(_mm512_set1_ps(ext), L);
        // sym_err(x, w, m, d, lo, hi, q), then the weighted sums of x q and q q
        const __mmask16 dnz = _mm512_cmp_ps_mask(d, zero, _CMP_NEQ_UQ);
        const __m512 id = _mm512_maskz_div_ps(dnz, one, d);
        __m512 sxq = zero, sqq = zero;
        for (int j = 0; j < m; j++) {
            const __m512 c = _mm512_maskz_mov_ps(dnz, _mm512_min_ps(_mm512_max_ps(round_away512(_mm512_mul_ps(_mm512_set1_ps(x[j]), id)), vlo), vhi));
            sxq = _mm512_add_ps(sxq, _mm512_mul_ps(_mm512_set1_ps(wx[j]), c));
            sqq = _mm512_add_ps(sqq, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(w[j]), c), c));
        }
        const __mmask16 pos = _mm512_mask_cmp_ps_mask(lanes, sqq, zero, _CMP_GT_OQ);
        const __m512 dh = _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_mask_div_ps(one, pos, sxq, sqq), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        const __mmask16 fin = _mm512_mask_cmp_ps_mask(pos, _mm512_abs_ps(dh), _mm512_set1_ps(INFINITY), _CMP_LT_OQ);
        // sym_err(x, w, m, dh, lo, hi, NULL)
        const __mmask16 hnz = _mm512_cmp_ps_mask(dh, zero, _CMP_NEQ_UQ);
        const __m512 ih = _mm512_maskz_div_ps(hnz, one, dh);
        __m512 e = zero;
        for (int j = 0; j < m; j++) {
            const __m512 xj = _mm512_set1_ps(x[j]);
            const __m512 c = _mm512_maskz_mov_ps(hnz, _mm512_min_ps(_mm512_max_ps(round_away512(_mm512_mul_ps(xj, ih)), vlo), vhi));
            const __m512 r = _mm512_sub_ps(xj, _mm512_mul_ps(dh, c));
            e = _mm512_add_ps(e, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(w[j]), r), r));
        }
        _mm512_storeu_ps(dhs + c0, dh);
        _mm512_storeu_ps(es + c0, e);
        oks[v] = fin;
    }
    for (int i = 0; i < nc; i++) {
        if (!((oks[i / 16] >> (i % 16)) & 1)) continue;
        if (es[i] < be) { be = es[i]; best = dhs[i]; }
    }
    return best;
}
#endif

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

// The weighted sums of a least-squares line x ~ a q + b over codes q.
typedef struct { double sw, sq, sqq, sx, sxq; } wsums;
static wsums weighted_sums(const float *x, const float *w, const int *q, int m) {
    wsums r = {0, 0, 0, 0, 0};
    for (int j = 0; j < m; j++) {
        const double wj = w[j], qj = q[j];
        r.sw += wj; r.sq += wj * qj; r.sqq += wj * qj * qj; r.sx += wj * x[j]; r.sxq += wj * x[j] * qj;
    }
    return r;
}

// ---- q4_1 / q5_1: x ~ d q + m, q in 0..nmax ----------------------------------------------------
static float asym_err(const float *x, const float *w, int m, float nmax, float d, float mn, int *q) {
    float e = 0.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < m; j++) {
        const float c = fminf(fmaxf(roundf((x[j] - mn) * id), 0.0f), nmax);
        if (q) q[j] = (int)c;
        const float r = x[j] - (d * c + mn);
        e += w[j] * r * r;
    }
    return e;
}

// The fp16 pair (d, m) of a 32-weight block minimizing sum w (x - d q - m)^2 over q in 0..nmax:
// the plain rule's ((max - min) / nmax, min), then (max - min) / (nmax + k / 10) refitted by
// weighted least squares for the codes they give, twice, each candidate scored after fp16
// rounding. Writes the codes at the chosen pair.
static void asym_search(const float *x, const float *w, float nmax, uint16_t *dh_out, uint16_t *mh_out, int *qout) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < QLM_QK; j++) { if (x[j] < mn) mn = x[j]; if (x[j] > mx) mx = x[j]; }
    mn += 0.0f; mx += 0.0f;
    float bd = qlm_h2f(qlm_f2h((mx - mn) / nmax)), bm = qlm_h2f(qlm_f2h(mn));
    if (weights_usable(w, QLM_QK) && mx > mn) {
        float be = asym_err(x, w, QLM_QK, nmax, bd, bm, NULL);
        int q[QLM_QK];
        for (int k = -10; k <= 10; k++) {
            float d = (mx - mn) / (nmax + 0.1f * (float)k), m0 = mn;
            // codes for (d, m0), then (d, m) refitted by weighted least squares, twice
            for (int it = 0; it < 2; it++) {
                asym_err(x, w, QLM_QK, nmax, d, m0, q);
                const wsums S = weighted_sums(x, w, q, QLM_QK);
                const double det = S.sw * S.sqq - S.sq * S.sq;
                if (!(det > 0)) break;
                const double dn = (S.sw * S.sxq - S.sq * S.sx) / det, mm = (S.sqq * S.sx - S.sq * S.sxq) / det;
                if (!(dn > 0)) break;
                d = (float)dn; m0 = (float)mm;
                const float dh = qlm_h2f(qlm_f2h(d)), mh = qlm_h2f(qlm_f2h(m0));
                if (!isfinite(dh) || !isfinite(mh)) break;
                const float e = asym_err(x, w, QLM_QK, nmax, dh, mh, NULL);
                if (e < be) { be = e; bd = dh; bm = mh; }
            }
        }
    }
    *dh_out = qlm_f2h(bd);
    *mh_out = qlm_f2h(bm);
    asym_err(x, w, QLM_QK, nmax, qlm_h2f(*dh_out), qlm_h2f(*mh_out), qout);
}

static void q4_1_imp_block(const float *x, const float *w, void *bv) {
    qlm_block_q4_1 *b = (qlm_block_q4_1 *)bv;
    int q[QLM_QK];
    asym_search(x, w, 15.0f, &b->d, &b->m, q);
    for (int j = 0; j < 16; j++) b->qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
}
void qlm_q4_1_quantize_row_imp(const float *x, const float *imp, void *dst, int64_t n) {
    imp_blocks(q4_1_imp_block, sizeof(qlm_block_q4_1), x, imp, dst, n);
}

// ---- what the type files share (qlm_internal.h) ----------------------------------------------------
float qlm_imp_sym_scale(const float *x, const float *w, int m, float d0, float lo, float hi) {
    return weights_usable(w, m) ? sym_search(x, w, m, d0, lo, hi) : qlm_h2f(qlm_f2h(d0));
}
float qlm_imp_sym_err(const float *x, const float *w, int m, float d, float lo, float hi, int *q) {
    return sym_err(x, w, m, d, lo, hi, q);
}
void qlm_imp_asym_block(const float *x, const float *w, int nmax, uint16_t *d, uint16_t *mn, int *q) {
    asym_search(x, w, (float)nmax, d, mn, q);
}
void qlm_imp_rows(qlm_imp_block_fn fn, int bs, size_t bb, const float *x, const float *imp, void *dst, int64_t n) {
    char *out = (char *)dst;
    float xb[256], wb[256];
    for (int64_t i0 = 0; i0 < n; i0 += bs) {
        const int m = (int)((n - i0) < bs ? (n - i0) : bs);
        memset(xb, 0, sizeof xb);
        memset(wb, 0, sizeof wb);
        memcpy(xb, x + i0, (size_t)m * sizeof(float));
        double s = 0.0;
        for (int j = 0; j < m; j++) {
            const float v = imp[i0 + j];
            wb[j] = v >= 0.0f && isfinite(v) ? v : 0.0f;
            s += wb[j];
        }
        // a block whose inputs never fired (all weights 0): plain least squares; else a floor of
        // 1e-4 of the block's mean weight, so dead columns still round near their values
        const float fl = s > 0.0 ? (float)(1e-4 * s / m) : 1.0f;
        for (int j = 0; j < m; j++) wb[j] += fl;
        fn(xb, wb, out + (i0 / bs) * (int64_t)bb);
    }
}

// x[0..m) ~ s q + o, q = clamp(round((x - o) / s), 0, nmax), o <= 0: a grid of starts (the range
// [min(x, 0), max x] onto [0, nmax + k / 10]) each refitted by weighted least squares (o clamped
// to 0 if positive); returns s, *off = -o >= 0. Errors in float, no fp16 rounding here.
static float kaff_err(const float *x, const float *w, int m, int nmax, float s, float o, int *q) {
    float e = 0.0f;
    const float is = s != 0.0f ? 1.0f / s : 0.0f;
    for (int j = 0; j < m; j++) {
        const int c = s != 0.0f ? (int)fminf(fmaxf(roundf((x[j] - o) * is), 0.0f), (float)nmax) : 0;
        const float r = x[j] - (s * (float)c + o);
        e += w[j] * r * r;
        if (q) q[j] = c;
    }
    return e;
}
static float kaff_fit(const float *x, const float *w, int m, int nmax, float *off) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < m; j++) { if (x[j] < lo) lo = x[j]; if (x[j] > hi) hi = x[j]; }
    if (lo > 0.0f) lo = 0.0f;
    if (hi <= lo) { *off = -lo; return 0.0f; }
    float bs = (hi - lo) / (float)nmax, bo = lo;
    float be = kaff_err(x, w, m, nmax, bs, bo, NULL);
    int q[32];
    for (int k = -10; k <= 10; k++) {
        float s = (hi - lo) / ((float)nmax + 0.1f * (float)k), o = lo;
        for (int it = 0; it < 2; it++) {
            kaff_err(x, w, m, nmax, s, o, q);
            const wsums S = weighted_sums(x, w, q, m);
            const double det = S.sw * S.sqq - S.sq * S.sq;
            double sn = det > 0 ? (S.sw * S.sxq - S.sq * S.sx) / det : 0, on = det > 0 ? (S.sqq * S.sx - S.sq * S.sxq) / det : 0;
            if (on > 0 || !(sn > 0)) { on = 0; sn = S.sqq > 0 ? S.sxq / S.sqq : 0; }
            if (!(sn > 0)) break;
            s = (float)sn; o = (float)on;
            const float e = kaff_err(x, w, m, nmax, s, o, NULL);
            if (e < be) { be = e; bs = s; bo = o; }
        }
    }
    *off = -bo;
    return bs;
}

void qlm_imp_affine_super(const float *x, const float *w, int ng, int gs, int nmax, int lmax,
                          uint16_t *dh, uint16_t *dminh, uint8_t *sc, uint8_t *mn, uint8_t *q) {
    float s[16], o[16], smax = 0.0f, omax = 0.0f;
    for (int g = 0; g < ng; g++) {
        s[g] = kaff_fit(x + gs * g, w + gs * g, gs, nmax, &o[g]);
        smax = fmaxf(smax, s[g]);
        omax = fmaxf(omax, o[g]);
    }
    *dh = qlm_f2h(smax / (float)lmax);
    *dminh = qlm_f2h(omax / (float)lmax);
    const float d = qlm_h2f(*dh), dmin = qlm_h2f(*dminh);
    for (int g = 0; g < ng; g++) {
        const float *xg = x + gs * g, *wg = w + gs * g;
        const int s0 = d != 0.0f ? (int)fminf(roundf(s[g] / d), (float)lmax) : 0;
        const int m0 = dmin != 0.0f ? (int)fminf(roundf(o[g] / dmin), (float)lmax) : 0;
        float be = INFINITY;
        int bs = s0, bm = m0;
        for (int a = s0 - 1; a <= s0 + 1; a++) {
            if (a < 0 || a > lmax) continue;
            for (int c = m0 - 1; c <= m0 + 1; c++) {
                if (c < 0 || c > lmax) continue;
                const float e = kaff_err(xg, wg, gs, nmax, d * (float)a, -(dmin * (float)c), NULL);
                if (e < be) { be = e; bs = a; bm = c; }
            }
        }
        sc[g] = (uint8_t)bs;
        mn[g] = (uint8_t)bm;
        int c[32];
        kaff_err(xg, wg, gs, nmax, d * (float)bs, -(dmin * (float)bm), c);
        for (int i = 0; i < gs; i++) q[gs * g + i] = (uint8_t)c[i];
    }
}

// The integer scale l in [llo, lhi] of group x[0..gs) at super-scale d (round(s / d) +- 1) with the
// least weighted error; *err its error.
static int sym_level(const float *x, const float *w, int gs, float d, float s, int qlo, int qhi, int llo, int lhi, float *err) {
    int best = 0;
    float be = INFINITY;
    if (d == 0.0f) { *err = sym_err(x, w, gs, 0.0f, (float)qlo, (float)qhi, NULL); return 0; }
    const int l0 = (int)fminf(fmaxf(roundf(s / d), (float)llo), (float)lhi);
    for (int l = l0 - 1; l <= l0 + 1; l++) {
        if (l < llo || l > lhi) continue;
        const float e = sym_err(x, w, gs, d * (float)l, (float)qlo, (float)qhi, NULL);
        if (e < be) { be = e; best = l; }
    }
    *err = be;
    return best;
}

void qlm_imp_sym_super(const float *x, const float *w, int ng, int gs, int qlo, int qhi, int llo, int lhi, float lnorm,
                       uint16_t *dh, int *l, int *q) {
    float s[16], smax = 0.0f;
    for (int g = 0; g < ng; g++) {
        const float *xg = x + gs * g;
        float amax = 0.0f, ext = 0.0f;
        for (int i = 0; i < gs; i++) if (fabsf(xg[i]) > amax) { amax = fabsf(xg[i]); ext = xg[i]; }
        s[g] = amax > 0.0f ? sym_search(xg, w + gs * g, gs, ext / (float)qlo, (float)qlo, (float)qhi) : 0.0f;
        smax = fmaxf(smax, fabsf(s[g]));
    }
    // the super-scale: max |s| / lnorm times a factor in 0.90 .. 1.10, by the total weighted error
    uint16_t best = qlm_f2h(smax / lnorm);
    float be = INFINITY;
    for (int k = -4; k <= 4; k++) {
        const uint16_t cand = qlm_f2h(smax / lnorm * (1.0f + 0.025f * (float)k));
        const float d = qlm_h2f(cand);
        if (!isfinite(d)) continue;
        float tot = 0.0f, e;
        for (int g = 0; g < ng; g++) { sym_level(x + gs * g, w + gs * g, gs, d, s[g], qlo, qhi, llo, lhi, &e); tot += e; }
        if (tot < be) { be = tot; best = cand; }
    }
    *dh = best;
    const float d = qlm_h2f(best);
    for (int g = 0; g < ng; g++) {
        float e;
        l[g] = sym_level(x + gs * g, w + gs * g, gs, d, s[g], qlo, qhi, llo, lhi, &e);
        sym_err(x + gs * g, w + gs * g, gs, d * (float)l[g], (float)qlo, (float)qhi, q + gs * g);
    }
}
