//! Memory ordering: every atomic and fence, and why each is right on ARM.
//!
//! x86 keeps loads in order and stores in order (total store order), so
//! code whose atomics are all relaxed often works there by luck. ARM,
//! POWER and RISC-V do not: a load may be served before an earlier load
//! to another address, and stores may become visible to other CPUs in
//! another order than they were made. Only the orderings the code asks for
//! (acquire, release, fences) hold there. This note is the review of those
//! orderings under the Rust (C++20) memory model, made when aarch64 Linux
//! became a tested target: what each atomic operation publishes or
//! observes, which operation it pairs with, and what was changed.
//!
//! Reviewed: the lock (`src/lock/`: `mod.rs`, `held.rs`, `guard.rs`,
//! `owner.rs`, `slot.rs`, `notify.rs`, `seqlock.rs`), the handles
//! (`shared.rs`, `reader.rs`, `atomic.rs`), the store (`src/store/`:
//! `mod.rs`, `reader.rs`, `heap.rs`, `migrate.rs`), segment creation and
//! publication (`src/segment/`: `init.rs`, `publish.rs`, `sysv.rs`, the
//! header's `state`), and `src/sys/racy.rs` and `src/sys/linux/futex.rs`.
//!
//! A word on the notation: "load + fence" is a relaxed load followed by
//! `fence(Acquire)`. It is an acquire load in effect, and the form the
//! crate uses wherever the memory may be a read-only mapping, on which the
//! standard library defines only relaxed atomic loads.
//!
//! # The lock word
//!
//! | Operation | Ordering | What it does for ordering |
//! |---|---|---|
//! | Taking the lock: the compare-exchange of `acquire`, `acquire_until`, `try_acquire`, the slow path and `take_over` | Acquire on success, Relaxed on failure | Takes the previous holder's writes (value, counter, poison record). A failed exchange only decides whether to retry, sleep or check the holder's liveness: nothing read under its value. |
//! | Releasing: the swap of `release_swap` | Release | Publishes everything the holder wrote, the counter's commit and the poison record included, to the next holder. |
//! | Putting back a word that was not the holder's (`release_marked`) | Relaxed compare-exchange from 0 | Restores what a peer wrote; publishes nothing of the holder's. |
//! | Setting `W` before sleeping | Relaxed | Needs no ordering with other memory: the releasing swap reads the word's latest value (a read-modify-write always does), so it sees `W` and wakes; the kernel's futex compares the word before sleeping. |
//! | `sleepers` count | SeqCst | Stronger than needed. Only decides whether a new holder keeps `W` set for others; a sleeper's increment is visible before it sleeps (the futex call orders it), and every sleep lasts at most 50 ms anyway. |
//! | `V` mark (`mark_watched`) | Acquire read-modify-write | Made before the committing unlock, the unlock's swap sees it and wakes; made after, it reads the unlock's value (or a later locker's, which continues the unlock's release sequence), so it synchronises with the unlock and the watcher's next load of the counter sees the commit. |
//! | `V` put back by an unlock that committed nothing (`release_marked`, then the counter in `wake_watchers`) | `mark_watched`'s Acquire read-modify-write, then a relaxed load of the counter | The swap cleared the mark; a holder that took the lock and committed before the mark was back did not see it. Such a holder's release comes before the mark in the word's order, so the Acquire synchronises with it and the counter load after it sees its commit: the watchers are woken when the counter moved since the lock was taken. A holder still in the lock when the mark goes back finds it at its own unlock. |
//! | Poison record (`record`, `restore_poison`) | `holder`, `poisoned_at` Relaxed, then the cause Release | Readers load the cause (load + fence) before the rest (`is_poisoned`, `raw_poison`, `poison_cause`), so a cause seen comes with its record. It is written by the holder before its unlock, which publishes it too. |
//! | `clear_poison` | Release | A store of 0; nothing depends on it but the flag. |
//! | The guard's poison check (`note_holder`, on every acquire) | Relaxed load, no fence | Read right after the acquiring exchange, which synchronises with the previous holder's release: every cause recorded under the lock (by a panicking holder or a take-over, both holders then) happens before it, so coherence makes the load see it. The fence of `is_poisoned` ordered only later loads of the record, which the guard does not read; `poison_info` and `recovers` read the cause again with load + fence. A concurrent `clear_poison` may be seen or not, as before. **Changed**: see below. |
//! | `holder` (`note_holder`) | Relaxed | Written under the lock (now on every acquire of an unpoisoned lock), read under it or after a poison cause is acquired. |
//! | Reads for diagnosis (`is_locked`, `holder_tid`, `holder`, `held_by_me`) | Relaxed | Momentary answers; where one decides something, the check is ordered as described below. |
//!
//! A holder that dies does not release. What it wrote before dying (the
//! odd counter, the `holder` record) reaches the process that takes over
//! through the kernel, which tore the holder down and told of its death
//! (the `/proc` reads behind the liveness check): those are system calls
//! with the kernel's own locks, not atomics the memory model describes.
//! If the `holder` record read at take-over is stale, its thread id does
//! not match the lock word's and the poison record names the thread only,
//! as documented; the adopted write is found by the counter, which the
//! dead holder had made odd long before its death was detected.
//!
//! # The write counter (seqlock)
//!
//! | Operation | Ordering | Pairs with |
//! |---|---|---|
//! | `begin_write`: the odd counter (the kept one plus one) | Relaxed store, then `fence(Release)` | The reader's `fence(Acquire)` before its second load: a reader whose copy saw any byte stored after the fence sees the odd (or a later) counter then, and throws the copy away. Without the fence the value's stores could become visible before the odd counter. |
//! | `end_write` (and its copy in `release_plain` for segments without flags): the even counter | Release store | The reader's first load + fence: a reader that starts from the new counter sees the whole value it publishes. |
//! | A snapshot (`try_read`, `copy_quiet`) | load + fence, volatile copy, `fence(Acquire)`, relaxed load | The fence after the copy orders the copy's loads before the second counter load, as the writer's release fence requires. |
//! | `seq_after_reads` | `fence(Acquire)`, then load + fence | For a check made after reading something the counter guards: an entry's value, then the directory's counter ([`StoreReader`](crate::StoreReader) entries), or the lock word, then the counter (below). |
//! | The dead-writer check in `read_slow` | counter (load + fence), lock word (relaxed), counter again after a fence | The unlock's release exchange: a lock word found free by that unlock makes its commit visible to the second counter load, so a writer that committed just then is not taken for a dead one. **Changed**: see below. |
//! | `wait` (the watcher's sleep) | generation (load + fence), `V` mark (acquire), counter (load + fence), futex wait | The committing unlock (release) or its futex wake. A woken watcher loads the counter again with acquire before it returns. |
//! | Wake-all commits (read-only watchers) | Release commit, then futex wake | The kernel's futex: a waiter's in-kernel comparison and a waker's wake are ordered by the futex's hash-bucket lock, so a sleeper either sees the new counter or is woken. Its re-check is an acquire load. |
//! | `changed` time stamp | Relaxed | A figure for tools; it may be one commit behind the generation read beside it. |
//! | `seq_held` in a new guard | Relaxed | Read by the new holder, after the lock's acquire, which shows the last holder's commit (made before its release). The guard keeps the value: only the holder writes the counter while the lock is held, so `begin_write` stores it plus one and the commit stores that plus one, the values the loads they replace would have given. Any value a peer that ignores the lock wrote meanwhile is overwritten, as it was before. |
//! | `reset` (new segment or entry) | Relaxed | Published by the segment's READY release or the directory's commit. |
//!
//! One gap remains that no ordering closes: the copy reads the value with
//! volatile loads while a writer may store to it, which the Rust memory
//! model calls a data race. The targets this crate builds for compile an
//! aligned volatile load of up to 8 bytes (16 on x86-64) to one plain load,
//! LLVM moves no memory access across a fence, and it neither invents nor
//! merges volatile loads; this is what every seqlock in Rust relies on
//! today (`src/sys/racy.rs` has the details). A torn copy is a valid value
//! and is thrown away.
//!
//! # Segments
//!
//! | Operation | Ordering | Pairs with |
//! |---|---|---|
//! | Header: the magic words, then the rest (`write_header`) | Relaxed stores, `fence(Release)` between them | An opener of a System V segment not yet ready loads the rest first, then `fence(Acquire)`, then the magic: one that sees any byte of the header sees the magic, and never takes a segment being made for a foreign one. |
//! | State INITIALISING | Release store | The same openers; they read the header only when it says so. |
//! | Value, schema, counter, then state READY (`write_body`) | Plain and relaxed stores, then a Release store | The opener's state load + fence (System V, `sysv.rs`); every handle is made after it. |
//! | Descriptor-backed segments (POSIX, file, memfd) | Published by `link`, `rename` or descriptor passing | The creator writes everything, READY included, before the system call that makes the name or the descriptor reachable; the kernel's locks on that path order those stores before any opener's reads. |
//! | Untyped readers (`inspect`, the command, the mirror): `header::read_mapped` | A racy copy of the header, then its state trusted | An acquire fence right after the copy orders every later read (schema, value, counters) after the READY it saw, whatever the caller does next. |
//!
//! # The store
//!
//! Everything in the directory and heap is written under the directory
//! lock with relaxed atomics, and read under it by [`Store`](crate::Store)
//! handles (the lock orders them). [`StoreReader`](crate::StoreReader)
//! reads them without the lock, between two loads of the directory's
//! counter (`copy_quiet`, the seqlock above): a look-up or listing no
//! change overlapped sees the directory as its last commit left it.
//! [`Store::contains`](crate::Store::contains) looks up the same way, with
//! the same function (`store::reader::read_quiet`), and takes the lock only
//! after repeated overlaps. A bucket (block index and tag) is one `u64`,
//! stored and loaded whole (relaxed): a read never pairs one bucket's index
//! with another's tag, and a torn combination of buckets is thrown away
//! with the read. A probe reads a block's header and key through one
//! checked slice of `u64` atomics, and its 32-bit fields (state, lengths)
//! through the same bytes as `u32` atomics (`Mapping::halves`): each field
//! is loaded at the one size it is always stored at, so no access mixes
//! sizes on the same bytes; the orderings are those above (relaxed loads
//! between the counter's two loads and the fence after the copy), which
//! the first read of `Store::contains` now makes inline rather than
//! through a call.
//!
//! | Operation | Ordering | Pairs with |
//! |---|---|---|
//! | A change of the directory (insert, remove, replace, rebuild) | `begin_write` / commit of the directory's counter | The reader's `copy_quiet`. |
//! | A block's size: split, merge, rebuild, format (`set_size`) | Release store | The walk's `fence(Acquire)` after each size it loads: a walk that sees a new size sees the header it leads to. **Changed**: see below. |
//! | The format word (`format`, `formatted`) | Release stores ("formatting" first, then FORMATTED), load + fence | A reader that sees the heap formatted sees the formatted heap. **Changed**. |
//! | An entry turning LIVE (`fill`, `replace`) | Release store | Stronger than needed: the directory's counter orders it. |
//! | A growth's commit: `M_HEAP` (`Heap::grow`) | Release store, after the new block's header | Inside a change of the directory: a reader without the lock ([`StoreReader`](crate::StoreReader)) loads `M_HEAP` (relaxed) between the counter's two loads, so a quiet read sees the heap of its moment, and one that overlapped the growth is thrown away; a `Store` handle loads it once when it takes the lock and keeps it (only the holder changes it); `Store::contains` does not load it, and bounds its probe by what its process knows the object holds (below), which a quiet read validates as any. The release orders the new block's header (and the `posix_fallocate` before it) before the size for any reader that loads the size and acquires (a lock or the counter's fence). **New**. |
//! | A table move's commit: `M_TABLE` (`Heap::rehash`) | Release store, after the new table's buckets and its block's state | As for `M_HEAP`: loaded relaxed once per probe, inside the counter's two loads or under the lock. **New**. |
//! | What a process knows its object holds (`Room`) | Relaxed `fetch_max` | This process's own bound, raised after an `fstat`; a stale value costs one more `fstat`, never a read past the object (it only ever grows to what `fstat` showed). **New**. |
//! | Handle table and its mark; a hold list's moves, owner and room | Relaxed, under the directory lock | Read without the lock only as figures, or by the list's own process; a hold list is a heap block, shaped by `set_size` as any. |
//! | A hold without the lock (`Heap::begin_hold`): the pending hold, then the directory's counter | Relaxed store, `fence(SeqCst)`, then the counter's acquire load | The removal's (or rebuild's) `fence(SeqCst)` in `Heap::named` (and `named_holds`), after the odd counter and REMOVED and before its loads of pending holds: either the getter's load sees the change, or the scan sees the pending hold. **New**. |
//! | The hold completed (`finish_hold`): the list entry, then the length, then the pending hold cleared | Relaxed, Release, Release | The scan loads the pending hold (acquire), then the length (acquire), then the entries: a pending hold seen cleared shows the entry in the list. **New**. |
//! | Letting go (`let_go_quiet`) and giving up (`abandon`): the list's length (or the pending hold marked letting go), then the entry's state | Release (relaxed), `fence(SeqCst)`, then a relaxed load | The removal's REMOVED store, `fence(SeqCst)`, then its scan: either the removal's scan sees the entry gone from the list (and frees it) or the letting go sees REMOVED (and settles it under the lock). **New**. |
//! | A migration's `supersede` of the old entry | A poison record (above), under the old entry's lock | Made before the switch; the old entry's next holder or snapshot sees it through that lock's release or the cause's acquire. |
//! | The stalled-change check (`left_mid_change`) | counter, lock word, `seq_after_reads` | As the snapshot's dead-writer check. **Changed**. |
//! | An entry's membership check (read-only entry handles) | `seq_after_reads` after the value's copy | A change that removed the entry and gave its block to another made the counter odd (release fence) before storing to the block: a copy that saw any such byte sees the counter moved. |
//! | A handle's `confirmed` generation and `gone` flag | Relaxed | This process's own cache; a stale answer costs one more look-up. |
//!
//! # Handles and waiting
//!
//! [`Shared`](crate::Shared) and [`SharedReader`](crate::SharedReader) add
//! no atomics of their own: they go through a slot (the lock and counter
//! above). After a clean copy, a snapshot checks the poison cause and the
//! segment's cut flag; the fences of the copy order those checks after it,
//! and the cut flag's acquire load pairs with the SIGBUS handler's release
//! store. [`SharedAtomic`](crate::SharedAtomic) hands out the user's own
//! atomics: the orderings on them are the user's; the crate's part is the
//! initial value, published with the segment's READY.
//!
//! Async waits (`notify.rs`) keep their registry under a mutex; a
//! background thread is poked through a private futex word (release
//! increment, acquire load) and reads counters with acquire, marking `V`
//! before its last load as `wait` does.
//!
//! `held.rs` (the thread's list of held locks), `owner.rs` (liveness from
//! `/proc`), `guard.rs` and `slot.rs` call the operations above and add
//! none of their own to shared memory. The counters behind temporary
//! names (`publish.rs`) are relaxed: they only need to be unique within
//! the process. `sys/futex.rs` has no atomics: it relies on the kernel
//! comparing the word under the futex's hash-bucket lock. `sys/racy.rs`
//! has no ordering of its own: its callers put the fences around it.
//!
//! # What was changed, and why
//!
//! | Where | Was | Now | What a user could have seen on ARM |
//! |---|---|---|---|
//! | `Versions::read_slow` (snapshots waiting behind a write) | second counter load + fence after the relaxed lock-word load | `seq_after_reads`: the fence first | A snapshot poisoned (an "interrupted" write) although the writer was alive and had just committed. |
//! | `store::reader` `left_mid_change` | the same | the same fix | A read-only look-up or listing failing at once with "the directory did not stop changing, or a process died changing it". |
//! | `store::heap`: block sizes, the walk, the format word | relaxed stores and loads, correct only if stores are seen in order | release stores, acquire fences in the walk and in `formatted` | A listing by a read-only handle reporting a healthy store damaged ("block ... says size 0"), or walking off block boundaries, while another process inserted (a split before the change begins) or let go of a removed entry (a merge outside any change). |
//! | The guard's poison check after acquiring (`Shared::lock`) | load + fence (`is_poisoned`), after a relaxed load of the same cause for the holder record | one relaxed load for both (a fence less on the uncontended path: `dmb ishld` on ARM) | Nothing: a weakening with no effect on what is seen, argued in the table above. |
//!
//! Nothing else needed changing: the lock's acquire and release, the
//! seqlock's two fences, the segment's publication and the wake protocol
//! were right under the model, not only on x86. The last row is not a fix
//! but a cost cut on the uncontended path, reviewed here; the
//! same work made the guard keep the write counter it reads on acquiring
//! (`seq_held` above), which changes no ordering: the stores and their
//! orderings are the same, only the loads before them are gone.
//!
//! # What tests and emulation can show
//!
//! CI runs the test suite for aarch64 under `qemu-user` on an x86-64
//! host. The emulator turns the guest's loads and stores into the host's,
//! which x86 keeps in order (loads with loads, stores with stores): it
//! never produces the reorderings ARM hardware may make. So the emulated run shows that the
//! code is right for aarch64 in every other respect (types, system calls,
//! layout, byte order), and nothing about its orderings. Nor does the model
//! check (`tests/shmstore/reliability/model.rs`), which assumes sequential
//! consistency.
//!
//! The orderings rest on this review. Two tests aim at the bugs fixed
//! here: `readers::a_slow_live_writer_is_never_reported_as_interrupted`
//! puts the dead-writer check next to commits, and
//! `store::readers::listings_during_inserts_and_removes_never_find_the_store_damaged`
//! lists a store while another process splits and merges its blocks. Each
//! fails at once on x86 when the fixed ordering is broken on purpose (the
//! check's second load removed; a split's two stores made in the wrong
//! order), so they reach the windows; they can catch the reordering itself
//! only on weakly ordered hardware, and only if it happens during the run.
//! Run them on a real ARM machine (many times, or in a loop) for evidence
//! beyond the review.
