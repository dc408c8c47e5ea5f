// The attention kernels for one SIMD width, included by attention.c once per x86 path (AVX-512:
// 16 lanes, AVX2: 8 lanes). Before each include attention.c defines:
//   ATT(name)          the path's name for a kernel (name##_avx512, name##_avx2)
//   ATT_TARGET         the function attribute of the path
//   ATT_V, ATT_W       the float vector type and its lanes
//   ATT_ZERO() ATT_LOADU(p) ATT_STOREU(p, v) ATT_FMA(a, b, c) ATT_SET1(x)
//   ATT_MAXQ           query heads per grouped call (accumulators must fit the register file)
// (the end of this file undefines them, ready for the next instance)
// and two path helpers: ATT(kv_load)(kind, h, j), lanes j .. j+W-1 of the head vector at h as
// floats (f16 -> f32 and int8 -> f32 are exact), and ATT(fold8)(v), the W lanes folded to 8
// (lanes l and l+8 added; identity for 8 lanes). ATT(scores_small) / ATT(accum_small) handle
// head sizes that are not a multiple of W (return 0 if they do not).
//
// Every result is one fixed arithmetic per key or per output element, so it does not depend on
// how the cache cuts its rows into runs, nor on the grouping of keys or query heads:
//   score:  W-lane FMA chain over the head's chunks of W in order, fold8, then the tree
//           (0+1)+(2+3) and (4+5)+(6+7), the two added; times d (q8_0), then times scale.
//   output: out[j] = fma(w_i (w_i * d_i for q8_0, rounded once), v_i[j], out[j]) over the
//           positions in order.

// The FMA chains of nk keys (k0, k0 + stride, ...; nk a constant 8 or 4), the keys interleaved
// per chunk so the chains run side by side.
ATT_TARGET static inline __attribute__((always_inline)) void ATT(key_chains)(int kind, int nk, const float *q, const uint8_t *k0,
                                                                        int64_t stride, int64_t hd, ATT_V *a) {
    for (int t = 0; t < nk; t++) a[t] = ATT_ZERO();
    for (int64_t j = 0; j < hd; j += ATT_W) {
        const ATT_V qv = ATT_LOADU(q + j);
        for (int t = 0; t < nk; t++) a[t] = ATT_FMA(qv, ATT(kv_load)(kind, k0 + t * stride, j), a[t]);
    }
}

// hadd(hadd(b0, b1), hadd(b2, b3)) of the folded a[0..3]: each 128-bit lane holds four keys' partial sums.
ATT_TARGET static inline __attribute__((always_inline)) __m256 ATT(hadd4)(const ATT_V *a) {
    return _mm256_hadd_ps(_mm256_hadd_ps(ATT(fold8)(a[0]), ATT(fold8)(a[1])), _mm256_hadd_ps(ATT(fold8)(a[2]), ATT(fold8)(a[3])));
}

// One key's chain folded and summed by the same tree: lane 0.
ATT_TARGET static inline __attribute__((always_inline)) __m128 ATT(hsum1)(ATT_V a) {
    __m256 h = ATT(fold8)(a);
    h = _mm256_hadd_ps(h, h);
    h = _mm256_hadd_ps(h, h);
    return _mm_add_ss(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

ATT_TARGET static inline __attribute__((always_inline)) void ATT(scores_kernel)(int kind, const float *q, const uint8_t *k,
                                                                           int64_t stride, int64_t n, int64_t hd, float scale,
                                                                           float *scores) {
    const int64_t bytes = kv_bytes(kind, hd);
    const __m256 sv = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint8_t *k0 = k + i * stride;
        if (i + QLM_ATTN_PF + 8 <= n)
            for (int t = 0; t < 8; t++) kv_prefetch(k0 + (QLM_ATTN_PF + t) * stride, bytes);
        for (int t = 0; t < 8; t++) kv_prefetch_next_heads(k0 + t * stride, bytes);
        ATT_V a[8];
        ATT(key_chains)(kind, 8, q, k0, stride, hd, a);
        const __m256 h0 = ATT(hadd4)(a), h1 = ATT(hadd4)(a + 4);
        __m256 r = _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
        if (kind == QLM_KV_Q8_0) {
            float d[8];
            key_scales(8, k0, stride, d);
            r = _mm256_mul_ps(r, _mm256_loadu_ps(d));
        }
        _mm256_storeu_ps(scores + i, _mm256_mul_ps(r, sv));
    }
    if (i + 4 <= n) {
        const uint8_t *k0 = k + i * stride;
        ATT_V a[4];
        ATT(key_chains)(kind, 4, q, k0, stride, hd, a);
        const __m256 h = ATT(hadd4)(a);
        __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        if (kind == QLM_KV_Q8_0) {
            float d[4];
            key_scales(4, k0, stride, d);
            r = _mm_mul_ps(r, _mm_loadu_ps(d));
        }
        _mm_storeu_ps(scores + i, _mm_mul_ps(r, _mm256_castps256_ps128(sv)));
        i += 4;
    }
    for (; i < n; i++) {
        const uint8_t *k0 = k + i * stride;
        ATT_V a0 = ATT_ZERO();
        for (int64_t j = 0; j < hd; j += ATT_W) a0 = ATT_FMA(ATT_LOADU(q + j), ATT(kv_load)(kind, k0, j), a0);
        __m128 r = ATT(hsum1)(a0);
        if (kind == QLM_KV_Q8_0) r = _mm_mul_ss(r, _mm_set_ss(kv_scale(k0)));
        scores[i] = _mm_cvtss_f32(_mm_mul_ss(r, _mm256_castps256_ps128(sv)));
    }
}

// Positions outside, up to 8 chunks of W floats inside, so the chunks' chains are independent.
ATT_TARGET static inline __attribute__((always_inline)) void ATT(accum_chunks)(int kind, int nc, const float *w, const uint8_t *v,
                                                                          int64_t stride, int64_t n, int64_t bytes, int64_t j0,
                                                                          float *out) {
    ATT_V acc[8];
    for (int c = 0; c < nc; c++) acc[c] = ATT_LOADU(out + j0 + ATT_W * c);
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *vi = v + i * stride;
        if (j0 == 0) {
            if (i + QLM_ATTN_PF < n) kv_prefetch(vi + QLM_ATTN_PF * stride, bytes);
            kv_prefetch_next_heads(vi, bytes);
        }
        const ATT_V wi = ATT_SET1(kind == QLM_KV_Q8_0 ? w[i] * kv_scale(vi) : w[i]);
        for (int c = 0; c < nc; c++) acc[c] = ATT_FMA(wi, ATT(kv_load)(kind, vi, j0 + ATT_W * c), acc[c]);
    }
    for (int c = 0; c < nc; c++) ATT_STOREU(out + j0 + ATT_W * c, acc[c]);
}

ATT_TARGET static inline __attribute__((always_inline)) void ATT(accum_kernel)(int kind, const float *w, const uint8_t *v,
                                                                          int64_t stride, int64_t n, int64_t hd, float *out) {
    const int64_t bytes = kv_bytes(kind, hd);
    for (int64_t j0 = 0; j0 < hd; j0 += 8 * ATT_W) {
        switch ((hd - j0) / ATT_W) {
        case 1: ATT(accum_chunks)(kind, 1, w, v, stride, n, bytes, j0, out); break;
        case 2: ATT(accum_chunks)(kind, 2, w, v, stride, n, bytes, j0, out); break;
        case 3: ATT(accum_chunks)(kind, 3, w, v, stride, n, bytes, j0, out); break;
        case 4: ATT(accum_chunks)(kind, 4, w, v, stride, n, bytes, j0, out); break;
        case 5: ATT(accum_chunks)(kind, 5, w, v, stride, n, bytes, j0, out); break;
        case 6: ATT(accum_chunks)(kind, 6, w, v, stride, n, bytes, j0, out); break;
        case 7: ATT(accum_chunks)(kind, 7, w, v, stride, n, bytes, j0, out); break;
        default: ATT(accum_chunks)(kind, 8, w, v, stride, n, bytes, j0, out); break;
        }
    }
}

// ---- several query heads over the same keys (grouped-query attention) -----------------------
// Heads that share a KV head read the same key and value rows: here the rows are loaded (and
// converted) once for up to ATT_MAXQ heads. Each (head, key) score is the chain and tree of
// scores_kernel, and each output element the chain of accum_kernel, so every result is
// bit-identical to the one-head kernels.

ATT_TARGET static inline __attribute__((always_inline)) void ATT(scores_heads_kernel)(int kind, const int nq, const float *q,
                                                                                 int64_t hd, const uint8_t *k, int64_t stride,
                                                                                 int64_t n, float scale, float *scores,
                                                                                 int64_t ss) {
    const int64_t bytes = kv_bytes(kind, hd);
    const __m128 sv = _mm_set1_ps(scale);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint8_t *k0 = k + i * stride;
        if (i + QLM_ATTN_PF + 4 <= n)
            for (int t = 0; t < 4; t++) kv_prefetch(k0 + (QLM_ATTN_PF + t) * stride, bytes);
        ATT_V a[ATT_MAXQ][4];
        for (int g = 0; g < nq; g++)
            for (int t = 0; t < 4; t++) a[g][t] = ATT_ZERO();
        for (int64_t j = 0; j < hd; j += ATT_W) {
            ATT_V qv[ATT_MAXQ];
            for (int g = 0; g < nq; g++) qv[g] = ATT_LOADU(q + g * hd + j);
            for (int t = 0; t < 4; t++) {
                const ATT_V kv = ATT(kv_load)(kind, k0 + t * stride, j);
                for (int g = 0; g < nq; g++) a[g][t] = ATT_FMA(qv[g], kv, a[g][t]);
            }
        }
        float d[4];
        if (kind == QLM_KV_Q8_0) key_scales(4, k0, stride, d);
        for (int g = 0; g < nq; g++) {
            const __m256 h = ATT(hadd4)(a[g]);
            __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            if (kind == QLM_KV_Q8_0) r = _mm_mul_ps(r, _mm_loadu_ps(d));
            _mm_storeu_ps(scores + g * ss + i, _mm_mul_ps(r, sv));
        }
    }
    for (; i < n; i++) {
        const uint8_t *k0 = k + i * stride;
        for (int g = 0; g < nq; g++) {
            ATT_V a0 = ATT_ZERO();
            for (int64_t j = 0; j < hd; j += ATT_W) a0 = ATT_FMA(ATT_LOADU(q + g * hd + j), ATT(kv_load)(kind, k0, j), a0);
            __m128 r = ATT(hsum1)(a0);
            if (kind == QLM_KV_Q8_0) r = _mm_mul_ss(r, _mm_set_ss(kv_scale(k0)));
            scores[g * ss + i] = _mm_cvtss_f32(_mm_mul_ss(r, sv));
        }
    }
}

// out[g * hd + j] += sum_i w[g * ws + i] * v_i[j], hd a multiple of 4 W: blocks of 4 W elements
// (4 chains per head), positions inside.
ATT_TARGET static inline __attribute__((always_inline)) void ATT(accum_heads_kernel)(int kind, const int nq, const float *w,
                                                                                int64_t ws, const uint8_t *v, int64_t stride,
                                                                                int64_t n, int64_t hd, float *out) {
    const int64_t bytes = kv_bytes(kind, hd);
    for (int64_t j0 = 0; j0 < hd; j0 += 4 * ATT_W) {
        ATT_V acc[ATT_MAXQ][4];
        for (int g = 0; g < nq; g++)
            for (int c = 0; c < 4; c++) acc[g][c] = ATT_LOADU(out + g * hd + j0 + ATT_W * c);
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *vi = v + i * stride;
            if (j0 == 0 && i + QLM_ATTN_PF < n) kv_prefetch(vi + QLM_ATTN_PF * stride, bytes);
            ATT_V x[4];
            for (int c = 0; c < 4; c++) x[c] = ATT(kv_load)(kind, vi, j0 + ATT_W * c);
            const float d = kind == QLM_KV_Q8_0 ? kv_scale(vi) : 1.0f;
            for (int g = 0; g < nq; g++) {
                const ATT_V wi = ATT_SET1(kind == QLM_KV_Q8_0 ? w[g * ws + i] * d : w[g * ws + i]);
                for (int c = 0; c < 4; c++) acc[g][c] = ATT_FMA(wi, x[c], acc[g][c]);
            }
        }
        for (int g = 0; g < nq; g++)
            for (int c = 0; c < 4; c++) ATT_STOREU(out + g * hd + j0 + ATT_W * c, acc[g][c]);
    }
}

// ---- entry points: 1 if handled, 0 if this head size has no kernel here (the caller falls back).
// `kind` and (for 64) the head size become constants in each specialisation.

#define ATT_SPECIALISE(CALL_KIND)                                                                   \
    switch (kind) {                                                                                 \
    case QLM_KV_F16: CALL_KIND(QLM_KV_F16); break;                                                  \
    case QLM_KV_Q8_0: CALL_KIND(QLM_KV_Q8_0); break;                                                \
    default: CALL_KIND(QLM_KV_F32); break;                                                          \
    }

ATT_TARGET static int ATT(scores)(int kind, const float *q, const uint8_t *k, int64_t stride, int64_t n, int64_t hd,
                                  float scale, float *scores) {
    if (hd % ATT_W != 0) return ATT(scores_small)(kind, q, k, stride, n, hd, scale, scores);
#define ATT_CALL(K)                                                                                 \
    if (hd == 64) ATT(scores_kernel)(K, q, k, stride, n, 64, scale, scores);                        \
    else ATT(scores_kernel)(K, q, k, stride, n, hd, scale, scores);
    ATT_SPECIALISE(ATT_CALL)
#undef ATT_CALL
    return 1;
}

ATT_TARGET static int ATT(accum)(int kind, const float *w, const uint8_t *v, int64_t stride, int64_t n, int64_t hd,
                                 float *out) {
    if (hd % ATT_W != 0) return ATT(accum_small)(kind, w, v, stride, n, hd, out);
#define ATT_CALL(K)                                                                                 \
    if (hd == 64) ATT(accum_kernel)(K, w, v, stride, n, 64, out);                                   \
    else ATT(accum_kernel)(K, w, v, stride, n, hd, out);
    ATT_SPECIALISE(ATT_CALL)
#undef ATT_CALL
    return 1;
}

// nq heads in groups of ATT_MAXQ; their scores rows ss apart.
ATT_TARGET static int ATT(scores_heads)(int kind, int64_t nq, const float *q, int64_t hd, const uint8_t *k, int64_t stride,
                                        int64_t n, float scale, float *scores, int64_t ss) {
    if (hd % ATT_W != 0) return 0;
    for (int64_t g0 = 0; g0 < nq; g0 += ATT_MAXQ) {
        const int m = (int)(nq - g0 < ATT_MAXQ ? nq - g0 : ATT_MAXQ);
        const float *qg = q + g0 * hd;
        float *sg = scores + g0 * ss;
#define ATT_CALL(K)                                                                                 \
    switch (m) {                                                                                    \
    case 1: ATT(scores_heads_kernel)(K, 1, qg, hd, k, stride, n, scale, sg, ss); break;             \
    case 2: ATT(scores_heads_kernel)(K, 2, qg, hd, k, stride, n, scale, sg, ss); break;             \
    case 3: ATT(scores_heads_kernel)(K, 3, qg, hd, k, stride, n, scale, sg, ss); break;             \
    default: ATT(scores_heads_kernel)(K, ATT_MAXQ, qg, hd, k, stride, n, scale, sg, ss); break;     \
    }
        ATT_SPECIALISE(ATT_CALL)
#undef ATT_CALL
    }
    return 1;
}

ATT_TARGET static int ATT(accum_heads)(int kind, int64_t nq, const float *w, int64_t ws, const uint8_t *v, int64_t stride,
                                       int64_t n, int64_t hd, float *out) {
    if (hd % (4 * ATT_W) != 0) return 0;
    for (int64_t g0 = 0; g0 < nq; g0 += ATT_MAXQ) {
        const int m = (int)(nq - g0 < ATT_MAXQ ? nq - g0 : ATT_MAXQ);
        const float *wg = w + g0 * ws;
        float *og = out + g0 * hd;
#define ATT_CALL(K)                                                                                 \
    switch (m) {                                                                                    \
    case 1: ATT(accum_heads_kernel)(K, 1, wg, ws, v, stride, n, hd, og); break;                     \
    case 2: ATT(accum_heads_kernel)(K, 2, wg, ws, v, stride, n, hd, og); break;                     \
    case 3: ATT(accum_heads_kernel)(K, 3, wg, ws, v, stride, n, hd, og); break;                     \
    default: ATT(accum_heads_kernel)(K, ATT_MAXQ, wg, ws, v, stride, n, hd, og); break;             \
    }
        ATT_SPECIALISE(ATT_CALL)
#undef ATT_CALL
    }
    return 1;
}
#undef ATT_SPECIALISE

static const att_kernels ATT(kernels) = {ATT(scores), ATT(accum), ATT(scores_heads), ATT(accum_heads)};

#undef ATT
#undef ATT_TARGET
#undef ATT_V
#undef ATT_W
#undef ATT_ZERO
#undef ATT_LOADU
#undef ATT_STOREU
#undef ATT_FMA
#undef ATT_SET1
#undef ATT_MAXQ
