// O_DIRECT read patterns of one file, alternated in rounds (scripts/bench/disk_reads.sh): is the
// layer loader's pattern slower than a plain sequential read, and would a deeper queue pay?
//   seq KB    one pread of KB at a time, front to back (what DiskProbe does with KB = 4096)
//   qd2 KB    two threads, alternate KB chunks: two reads in flight
//   replay    a loader trace (lines "bytes offset", e.g. from strace): the reads as issued, one at a time
//   aligned   the same trace, each read cut at 4 MiB-aligned file offsets
// Each pattern reads up to 512 MiB (a trace: all its reads) and prints GB/s per round, then medians.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    pthread_t th[2];
    span sp[2];
    const double t0 = now();
    for (int i = 0; i < threads; i++) {
        sp[i] = (span){chunk, i * chunk, threads * chunk, bufs[i]};
        pthread_create(&th[i], NULL, read_span, &sp[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    return (double)(total / chunk * chunk) / (now() - t0) / 1e9;
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
    char *bufs[2];
    for (int i = 0; i < 2; i++)
        if (posix_memalign((void **)&bufs[i], 4096, (size_t)bufBytes)) { fprintf(stderr, "error: out of memory\n"); return 1; }
    const char *names[4] = {"seq", "qd2", "replay", "aligned"};
    const int np = trace ? 4 : 2;
    double *gb = calloc((size_t)np * rounds, sizeof(double));
    for (int r = 0; r < rounds; r++) {
        gb[0 * rounds + r] = sequential(chunk, 1, bufs);
        gb[1 * rounds + r] = sequential(chunk, 2, bufs);
        if (trace) {
            gb[2 * rounds + r] = replay(size, off, n, 0, bufs);
            gb[3 * rounds + r] = replay(size, off, n, 4 << 20, bufs);
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
