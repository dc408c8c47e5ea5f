// O_DIRECT read patterns of one file, alternated in rounds (scripts/bench/disk_reads.sh): is the
// layer loader's pattern slower than a plain sequential read, and would a deeper queue pay?
//   seq KB    one pread of KB at a time, front to back (QUANTLM_STREAM_PIECES=1)
//   qd2 KB    two threads, alternate KB chunks: two reads in flight
//   qd2h KB   two threads, alternate KB/2 chunks: two half-size reads always in flight
//   halves KB one KB chunk at a time, its two halves (cut at a 4 KiB boundary) read at once by two
//             threads, both done before the next chunk (the loader's split item read, the default)
//   qd4q KB   four threads, alternate KB/4 chunks: four quarter-size reads always in flight
//   quarters KB  one KB chunk at a time in four pieces read at once (QUANTLM_STREAM_PIECES=4)
//   seqH, qd2H, halvesH   seq, qd2 and halves into buffers of transparent huge pages (2 MiB-aligned, MADV_HUGEPAGE,
//             each read's pages pinned 2 MiB at a time: the layer loader's buffers when the plan
//             rounds them to whole huge pages, MemoryPlan.hugeRounded)
//   replay    a loader trace (lines "bytes offset", e.g. from strace): the reads as issued, one at a time
//   aligned   the same trace, each read cut at 4 MiB-aligned file offsets
// Each pattern reads up to 512 MiB (a trace: all its reads) and prints GB/s per round, then medians;
// each round starts at the next pattern in turn.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "clock.h"

static int fd;
static int64_t total;

typedef struct { int64_t chunk, first, step; char *buf; } span;
static void *read_span(void *p) {
    span *s = p;
    for (int64_t off = s->first; off < total; off += s->step)
        if (pread(fd, s->buf, (size_t)s->chunk, off) <= 0) break;
    return NULL;
}

// `threads` readers, reader i taking chunks i, i + threads, ...
static double sequential(int64_t chunk, int threads, char **bufs) {
    pthread_t th[4];
    span sp[4];
    const double t0 = now();
    for (int i = 0; i < threads; i++) {
        sp[i] = (span){chunk, i * chunk, threads * chunk, bufs[i]};
        pthread_create(&th[i], NULL, read_span, &sp[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    return (double)(total / chunk * chunk) / (now() - t0) / 1e9;
}

// Each chunk cut into k pieces at 4 KiB boundaries, read at once by this thread and k - 1 helpers
// that wait at a barrier; all k done before the next chunk.
static pthread_barrier_t gate;
static struct { int64_t off, chunk; char *buf; int k, stop; } job;
static void piece_of(int i, int64_t *lo, int64_t *hi) {
    const int64_t blocks = job.chunk / 4096;
    *lo = i * blocks / job.k * 4096;
    *hi = i == job.k - 1 ? job.chunk : (i + 1) * blocks / job.k * 4096;
}
static void *piece_reader(void *arg) {
    const int i = (int)(intptr_t)arg;
    for (;;) {
        pthread_barrier_wait(&gate);
        if (job.stop) return NULL;
        int64_t lo, hi;
        piece_of(i, &lo, &hi);
        if (hi > lo) pread(fd, job.buf + lo, (size_t)(hi - lo), job.off + lo);
        pthread_barrier_wait(&gate);
    }
}
static double pieces(int64_t chunk, int k, char *buf) {
    pthread_t th[8];
    pthread_barrier_init(&gate, NULL, (unsigned)k);
    job.stop = 0; job.k = k; job.chunk = chunk; job.buf = buf;
    for (int i = 1; i < k; i++) pthread_create(&th[i], NULL, piece_reader, (void *)(intptr_t)i);
    int64_t bytes = 0, lo, hi;
    const double t0 = now();
    for (int64_t off = 0; off + chunk <= total; off += chunk) {
        job.off = off;
        pthread_barrier_wait(&gate);
        piece_of(0, &lo, &hi);
        pread(fd, buf + lo, (size_t)(hi - lo), off + lo);
        pthread_barrier_wait(&gate);
        bytes += chunk;
    }
    const double dt = now() - t0;
    job.stop = 1;
    pthread_barrier_wait(&gate);
    for (int i = 1; i < k; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&gate);
    return (double)bytes / dt / 1e9;
}

static double replay(const int64_t *size, const int64_t *off, int n, int64_t align, char **bufs) {
    int64_t bytes = 0;
    const double t0 = now();
    for (int i = 0; i < n; i++) {
        char *p = bufs[i & 1];
        for (int64_t at = off[i], end = off[i] + size[i]; at < end;) {
            int64_t stop = align ? (at / align + 1) * align : end;
            if (stop > end) stop = end;
            if (pread(fd, p, (size_t)(stop - at), at) <= 0) return 0;
            p += stop - at;
            at = stop;
        }
        bytes += size[i];
    }
    return (double)bytes / (now() - t0) / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: disk_reads FILE ROUNDS CHUNK_KB [TRACE]\n"); return 2; }
    const char *path = argv[1], *trace = argc > 4 ? argv[4] : NULL;
    const int rounds = atoi(argv[2]);
    const int64_t chunk = (int64_t)atol(argv[3]) << 10;
    if (rounds < 1 || chunk < 4096 || chunk % 4096 || chunk > (64 << 20)) { fprintf(stderr, "error: ROUNDS >= 1, CHUNK_KB a multiple of 4 up to 65536\n"); return 2; }
    fd = open(path, O_RDONLY | O_DIRECT);
    if (fd < 0) { fprintf(stderr, "error: %s: cannot open with O_DIRECT\n", path); return 1; }
    total = lseek(fd, 0, SEEK_END);
    if (total > (512 << 20)) total = 512 << 20;
    if (total < 2 * chunk) { fprintf(stderr, "error: %s: smaller than two chunks\n", path); return 1; }
    int64_t *size = NULL, *off = NULL, most = 0;
    int n = 0;
    if (trace) {
        FILE *f = fopen(trace, "r");
        if (!f) { fprintf(stderr, "error: %s: cannot open\n", trace); return 1; }
        long long s, o;
        int cap = 0;
        while (fscanf(f, "%lld %lld%*[^\n]", &s, &o) == 2) {
            if (s <= 0 || o < 0 || s % 4096 || o % 4096) { fprintf(stderr, "error: %s: line %d: bytes and offset must be positive multiples of 4096\n", trace, n + 1); return 1; }
            if (n == cap) { cap = cap ? 2 * cap : 1024; size = realloc(size, cap * sizeof *size); off = realloc(off, cap * sizeof *off); }
            size[n] = s; off[n] = o; n++;
            if (s > most) most = s;
        }
        fclose(f);
        if (!n) { fprintf(stderr, "error: %s: no \"bytes offset\" lines\n", trace); return 1; }
    }
    const int64_t bufBytes = most > chunk ? most : chunk;
    char *bufs[4];
    for (int i = 0; i < 4; i++)
        if (posix_memalign((void **)&bufs[i], 4096, (size_t)bufBytes)) { fprintf(stderr, "error: out of memory\n"); return 1; }
    char *hbufs[2];
    const size_t hb = ((size_t)bufBytes + (2 << 20) - 1) / (2 << 20) * (2 << 20);
    for (int i = 0; i < 2; i++) {
        if (posix_memalign((void **)&hbufs[i], 2 << 20, hb)) { fprintf(stderr, "error: out of memory\n"); return 1; }
        madvise(hbufs[i], hb, MADV_HUGEPAGE); // THP off or refused: 4 KiB pages (then seqH = seq)
        memset(hbufs[i], 0, hb);
    }
    const char *names[11] = {"seq", "qd2", "qd2h", "halves", "qd4q", "quarters", "seqH", "qd2H", "halvesH", "replay", "aligned"};
    const int np = trace ? 11 : 9;
    double *gb = calloc((size_t)np * rounds, sizeof(double));
    for (int r = 0; r < rounds; r++) {
        // Round r starts at pattern r % np (no pattern always reads first after a pause).
        for (int k = 0; k < np; k++) {
            const int p = (r + k) % np;
            double g = 0;
            switch (p) {
            case 0: g = sequential(chunk, 1, bufs); break;
            case 1: g = sequential(chunk, 2, bufs); break;
            case 2: g = sequential(chunk / 2 / 4096 * 4096, 2, bufs); break;
            case 3: g = pieces(chunk, 2, bufs[0]); break;
            case 4: g = sequential(chunk / 4 / 4096 * 4096, 4, bufs); break;
            case 5: g = pieces(chunk, 4, bufs[0]); break;
            case 6: g = sequential(chunk, 1, hbufs); break;
            case 7: g = sequential(chunk, 2, hbufs); break;
            case 8: g = pieces(chunk, 2, hbufs[0]); break;
            case 9: g = replay(size, off, n, 0, bufs); break;
            case 10: g = replay(size, off, n, 4 << 20, bufs); break;
            }
            gb[p * rounds + r] = g;
        }
        printf("round %d:", r + 1);
        for (int p = 0; p < np; p++) printf(" %s %.2f", names[p], gb[p * rounds + r]);
        printf(" GB/s\n");
    }
    printf("median (%d rounds, chunk %lld KiB%s):", rounds, (long long)(chunk >> 10), trace ? ", trace reads" : "");
    for (int p = 0; p < np; p++) printf(" %s %.2f", names[p], median(gb + p * rounds, rounds));
    printf(" GB/s\n");
    return 0;
}
