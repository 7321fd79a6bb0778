/* Peers c-pthread-plain, c-pthread-robust and c-sysv-pthread: a u64 counter
 * guarded by a PTHREAD_PROCESS_SHARED mutex, right after it in one segment.
 * build.sh compiles this file three times:
 *   -DPEER='"..."'  the peer's name
 *   -DROBUST=0|1    PTHREAD_MUTEX_ROBUST off or on
 *   -DSYSV=0|1      POSIX shm_open + mmap, or System V shmget + shmat
 * Usage: PEER PROCS ITERS | PEER crash                                      */
#include "harness.h"
#include <pthread.h>
#include <sys/ipc.h>
#include <sys/shm.h>

#if !defined(PEER) || !defined(ROBUST) || !defined(SYSV)
#error "build with -DPEER=... -DROBUST=0|1 -DSYSV=0|1 (see build.sh)"
#endif

typedef struct {
    pthread_mutex_t mutex;
    uint64_t counter;
} region_t;

#define SIZE 4096

/* The segment: created fresh under the peer's fixed name (or key), a stale
 * one from a killed run removed first; removed again at the end. */
#if SYSV
#define SYSV_KEY ((key_t)0x53435031) /* "SCP1": the segment's fixed "name" */
static int shmid = -1;

static region_t *region_create(void) {
    int stale = shmget(SYSV_KEY, 0, 0);
    if (stale >= 0) shmctl(stale, IPC_RMID, NULL);
    shmid = shmget(SYSV_KEY, SIZE, IPC_CREAT | IPC_EXCL | 0600);
    if (shmid < 0) h_die("shmget");
    void *p = shmat(shmid, NULL, 0);
    shmctl(shmid, IPC_RMID, NULL); /* goes away with the last detach, even if we are killed */
    if (p == (void *)-1) h_die("shmat");
    return (region_t *)p;
}

static void region_remove(region_t *r) { shmdt(r); }
#else
#define SHM_NAME "/shmstore-compare_" PEER

static region_t *region_create(void) { return (region_t *)h_shm_create(SHM_NAME, SIZE); }

static void region_remove(region_t *r) { h_shm_remove(SHM_NAME, r, SIZE); }
#endif

static void mutex_init(pthread_mutex_t *m) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
#if ROBUST
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
#endif
    int rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    if (rc) {
        fprintf(stderr, "pthread_mutex_init: %s\n", strerror(rc));
        exit(2);
    }
}

static void lock(pthread_mutex_t *m) {
    int rc = pthread_mutex_lock(m);
#if ROBUST
    if (rc == EOWNERDEAD) rc = pthread_mutex_consistent(m);
#endif
    if (rc) {
        fprintf(stderr, "pthread_mutex_lock: %s\n", strerror(rc));
        _exit(3);
    }
}

static void work(void *ctx, long long iters) {
    region_t *r = (region_t *)ctx;
    for (long long k = 0; k < iters; k++) {
        lock(&r->mutex);
        r->counter++;
        pthread_mutex_unlock(&r->mutex);
    }
}

static void take(void *ctx) {
    region_t *r = (region_t *)ctx;
    lock(&r->mutex);
    r->counter = 1;
}

/* A holder is killed with the lock; can the survivor lock again within 2 s? */
static int crash_test(region_t *r) {
    if (h_kill_holder(take, r) != 0) return h_crash_report(PEER, "errors", "the holder never took the lock");
    struct timespec deadline = h_deadline(2);
    int rc = pthread_mutex_timedlock(&r->mutex, &deadline);
    char detail[200];
    const char *outcome = "errors";
    if (rc == EOWNERDEAD) {
        int consistent = pthread_mutex_consistent(&r->mutex);
        r->counter++;
        pthread_mutex_unlock(&r->mutex);
        deadline = h_deadline(2);
        int relock = pthread_mutex_timedlock(&r->mutex, &deadline);
        if (relock == 0) pthread_mutex_unlock(&r->mutex);
        if (consistent == 0 && relock == 0) outcome = "recovers";
        snprintf(detail, sizeof detail,
                 "timedlock -> EOWNERDEAD; pthread_mutex_consistent -> %d; relock -> %d; counter=%llu",
                 consistent, relock, (unsigned long long)r->counter);
    } else if (rc == ETIMEDOUT) {
        outcome = "hangs";
        snprintf(detail, sizeof detail, "pthread_mutex_timedlock(2 s) -> ETIMEDOUT");
    } else {
        snprintf(detail, sizeof detail, "pthread_mutex_timedlock -> %d (%s)", rc, strerror(rc));
        if (rc == 0) pthread_mutex_unlock(&r->mutex);
    }
    return h_crash_report(PEER, outcome, detail);
}

int main(int argc, char **argv) {
    int procs;
    long long iters;
    int crash = h_args(argc, argv, &procs, &iters);

    region_t *r = region_create();
    mutex_init(&r->mutex);
    r->counter = 0;
    int rc;
    if (crash) {
        rc = crash_test(r);
    } else {
        uint64_t elapsed = h_race(procs, iters, work, r);
        rc = h_report(PEER, procs, iters, r->counter, elapsed);
    }
    region_remove(r);
    return rc;
}
