/* How long it takes to ask whether a lock holder in another process still
 * runs, with the two mechanisms shmstore has used: reading the holder's
 * /proc/TID/task/TID/stat (with kill(tid, 0) first), which works only in
 * the holder's PID namespace, and F_OFD_GETLK on a byte the holder has
 * locked in the segment's object, which works in every namespace. Also
 * what a process pays once per segment it opens to show itself there
 * (reopen through /proc/self/fd, F_OFD_SETLK, close), and that the kernel
 * drops the lock when the holder is killed.
 *
 *   gcc -O2 -o target/compare/liveness compare/c/liveness.c
 *   target/compare/liveness
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BASE (1LL << 56)
#define N 200000

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static struct flock byte_lock(short type, long long at) {
    struct flock l = {.l_type = type, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};
    return l;
}

int main(void) {
    int fd = memfd_create("liveness", MFD_CLOEXEC);
    if (fd < 0) { perror("memfd_create"); return 1; }
    char own[64];
    snprintf(own, sizeof own, "/proc/self/fd/%d", fd);
    int ready[2];
    if (pipe(ready) != 0) { perror("pipe"); return 1; }
    pid_t holder = fork();
    if (holder == 0) {
        /* The holder: its own description, one byte locked, then wait. */
        int mine = open(own, O_RDWR | O_CLOEXEC);
        struct flock l = byte_lock(F_WRLCK, BASE + 12345);
        if (mine < 0 || fcntl(mine, F_OFD_SETLK, &l) != 0) _exit(1);
        if (write(ready[1], "x", 1) != 1) _exit(1);
        pause();
        _exit(0);
    }
    char c;
    if (read(ready[0], &c, 1) != 1) { fprintf(stderr, "holder failed\n"); return 1; }

    int alive = 0;
    double t0 = now_ns();
    for (int i = 0; i < N; i++) {
        struct flock q = byte_lock(F_WRLCK, BASE + 12345);
        fcntl(fd, F_OFD_GETLK, &q);
        alive += q.l_type == F_WRLCK;
    }
    double getlk = (now_ns() - t0) / N;

    char stat_path[64], buf[1024];
    snprintf(stat_path, sizeof stat_path, "/proc/%d/task/%d/stat", holder, holder);
    t0 = now_ns();
    for (int i = 0; i < N / 10; i++) {
        int f = open(stat_path, O_RDONLY | O_CLOEXEC);
        if (f < 0 || read(f, buf, sizeof buf) <= 0) { fprintf(stderr, "stat\n"); return 1; }
        close(f);
    }
    double stat_read = (now_ns() - t0) / (N / 10);
    t0 = now_ns();
    for (int i = 0; i < N; i++) kill(holder, 0);
    double kill0 = (now_ns() - t0) / N;

    t0 = now_ns();
    for (int i = 0; i < N / 10; i++) {
        int f = open(own, O_RDWR | O_CLOEXEC);
        struct flock l = byte_lock(F_WRLCK, BASE + 999);
        if (f < 0 || fcntl(f, F_OFD_SETLK, &l) != 0) { fprintf(stderr, "register\n"); return 1; }
        close(f);
    }
    double reg = (now_ns() - t0) / (N / 10);

    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
    struct flock q = byte_lock(F_WRLCK, BASE + 12345);
    fcntl(fd, F_OFD_GETLK, &q);

    printf("F_OFD_GETLK on a live holder's byte:        %6.0f ns (saw it alive %d of %d times)\n",
           getlk, alive, N);
    printf("/proc/TID/task/TID/stat read:               %6.0f ns\n", stat_read);
    printf("kill(tid, 0):                               %6.0f ns\n", kill0);
    printf("showing itself in a segment (open, lock):   %6.0f ns\n", reg);
    printf("/proc check / F_OFD_GETLK:                  %6.1fx\n", (stat_read + kill0) / getlk);
    printf("after SIGKILL of the holder its byte is:    %s\n",
           q.l_type == F_UNLCK ? "free" : "STILL LOCKED");
    return q.l_type == F_UNLCK && alive == N ? 0 : 1;
}
