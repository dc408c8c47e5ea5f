// Persistent thread pool. A job is published by bumping an atomic generation counter;
// workers spin (with pause) for up to ~100 us waiting for the next generation, then sleep on a
// condition variable. The caller runs as thread 0 and waits for an atomic completion counter.
#include "qlm_internal.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sched.h>
#include <time.h>

#define QLM_SPIN_NS 100000ull // spin budget before sleeping
#ifndef QLM_PAUSE_ITERS
#define QLM_PAUSE_ITERS 512 // pause-spins before switching to sched_yield-spins (a few us)
#endif

struct qlm_pool {
    int n;
    pthread_t *threads;
    qlm_task_fn fn;
    void *ctx;
    _Alignas(64) atomic_uint gen;
    _Alignas(64) atomic_int done;
    // Job membership: high 32 bits = generation, bit 31 = closed, low bits = workers joined.
    // A worker runs a job only if it joins it (CAS) while the generation matches and the job is
    // open; a dynamic job is closed by the caller once it has finished its own share, so a worker
    // that was not scheduled in time skips it instead of making the caller wait.
    _Alignas(64) _Atomic uint64_t state;
    _Alignas(64) atomic_int sleepers;
    atomic_int stop;
    atomic_int caller_sleeping;
    pthread_mutex_t mu;
    pthread_cond_t cv;      // workers sleep here waiting for a new generation
    pthread_cond_t cv_done; // the caller sleeps here when a job takes long
};

typedef struct { qlm_pool *pool; int ith; } worker_arg;

#define STATE_CLOSED 0x80000000ull

static inline void cpu_relax(void) {
#if QLM_X86
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *worker_main(void *p) {
    worker_arg arg = *(worker_arg *)p;
    free(p);
    qlm_pool *pool = arg.pool;
    unsigned seen = 0; // gen starts at 0, so a job published before this thread ran is still new
    for (;;) {
        unsigned g;
        // spin phase
        uint64_t t0 = 0;
        for (unsigned it = 0;; it++) {
            g = atomic_load_explicit(&pool->gen, memory_order_acquire);
            if (g != seen) break;
            if (it < QLM_PAUSE_ITERS) cpu_relax();
            else sched_yield(); // oversubscribed machine: let the thread we wait for run
            if ((it & 255) == 255) {
                uint64_t t = now_ns();
                if (!t0) t0 = t;
                else if (t - t0 > QLM_SPIN_NS) break;
            }
        }
        if (g == seen) { // sleep phase
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->sleepers, 1); // seq_cst: pairs with the caller's gen bump
            while ((g = atomic_load(&pool->gen)) == seen) pthread_cond_wait(&pool->cv, &pool->mu);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mu);
        }
        seen = g;
        if (atomic_load_explicit(&pool->stop, memory_order_acquire)) break;
        uint64_t st = atomic_load(&pool->state);
        int joined = 0;
        while ((uint32_t)(st >> 32) == g && !(st & STATE_CLOSED)) {
            if (atomic_compare_exchange_weak(&pool->state, &st, st + 1)) { joined = 1; break; }
        }
        if (!joined) continue; // a dynamic job that finished without us (or a stale generation)
        pool->fn(pool->ctx, arg.ith, pool->n);
        atomic_fetch_add(&pool->done, 1); // seq_cst: pairs with caller_sleeping
        if (atomic_load(&pool->caller_sleeping)) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->cv_done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
    return NULL;
}

qlm_pool *qlm_pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 256) n_threads = 256;
    qlm_pool *pool = NULL;
    if (posix_memalign((void **)&pool, 64, sizeof(qlm_pool)) != 0) return NULL;
    memset(pool, 0, sizeof(*pool));
    pool->n = n_threads;
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->done, 0);
    atomic_init(&pool->state, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->stop, 0);
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pthread_cond_init(&pool->cv_done, NULL);
    atomic_init(&pool->caller_sleeping, 0);
    pool->threads = (pthread_t *)calloc((size_t)n_threads, sizeof(pthread_t));
    for (int i = 1; i < n_threads; i++) {
        worker_arg *a = (worker_arg *)malloc(sizeof(worker_arg));
        a->pool = pool;
        a->ith = i;
        if (pthread_create(&pool->threads[i], NULL, worker_main, a) != 0) {
            free(a);
            // fall back to fewer threads: shut down the ones started so far
            pool->n = i;
            break;
        }
    }
    return pool;
}

static void publish(qlm_pool *pool) {
    atomic_fetch_add(&pool->gen, 1); // seq_cst
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
    }
}

void qlm_pool_destroy(qlm_pool *pool) {
    if (!pool) return;
    atomic_store(&pool->stop, 1);
    publish(pool);
    for (int i = 1; i < pool->n; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    pthread_cond_destroy(&pool->cv_done);
    free(pool->threads);
    free(pool);
}

int qlm_pool_size(const qlm_pool *pool) { return pool ? pool->n : 1; }

static void wait_done(qlm_pool *pool, int want) {
    uint64_t t0 = 0;
    for (unsigned it = 0; atomic_load_explicit(&pool->done, memory_order_acquire) != want; it++) {
        if (it < QLM_PAUSE_ITERS) { cpu_relax(); continue; }
        // A worker is slow or was preempted (more threads than free cores): yield, and after
        // the spin budget block until a worker signals.
        sched_yield();
        if ((it & 63) == 0) {
            const uint64_t t = now_ns();
            if (!t0) t0 = t;
            else if (t - t0 > QLM_SPIN_NS) {
                pthread_mutex_lock(&pool->mu);
                atomic_store(&pool->caller_sleeping, 1); // seq_cst: pairs with the worker's done bump
                while (atomic_load(&pool->done) != want) pthread_cond_wait(&pool->cv_done, &pool->mu);
                atomic_store(&pool->caller_sleeping, 0);
                pthread_mutex_unlock(&pool->mu);
                return;
            }
        }
    }
}

static void start_job(qlm_pool *pool, qlm_task_fn fn, void *ctx) {
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    const uint32_t next = atomic_load_explicit(&pool->gen, memory_order_relaxed) + 1;
    atomic_store(&pool->state, (uint64_t)next << 32);
    publish(pool); // makes fn/ctx/done/state visible with the new generation (seq_cst RMW)
}

void qlm_pool_run(qlm_pool *pool, qlm_task_fn fn, void *ctx) {
    if (!pool || pool->n == 1) { fn(ctx, 0, 1); return; }
    start_job(pool, fn, ctx);
    fn(ctx, 0, pool->n);
    wait_done(pool, pool->n - 1); // every worker joins a static job (it stays open)
}

void qlm_pool_run_dynamic(qlm_pool *pool, qlm_task_fn fn, void *ctx) {
    if (!pool || pool->n == 1) { fn(ctx, 0, 1); return; }
    start_job(pool, fn, ctx);
    fn(ctx, 0, pool->n);
    const uint64_t st = atomic_fetch_or(&pool->state, STATE_CLOSED);
    wait_done(pool, (int)(st & 0x7FFFFFFFu));
}

typedef struct {
    qlm_range_fn fn;
    qlm_range_ith_fn fn_ith;
    void *ctx;
    int64_t total, chunk;
    _Atomic int64_t next;
} range_job;

static void range_task(void *p, int ith, int nth) {
    (void)nth;
    range_job *j = (range_job *)p;
    for (;;) {
        const int64_t lo = atomic_fetch_add(&j->next, 1) * j->chunk;
        if (lo >= j->total) break;
        const int64_t hi = lo + j->chunk < j->total ? lo + j->chunk : j->total;
        if (j->fn_ith) j->fn_ith(j->ctx, ith, lo, hi);
        else j->fn(j->ctx, lo, hi);
    }
}

void qlm_pool_for(qlm_pool *pool, int parallel, int64_t total, int64_t chunk, qlm_range_fn fn, void *ctx) {
    if (total <= 0) return;
    if (!parallel || !pool || pool->n == 1 || chunk <= 0 || chunk >= total) { fn(ctx, 0, total); return; }
    range_job j = {fn, NULL, ctx, total, chunk, 0};
    qlm_pool_run_dynamic(pool, range_task, &j);
}

void qlm_pool_for_ith(qlm_pool *pool, int parallel, int64_t total, int64_t chunk, qlm_range_ith_fn fn, void *ctx) {
    if (total <= 0) return;
    if (!parallel || !pool || pool->n == 1 || chunk <= 0 || chunk >= total) { fn(ctx, 0, 0, total); return; }
    range_job j = {NULL, fn, ctx, total, chunk, 0};
    qlm_pool_run_dynamic(pool, range_task, &j);
}

// ---- contiguous shares, balanced by taking chunks from the back ----------------------------
// Measured with the q4_0x8 prefetch removal (`scripts/bench/products_vs_read.sh --base 8d5a21b`, GPT-2-
// small decode products against a read of the same bytes, 2 threads): q4_0x8 0.73 -> 0.91, q8_0
// 1.01 -> 1.06 (docs/benchmarks.md); the shares alone, in a scratch A/B: q4_0x8 0.93 -> 0.99-1.01.
#define SHARES_MAX 64

typedef struct {
    qlm_range_fn fn;
    void *ctx;
    int64_t chunk;
    // share[i].v = lo << 32 | hi: what is left of thread i's share. The owner advances lo, other
    // threads lower hi, both by compare-and-swap. One cache line per share.
    struct { _Alignas(64) _Atomic uint64_t v; } share[SHARES_MAX];
} shares_job;

static int take(_Atomic uint64_t *a, int64_t chunk, int front, int64_t *lo, int64_t *hi) {
    uint64_t v = atomic_load_explicit(a, memory_order_relaxed);
    for (;;) {
        const int64_t l = (int64_t)(v >> 32), h = (int64_t)(uint32_t)v;
        if (l >= h) return 0;
        uint64_t nv;
        if (front) { *lo = l; *hi = l + chunk < h ? l + chunk : h; nv = ((uint64_t)*hi << 32) | (uint64_t)h; }
        else { *lo = h - chunk > l ? h - chunk : l; *hi = h; nv = ((uint64_t)l << 32) | (uint64_t)*lo; }
        if (atomic_compare_exchange_weak(a, &v, nv)) return 1;
    }
}

static void shares_task(void *p, int ith, int nth) {
    shares_job *j = (shares_job *)p;
    int64_t lo, hi;
    while (take(&j->share[ith].v, j->chunk, 1, &lo, &hi)) j->fn(j->ctx, lo, hi);
    for (;;) { // own share done: help the share with the most left, from its back
        int best = -1;
        int64_t most = 0;
        for (int i = 0; i < nth; i++) {
            const uint64_t v = atomic_load_explicit(&j->share[i].v, memory_order_relaxed);
            const int64_t left = (int64_t)(uint32_t)v - (int64_t)(v >> 32);
            if (left > most) { most = left; best = i; }
        }
        if (best < 0) return;
        if (take(&j->share[best].v, j->chunk, 0, &lo, &hi)) j->fn(j->ctx, lo, hi);
    }
}

void qlm_pool_for_shares(qlm_pool *pool, int parallel, int64_t total, int64_t chunk, qlm_range_fn fn, void *ctx) {
    if (total <= 0) return;
    if (!parallel || !pool || pool->n == 1 || chunk <= 0 || chunk >= total) { fn(ctx, 0, total); return; }
    if (pool->n > SHARES_MAX || total > INT32_MAX) { qlm_pool_for(pool, parallel, total, chunk, fn, ctx); return; }
    shares_job j;
    j.fn = fn;
    j.ctx = ctx;
    j.chunk = chunk;
    const int nth = pool->n; // every thread's task gets this nth
    for (int i = 0; i < nth; i++)
        atomic_init(&j.share[i].v, ((uint64_t)(total * i / nth) << 32) | (uint64_t)(total * (i + 1) / nth));
    // Dynamic: a worker that joins late finds its share partly taken from the back, and one that
    // never joins (the caller took everything) is not waited for.
    qlm_pool_run_dynamic(pool, shares_task, &j);
}
