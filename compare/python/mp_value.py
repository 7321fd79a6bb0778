#!/usr/bin/env python3
"""Peer python-mp-value: multiprocessing.Value('Q', 0, lock=True), incremented
with `with v.get_lock(): v.value += 1` (the idiom of the Python docs) by PROCS
multiprocessing.Process workers, start method 'fork'.

Usage: mp_value.py PROCS ITERS | mp_value.py crash

The Value lives in multiprocessing's shared heap and its lock is a POSIX
semaphore; multiprocessing unlinks both right after creating them, so there
is no named segment to remove, before or after.
"""
import json
import multiprocessing as mp
import os
import signal
import sys
import time

PEER = "python-mp-value"


def now():
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def worker(idx, value, iters, ready, go, ends):
    ready.release()
    go.wait()
    for _ in range(iters):
        with value.get_lock():
            value.value += 1
    ends[idx] = now()


def bench(procs, iters):
    value = mp.Value("Q", 0, lock=True)
    ready, go = mp.Semaphore(0), mp.Event()
    ends = mp.Array("d", procs, lock=False)
    workers = [mp.Process(target=worker, args=(i, value, iters, ready, go, ends)) for i in range(procs)]
    for w in workers:
        w.start()
    for _ in workers:
        ready.acquire()
    t0 = now()
    go.set()
    for w in workers:
        w.join()
    failed = any(w.exitcode != 0 for w in workers)
    secs = max(ends) - t0
    total, expected = value.value, procs * iters
    print(json.dumps({"peer": PEER, "procs": procs, "iters": iters, "total": total,
                      "expected": expected, "secs": round(secs, 6),
                      "ns_per_op": round(secs * 1e9 / expected, 2)}))
    return 1 if failed or total != expected else 0


def holder(value, locked):
    value.get_lock().acquire()
    value.value = 1
    locked.set()
    while True:
        time.sleep(60)


def crash_test():
    """A holder is killed with the lock; can the survivor lock again within 2 s?"""
    value, locked = mp.Value("Q", 0, lock=True), mp.Event()
    p = mp.Process(target=holder, args=(value, locked))
    p.start()
    held = locked.wait(5)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    if not held:
        outcome, detail = "errors", "the holder never took the lock"
    elif value.get_lock().acquire(timeout=2):
        value.get_lock().release()
        outcome, detail = "errors", "acquire succeeded with no notice that the owner died"
    else:
        outcome, detail = "hangs", ("get_lock().acquire(timeout=2) -> False "
                                    "(the semaphore does not know its holder died)")
    print(json.dumps({"peer": PEER, "crash_test": outcome, "detail": detail}))
    return 0


def main(args):
    mp.set_start_method("fork")
    if args == ["crash"]:
        return crash_test()
    if len(args) == 2 and all(a.isdigit() for a in args) and 1 <= int(args[0]) <= 256 and int(args[1]) >= 1:
        return bench(int(args[0]), int(args[1]))
    print(f"usage: {sys.argv[0]} PROCS ITERS | crash", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
