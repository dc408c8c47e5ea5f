// Cheap resident-memory sampling for the decode loop: /proc/self/statm is opened once and read
// with pread into a stack buffer (no allocation), so a sample costs one small syscall. Reading
// /proc/self/status from Swift instead allocated strings and cost more than a stories260K token.
#include "qlm_kernels.h"

#if defined(__linux__)
#include <fcntl.h>
#include <stdatomic.h>
#include <unistd.h>

static _Atomic int statm_fd = -1;

int qlm_statm(int64_t *resident_bytes, int64_t *file_bytes) {
    int fd = atomic_load(&statm_fd);
    if (fd < 0) {
        int nfd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
        if (nfd < 0) return -1;
        int expected = -1;
        if (!atomic_compare_exchange_strong(&statm_fd, &expected, nfd)) { close(nfd); fd = expected; }
        else fd = nfd;
    }
    char buf[256];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return -1;
    buf[n] = 0;
    // Fields (pages): size resident shared text lib data dt; "shared" = file-backed + shmem resident.
    int64_t v[3] = {0, 0, 0};
    int field = 0;
    for (char *p = buf; *p && field < 3; p++) {
        if (*p >= '0' && *p <= '9') v[field] = v[field] * 10 + (*p - '0');
        else if (*p == ' ') field++;
    }
    long page = sysconf(_SC_PAGESIZE);
    *resident_bytes = v[1] * page;
    *file_bytes = v[2] * page;
    return 0;
}
#else
int qlm_statm(int64_t *resident_bytes, int64_t *file_bytes) { (void)resident_bytes; (void)file_bytes; return -1; }
#endif
