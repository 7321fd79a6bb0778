/* Peer c-atomic: no lock at all, one __atomic_fetch_add (lock xadd) per
 * increment on a u64 in POSIX shared memory. The floor for a shared counter.
 * Usage: c-atomic PROCS ITERS | c-atomic crash                              */
#include "harness.h"

#define PEER "c-atomic"
#define SHM_NAME "/shmstore-compare_c-atomic"
#define SIZE 4096

static void work(void *counter, long long iters) {
    for (long long k = 0; k < iters; k++) __atomic_fetch_add((uint64_t *)counter, 1, __ATOMIC_SEQ_CST);
}

int main(int argc, char **argv) {
    int procs;
    long long iters;
    if (h_args(argc, argv, &procs, &iters)) return h_crash_report(PEER, "n/a", "no lock to hold");

    uint64_t *counter = (uint64_t *)h_shm_create(SHM_NAME, SIZE);
    uint64_t elapsed = h_race(procs, iters, work, counter);
    unsigned long long total = __atomic_load_n(counter, __ATOMIC_SEQ_CST);
    h_shm_remove(SHM_NAME, counter, SIZE);
    return h_report(PEER, procs, iters, total, elapsed);
}
