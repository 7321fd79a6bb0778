//! Reliability: how the guarantees are tested, in short.
//!
//! The full report, with every figure and the command that produced it, is
//! `docs/reliability.md` in the repository; what the model check covers and
//! abstracts away is `docs/reliability-model.md`. The short version of every
//! test runs in CI; the long versions are run by hand.
//!
//! - **Kill storms**: six worker processes update shared values while the
//!   test SIGKILLs a random one every 0-20 ms and starts another; 10,024
//!   kills in the long run, on POSIX and System V values and store entries.
//!   Workers record each increment after releasing the lock, so the final
//!   count is checked exactly: no increment was lost or counted twice, torn
//!   values were only ever found behind poisoned locks, and every poisoned
//!   lock was recovered by the next locker. 14.6 million store inserts,
//!   removes and rewrites under the storm left a store that `check()` found
//!   consistent, with all space back; every name left behind by a kill
//!   during `create` or `open_or_create` opened as a valid value or was
//!   re-initialised.
//! - **Hostile bytes**: property tests write random, plausible or
//!   deliberately confusing bytes (a live thread's identity, the very
//!   calling thread's) over every region of real segments and stores, on
//!   POSIX, file and System V backends, then open, lock, snapshot, wait,
//!   create, remove, check and inspect under a watchdog, asserting exact
//!   results: 60,000 cases in the long run without a panic, hang or crash.
//!   Fuzzing (cargo-fuzz with AddressSanitizer) of the segment, store and
//!   schema parsers adds millions of inputs. The two found four bugs in the
//!   store, all fixed and kept as regression tests.
//! - **Shrunk segments and full file systems**: segments shrunk to one page
//!   or to nothing under lock holders, readers and store users, and a full
//!   tmpfs or ext4 disk at creation: each process lives, and gets
//!   `Error::Truncated`, a poisoned lock or `Error::NoSpace` as documented.
//! - **Other users**: as root, with children running as another user:
//!   another user's private segment, a world-writable one, a squatted name
//!   and read-only access give exactly the documented errors.
//! - **Load and fairness**: sixteen processes lock one value, then their own
//!   store entries, as fast as they can, for 30 s per scenario: every count
//!   is exact, each process got at least 0.92 of the acquisitions its share
//!   of the CPU time would give it, resident memory grew by at most 12 kB
//!   per process, and descriptors and mappings did not change.
//! - **Model check**: an explicit-state checker explores every
//!   interleaving of the atomic steps of the lock word protocol and the
//!   seqlock for 2-3 processes (up to 5 million states), with a process
//!   allowed to die at any step, and checks mutual exclusion, poisoning
//!   exactly on take-over from a dead holder, untorn snapshots, lost
//!   wake-ups and progress. Every modelled step quotes the source statement
//!   it models, and a test fails when that statement changes. It found
//!   three rare interleavings: two are fixed, and the third (a watcher
//!   missing a wake) is bounded by the 50 ms nap of
//!   [`wait_for_change`](crate::Shared::wait_for_change). A second checker
//!   does the same for store entries held and let go without the directory
//!   lock (see [the store](super::store#holds-without-the-lock)): no getter
//!   holds a freed block, no removed entry is left unfreed, and seven
//!   seeded shortcuts are found.
//! - **Sanitizers**: the tests of the `unsafe` code run under
//!   AddressSanitizer and LeakSanitizer in CI, child processes included,
//!   with no report. Miri does not apply: it has no shared mappings, `kill`
//!   or inline assembly.
