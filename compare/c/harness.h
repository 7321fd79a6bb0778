/* The measuring harness shared by the C and C++ peers (see ../README.md for
 * the protocol): arguments, the start barrier, timing, the crash-test holder
 * and the JSON lines.
 *
 * The barrier and the end times live in an anonymous MAP_SHARED mapping of
 * their own, so the measured segment holds only the peer's lock and counter. */
#ifndef COMPARE_HARNESS_H
#define COMPARE_HARNESS_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define H_MAXPROCS 256

#ifdef __cplusplus
#define H_ALIGN64 alignas(64)
#else
#define H_ALIGN64 _Alignas(64)
#endif

typedef struct {
    H_ALIGN64 uint32_t ready;              /* children at the start line (or: holder has the lock) */
    H_ALIGN64 uint32_t go;                 /* set by the parent to start them all */
    H_ALIGN64 uint64_t end_ns[H_MAXPROCS]; /* CLOCK_MONOTONIC at the end of each child's loop */
} harness_t;

static inline void h_die(const char *what) {
    perror(what);
    exit(2);
}

static inline uint64_t h_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline harness_t *h_harness(void) {
    /* anonymous mappings start zeroed */
    void *p = mmap(NULL, sizeof(harness_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) h_die("mmap (harness)");
    return (harness_t *)p;
}

/* `PEER PROCS ITERS` or `PEER crash`; returns 1 for crash (PROCS 1, ITERS 0). */
static inline int h_args(int argc, char **argv, int *procs, long long *iters) {
    *procs = 1;
    *iters = 0;
    if (argc == 2 && strcmp(argv[1], "crash") == 0) return 1;
    if (argc == 3) {
        *procs = atoi(argv[1]);
        *iters = atoll(argv[2]);
        if (*procs >= 1 && *procs <= H_MAXPROCS && *iters >= 1) return 0;
    }
    fprintf(stderr, "usage: %s PROCS ITERS | %s crash   (PROCS 1..%d, ITERS >= 1)\n",
            argv[0], argv[0], H_MAXPROCS);
    exit(2);
}

/* A fresh POSIX shared memory object of the peer's fixed name, mapped;
 * a stale one left by a killed run is removed first. */
static inline void *h_shm_create(const char *name, size_t size) {
    shm_unlink(name);
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) h_die("shm_open");
    if (ftruncate(fd, (off_t)size) != 0) {
        shm_unlink(name);
        h_die("ftruncate");
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        shm_unlink(name);
        h_die("mmap");
    }
    return p;
}

static inline void h_shm_remove(const char *name, void *p, size_t size) {
    munmap(p, size);
    shm_unlink(name);
}

/* Steps 3-4 of the protocol: forks PROCS children that wait at the start
 * line, then each call work(ctx, iters) and note their end time. Returns the
 * nanoseconds from the parent's start signal to the latest end, or 0 if a
 * child failed. */
typedef void (*h_work_fn)(void *ctx, long long iters);

static inline uint64_t h_race(int procs, long long iters, h_work_fn work, void *ctx) {
    harness_t *h = h_harness();
    pid_t pids[H_MAXPROCS];
    for (int i = 0; i < procs; i++) {
        pids[i] = fork();
        if (pids[i] < 0) h_die("fork");
        if (pids[i] == 0) {
            __atomic_fetch_add(&h->ready, 1, __ATOMIC_SEQ_CST);
            while (!__atomic_load_n(&h->go, __ATOMIC_ACQUIRE)) sched_yield();
            work(ctx, iters);
            __atomic_store_n(&h->end_ns[i], h_now_ns(), __ATOMIC_RELEASE);
            _exit(0);
        }
    }
    while (__atomic_load_n(&h->ready, __ATOMIC_ACQUIRE) < (uint32_t)procs) sched_yield();
    uint64_t t0 = h_now_ns();
    __atomic_store_n(&h->go, 1, __ATOMIC_RELEASE);

    int failed = 0;
    uint64_t t1 = t0;
    for (int i = 0; i < procs; i++) {
        int st = 0;
        if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) failed = 1;
        uint64_t end = __atomic_load_n(&h->end_ns[i], __ATOMIC_ACQUIRE);
        if (end > t1) t1 = end;
    }
    munmap(h, sizeof *h);
    return failed ? 0 : t1 - t0;
}

/* Step 5: the result line; returns the exit code (step 6). */
static inline int h_report(const char *peer, int procs, long long iters, unsigned long long total,
                           uint64_t elapsed_ns) {
    unsigned long long expected = (unsigned long long)procs * (unsigned long long)iters;
    printf("{\"peer\": \"%s\", \"procs\": %d, \"iters\": %lld, \"total\": %llu, \"expected\": %llu, "
           "\"secs\": %.6f, \"ns_per_op\": %.2f}\n",
           peer, procs, iters, total, expected, elapsed_ns / 1e9, (double)elapsed_ns / expected);
    return (elapsed_ns == 0 || total != expected) ? 1 : 0;
}

/* Step 8, first half: forks a child that calls take(ctx) (which locks and
 * writes), says so, and waits; kills it with SIGKILL while it holds the lock.
 * Returns 0 once the holder is dead, -1 if it never took the lock. */
typedef void (*h_take_fn)(void *ctx);

static inline int h_kill_holder(h_take_fn take, void *ctx) {
    harness_t *h = h_harness();
    pid_t pid = fork();
    if (pid < 0) h_die("fork");
    if (pid == 0) {
        take(ctx);
        __atomic_store_n(&h->ready, 1, __ATOMIC_RELEASE);
        for (;;) pause();
    }
    int held = 0;
    for (int ms = 0; ms < 5000 && !held; ms++) {
        held = __atomic_load_n(&h->ready, __ATOMIC_ACQUIRE) != 0;
        if (!held) usleep(1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    munmap(h, sizeof *h);
    return held ? 0 : -1;
}

/* Step 8, the crash-test line. */
static inline int h_crash_report(const char *peer, const char *outcome, const char *detail) {
    printf("{\"peer\": \"%s\", \"crash_test\": \"%s\", \"detail\": \"%s\"}\n", peer, outcome, detail);
    return 0;
}

/* CLOCK_REALTIME deadline `secs` from now, as pthread_mutex_timedlock wants it. */
static inline struct timespec h_deadline(int secs) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += secs;
    return ts;
}
#endif
