#!/usr/bin/env python3
"""The comparison table, from the JSON lines the peers print.

usage: summarize.py [--title TEXT] FILE...   (or the lines on stdin)

One row per peer: the median ns per increment for each process count, with
the min-max of the runs; shmstore / peer for each process count (below 1:
shmstore takes less time); the crash test's outcome. A run whose count is
not exact, or which failed, is left out of the median and counted apart.
"""
import json
import statistics
import sys
from collections import defaultdict

REFERENCE = "shmstore"
# peers that a shmstore variant matches like for like: that ratio is shown too
COUNTERPARTS = {"c-sysv-pthread": "shmstore-sysv", "c-atomic": "shmstore-atomic"}


def read(lines):
    """Runs by (peer, procs), failures by (peer, procs), crash outcomes, peers in order."""
    runs, failed, crash, order = defaultdict(list), defaultdict(int), {}, []
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            d = json.loads(line)
        except ValueError:
            print(f"summarize.py: not a JSON line, left out: {line}", file=sys.stderr)
            failed[None, None] += 1
            continue
        peer = d["peer"]
        if peer not in order:
            order.append(peer)
        if "crash_test" in d:
            crash[peer] = d["crash_test"]
        elif "error" in d or d.get("total") != d.get("expected"):
            failed[peer, d.get("procs")] += 1
        else:
            runs[peer, d["procs"]].append(d["ns_per_op"])
    return runs, failed, crash, order


def fmt(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def unit(procs):
    return f"{procs} proc{'s' if procs > 1 else ''}"


def table(runs, failed, crash, order):
    procs = sorted({p for _, p in list(runs) + list(failed) if p is not None})
    med = {k: statistics.median(v) for k, v in runs.items()}

    def ratio(a, b, p):
        return f"{med[a, p] / med[b, p]:.2f}" if (a, p) in med and (b, p) in med else "-"

    head = [f"{unit(p)}: ns/increment" for p in procs] + [f"shmstore / peer, {unit(p)}" for p in procs]
    out = ["| peer | " + " | ".join(head) + " | crash test |", "|---" * (len(head) + 2) + "|"]
    for peer in order:
        cells = []
        for p in procs:
            v = runs.get((peer, p))
            c = f"{fmt(med[peer, p])} ({fmt(min(v))}-{fmt(max(v))})" if v else "-"
            if failed.get((peer, p)):
                c += f" [{failed[peer, p]} failed]"
            cells.append(c)
        for p in procs:
            if peer.startswith(REFERENCE):
                cells.append("")
                continue
            c = ratio(REFERENCE, peer, p)
            if peer in COUNTERPARTS:
                c += f" ({COUNTERPARTS[peer]}: {ratio(COUNTERPARTS[peer], peer, p)})"
            cells.append(c)
        cells.append(crash.get(peer, "-"))
        out.append(f"| {peer} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(args):
    title = None
    if args[:1] == ["--title"]:
        title, args = args[1], args[2:]
    lines = []
    for f in args or ["-"]:
        with (open(f) if f != "-" else sys.stdin) as fh:
            lines += [l.strip() for l in fh]
    runs, failed, crash, order = read(lines)
    if title:
        print(title + "\n")
    print(table(runs, failed, crash, order))
    n = max((len(v) for v in runs.values()), default=0)
    print(f"\nns/increment: median of {n} runs (min-max) per peer. shmstore / peer: ratio of the medians, "
          "below 1 when shmstore takes less time; in parentheses the shmstore variant that matches "
          "the peer like for like. Crash test: a process holding the lock is killed with SIGKILL; "
          "\"recovers\" if another one can lock again within 2 s and is told the holder died.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
