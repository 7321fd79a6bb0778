#!/usr/bin/env python3
"""The store-lookup table, from the JSON lines of boost-find and of
`store_bench --lookups` (compare/store.sh runs both).

usage: store_table.py [--title TEXT] FILE...   (or the lines on stdin)

Each line is one figure: {"peer", "what", "key": "random" | "same", "keys",
"ops", "digest", "ns_per_op": [one figure per batch]}. A figure given by
several lines (several rounds) pools their batches. Each cell is the median
ns per lookup with the fastest and slowest batch; the ratio columns divide
a row's median by Boost find's at the same size and key (below 1: less time
than Boost). Exits non-zero when the programs did not look up the same keys
(their digests differ), did not make the same number of lookups, or a
figure is missing.
"""
import json
import statistics
import sys
from collections import defaultdict

BOOST = ("boost-find", "find")
ROWS = [
    (BOOST, "Boost `managed_shared_memory::find<uint64_t>(name)`"),
    (("shmstore", "contains"), "shmstore `store.contains(key)`"),
    (("shmstore", "get + drop"), "shmstore `store.get::<u64>(key)` + drop"),
    (("std", "HashMap::get"), "std `HashMap<String, u64>::get(key)`"),
]
# The targets (random keys): contains and get + drop against
# Boost at every size, get + drop at the most keys against the fewest.
GOALS = [(("shmstore", "contains"), "`contains`", 0.5), (("shmstore", "get + drop"), "`get` + drop", 1.0)]
GROWTH_GOAL = 2.0


def thousands(n):
    return f"{n:,}"


def fmt(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def read(lines):
    batches, digests, ops, problems = defaultdict(list), defaultdict(set), set(), []
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            d = json.loads(line)
            fig = (d["peer"], d["what"], d["key"], int(d["keys"]))
            batches[fig] += [float(x) for x in d["ns_per_op"]]
            digests[d["key"], fig[3]].add(d["digest"])
            ops.add(int(d["ops"]))
        except (ValueError, KeyError, TypeError) as e:
            problems.append(f"a line left out ({e}): {line.strip()}")
    for (key, keys), ds in sorted(digests.items()):
        if len(ds) > 1:
            problems.append(f"the programs looked up different keys ({key} key, {keys} keys): digests {sorted(ds)}")
    if len(ops) > 1:
        problems.append(f"the programs made different numbers of lookups per batch: {sorted(ops)}")
    return batches, ops, problems


def table(batches, ops, title):
    sizes = sorted({f[3] for f in batches})
    med = {f: statistics.median(v) for f, v in batches.items()}
    out, missing = [], []
    if title:
        out += [title, ""]
    n = max((len(v) for v in batches.values()), default=0)
    out.append(f"ns per lookup of an existing key: median (fastest-slowest) of {n} batches of "
               f"{', '.join(thousands(o) for o in sorted(ops))} lookups; x Boost = median / Boost find's median.")
    out.append("")
    head = ["lookup"] + [f"{thousands(k)} keys" for k in sizes] + [f"x Boost, {thousands(k)}" for k in sizes]
    head.append(f"{thousands(sizes[-1])} / {thousands(sizes[0])} keys" if sizes else "")
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for key in ("random", "same"):
        for (peer, what), label in ROWS:
            cells, ratios = [], []
            for k in sizes:
                f = (peer, what, key, k)
                if f not in med:
                    missing.append(f)
                    cells.append("-")
                    ratios.append("-")
                    continue
                v = batches[f]
                cells.append(f"{fmt(med[f])} ({fmt(min(v))}-{fmt(max(v))})")
                b = BOOST + (key, k)
                ratios.append(f"{med[f] / med[b]:.2f}" if b in med else "-")
            lo, hi = (peer, what, key, sizes[0]), (peer, what, key, sizes[-1])
            growth = f"{med[hi] / med[lo]:.2f}" if lo in med and hi in med else "-"
            out.append(f"| {label}, {key} key | " + " | ".join(cells + ratios + [growth]) + " |")
    out.append("")
    verdicts = []
    for (peer, what), name, goal in GOALS:
        rs = [med.get((peer, what, "random", k), float("nan")) / med.get(BOOST + ("random", k), float("nan"))
              for k in sizes]
        met = all(r <= goal for r in rs)
        verdicts.append(f"{name} <= {goal}x Boost `find`: {' / '.join(f'{r:.2f}' for r in rs)} "
                        f"({'met' if met else 'not met'})")
    lo, hi = ("shmstore", "get + drop", "random", sizes[0]), ("shmstore", "get + drop", "random", sizes[-1])
    if lo in med and hi in med:
        g = med[hi] / med[lo]
        verdicts.append(f"`get` + drop at {thousands(sizes[-1])} keys <= {GROWTH_GOAL}x at {thousands(sizes[0])}: "
                        f"{g:.2f} ({'met' if g <= GROWTH_GOAL else 'not met'})")
    out.append("Targets, random keys: " + "; ".join(verdicts) + ".")
    return "\n".join(out), missing


def main(argv):
    title = None
    if argv[:1] == ["--title"]:
        title, argv = argv[1], argv[2:]
    lines = []
    if argv:
        for name in argv:
            with open(name) as f:
                lines += f.readlines()
    else:
        lines = sys.stdin.readlines()
    batches, ops, problems = read(lines)
    if not batches:
        print("store_table.py: no figures", file=sys.stderr)
        return 1
    text, missing = table(batches, ops, title)
    print(text)
    problems += [f"no figure for {f}" for f in missing]
    for p in problems:
        print(f"store_table.py: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
