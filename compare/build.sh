#!/usr/bin/env bash
# usage: compare/build.sh [counter | store]
#
# Builds every program of the comparison (see README.md) into
# ${COMPARE_OUT:-<repository>/target/compare}/bin, and shmstore's `counter`
# and `store_bench` examples in release mode; `counter` builds only what
# run.sh runs, `store` only what store.sh runs (boost-find and store_bench).
# Installs the Debian packages it needs when they are missing (apt-get, as
# root or through sudo). Safe to run again: only what changed is rebuilt.
set -Eeuo pipefail
trap 'echo "build.sh: FAILED (line $LINENO: $BASH_COMMAND)" >&2' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
bin=$(realpath -m "${COMPARE_OUT:-$repo/target/compare}")/bin
CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")
export CARGO_TARGET_DIR

say() { echo "build.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

what=${1:-all}
case $what in
all | counter | store) ;;
*) die "unknown set '$what' (usage: build.sh [counter | store])" ;;
esac
# Whether this run builds the programs of SET (counter or store).
wanted() { [[ $what == all || $what == "$1" ]]; }

# The Debian packages: the C and C++ compilers, Boost's headers
# (Boost.Interprocess), Python 3 and `timeout` (coreutils, for run.sh).
PACKAGES=(gcc g++ libboost-dev python3 coreutils)

missing=()
if command -v dpkg-query >/dev/null; then
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
else
    say "no dpkg here (not Debian?): assuming ${PACKAGES[*]} or their equivalents are installed"
fi
if ((${#missing[@]})); then
    sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "missing Debian packages: ${missing[*]}; install them as root: apt-get install ${missing[*]}"
        sudo=(sudo)
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
    "${sudo[@]}" apt-get install -y -q "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
fi
for tool in gcc g++ python3 timeout; do
    command -v "$tool" >/dev/null || die "$tool not found on PATH"
done
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) for rust-raw-sync and shmstore"

mkdir -p "$bin"

# Runs "$@" only when $out is missing or older than one of the sources.
# usage: build OUT SOURCE... -- COMMAND...
build() {
    local out=$1 stale=0
    shift
    [[ -e $out ]] || stale=1
    while [[ $1 != -- ]]; do
        if [[ $1 -nt $out ]]; then stale=1; fi
        shift
    done
    shift
    if ((stale)); then
        say "building $(basename "$out")"
        rm -f "$out"
        "$@" || die "building $(basename "$out") failed (see above)"
    fi
}

if wanted store; then
    build "$bin/boost-find" "$here/cpp/boost_find.cpp" "$here/c/harness.h" -- \
        g++ -O2 -Wall -Wextra -std=c++17 -pthread -o "$bin/boost-find" "$here/cpp/boost_find.cpp"
    say "building shmstore's store_bench example (cargo, release)"
    (cd "$repo" && cargo build -q --release --example store_bench) || die "building shmstore's store_bench example failed (see above)"
    cp "$CARGO_TARGET_DIR/release/examples/store_bench" "$bin/shmstore-store-bench"
fi
if ! wanted counter; then
    say "done: $bin"
    exit 0
fi

CFLAGS=(-O2 -Wall -Wextra -std=gnu11 -pthread)
c=$here/c
build "$bin/c-atomic" "$c/atomic_counter.c" "$c/harness.h" -- \
    gcc "${CFLAGS[@]}" -o "$bin/c-atomic" "$c/atomic_counter.c"
build "$bin/c-cas-floor" "$c/cas_floor.c" "$c/harness.h" -- \
    gcc "${CFLAGS[@]}" -o "$bin/c-cas-floor" "$c/cas_floor.c"
# name ROBUST SYSV
for variant in "c-pthread-plain 0 0" "c-pthread-robust 1 0" "c-sysv-pthread 1 1"; do
    read -r name robust sysv <<<"$variant"
    build "$bin/$name" "$c/pthread_counter.c" "$c/harness.h" "$here/build.sh" -- \
        gcc "${CFLAGS[@]}" -DPEER="\"$name\"" -DROBUST="$robust" -DSYSV="$sysv" \
        -o "$bin/$name" "$c/pthread_counter.c"
done
build "$bin/boost-interprocess" "$here/cpp/boost_counter.cpp" "$c/harness.h" -- \
    g++ -O2 -Wall -Wextra -std=c++17 -pthread -o "$bin/boost-interprocess" "$here/cpp/boost_counter.cpp"
build "$bin/python-mp-value" "$here/python/mp_value.py" -- \
    install -m 755 "$here/python/mp_value.py" "$bin/python-mp-value"

# Cargo knows what is up to date. rust-raw-sync is its own workspace with its
# own Cargo.lock; panic=unwind (cargo's default, as shmstore's counter) and,
# as an extra, panic=abort.
say "building rust-raw-sync, rust-raw-sync-abort (cargo)"
(cd "$here/rust-raw-sync" &&
    cargo build -q --locked --release &&
    cargo build -q --locked --profile release-abort) || die "building rust-raw-sync failed (see above)"
cp "$CARGO_TARGET_DIR/release/rust-raw-sync" "$bin/rust-raw-sync"
cp "$CARGO_TARGET_DIR/release-abort/rust-raw-sync" "$bin/rust-raw-sync-abort"

say "building shmstore's counter example (cargo, release)"
(cd "$repo" && cargo build -q --release --example counter) || die "building shmstore's counter example failed (see above)"
cp "$CARGO_TARGET_DIR/release/examples/counter" "$bin/shmstore-counter"

say "done: $bin"
