#!/usr/bin/env bash
# usage: compare/store.sh [--out DIR] [OPS [ROUNDS]]
#
#   OPS         lookups per batch (default 200000), the same in both programs
#   ROUNDS      times each program runs, in turn, the first one alternating
#               (default 1); the table pools the batches of all rounds
#   --out DIR   also keep the JSON lines (lookups.jsonl) and the table
#               (table.md) in DIR
#
# COMPARE_OUT: where build.sh puts the programs (default target/compare);
# PEER_TIMEOUT: seconds a program may run before it is killed (default 600).
#
# Store lookups against Boost.Interprocess: builds (build.sh store) and runs
# boost-find and shmstore's `store_bench --lookups` on stores of 10, 1,000
# and 100,000 u64 entries named alike, and prints the table of Boost `find`,
# shmstore `contains`, `get` + drop and a std HashMap's `get` with their
# ratios to Boost (store_table.py) on stdout, progress on stderr. Exits
# non-zero if a program failed or the two did not look up the same keys.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$(realpath -m "${COMPARE_OUT:-$(dirname "$here")/target/compare}")/bin
PEER_TIMEOUT=${PEER_TIMEOUT:-600}

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit 0
fi
out=
if [[ ${1:-} == --out ]]; then
    out=${2:?"--out needs a directory"}
    shift 2
fi
ops=${1:-200000}
rounds=${2:-1}
[[ $ops =~ ^[1-9][0-9]*$ && $rounds =~ ^[1-9][0-9]*$ ]] || {
    echo "store.sh: OPS and ROUNDS must be positive integers (usage: see the top of store.sh)" >&2
    exit 2
}

# Cargo and make-like checks: quick when nothing changed.
"$here/build.sh" store || exit 1

work=$(mktemp -d "${TMPDIR:-/tmp}/shmstore-store-compare.XXXXXX")
trap 'rm -rf "$work"' EXIT
ls /dev/shm >"$work/before"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

PROGRAMS=("boost-find $ops" "shmstore-store-bench --lookups $ops")
status=0
: >"$work/lookups.jsonl"
for ((r = 0; r < rounds; r++)); do
    for ((k = 0; k < 2; k++)); do
        cmd=${PROGRAMS[$(((k + r) % 2))]}
        echo "store.sh: round $((r + 1))/$rounds: $cmd" >&2
        # shellcheck disable=SC2086 # cmd holds the program and its arguments
        timeout -k 5 "$PEER_TIMEOUT" "$bin"/$cmd >"$work/stdout" 2>"$work/stderr"
        rc=$?
        grep '^{' "$work/stdout" >>"$work/lookups.jsonl"
        if ((rc != 0)); then
            echo "store.sh: $cmd failed (exit code $rc):" >&2
            head -c 2000 "$work/stderr" >&2
            status=1
        fi
    done
done

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
boost=$(awk '/define BOOST_LIB_VERSION/ {gsub(/"/, "", $3); sub(/_/, ".", $3); print $3}' /usr/include/boost/version.hpp 2>/dev/null)
title="Store lookups against Boost.Interprocess, $(date -u +%Y-%m-%d): $(nproc) CPUs ($cpu), Linux $(uname -r), \
gcc $(gcc -dumpfullversion), Boost ${boost:-?}, $(rustc --version | cut -d' ' -f1-2); load average $load_before \
before, $(cut -d' ' -f1-3 /proc/loadavg) after; rounds: $rounds."
python3 "$here/store_table.py" --title "$title" "$work/lookups.jsonl" | tee "$work/table.md"
((PIPESTATUS[0] == 0)) || status=1

ls /dev/shm >"$work/after"
if left=$(comm -13 <(sort "$work/before") <(sort "$work/after")) && [[ -n $left ]]; then
    echo "store.sh: WARNING: shared memory segments appeared during the run (a killed program, or another one; remove with rm /dev/shm/NAME):" $left >&2
fi
if [[ -n $out ]]; then
    mkdir -p "$out" && cp "$work"/{lookups.jsonl,table.md} "$out"/ && echo "store.sh: JSON lines and table in $out" >&2
fi
exit "$status"
