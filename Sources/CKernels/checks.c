// Checks on stored weights, and the guard that turns a fault on a mapped file into a message.
#include "qlm_internal.h"
#include <signal.h>
#include <string.h>
#include <unistd.h>

// The first row of a stored tensor (rows x n of `type`) holding an fp16 field (the traits' fp16
// fields: f16 values, q8_0/q4_0 scales, q4_1 scales and mins) that is infinite or NaN; -1 if none,
// -2 for an unknown type. Row-grouped types are read in their group layout (field o of row r of a
// group block at o * row_group + 2r; rows past the last whole group are plain rows).
int64_t qlm_first_nonfinite_fp16_row(int32_t type, const void *data, int64_t rows, int64_t n) {
    const qlm_type_traits *t = qlm_traits(type);
    if (!t) return -2;
    if (t->fp16_count == 0 || rows <= 0) return -1;
    const uint8_t *p = (const uint8_t *)data;
    const size_t rb = t->row_size(n), bb = (size_t)t->block_bytes;
    const int64_t blocks = (int64_t)(rb / bb), g = t->row_group > 1 ? t->row_group : 1;
    const int64_t grouped = g > 1 ? rows / g * g : 0;
#define QLM_BAD(q) ((((uint16_t)(q)[0] | (uint16_t)(q)[1] << 8) & 0x7C00) == 0x7C00)
    for (int64_t r = 0; r < rows; r++) {
        if (r < grouped) {
            const uint8_t *group = p + (size_t)(r / g) * (size_t)g * rb;
            const int64_t rr = r % g;
            for (int64_t b = 0; b < blocks; b++)
                for (int h = 0; h < t->fp16_count; h++)
                    if (QLM_BAD(group + (size_t)b * (size_t)g * bb + (size_t)t->fp16_offsets[h] * (size_t)g + 2 * (size_t)rr)) return r;
        } else {
            const uint8_t *row = p + (size_t)r * rb;
            for (int64_t b = 0; b < blocks; b++)
                for (int h = 0; h < t->fp16_count; h++)
                    if (QLM_BAD(row + (size_t)b * bb + (size_t)t->fp16_offsets[h])) return r;
        }
    }
#undef QLM_BAD
    return -1;
}

// ---- SIGBUS on a mapped file -----------------------------------------------------------------
// A page of a MAP_PRIVATE file mapping that lies past the file's current end (the file was
// truncated, or rewritten in place, under a running process) raises SIGBUS on access. The guard
// keeps a fixed table of mappings with a message formatted when each was registered; the handler
// only compares addresses, write(2)s that message and _exit(2)s: async-signal-safe. A fault
// outside every registered mapping gets the default action (the signal is re-raised).
#define QLM_GUARD_SLOTS 64
#define QLM_GUARD_MSG 512
typedef struct {
    volatile uintptr_t lo, hi; // [lo, hi): 0, 0 when free
    char msg[QLM_GUARD_MSG];
    volatile size_t len;
} qlm_guard_slot;
static qlm_guard_slot g_slots[QLM_GUARD_SLOTS];
static volatile sig_atomic_t g_installed = 0;
static struct sigaction g_previous;

static void qlm_sigbus(int sig, siginfo_t *info, void *uctx) {
    (void)uctx;
    const uintptr_t a = (uintptr_t)info->si_addr;
    for (int i = 0; i < QLM_GUARD_SLOTS; i++) {
        const uintptr_t lo = g_slots[i].lo, hi = g_slots[i].hi;
        if (lo < hi && a >= lo && a < hi) {
            ssize_t w = write(2, g_slots[i].msg, g_slots[i].len);
            (void)w;
            _exit(74); // EX_IOERR
        }
    }
    // Not ours: the default action.
    sigaction(sig, &g_previous, NULL);
    raise(sig);
}

// Registers [base, base + len) with the line to print if a fault hits it ("Error: <file>: ...").
// Returns a slot id (>= 0) for qlm_guard_unmap, or -1 if the table is full (then no guard).
int qlm_guard_map(const void *base, size_t len, const char *message) {
    if (!base || len == 0) return -1;
    if (!g_installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = qlm_sigbus;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, &g_previous) != 0) return -1;
        g_installed = 1;
    }
    for (int i = 0; i < QLM_GUARD_SLOTS; i++) {
        if (__sync_bool_compare_and_swap(&g_slots[i].lo, (uintptr_t)0, (uintptr_t)1)) {
            size_t n = strlen(message);
            if (n > QLM_GUARD_MSG - 2) n = QLM_GUARD_MSG - 2;
            memcpy(g_slots[i].msg, message, n);
            g_slots[i].msg[n] = '\n';
            g_slots[i].len = n + 1;
            g_slots[i].hi = (uintptr_t)base + len;
            __sync_synchronize();
            g_slots[i].lo = (uintptr_t)base;
            return i;
        }
    }
    return -1;
}

void qlm_guard_unmap(int slot) {
    if (slot < 0 || slot >= QLM_GUARD_SLOTS) return;
    g_slots[slot].hi = 0;
    __sync_synchronize();
    g_slots[slot].lo = 0;
}

// ---- temporary files removed on SIGINT / SIGTERM ---------------------------------------------
// A writer registers its temporary file; if the process is interrupted before the rename, the
// handler unlink(2)s every registered path (async-signal-safe) and re-raises the signal with its
// default action, so the exit status still says which signal ended the process. Installed only
// where the signal still has its default disposition (a server that handles SIGTERM itself
// keeps its handler).
#define QLM_TEMP_SLOTS 16
#define QLM_TEMP_PATH 4096
static char g_temp[QLM_TEMP_SLOTS][QLM_TEMP_PATH];
static volatile sig_atomic_t g_temp_used[QLM_TEMP_SLOTS];
static volatile sig_atomic_t g_temp_installed = 0;

static void qlm_temp_signal(int sig) {
    for (int i = 0; i < QLM_TEMP_SLOTS; i++)
        if (g_temp_used[i] == 1) unlink(g_temp[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

int qlm_temp_register(const char *path) {
    if (strlen(path) >= QLM_TEMP_PATH) return -1;
    if (!g_temp_installed) {
        const int sigs[2] = {SIGINT, SIGTERM};
        for (int k = 0; k < 2; k++) {
            struct sigaction old;
            if (sigaction(sigs[k], NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL) {
                struct sigaction sa;
                memset(&sa, 0, sizeof sa);
                sa.sa_handler = qlm_temp_signal;
                sigemptyset(&sa.sa_mask);
                sigaction(sigs[k], &sa, NULL);
            }
        }
        g_temp_installed = 1;
    }
    for (int i = 0; i < QLM_TEMP_SLOTS; i++) {
        if (!__sync_bool_compare_and_swap(&g_temp_used[i], 0, 2)) continue; // 2: being filled
        memcpy(g_temp[i], path, strlen(path) + 1);
        __sync_synchronize();
        g_temp_used[i] = 1;
        return i;
    }
    return -1;
}

void qlm_temp_unregister(int slot) {
    if (slot >= 0 && slot < QLM_TEMP_SLOTS) g_temp_used[slot] = 0;
}
