// What the K-quant type files share (ksuper.h): row sizes, rows through a block quantizer or
// ggml's dequantizer, and the quantizer's scale searches. Scalar: it runs once per conversion.
#include "ksuper.h"
#include "qlm_ggml.h"

#pragma clang fp contract(off)

size_t kq_row_size_bytes(int64_t n, size_t bb) { return (size_t)((n + QK_K - 1) / QK_K) * bb; }

void kq_quantize_row(void (*block)(const float *x, void *dst), size_t bb, const float *x, void *dst, int64_t n) {
    char *out = (char *)dst;
    const int64_t nfull = n / QK_K;
    for (int64_t b = 0; b < nfull; b++) block(x + b * QK_K, out + b * bb);
    if (n % QK_K) {
        float tmp[QK_K] = {0};
        memcpy(tmp, x + nfull * QK_K, (size_t)(n % QK_K) * sizeof(float));
        block(tmp, out + nfull * bb);
    }
}

void kq_dequantize_row(int32_t ggml_type, size_t bb, const void *src, float *y, int64_t n) {
    const int64_t nfull = n / QK_K;
    if (nfull) qlm_ggml_dequantize_row(ggml_type, src, y, nfull * QK_K);
    if (n % QK_K) {
        float tmp[QK_K];
        qlm_ggml_dequantize_row(ggml_type, (const char *)src + nfull * bb, tmp, QK_K);
        memcpy(y + nfull * QK_K, tmp, (size_t)(n % QK_K) * sizeof(float));
    }
}

// Weights of the fit: larger magnitudes count more (|x| plus the block's rms, so small values
// still count), as the per-weight importance of a plain round-trip error.
static void fit_weights(const float *x, int n, float *w) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const float rms = sqrtf(ss / (float)n);
    for (int i = 0; i < n; i++) w[i] = rms + fabsf(x[i]);
}

float kq_fit_affine(const float *x, int n, int nmax, float *min_out) {
    float w[32];
    fit_weights(x, n, w);
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) { if (x[i] < lo) lo = x[i]; if (x[i] > hi) hi = x[i]; }
    if (lo > 0.0f) lo = 0.0f; // the offset is <= 0
    if (hi <= lo) { *min_out = -lo; return 0.0f; }
    float best_s = (hi - lo) / (float)nmax, best_m = -lo, best_err = INFINITY;
    for (int step = -10; step <= 10; step++) {
        // candidate codes: x mapped onto [0, nmax + step / 10] from [lo, hi]
        const float is = ((float)nmax + 0.1f * (float)step) / (hi - lo);
        float sw = 0, swl = 0, swl2 = 0, swx = 0, swlx = 0;
        for (int i = 0; i < n; i++) {
            int q = (int)roundf(is * (x[i] - lo));
            q = q < 0 ? 0 : q > nmax ? nmax : q;
            sw += w[i]; swl += w[i] * q; swl2 += w[i] * q * q; swx += w[i] * x[i]; swlx += w[i] * q * x[i];
        }
        // least squares x ~= s q + o; the offset o must stay <= 0
        const float det = sw * swl2 - swl * swl;
        float s, o;
        if (det > 0.0f) {
            s = (sw * swlx - swl * swx) / det;
            o = (swl2 * swx - swl * swlx) / det;
        } else { s = 0.0f; o = 0.0f; }
        if (o > 0.0f || s <= 0.0f) { o = lo; s = swl2 > 0.0f ? (swlx - o * swl) / swl2 : 0.0f; }
        if (s <= 0.0f) continue;
        float err = 0.0f;
        for (int i = 0; i < n; i++) {
            int q = (int)roundf((x[i] - o) / s);
            q = q < 0 ? 0 : q > nmax ? nmax : q;
            const float e = s * (float)q + o - x[i];
            err += w[i] * e * e;
        }
        if (err < best_err) { best_err = err; best_s = s; best_m = -o; }
    }
    *min_out = best_m;
    return best_s;
}

void kq_fit_scales_mins(const float *x, int nmax, uint16_t *d, uint16_t *dmin, uint8_t scales[12], float dl[8], float ml[8]) {
    float sc[8], mn[8], msc = 0.0f, mmn = 0.0f;
    for (int j = 0; j < 8; j++) {
        sc[j] = kq_fit_affine(x + 32 * j, 32, nmax, &mn[j]);
        if (sc[j] > msc) msc = sc[j];
        if (mn[j] > mmn) mmn = mn[j];
    }
    *d = qlm_f2h(msc / 63.0f);
    *dmin = qlm_f2h(mmn / 63.0f);
    const float df = qlm_h2f(*d), dmf = qlm_h2f(*dmin);
    uint8_t isc[8], imn[8];
    for (int j = 0; j < 8; j++) {
        isc[j] = (uint8_t)kq_code(sc[j], df, 0, 63, 0);
        imn[j] = (uint8_t)kq_code(mn[j], dmf, 0, 63, 0);
        dl[j] = df * (float)isc[j];
        ml[j] = dmf * (float)imn[j];
    }
    kq_pack_scales(isc, imn, scales);
}

float kq_fit_symmetric(const float *x, int n, int nmax) {
    float w[32];
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < n; i++) {
        w[i] = x[i] * x[i];
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); vmax = x[i]; }
    }
    if (amax == 0.0f) return 0.0f;
    float best_s = -vmax / (float)nmax, best_err = INFINITY;
    for (int step = -9; step <= 9; step++) {
        // the value of largest magnitude maps onto -(nmax + step / 10): the asymmetric range
        // [-nmax, nmax - 1] reaches further on the negative side
        const float is = -((float)nmax + 0.1f * (float)step) / vmax;
        float swlx = 0, swl2 = 0;
        for (int i = 0; i < n; i++) {
            int q = (int)roundf(is * x[i]);
            q = q < -nmax ? -nmax : q > nmax - 1 ? nmax - 1 : q;
            swlx += w[i] * q * x[i]; swl2 += w[i] * q * q;
        }
        if (swl2 <= 0.0f) continue;
        const float s = swlx / swl2;
        float err = 0.0f;
        for (int i = 0; i < n; i++) {
            const int q = kq_code(x[i], s, -nmax, nmax - 1, 0);
            const float e = s * (float)q - x[i];
            err += w[i] * e * e;
        }
        if (err < best_err) { best_err = err; best_s = s; }
    }
    return best_s;
}
