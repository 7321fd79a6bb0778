//! Costs, measured: the lock, readers, the store and the mirror.
//!
//! Every figure here comes from one run of the command given, on this
//! project's 2-vCPU build machine (an Intel Xeon VM); the output of each run
//! is in the repository's `docs/` folder. Absolute times drift by up to 2x
//! between runs on this machine, so compare the ratios within one run.
//!
//! # The lock
//!
//! Locked increments of one shared `u64`, against C, Boost.Interprocess,
//! Python and Rust alternatives measured in the same run: uncontended, a
//! lock plus an unlock costs about 20 ns, 2.5 times a bare atomic
//! increment (two atomic read-modify-writes against one, plus the poison
//! checks and the write counter), and less than a plain pthread mutex;
//! with 2 and 4 processes contending, shmstore takes 0.46 and 0.33 of
//! Boost.Interprocess's time per increment. The table is in the README and,
//! with its method and earlier runs, in `docs/comparison.md`; the programs
//! are in `compare/`.
//!
//! ## Where an uncontended lock's instructions go
//!
//! What one `lock()`, `g.value += 1` and the guard's drop execute, part by
//! part, counted exactly (instructions, not time, so other load on the
//! machine does not change them) in the timed loop of the counter example
//! (`examples/counter.rs`, the shmstore side of `compare/`'s peers run),
//! x86-64, rustc 1.95, release profile:
//!
//! ```text
//! cargo build --release --example counter
//! valgrind --tool=callgrind --dump-instr=yes --trace-children=yes \
//!     target/release/examples/counter 1 100000
//! callgrind_annotate callgrind.out.<worker pid>
//! ```
//!
//! The worker process spends 100,000 times the figure per increment in the
//! loop; the disassembly (`objdump -d`) of the instructions callgrind
//! counted 100,000 times says which part each belongs to. Before: the code
//! before the fast path was shortened; after: this one; the same command
//! and input.
//!
//! | part | before | after | what it is |
//! |---|---|---|---|
//! | the thread's identity | 4 | 3 | one thread-local load and a test (0 until first computed) |
//! | lock compare-and-swap | 4 | 3 | `lock cmpxchg` 0 -> identity |
//! | the thread's list of held locks | 13 | 13 | push on lock (6), pop on unlock (7): relock detection and forged identities |
//! | holder record (`poison_info`) | 9 | 2 | was: the cause, this thread's record and the lock's, compared; now: one thread-local load and a store |
//! | poison check | 5 | 3 | was: the cause loaded again for the guard, a test on drop; now: the load the holder record made, one test |
//! | shrunk-segment flag (`check`) | 4 | 4 | a pointer and a byte loaded, one test |
//! | panic state | 13 | 12 | `std::thread::panicking()` when locking and when dropping (as `std::sync::Mutex`), and the guard's flag |
//! | write counter | 14 | 12 | the counter read when locking, made odd by the first `DerefMut`, one more on drop: was two loads and stores more |
//! | flags (time stamps, wake-all) | 7 | 4 | one load and test on a commit |
//! | unlock compare-and-swap, sleeper and watcher check | 4 | 4 | `lock cmpxchg` identity -> 0; a sleeper (`W`) or watcher (`V`) fails it, into the cold path: no instruction of its own |
//! | which cold path | 0 | 3 | register moves that name the cold call's case |
//! | the guard's drop out of line | 29 | 0 | guard stored to the stack, call, seven registers saved and restored, fields loaded back |
//! | the increment and the loop | 5 | 5 | the user's `+= 1`, the loop counter |
//! | **total** | **111** | **68** | |
//!
//! - Both atomic read-modify-writes stay: the lock word names its holder
//!   (for dead-holder take-over), and the unlock must see the sleeper and
//!   watcher bits and whether the word is still its own (a plain-store
//!   release would need waiters that fence for the holder, with
//!   `membarrier`, and another lock word: `docs/comparison.md` says how).
//!   Two compare-and-swaps alone, with nothing else in the loop
//!   (`compare/`'s `c-cas-floor`), take 2.5 times one atomic increment
//!   (`c-atomic`) on the x86-64 VM of the README's table; the other
//!   instructions above run in their shadow and cost no measurable time.
//! - Since this table, the unlock is a swap (`xchg`) of the word for 0, and
//!   the word it gives back is compared afterwards, instead of a
//!   compare-and-swap from the identity: the same read-modify-write without
//!   the comparison inside it. Per increment, the same callgrind command
//!   counts 66 instructions against 71 for the code just before, and 15
//!   alternated runs of `counter 1 20000000` took 12.32 ns (median;
//!   12.23-12.73) against 12.92 (12.86-13.30): 5% less. In the README's
//!   run the lock takes 2.44 times `c-atomic` and 0.96 times
//!   `c-cas-floor`. Fewer instructions do not always make it faster:
//!   without the two `panicking()` checks the same loop took 4% longer (the
//!   code laid out differently), and storing the holder record and the list
//!   entry only when they change saved 1%, within the runs' spread (30
//!   alternated runs of each build). A first form of the swap, which handed
//!   a marked word back to the guard's drop instead of dealing with it in
//!   its own cold call, took 14.5 ns in the same loop.
//! - What changed: the guard's drop is small enough to be inlined where the
//!   guard dies (panics, locks released out of order, inherited guards,
//!   time-stamped or wake-all segments and marked words all go through one
//!   cold call); the poison cause is loaded once; the holder record is a
//!   store (the lock's cache line is this thread's already); the guard keeps
//!   the write counter it read when it took the lock, so beginning and
//!   committing a write store it without loading it again. No guarantee
//!   changed.
//! - The counts depend on the caller: the same loop inlined into the
//!   example's `main`, where the lock's pointers do not all fit in
//!   registers, runs 77.
//! - Telling a dead holder from a live one across PID namespaces adds no
//!   instruction here: the identity holds the process's incarnation where
//!   it held a start time (see `_design::lock`, *Who is alive*). It costs
//!   one descriptor per segment a process has open (a memfd handle lends
//!   it for sharing), about 1.4 us more per open, and 0.15 us per holder
//!   check (where the `/proc` read it replaces took 2 us).
//!
//! # Readers
//!
//! `cargo run --release --example readers_bench` measures everything below
//! in one run (about 35 s; output in `docs/measurements/2026-11-27/readers/`):
//!
//! | measured in one run | median | ratio | target |
//! |---|---|---|---|
//! | 64-byte `snapshot_into` / plain 64-byte copy into a buffer, same mapping | 1.82 / 1.40 ns | 1.30x | within 2x |
//! | 64-byte `snapshot()` (by value) / plain `ptr::read` | 3.25 / 1.45 ns | 2.24x | within 2x: not met by value, see below |
//! | 64-byte `snapshot()` / `mmap-sync` 2.0.4 read of the same struct | 3.25 / 19.09 ns | 0.17x | no slower |
//! | 4 KiB `snapshot_into` / 4 KiB memcpy | 33.6 / 33.5 ns | 1.00x | within 2x |
//! | 4 KiB `snapshot()` (by value) / `ptr::read` | 84.1 / 33.9 ns | 2.48x | |
//! | writer commits/s with 4 readers snapshotting in a loop / with none | 2.47M / 54.4M | 5% (11% per writer CPU-second; 7% with readers at nice 19) | at least 80%: not met |
//! | same, readers using `lock()` instead | 9.68M / 54.4M | 18% (44% per CPU-second) | |
//! | same, 4 readers taking one snapshot every 10 us | 18.5M / 54.4M | 34% (80% per CPU-second) | |
//! | wake-up: commit in one process to `wait_for_change` returning in another | 23.9 us median, 221 us p99 | 1.18x a raw futex wake (20.3 / 194 us) | reported |
//! | same, read-only handle on a `wake_read_only` segment | 26.8 us median, 216 us p99 | 1.32x | reported |
//! | lock + write + unlock, nobody watching / a watcher asleep / `wake_read_only` | 20.4 / 22.0 / 256 ns | | |

//! - A by-value `snapshot()` pays for moving its result out (a second copy
//!   for 64 bytes, two more for 4 KiB); `snapshot_into` writes straight into
//!   the caller's value, so use it for large values and hot loops.
//! - Readers never make the writer *wait* (it spends 0% of its time in the
//!   kernel and never takes a lock readers hold), but readers that copy the
//!   value in a tight loop make every commit move the changed cache lines
//!   between cores, which costs the writer about 10x per commit at its full
//!   rate of 50 million commits a second. No shared-memory design avoids
//!   that: whatever a reader reads the writer must take back to change it.
//!   Readers that pace themselves, or sleep in `wait_for_change`, cost the
//!   writer little.
//! - Wake-up latency is the kernel's: the same as a raw futex wake measured
//!   alongside, most of it the time to wake an idle vCPU.
//!
//! Async waiting (`changed(seen).await`), from `cargo run --release --example
//! async_bench` (output in `docs/measurements/2026-12-08/async/bench.txt`),
//! one run on a quiet 2-vCPU VM, every waiter in the same run, taking turns
//! on the commits of one writer process that commits every 700 us on its
//! own clock:
//!
//! | commit in another process to the waiter running again | median | p99 | ratio to the blocking wait | ratio to the relay |
//! |---|---|---|---|---|
//! | `wait_for_change` on a thread (blocking) | 13.1 us | 38.5 us | 1x | 0.43x |
//! | relay: a plain thread in `wait_for_change` unparks the waiting thread | 30.7 us | 170 us | 2.34x | 1x |
//! | `spawn_blocking` of `wait_for_change`, awaited in a tokio task (the way before `changed`) | 73.8 us | 228 us | 5.62x | 2.40x |
//! | `changed().await` under `futures::executor::block_on` | 36.9 us | 156 us | 2.81x | 1.20x |
//! | `changed().await` under tokio's current-thread runtime | 53.9 us | 169 us | 4.11x | 1.75x |
//! | `changed().await` in a task of tokio's multi-thread runtime | 74.1 us | 259 us | 5.64x | 2.41x |
//!
//! | also measured in that run | |
//! |---|---|
//! | 10,000 tasks awaiting 10,000 memfd segments, one process | 79 background threads (127 segments each), +6.7 MiB RSS for tasks and registrations; all resolved 34 ms after the first of 10,000 commits |
//! | commit (lock, write, unlock): nobody waiting / 100 tasks awaiting every change | 13 / 22 ns |
//!
//! - An awaited commit takes two wake-ups where the blocking wait takes one:
//!   the kernel wakes the background thread asleep in `futex_waitv`, which
//!   wakes the task's `Waker`, and the executor's thread then runs the task.
//!   The relay row is that floor with nothing of shmstore's around it: two
//!   plain threads, one blocked in `wait_for_change` that unparks the other.
//!   On this VM it takes 2.1 to 2.4x the blocking wait (three runs), because
//!   each wake-up that lands on an idle vCPU costs about as much as the
//!   first. `block_on` runs 1.2x the relay; tokio's runtimes park their
//!   threads at a higher cost (the same for `spawn_blocking`, whose second
//!   wake-up is the same). The ratios move between runs (1.7 to 3.0x for
//!   `block_on` in runs on this VM); the ratio to the relay moves less. Where latency matters
//!   more than threads, keep a thread in the blocking `wait_for_change`.
//! - Pending futures cost a registration each (about 600 bytes with a tokio
//!   task) and one background thread per 127 awaited counters, however many
//!   futures await each (`futex_waitv` sleeps on at most 128 words; one is
//!   the thread's own); threads start on first use and end after 10 seconds
//!   with nothing to serve. Without `futex_waitv` (Linux before 5.16), one
//!   thread per awaited counter.
//! - A commit wakes the futex only when someone marked the lock word since
//!   the last commit, so a writer committing faster than the awaiting tasks
//!   come back pays for few wake-ups.
//!
//! # The store
//!
//! `compare/store.sh` (output in `docs/measurements/2026-12-08/store/`;
//! 2-vCPU VM with nothing else running; ns per lookup of a random key,
//! medians of 7 batches of 200,000, Boost.Interprocess's `find` and a std
//! `HashMap` in the same run):
//!
//! | what | 10 keys | 1,000 keys | 100,000 keys |
//! |---|---|---|---|
//! | Boost `managed_shared_memory::find<uint64_t>` | 66.5 | 190 | 693 |
//! | `contains` | 15.9 (0.24x Boost) | 21.4 (0.11x) | 268 (0.39x) |
//! | `get::<u64>` + drop of the handle | 243 (3.66x) | 244 (1.28x) | 955 (1.38x) |
//! | std `HashMap<String, u64>::get` | 14.2 | 21.2 | 136 |
//!
//! The VM was slower that day than in the run of 2026-12-07
//! (`docs/measurements/2026-12-07/store-grows/`: Boost 55.7 / 157 / 506,
//! `get` + drop 214 / 224 / 585), most at 100,000 keys; the build before
//! `get` took no lock gave `get` + drop 264 / 282 / 974 ns against 243 /
//! 251 / 976 for this one, run in turn three times each (`store_bench
//! --lookups`).
//!
//! The same run before stores could grow (`docs/measurements/2026-12-07/store/`)
//! gave `contains` 11.5 / 17.1 / 207 ns and `get` + drop 203 / 210 / 606 ns,
//! with std's `HashMap` at 12.2 / 18.1 / 111 ns: the check of the heap's
//! size that growth adds is about 40 instructions of `contains` (see below).
//!
//! - `get` does not grow with the number of keys (the key index is a hash
//!   table, 1.1 probes on average); what grows at 100,000 keys is cache and
//!   TLB misses in a 19 MB segment, as for the std `HashMap` beside it.
//! - An entry locks exactly as a `Shared<T>` does: lock + increment +
//!   unlock 19.9 ns for an entry against 20.2 ns for a `Shared<u64>` in its
//!   own segment (0.98), `snapshot()` 1.84 against 1.79 ns (1.03), in one
//!   run of `store_bench` (`docs/measurements/2026-11-27/store/bench.txt`).
//! - Most of a `get` is holding the entry (a sequentially consistent fence
//!   to name it as this handle's pending hold, and one more when the drop
//!   lets go: see [holds without the
//!   lock](crate::_design::store#holds-without-the-lock)) and making and
//!   freeing the handle (two allocations, a map of held entries behind a
//!   mutex), yet it was 19 times cheaper than opening a segment of its own
//!   already when it cost 367 ns (against 6.9 µs, same run). Keep handles
//!   rather than looking entries up for every use.
//! - A `get` and its drop take no lock in the usual case, so they do not
//!   wait for other processes' inserts, removals and listings, nor for
//!   each other: with 4 processes doing `get` + drop on 2 vCPUs, 13.0
//!   million in 5 s, against 3.0 million when each took the directory lock
//!   twice; with one process getting while another lists 100,000 entries
//!   again and again, no `get` took over 1 ms (longest 459 µs), against 21
//!   over 1 ms and a longest of 15.6 ms before (`cargo run --release
//!   --example load -- 10 1 list`, and `-- 10 4 list`: both builds in
//!   `docs/measurements/2026-12-08/load-list/`).
//! - A removal looks at every store handle open (its pending hold and its
//!   hold list) to see whether anyone holds the entry: about 9 ns per
//!   handle. An insert + remove took 0.88 µs with one store handle open and
//!   37 µs with 4,096 (0.83 and 0.88 µs before `get` took no lock; `cargo
//!   run --release --example store_handles`,
//!   `docs/measurements/2026-12-08/handles/`).
//! - Lookups do less than they did (counted in instructions, which
//!   the machine's load does not change: `compare/lookup_parts.py`, see
//!   `docs/store-lookup.md`): `contains` takes no lock, allocates nothing
//!   and copies nothing out of the entry (about 2,100 instructions down to
//!   330-390, a block's fields bounds-checked once per probe rather than
//!   once each); `get` + drop checks the type from the entry's header alone
//!   and makes its handle without formatting names (about 5,950 down to
//!   about 2,500, two allocations instead of ten). Keys are hashed 8 bytes
//!   at a time, and a bucket carries 32 bits of its key's hash, so a probe
//!   past other keys reads no entry: a hit reads the bucket's line and the
//!   entry's first two. What is left of `get` + drop is the hold (the
//!   fences above), the handle-side bookkeeping and making the handle.
//! - A `get` whose store handle does not hold the entry yet appends it to
//!   the handle's hold list (a drop swaps it out again): a few stores, the
//!   same with 1 or 4,096 store handles open (`get` + drop 238.7 and 234.9
//!   ns). Recovering the holds of killed processes costs one presence
//!   query per slot in use and a step per entry the dead handles held: 1.8
//!   ms for 4,095 handles of 16 killed processes, beside 69 µs for the
//!   heap walk `free_bytes` makes anyway. `cargo run --release --example
//!   store_handles` prints both (`docs/measurements/2026-12-08/handles/`).
//! - Growth costs the insert that triggers it, under the directory lock: a
//!   `posix_fallocate` of the new room (tmpfs allocates its pages), a walk
//!   of the heap to find its last block, and, when the key index fills, a
//!   move to a table four times larger (a pass over the buckets); the heap
//!   doubles each time, so 100,000 entries from 64 KiB take about 9
//!   growths and 4 table moves. `cargo run --release --example
//!   store_growth` measures it (one run:
//!   `docs/measurements/2026-12-07/growth/`): 100,000 inserts into a store
//!   created at 64 KiB took 98 ms, into one created big enough 84 ms; the
//!   slowest insert, the one that grew the store to 32 MiB, took 7.4 ms;
//!   lookups in the grown store cost 0.95x (`contains`) and 0.87x (`get` +
//!   drop) of those in the big one. Lookups pay a load of the table in
//!   use (and a look at its block's header once the table moved into the
//!   heap), and a `get` a check of the heap's size when it takes the
//!   directory lock: counted by `compare/lookup_parts.py` at 10 / 100,000
//!   keys, `contains` takes 378 / 432 instructions (334 / 391 before
//!   stores grew) and `get` + drop 2,925 / 3,003 (2,829 / 2,903).
//! - `entries()` reads about 0.3 µs per entry. It used to hold the
//!   directory lock for the whole listing, about 35 ms at 100,000 entries,
//!   blocking `get`, `insert` and `remove` in every process meanwhile; it
//!   now holds it in pieces of at most 1,024 blocks or 250 µs (see
//!   [listing in pieces](crate::_design::store#listing-in-pieces)); the
//!   load example's `list` scenario times every `get` during listings. With
//!   one getting process while another lists 100,000 entries again and
//!   again (`load 10 1 list`, so that neither waits for a CPU): 99.99% of
//!   6.8 million gets took under 255 µs (under 63 µs with no listing), 4
//!   took over 1 ms and 1 over 2 ms, 6.7 ms: the pieces bound the work
//!   done under the lock, not how long the scheduler may keep a process
//!   that holds it off its CPU
//!   (`docs/measurements/2026-12-07/store/load-list.txt`). Since `get`
//!   takes no lock, the same run gives 6.9 million gets while listing, none
//!   over 1 ms (see above).
//!
//! # The mirror
//!
//! `cargo run --release --features mirror --example mirror_bench -- 5000`,
//! loopback Redis 7.0, on a machine busy with other builds (output in
//! `docs/measurements/2026-11-27/mirror.txt`):
//!
//! | | 64-byte value | 4 KiB value |
//! |---|---|---|
//! | commit on host A to `wait_for_change` returning on host B, median / p99 | 34.5-37.7 / 77-82 µs | 79-91 / 109-1,651 µs |
//! | bare Redis SET+PUBLISH to a subscriber, same run, median / p99 | 14.3-16.9 / 31-34 µs | 23-26 / 42-54 µs |
//! | ratio, median | 2.0-2.6x | 3.0-3.9x |
//! | updates one publisher sustains under a writer that never pauses | 6,400-10,000/s | 2,300-6,500/s |
//!
//! Throughput moves with the machine's load (28,000/s and 12,000/s in a
//! quieter run). In the benchmark both "hosts" share one /dev/shm; in the
//! tests they do not.
//!
//! A whole store of 10,000 entries (`--example mirror_store_bench`, quiet
//! 2-vCPU VM, `docs/measurements/2026-12-07/mirror/store.txt`): one entry
//! (32 value bytes) changing sends that entry only, 360 bytes to Redis and
//! 267 from it per change; commit to `wait_for_change` on the other store
//! 2.6 ms median, 3.5 ms p99 (the publisher looks at its entries'
//! generations every 2 ms); the first full copy took 165 ms. Looking costs:
//! 13% of one CPU for a publisher and a subscriber of 10,000 entries that
//! nothing changes.
//!
//! After a Sentinel failover (`--example mirror_failover`, ten failovers,
//! default options, `docs/measurements/2026-12-07/mirror/failover.txt`): a
//! subscriber holds the value written while no primary existed 898 ms
//! (median; worst 953 ms) after the replica became the primary, which is
//! when the sentinels first name it to clients (the mirror follows their
//! `+switch-master` announcement within the 5 ms the example can tell).
