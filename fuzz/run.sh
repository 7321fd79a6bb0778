#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds (default 60) and prints how many
# inputs each one ran, its coverage, and whether it found anything.
#
#   fuzz/run.sh [SECONDS]            all targets: segment, store, schema
#   TARGETS="store" fuzz/run.sh 600  some of them
#   KEEP_GOING=1 fuzz/run.sh 600     go on past failures (libFuzzer's fork
#                                    mode), saving each one's input
#
# Installs cargo-fuzz if it is missing. Builds with the stable toolchain:
# cargo-fuzz passes nightly-only flags (-Z sanitizer=address), which
# RUSTC_BOOTSTRAP=1 lets stable accept. The build goes to $CARGO_TARGET_DIR
# (default fuzz/target); inputs found are kept in fuzz/corpus/TARGET, and
# what made a target fail in fuzz/artifacts/TARGET. Exits 1 if any target
# found a panic, a crash or a hang (an input running over 10 s).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

secs=${1:-60}
targets=${TARGETS:-segment store schema}
export RUSTC_BOOTSTRAP=1
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Every segment a target makes is named shmstore-fuzz-$SHMSTORE_FUZZ_RUN-...
# and removed at the end of each input; a crash ends the process at once and
# leaves its last one, which sweep removes once the target has ended.
export SHMSTORE_FUZZ_RUN="run$$"
sweep() { rm -f /dev/shm/shmstore-fuzz-"$SHMSTORE_FUZZ_RUN"-*; }

# `shmstore::inspect` counts which processes map a segment by reading every
# /proc/PID/maps, which makes it cost tens of milliseconds on a busy host.
# Run the targets in a PID namespace of their own (as root), where /proc
# holds only them: ten times the inputs per second.
isolate=()
if unshare --pid --fork --mount-proc true 2>/dev/null; then
    isolate=(unshare --pid --fork --mount-proc)
fi

echo "fuzz: building the targets"
cargo fuzz build --target-dir "$target_dir" >/dev/null 2>&1 ||
    cargo fuzz build --target-dir "$target_dir"

failed=()
for t in $targets; do
    # Neither directory is in a fresh clone (both are ignored by git).
    mkdir -p "corpus/$t" "artifacts/$t"
    seeds=()
    [[ -d seeds/$t ]] && seeds=("seeds/$t")
    log=$(mktemp)
    echo "fuzz: $t for $secs s"
    flags=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1)
    [[ -n ${KEEP_GOING:-} ]] && flags+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1)
    status=0
    before=$(ls "artifacts/$t" 2>/dev/null | wc -l)
    "${isolate[@]}" cargo fuzz run --target-dir "$target_dir" "$t" "corpus/$t" "${seeds[@]}" -- \
        "${flags[@]}" >"$log" 2>&1 || status=$?
    sweep
    # The last status line: "#N ... cov: C ft: F corp: K..." (fork mode:
    # "#N: cov: C ft: F corp: K exec/s: R oom/timeout/crash: O/T/X ...").
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
    execs=${execs:-$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")}
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    found=$(( $(ls "artifacts/$t" 2>/dev/null | wc -l) - before ))
    if [[ $status -eq 0 && $found -eq 0 ]]; then
        echo "fuzz: $t: ${execs:-?} executions in $secs s ($(( ${execs:-0} / secs ))/s), coverage ${cov:-?} edges, ${ft:-?} features, corpus ${corp:-?} inputs, no failure"
    else
        echo "fuzz: $t: FAILED: ${execs:-?} executions, $found new failing input(s) (exit $status); what it found:"
        grep -A2 -E "panicked at|ERROR: AddressSanitizer|ERROR: libFuzzer|^SUMMARY" "$log" | grep -v '^ *#[0-9]' | head -40 || true
        ls -1t "artifacts/$t" 2>/dev/null | head -n "$found" | sed "s|^|fuzz: input: fuzz/artifacts/$t/|" || true
        failed+=("$t")
    fi
    rm -f "$log"
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: failures in: ${failed[*]} (reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET artifacts/TARGET/FILE)"
    exit 1
fi
