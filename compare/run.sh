#!/usr/bin/env bash
# usage: compare/run.sh [--out DIR] [PROCS_LIST [ITERS [REPS]]]
#
#   PROCS_LIST  the process counts, as one argument (default "1 2")
#   ITERS       increments per run in all, split evenly over the processes
#               (default 2000000; python-mp-value does 1/20 of them)
#   REPS        repetitions (default 11)
#   --out DIR   also keep the JSON lines (runs.jsonl, crash.jsonl) and the
#               table (table.md) in DIR
#
# COMPARE_OUT: where build.sh put the programs (default target/compare);
# PEER_TIMEOUT: seconds a run may take before it is killed (default 300).
#
# Runs every peer for each process count, interleaved, in an order rotated
# at each repetition; then the crash test of each peer; prints the table
# (summarize.py) on stdout, progress on stderr. Builds the programs first
# (build.sh) when one is missing. Exits non-zero if a run failed or lost
# an update.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$(realpath -m "${COMPARE_OUT:-$(dirname "$here")/target/compare}")/bin
PEER_TIMEOUT=${PEER_TIMEOUT:-300}

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit 0
fi
out=
if [[ ${1:-} == --out ]]; then
    out=${2:?"--out needs a directory"}
    shift 2
fi
procs_list=${1:-1 2}
iters=${2:-2000000}
reps=${3:-11}
for p in $procs_list; do
    [[ $p =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: bad process count '$p' (usage: see the top of run.sh)" >&2; exit 2; }
done
[[ $iters =~ ^[1-9][0-9]*$ && $reps =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: ITERS and REPS must be positive integers" >&2; exit 2; }

# name, share of ITERS (1/n), command in $bin
PEERS=(
    "c-atomic            1  c-atomic"
    "c-cas-floor         1  c-cas-floor"
    "c-pthread-plain     1  c-pthread-plain"
    "c-pthread-robust    1  c-pthread-robust"
    "c-sysv-pthread      1  c-sysv-pthread"
    "boost-interprocess  1  boost-interprocess"
    "python-mp-value     20 python-mp-value"
    "rust-raw-sync       1  rust-raw-sync"
    "rust-raw-sync-abort 1  rust-raw-sync-abort"
    "shmstore            1  shmstore-counter"
    "shmstore-sysv       1  shmstore-counter --sysv"
    "shmstore-atomic     1  shmstore-counter --atomic"
)

for entry in "${PEERS[@]}"; do
    read -r _ _ cmd _ <<<"$entry"
    if [[ ! -x $bin/$cmd ]]; then
        echo "run.sh: $bin/$cmd is missing: running build.sh" >&2
        "$here/build.sh" || exit 1
        break
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/shmstore-compare.XXXXXX")
trap 'rm -rf "$work"' EXIT
segments() { ls /dev/shm; ipcs -m | awk '$1 ~ /^0x/ {print "sysv", $1}'; }
segments >"$work/before"

# Runs one peer: prints its JSON line, or one with an "error" field.
# usage: run_peer ENTRY TIMEOUT ARGS...   (an entry of PEERS; PROCS ITERS, or crash)
run_peer() {
    local name cmd line rc msg limit=$2 procs=null
    read -r name _ cmd <<<"$1"
    shift 2
    [[ $1 == crash ]] || procs=$1
    # timeout kills the peer's whole process group, children included
    # shellcheck disable=SC2086 # cmd holds the command and its flags
    timeout -k 5 "$limit" "$bin"/$cmd "$@" >"$work/stdout" 2>"$work/stderr"
    rc=$?
    line=$(grep -m1 '^{' "$work/stdout")
    if ((rc == 124 || rc == 137)) && [[ $procs != null ]]; then
        # killed: a run of one increment removes the segment it left behind
        timeout -k 5 10 "$bin"/$cmd 1 1 >/dev/null 2>&1
    fi
    msg=$(head -c 300 "$work/stderr" | tr -d '"\\' | tr '\n\t\r' '   ')
    if [[ -n $line && $rc == 0 ]]; then
        echo "$line"
    elif [[ -n $line ]]; then
        echo "${line%\}}, \"error\": \"exit code $rc\", \"stderr\": \"$msg\"}"
    else
        echo "{\"peer\": \"$name\", \"procs\": $procs, \"error\": \"exit code $rc\", \"stderr\": \"$msg\"}"
    fi
}

n=${#PEERS[@]}
: >"$work/runs.jsonl"
for ((r = 0; r < reps; r++)); do
    echo "run.sh: repetition $((r + 1))/$reps" >&2
    for p in $procs_list; do
        for ((k = 0; k < n; k++)); do
            entry=${PEERS[$(((k + r) % n))]}
            read -r _ share _ <<<"$entry"
            each=$((iters / share / p))
            ((each >= 1)) || each=1
            run_peer "$entry" "$PEER_TIMEOUT" "$p" "$each" >>"$work/runs.jsonl"
        done
    done
done

echo "run.sh: crash tests" >&2
: >"$work/crash.jsonl"
for entry in "${PEERS[@]}"; do
    read -r name _ <<<"$entry"
    line=$(run_peer "$entry" 10 crash)
    if [[ $line == *'"error": "exit code 124"'* ]]; then # outlived its timeout: it hangs
        line="{\"peer\": \"$name\", \"crash_test\": \"hangs\", \"detail\": \"killed after 10 s\"}"
    elif [[ $line != *'"crash_test"'* ]]; then
        line="{\"peer\": \"$name\", \"crash_test\": \"errors\", \"detail\": ${line#*\"error\": }"
    fi
    echo "$line" >>"$work/crash.jsonl"
done

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
boost=$(awk '/define BOOST_LIB_VERSION/ {gsub(/"/, "", $3); sub(/_/, ".", $3); print $3}' /usr/include/boost/version.hpp 2>/dev/null)
title="shmstore compared, $(date -u +%Y-%m-%d): $(nproc) CPUs ($cpu), Linux $(uname -r), glibc $(getconf GNU_LIBC_VERSION | cut -d' ' -f2), \
gcc $(gcc -dumpfullversion), Boost ${boost:-?}, $(python3 --version), $(rustc --version | cut -d' ' -f1-2). \
Each run: $iters increments in all (python-mp-value: 1/20); repetitions: $reps."
python3 "$here/summarize.py" --title "$title" "$work/runs.jsonl" "$work/crash.jsonl" | tee "$work/table.md"
status=${PIPESTATUS[0]}

segments >"$work/after"
if left=$(comm -13 <(sort "$work/before") <(sort "$work/after")) && [[ -n $left ]]; then
    echo "run.sh: WARNING: shared memory segments appeared during the run (a killed peer, or another program; remove with rm /dev/shm/NAME, or ipcrm -M KEY for sysv):" $left >&2
fi
if [[ -n $out ]]; then
    mkdir -p "$out" && cp "$work"/{runs.jsonl,crash.jsonl,table.md} "$out"/ && echo "run.sh: JSON lines and table in $out" >&2
fi
exit "$status"
