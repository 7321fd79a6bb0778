#!/usr/bin/env python3
"""Where a store lookup's instructions go, part by part, counted by
Valgrind's callgrind (counts that other load on the machine does not move).

usage: compare/lookup_parts.py [--cache] [--explain] [--ops N] [--keys K,...] [--same] [OP ...]

  OP        contains, get (get + drop of the handle) or hashmap (a std
            HashMap's get, for scale); default: contains get
  --keys    store sizes, among 10, 1000, 100000 (default 10,100000)
  --ops     lookups counted per run (default 20000)
  --same    the same key every time instead of random keys
  --cache   also simulate the caches (--cache-sim=yes): D1 and last-level
            read misses per lookup (a model of a cache, not this CPU's)
  --explain also list, for each part, the innermost functions its
            instructions are in

Builds the store_bench example in release mode with debug info
(CARGO_PROFILE_RELEASE_DEBUG=limited: the same code, with the tables that
name inlined functions), runs `store_bench --profile OP KEYS OPS` under
callgrind counting only the function `profiled` (the lookups after a
warm-up run, not the store's filling), and attributes every instruction
to a part by its inline chain (addr2line -i), innermost frame first: the
first frame that a rule below names decides. A function the rules do not
name (a copy, the allocator, a std helper that was not inlined) counts for
the part of its call site, in proportion. Each part is also split by
phase: in `get`, in the drop of the handle, in `contains`.
Needs valgrind and binutils (addr2line); Debian: apt-get install valgrind binutils.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# (pattern on a frame's demangled name, part); within one frame the first
# rule that matches wins, so specific rules come first.
PARTS = [
    (r"shmstore::store::(Store::)?check_key|shmstore::store::KEY_BYTES", "key validation"),
    (r"shmstore::store::heap::hash|shmstore::types::shareable::Fingerprint", "hashing the key"),
    (r"shmstore::store::heap::Heap::(entry|shape|type_name)\b|drop_in_place<.*EntryMeta",
     "directory reads: the entry's header (and record)"),
    (r"shmstore::store::heap::Heap::(find|lookup|locate|probe|contains|key_is|bucket|block_at)\b|"
     r"shmstore::store::heap::(bucket_|key_is\b)", "probing: buckets, block checks, key compare"),
    (r"shmstore::store::(Store::)?check_type", "type check"),
    (r"shmstore::store::reader::(read_quiet|find|has|probe)\b|shmstore::lock::seqlock::Versions::copy_quiet",
     "lock-free read: the directory's counter around the lookup"),
    (r"shmstore::store::(Store::hold|Inner::held)|shmstore::store::heap::Heap::(un)?hold|"
     r"shmstore::store::EntryRef|shmstore::store::Holds", "handle bookkeeping: hold counts (BTreeMap) and holder bits"),
    (r"shmstore::store::Store::(entry_handle|entry_slot|entry_label)|shmstore::shared::|shmstore::segment::Handle|"
     r"shmstore::segment::Label|shmstore::store::heap::Shape::meta|"
     r"shmstore::lock::slot::(Raw)?Slot|drop_in_place<shmstore::(shared|lock::slot|segment)",
     "handle: making and freeing the Shared (key, Box, Arc)"),
    (r"shmstore::store::Inner::lock|shmstore::store::Dir|shmstore::lock::", "directory lock: take and release"),
    (r"shmstore::store::Inner::intact|shmstore::sys::mapping::Mapping::is_cut", "truncation check (intact), with moving the result"),
    (r"std::collections::hash|hashbrown", "std HashMap::get"),
    (r"shmstore::store::Store::(get|contains|handle)\b", "the rest of get / contains (results, moves)"),
    (r"^store_bench::", "the benchmark's loop and key pick"),
]
PHASES = [
    (r"drop_in_place<shmstore::shared::Shared<|<shmstore::store::EntryRef as core::ops::drop::Drop>", "drop"),
    (r"shmstore::store::Store::get\b", "get"),
    (r"shmstore::store::Store::contains\b", "contains"),
]
ALLOC = {"malloc", "calloc", "realloc"}
FREE = {"free"}
PARTS_RE = [(re.compile(p), n) for p, n in PARTS]
LOCK = "directory lock: take and release"
QUIET = "lock-free read: the directory's counter around the lookup"
QUIET_RE = re.compile(r"shmstore::store::reader::read_quiet|shmstore::lock::seqlock::Versions::copy_quiet|"
                      r"shmstore::store::Inner::versions")
TAKES_LOCK_RE = re.compile(r"shmstore::store::(Inner::lock|Dir)\b")
PHASES_RE = [(re.compile(p), n) for p, n in PHASES]


def classify(chain):
    """(phase, part) of an inline chain (innermost first); None where no rule names a frame."""
    phase = part = None
    for frame in chain:
        if part is None:
            part = next((n for r, n in PARTS_RE if r.search(frame)), None)
        if phase is None:
            phase = next((n for r, n in PHASES_RE if r.search(frame)), None)
    # The directory's counter read around a lookup without the lock (its
    # loads are `lock::` functions) is the lock-free read, not the lock.
    if (part == LOCK and any(QUIET_RE.search(f) for f in chain)
            and not any(TAKES_LOCK_RE.search(f) for f in chain)):
        part = QUIET
    return phase, part


def parse(path):
    events, binary = [], None
    selfc = defaultdict(lambda: defaultdict(lambda: None))
    edges = defaultdict(list)  # (ob, fn) -> [(site, (cob, cfn), calls, costs)]
    ob = fn = cob = cfn = None
    calls = None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            if line.startswith("cmd:"):
                binary = line.split()[1]
            elif line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("ob="):
                ob = line[3:]
            elif line.startswith("fn="):
                fn = line[3:]
            elif line.startswith("cob="):
                cob = line[4:]
            elif line.startswith("cfn="):
                cfn = line[4:]
            elif line.startswith("calls="):
                calls = int(line[6:].split()[0])
            elif line.startswith("0x"):
                p = line.split()
                addr = int(p[0], 16)
                costs = [int(x) for x in p[2:]] + [0] * (len(events) - len(p[2:]))
                if calls is not None:
                    edges[ob, fn].append((addr, (cob or ob, cfn), calls, costs))
                    calls, cob = None, None
                else:
                    old = selfc[ob, fn][addr]
                    selfc[ob, fn][addr] = costs if old is None else [a + b for a, b in zip(old, costs)]
    return events, binary, selfc, edges


def chains(binary, addrs):
    """addr -> inline chain of demangled names, innermost first."""
    addrs = sorted(addrs)
    out = subprocess.run(["addr2line", "-e", binary, "-i", "-f", "-C", "-a"],
                         input="".join(f"{a:#x}\n" for a in addrs), capture_output=True, text=True,
                         check=True).stdout.splitlines()
    # Each address: its line (0x and 16 digits), then a name and a file:line per frame.
    result, i = {}, 0
    for k, a in enumerate(addrs):
        assert out[i] == f"0x{a:016x}", f"addr2line: {out[i]!r}"
        following = f"0x{addrs[k + 1]:016x}" if k + 1 < len(addrs) else None
        i += 1
        frames = []
        while i < len(out) and out[i] != following:
            frames.append(out[i])
            i += 2
        result[a] = frames
    return result


def breakdown(events, binary, selfc, edges):
    funcs = {k for k in list(selfc) + list(edges) if k[0] == binary}
    addrs = {a for k in funcs for a in selfc[k]} | {e[0] for k in funcs for e in edges[k]}
    chain = chains(binary, addrs)
    label = {a: classify(chain.get(a, [])) for a in addrs}
    memo, allocs = {}, defaultdict(int)
    # Calls of the allocator while counting: how often its first
    # instruction ran (callgrind's call counts include calls made while
    # not counting, such as the store's filling).
    for (ob, fn), per in selfc.items():
        kind = "alloc" if fn in ALLOC else "free" if fn in FREE else None
        if kind and per:
            allocs[kind] += per[min(per)][0]
    n = len(events)

    def merge(inner, outer):
        return (inner[0] or outer[0], inner[1] or outer[1])

    def walk(key, stack):
        if key in memo:
            return memo[key]
        res = defaultdict(lambda: [0] * n)
        for a, c in selfc[key].items():
            what = short(chain.get(a) or [key[1]])
            res[label[a], what] = [x + y for x, y in zip(res[label[a], what], c)]
        for site, callee, calls, costs in edges[key]:
            here = label[site]
            if callee[0] == binary and callee in funcs and callee not in stack:
                sub = walk(callee, stack | {callee})
                tot = [sum(v[e] for v in sub.values()) for e in range(n)]
                for (lbl, what), v in sub.items():
                    m = merge(lbl, here), what
                    res[m] = [r + (costs[e] * v[e] / tot[e] if tot[e] else 0) for e, r in enumerate(res[m])]
            else:
                m = here, short([callee[1]])
                res[m] = [x + y for x, y in zip(res[m], costs)]
        memo[key] = res
        return res

    root = next(k for k in funcs if re.match(r"store_bench::profiled\b", k[1]))
    detailed = walk(root, {root})
    res = defaultdict(lambda: [0] * n)
    for (lbl, _), v in detailed.items():
        res[lbl] = [x + y for x, y in zip(res[lbl], v)]
    return res, detailed, allocs


def short(frames):
    """The innermost frame's name, without generic arguments and hashes."""
    name = frames[0]
    while True:
        cut = re.sub(r"<[^<>]*>", "", name)
        if cut == name:
            break
        name = cut
    return re.sub(r"::h[0-9a-f]{16}$", "", name) or frames[0]


def run(op, keys, ops, same, cache, binary, work):
    out = os.path.join(work, f"{op}-{keys}.out")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=yes",
           "--compress-strings=no", "--compress-pos=no", "--collect-atstart=no",
           "--toggle-collect=store_bench::profiled*"]
    if cache:
        cmd.append("--cache-sim=yes")
    cmd += [binary, "--profile", op, str(keys), str(ops)] + (["same"] if same else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events, ran, selfc, edges = parse(out)
    res, detailed, allocs = breakdown(events, ran, selfc, edges)
    total = sum(c[0] for k, per in selfc.items() for c in per.values())
    return events, res, allocs, total, detailed


def main(argv):
    ops, sizes, same, cache, explain, wanted = 20000, [10, 100000], False, False, False, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--ops":
            ops, i = int(argv[i + 1]), i + 1
        elif a == "--keys":
            sizes, i = [int(k) for k in argv[i + 1].split(",")], i + 1
        elif a == "--same":
            same = True
        elif a == "--cache":
            cache = True
        elif a == "--explain":
            explain = True
        elif a in ("contains", "get", "hashmap"):
            wanted.append(a)
        else:
            print(__doc__, file=sys.stderr)
            return 2
        i += 1
    wanted = wanted or ["contains", "get"]
    for tool, package in (("valgrind", "valgrind"), ("addr2line", "binutils"), ("cargo", None)):
        if not shutil.which(tool):
            print(f"lookup_parts.py: {tool} not found" + (f" (Debian: apt-get install {package})" if package else ""),
                  file=sys.stderr)
            return 1
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    env = dict(os.environ, CARGO_PROFILE_RELEASE_DEBUG="limited")
    subprocess.run(["cargo", "build", "-q", "--release", "--example", "store_bench"], cwd=REPO, env=env,
                   check=True)
    binary = os.path.join(os.path.realpath(target), "release", "examples", "store_bench")
    figures = []
    with tempfile.TemporaryDirectory() as work:
        for keys in sizes:
            for op in wanted:
                print(f"lookup_parts.py: {op}, {keys} keys, {ops} lookups under callgrind", file=sys.stderr)
                figures.append((f"{op} {keys:,}", run(op, keys, ops, same, cache, binary, work)))
    show = [e for e in ("Ir", "D1mr", "DLmr") if e in figures[0][1][0]]
    names = {"Ir": "instructions", "D1mr": "D1 read misses", "DLmr": "last-level read misses"}
    rows = sorted({lbl for _, (_, res, _, _, _) in figures for lbl in res},
                  key=lambda l: ([p for _, p in PHASES] + [None]).index(l[0]) * 100
                  + ([p for _, p in PARTS] + [None]).index(l[1]))

    def cell(x):
        return f"{x / ops:.1f}" if x / ops < 10 else f"{x / ops:.0f}"

    for e in show:
        print(f"{names[e].capitalize()} per lookup ({'the same key' if same else 'random keys'}, {ops} lookups "
              f"counted{', simulated caches' if e != 'Ir' else ''}):")
        print()
        head = ["phase", "part"] + [name for name, _ in figures]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for lbl in rows:
            cells = [cell(res.get(lbl, [0] * len(events))[events.index(e)])
                     for _, (events, res, _, _, _) in figures]
            print(f"| {lbl[0] or '-'} | {lbl[1] or 'other'} | " + " | ".join(cells) + " |")
        cells = [cell(sum(v[events.index(e)] for v in res.values())) for _, (events, res, _, _, _) in figures]
        print("| | all | " + " | ".join(cells) + " |")
        print()
    for name, (events, res, allocs, total, detailed) in figures:
        got = sum(v[0] for v in res.values())
        print(f"{name}: {allocs['alloc'] / ops:.1f} calls of malloc, calloc or realloc and {allocs['free'] / ops:.1f} "
              f"of free per lookup; "
              f"parts add up to {got / max(total, 1):.1%} of the {total / ops:.0f} instructions counted.")
    if explain:
        for name, (events, res, allocs, total, detailed) in figures:
            print(f"\n{name}: where each part's instructions are (innermost function, instructions per lookup)")
            for lbl in rows:
                items = sorted(((v[0], what) for (l, what), v in detailed.items() if l == lbl), reverse=True)
                if items and sum(c for c, _ in items) / ops >= 1:
                    top = "; ".join(f"{what} {cell(c)}" for c, what in items[:6] if c / ops >= 1)
                    print(f"- {lbl[0] or '-'} / {lbl[1] or 'other'}: {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
