/* Peer c-cas-floor: the skeleton of a lock whose release is an atomic
 * read-modify-write, and nothing else: a compare-and-swap 0 -> owner to take
 * it (spinning while another process has it), the increment, a
 * compare-and-swap owner -> 0 to give it back. No sleeping, no recovery, no
 * poisoning, only spinning and yielding when another process has it: not a
 * usable lock, but the floor for a lock whose release is a compare-and-swap,
 * so that it sees whether someone waits (pthread, Boost; shmstore releases
 * with a swap, a read-modify-write without the comparison, a little cheaper;
 * docs/comparison.md says how a lock could go lower). On
 * x86-64 each compare-and-swap costs about one atomic increment (c-atomic),
 * so this floor is about 2x c-atomic, plus what the two cost together.
 * Usage: c-cas-floor PROCS ITERS | c-cas-floor crash                        */
#include "harness.h"

#include <sched.h>
#include <unistd.h>

static inline void spin_hint(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

#define PEER "c-cas-floor"
#define SHM_NAME "/shmstore-compare_c-cas-floor"
#define SIZE 4096

struct shared {
    uint64_t word;    /* 0, or the owner's pid */
    uint64_t counter; /* on the same cache line, as a lock and its value usually are */
};

static void work(void *ctx, long long iters) {
    struct shared *s = ctx;
    uint64_t me = (uint64_t)getpid();
    for (long long k = 0; k < iters; k++) {
        uint64_t free_word = 0;
        /* Contended: spin a little, then give the CPU up (with more processes
         * than CPUs, the holder may be waiting for this one). */
        for (int spins = 0;
             !__atomic_compare_exchange_n(&s->word, &free_word, me, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
             spins++) {
            free_word = 0;
            if (spins < 100)
                spin_hint();
            else
                sched_yield();
        }
        s->counter++;
        uint64_t mine = me;
        __atomic_compare_exchange_n(&s->word, &mine, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    }
}

int main(int argc, char **argv) {
    int procs;
    long long iters;
    if (h_args(argc, argv, &procs, &iters))
        return h_crash_report(PEER, "n/a", "a floor, not a lock: no recovery from a dead holder");

    struct shared *s = (struct shared *)h_shm_create(SHM_NAME, SIZE);
    uint64_t elapsed = h_race(procs, iters, work, s);
    unsigned long long total = __atomic_load_n(&s->counter, __ATOMIC_SEQ_CST);
    h_shm_remove(SHM_NAME, s, SIZE);
    return h_report(PEER, procs, iters, total, elapsed);
}
