//! The store: its directory, its heap of blocks, and its recovery.
//!
//! A [`Store`](crate::Store) segment has the usual header, lock and write
//! counter (those of its directory), then:
//!
//! ```text
//! content+0      meta (256 bytes): format ("ST04"), entry flags, bucket
//!                count of the table in place (8), heap size now (16), live
//!                entries, bytes in use, the replacement in progress,
//!                handle slots ever used, free-list heads (64..192), the
//!                bucket table in use (192), the most heap (200)
//! content+256    handle table: 4,096 slots of (pid u32, hold list u32,
//!                incarnation u64)
//! content+65792  buckets in place: a power of two of u64, each the block
//!                index + 1 (0: empty) in its low 32 bits and the high 32
//!                bits of its key's hash (the tag) in its high 32
//! heap           blocks, each a multiple of 64 bytes, back to back, up to
//!                the heap size now; the object may hold more (a growth
//!                cut short), the mapping reaches the most heap
//! ```
//!
//! The meta fields are u64, native-endian, at these offsets from the
//! content's start: `M_HEAP` (16), the heap's size now; `M_TABLE` (192), the
//! bucket table in use, 0 for the table in place, else a TABLE block's
//! index in the low 32 bits and log2 of its bucket count in the high 32
//! (its buckets start at the block's byte 64); `M_MAX_HEAP` (200), the most
//! heap the store may grow to. The header keeps the size the store was
//! created with: a store's object may be larger than its header says (it
//! grew), never smaller.
//!
//! A block starts with a 64-byte header: its size, the size of the block
//! before it (a hint), its state, and for an entry its key and type name
//! lengths, key hash, layout fingerprint, value size, alignment, schema
//! length and value offset, and 8 bytes left 0 (where "ST03" counted the
//! handle slots holding the entry). The key and type name follow; then, on a 64-byte boundary, the entry's lock
//! (32 bytes), its write counter (16 bytes) and its value: the same slot as
//! a single-value segment has, so an entry's handle is a
//! [`Shared<T>`](crate::Shared). The value's schema (what tools decode it
//! with) follows the value, 8-aligned.
//!
//! # Looking a key up
//!
//! A key's hash (8 bytes at a time, read little-endian, then MurmurHash3's
//! finaliser: the same on every architecture and byte order, as processes
//! of several kinds may share a store) picks its home bucket (the low
//! bits) and its tag (the high 32 bits); collisions probe the next buckets
//! in turn (linear probing, at most one pass over the table, whatever the
//! bytes say). A bucket is loaded whole, as one `u64`: one whose tag is not
//! the key's is passed without reading its block, so a probe reads the
//! bucket line and, for the key's own entry only, the block's header line
//! (full hash, state, lengths, and what `get` checks: fingerprint, value
//! size, alignment, offsets) and its key (the next line; the header has no
//! room left for it). The header and the key's words are read through one
//! slice of the mapping, bounds and alignment checked once for the block
//! (a block index is first checked to leave room in the heap for a header
//! and a key of this length), not once per field. A lookup copies
//! nothing out of the entry but the key it compares; the type name and the
//! schema are read only to report a `LayoutMismatch`. Removing an entry
//! moves the later buckets of its run back (no tombstones), reading their
//! blocks' hashes for their home buckets.
//!
//! # Consistency
//!
//! Everything here is written under the store's directory lock (the
//! segment's own robust lock), with relaxed atomic loads and stores, and
//! read under it by `Store` handles: the lock orders them, and a peer that
//! writes without it can make us read garbage but never cause a data race
//! or an access outside the mapping. Read-only handles,
//! [`Store::contains`](crate::Store::contains) and
//! [`Store::get`](crate::Store::get) read without it (see
//! [Readers without the lock](#readers-without-the-lock)), and `get` and
//! the drop of an entry handle change their own slot's hold list without
//! it (see [Holds without the lock](#holds-without-the-lock)).
//! Every number read from the store is checked before it is used as an
//! offset; what fails a check is [`Error::Corrupt`](crate::Error::Corrupt).
//!
//! The heap is the source of truth: walking it from its start by block
//! sizes reaches exactly its end, at every moment, because each change to
//! its shape is one 8-byte store (a split writes the new block's header
//! inside the old block and then shrinks the old one; a merge grows the
//! first block over the second). Those stores are release stores, and a
//! walk loads each size before an acquire fence, so a walk without the
//! lock that sees a new size also sees the header it leads to, on weakly
//! ordered CPUs (ARM) too, not only on x86; the format word is published
//! the same way (see [memory ordering](super::ordering)). Entry states change by one store too: a
//! block taken for a new entry is RESERVED until its key, lock and value
//! are written, then LIVE; a removed entry is unlinked from the buckets and
//! then freed, or marked REMOVED while handles still hold it.
//!
//! # Replacing an entry (migration)
//!
//! [`Store::get_or_migrate`](crate::Store::get_or_migrate) puts a new entry
//! in the place of an old one of the same key. The migrating process holds
//! the old entry's lock throughout (migrators of one entry are serialised
//! by it; the one that comes second finds the key holding the new entry and
//! opens it) and calls the migration without the directory lock; then,
//! under the directory lock:
//!
//! 1. a block is RESERVED and filled with the new entry (as for an insert),
//!    and the old entry is marked superseded (its lock poisoned with the
//!    cause `Superseded`; put back as it was if the replacement fails), so
//!    that no write of the old build lands in it unnoticed once the key
//!    names the new one, even if the migrator dies right after the switch;
//! 2. the meta's replacement record (8 bytes) is set to the pair (new
//!    block, old block);
//! 3. **the switch**: the new block turns LIVE, one store;
//! 4. the new block takes the old one's bucket (same key, same hash);
//! 5. the old block is freed, or marked REMOVED while handles hold it;
//! 6. the record is cleared.
//!
//! Last, a write is committed on the old entry (waking its watchers) as its
//! lock is released.
//!
//! A SIGKILL before step 3 leaves the old entry LIVE and the new block
//! RESERVED; after it, both LIVE. Recovery looks at the record first: if
//! the new block named there is LIVE beside the old one, with the same key,
//! the old one becomes REMOVED; the rest of the rebuild then proceeds as
//! usual (a RESERVED block is freed, a REMOVED one nobody alive holds is
//! freed, buckets are entered from the LIVE blocks). A record that does not
//! name such a pair (damaged by a peer) changes nothing but is cleared.
//! Outside a change the record is 0, which `check` verifies. The old
//! entry's lock, held by the dead migrator, is taken over by its next
//! locker, as any dead holder's; it stays poisoned `Superseded` (poison is
//! sticky), and if the switch had not happened, the next `get_or_migrate`
//! migrates the entry again.
//!
//! # Growth
//!
//! A store grows in place: one object, never a second one, so `shmstore
//! ls`, `inspect`, `rm`, `gc` and `unlink` see one object of its current
//! size. Each process maps a store of a backend that grows (POSIX and
//! file) once, as long as its tables and the most heap (`M_MAX_HEAP`),
//! whatever the object holds now: Linux maps a shared object past its
//! end, and the pages past it are never touched until the object covers
//! them. The mapping never moves, so entries' handles (which point into
//! it) stay valid. An opener maps the object as it is first, checks the
//! meta (the heap inside the object, at least 128 bytes, a multiple of
//! 64; the most heap at least the heap, at most `MAX_HEAP`, 256 GiB, a
//! bound on the address space a forged value can make us reserve), then
//! maps the reservation and drops the first mapping. The whole reservation
//! is in the SIGBUS registry: a peer that shrinks the object still makes
//! the handle `Truncated`, as before.
//!
//! Each process knows how much heap its object holds (a number of its
//! own, the object's size at opening). Every view of the heap (one per
//! operation) loads `M_HEAP` and compares it with that number: one load
//! and a compare on every lookup; only when the heap says more (another
//! process grew it) does the process `fstat` the object and learn its new
//! size. A heap that still says more than the object holds is damage:
//! `Corrupt` under the lock, and a view cut to the object for a read
//! without it (which a quiet read then reports, or a retry takes to the
//! lock), so nothing is ever read past the object.
//!
//! An insert (or a hold list, or a bucket table) that finds no free block,
//! even after reclaiming dead processes' holds, grows the heap under the
//! directory lock, as a change (the generation moves): to twice its size,
//! or to what it needs plus 128 bytes if more, rounded to 64 and capped at
//! the most. The steps, and what a process killed after each leaves:
//!
//! 1. `posix_fallocate` of the object to the new size (a full `/dev/shm`
//!    or filesystem is `NoSpace`, and the store is as it was). Killed here:
//!    the object is larger than the heap, which is accepted; the next
//!    growth reuses the room.
//! 2. One FREE block is written from the old end to the new one, past
//!    `M_HEAP`, where nothing reads yet. Killed here: as after 1.
//! 3. The commit: `M_HEAP` takes the new size (release store).
//! 4. The new block goes on its free list; if the heap's last block was
//!    free, it is unlinked, extended over the new block (its size stored
//!    last) and listed again. Killed between 3 and 4: a free block on no
//!    list, or two free neighbours; recovery's rebuild walks the heap,
//!    merges them and lists them.
//!
//! A store at its most, or whose object cannot grow, fails the insert with
//! `StoreFull`, whose figures are those of the heap at its most.
//! System V stores never grow (`shmget` fixes a segment's size; the
//! creator stores its capacity as its most). There are no memfd or
//! anonymous stores; were there, they could not grow either: a memfd's
//! size is sealed (`F_SEAL_GROW` with `F_SEAL_SHRINK`, so that no peer can
//! shrink it under us; growth would need a seal against shrinking only),
//! and an anonymous shared mapping cannot be extended for the processes
//! that inherited it.
//!
//! # Bucket tables
//!
//! The table in place has a bucket per 64 bytes of the heap the store was
//! created with, so it holds every entry that heap can (at least 128 bytes
//! each) at most half full. A heap that grew holds more: before an insert
//! makes the live entries more than half the buckets of the table in use,
//! the directory moves to a table four times as large (at least), in a
//! heap block of state TABLE: the block is taken (growing the heap if need
//! be), its buckets filled from the table in use, then `M_TABLE` names it
//! (release store: the commit), then the old table's block is freed (the
//! table in place just stays unused). It is a change of the directory, so
//! lock-free lookups that overlapped it are made again. A lookup loads
//! `M_TABLE` once per probe and checks the block it names (inside the
//! heap, state TABLE, room for its buckets); a forged `M_TABLE` is
//! `Corrupt` from the locked path and a miss or a retry from a lock-free
//! one, never a read outside the heap. The directory lock also refuses a
//! table over an entry this process holds. A process killed before the
//! commit leaves a TABLE block `M_TABLE` does not name, one killed after
//! it the old one: recovery frees any TABLE block but the named one, and
//! rebuilds the named one's buckets from the walk.
//!
//! # Recovery
//!
//! The buckets, free lists, counters and `prev_size` hints are derived from
//! the heap. When the directory lock is taken over from a holder that died
//! (it is then poisoned), the next caller walks the heap and rebuilds them:
//! a replacement cut short after its switch is finished (see above),
//! dead processes' handle slots are cleared and what live slots hold is
//! gathered (see [Handles](#handles)), RESERVED blocks (a create or replacement cut
//! short) and HOLDS blocks no live slot names become free, so does a
//! TABLE block `M_TABLE` does not name (a table move cut short), LIVE ones are
//! entered in the buckets again (a remove cut short is undone), and
//! adjacent free blocks are merged. A half-made entry is thus either complete or gone.
//! The heap is formatted under the first directory lock; formatting first
//! sets the format word to "formatting", so a process killed while
//! formatting leaves a heap that is formatted again, and only a format word
//! of zero over a heap in use (damage) is refused as `Corrupt`.
//! The rebuild counts as a change of the directory (its generation moves),
//! so a reader without the lock never trusts a look-up it overlapped.
//! [`Store::check`](crate::Store::check) verifies every invariant: the heap
//! size (a multiple of 64, at most the most), the heap walk, the one TABLE
//! block (the one named, if any), the buckets (at most half full), the free
//! lists, the counters and the holds.
//!
//! # Readers without the lock
//!
//! A [`StoreReader`](crate::StoreReader) maps the store read-only, so it
//! can neither take the directory lock nor hold an entry. It reads
//! the directory as a snapshot reads a value: the directory's write
//! counter (the segment's, which every change under the directory lock
//! makes odd and then commits) is loaded before and after a look-up or
//! listing, and a read that a change overlapped is thrown away and made
//! again. The reads go through the same checked accessors, so a torn read
//! is harmless garbage until it is thrown away; an error from a read no
//! change overlapped is the directory's own.
//!
//! [`Store::contains`](crate::Store::contains) reads the same way, with the
//! same code: a look-up no change overlapped is the answer; after 8 that
//! changes overlapped (or with a change left unfinished by a process that
//! died, which only the lock's next holder repairs, or on a bucket that
//! points outside the heap, which the locked look-up reports as
//! `Corrupt`), it takes the directory lock instead. `get` looks up the
//! same way and then holds the entry without the lock when it can (see
//! [Holds without the lock](#holds-without-the-lock)); otherwise it looks
//! up again under the lock and holds the entry there.
//!
//! An entry's read-only handle cannot keep the entry's block from being
//! freed and given to another entry. It records the directory generation
//! at which it found the entry; after each read of the value it loads the
//! counter again, and if a change began since, looks the key up again: the
//! same block, layout and fingerprint mean the read may be trusted only if
//! made again now; anything else means the entry is gone, and the handle
//! says so (poisoned snapshots, `NotFound`) from then on. A block's bytes
//! after its header change only when the block is filled for a new entry,
//! which takes a change after the one that removed the entry, so a read
//! made while the counter has not moved read the entry. (A freed block
//! can also become a hold list without a change of its own, but only after
//! the change that removed the entry: the counter has moved already.)
//!
//! # Listing in pieces
//!
//! [`Store::entries`](crate::Store::entries) walks the heap in pieces: each
//! piece takes the directory lock, walks at most 1,024 blocks or 250 µs
//! (then on to the next LIVE block, so that it ends after an entry), and
//! lets the lock go; the next piece starts where this one stopped, after at
//! least 20 µs (a waiter woken by the unlock needs a moment to run; taking
//! the lock again at once kept it out). A listing of any size holds the
//! lock for well under a millisecond at a time.
//!
//! Between pieces other processes create and remove entries: free blocks
//! are split, and blocks freed are merged with their free neighbours, so
//! the offset where a piece stopped may by then lie inside a free block, or
//! inside a new entry's bytes (a walk that trusted it would read a stale
//! header, or a value, as a block size, and report a healthy store as
//! damaged, or list garbage). What stays put is an entry that is still
//! present: entries never move, and while one is in the directory its
//! block starts where it did and is as long as it was. So a piece resumes
//! after an entry it re-validates:
//!
//! 1. the last entry listed is looked up by its key, under the lock; if
//!    the directory names the block it was listed at, that block is LIVE
//!    there now, and the offset after it (its size read now) starts a
//!    block: the piece walks on from there;
//! 2. if it was removed (or its key names another block), the entries
//!    listed before it are tried, latest first, up to 64 of them; the piece
//!    walks from after the first still in place, passing again blocks
//!    that earlier pieces saw;
//! 3. if none is left, it walks from the heap's start.
//!
//! Every piece thus starts on a block boundary no later than the furthest
//! point walked so far, and walks the heap as it is now from there: an
//! entry present for the whole listing lies before that point (and was
//! listed) or after it (and will be). It may be listed twice after a
//! piece went back, and a key removed and created again may be listed as
//! both entries: the listing keeps each key's last listing, in heap order.
//! An entry created or removed during the listing may or may not be in
//! it. After 16 pieces that had to go back (the entries a piece stopped at
//! removed before the next, again and again), the rest is listed in one
//! piece, as every listing was before, so that a listing ends under any
//! churn.
//!
//! [`StoreReader::entries`](crate::StoreReader::entries) and the listings
//! of `inspect` read the same pieces without the lock, each in a quiet
//! moment of the directory (see above): the look-ups that re-validate
//! where a piece starts are made in that moment too.
//!
//! # Handles
//!
//! Each `Store` handle takes a slot of the handle table: 4,096 slots of 16
//! bytes (pid, the index of the slot's hold list, the process's
//! incarnation). The table is 64 KiB, but tmpfs gives a page memory only
//! when it is first touched, and only slots below the meta's high-water
//! mark (the slots ever used) are read or written: `register` takes the
//! first free slot below the mark, else raises it, else (all 4,096 used)
//! reclaims the dead processes' slots first, and only 4,096 live handles
//! make [`HandleLimit`](crate::Error::HandleLimit). Formatting sets the
//! mark to 0 and touches no slot.
//!
//! What a handle holds is recorded in its slot's *hold list*, a heap block
//! in state HOLDS whose header names its owner slot, its length and its
//! *pending hold* (a u64, below), followed by the u32 block indexes of the
//! entries the slot holds. The first hold allocates a 128-byte block (22
//! entries); a full list moves to a block twice its size (allocate, copy,
//! switch the slot's index, free the old one), under the directory lock.
//! A list left empty is kept for the handle's next hold (a `get` + drop of
//! one entry then allocates nothing, and takes no lock): only its own
//! handle frees it, when it closes, when it asks for `free_bytes`, and when
//! an insert finds no room. The process keeps each held entry's position
//! in its list, so letting go is O(1): the last entry of the list takes its
//! place (swap-remove), and its position is updated. A handle that holds
//! *n* entries takes 4*n* bytes of the store's capacity, at least 128. An
//! insert reserves the room for its hold before it makes the entry, so
//! that a made entry is always held. There is no count of holders in the
//! entry: a removed entry is freed once no slot names it.
//!
//! # Holds without the lock
//!
//! One rule keeps a held entry's bytes from being given to another entry:
//! **a LIVE or REMOVED entry is freed only under the directory lock, and
//! only when it is REMOVED and no used handle slot names it**, in its hold
//! list or as its pending hold (`Heap::settle` in `src/store/heap.rs`,
//! which scans the slots below the mark and their lists: the cost of a
//! removal grows with the handles open and the entries they hold, not with
//! the slots a store could have). A pending hold is the index of an entry the slot's process
//! is about to hold, or, with bit 32 set (*letting go*), one it is letting
//! go of: the latter protects nothing and only tells whoever clears a dead
//! slot where to look.
//!
//! `get` holds an entry without the lock in four steps, all by the slot's
//! own process (its threads take turns through the handle's map of held
//! entries, which also moves the list):
//!
//! 1. it finds the entry as `contains` does, in a read of the directory no
//!    change overlapped, at directory counter *g*, and checks its type (if
//!    another handle of the same store handle holds the entry already,
//!    the counter still at *g* is all it needs: nothing is written);
//! 2. it stores the entry's index as the pending hold, then a sequentially
//!    consistent fence;
//! 3. it loads the directory's counter: if it is not *g*, a change began
//!    (the entry may be gone): the pending hold becomes a letting go, then
//!    a fence, then the entry's state is read; only a REMOVED entry is left
//!    to settle, under the lock, by this thread. `get` then takes the lock
//!    and looks up again;
//! 4. otherwise it writes the entry at the end of its list, then the
//!    length (release), then clears the pending hold (release).
//!
//! A removal (under the lock) begins a change of the directory (the counter
//! odd), marks the entry REMOVED, makes a sequentially consistent fence, and
//! scans: pending holds (acquire), then each list's length (acquire) and
//! entries. The fences order each pair of a store then a load: either the
//! removal's scan comes after the `get`'s pending hold and sees it, or the
//! `get`'s load of the counter (step 3) comes after the change began and
//! sees it. In the first case the entry is not freed, and the pending hold
//! is either completed into the list (seen by the next scan; a pending hold
//! read as cleared shows the list entry written before it) or given up with
//! the entry found REMOVED and settled by the `get`. In the second, the
//! `get` never writes the entry into its list. So no `get` holds an entry
//! that a removal frees, and no removed entry is left unfreed: a `get` that
//! gave up reads the state after its own fence, so either it sees REMOVED
//! or the removal's scan saw the pending hold already cleared and freed the
//! entry itself.
//!
//! Letting go (the drop of a store handle's last entry handle on an entry)
//! is the mirror: a letting go names the entry as the pending hold, the
//! entry leaves the list (the moved entry first, then the length,
//! release), a fence, then the state: a REMOVED entry is settled under the
//! lock (freed if nobody names it), otherwise the pending hold is cleared
//! and nothing else is done. The scan of a removal that ran meanwhile either
//! saw the list without the entry (and freed it, or left it to another
//! holder) or came before, and then its REMOVED is seen here. While one of
//! its threads settles, a handle's other threads hold and let go under the
//! lock, so that the letting go stays in the pending hold until the entry
//! is freed.
//!
//! A process killed at any step leaves its slot naming at most what it
//! holds or is about to hold or let go of: the slot is cleared when the
//! process is found dead (`reclaim`, or the rebuild), and every REMOVED
//! entry its list or pending hold named is freed then unless another slot
//! names it. The rebuild after a dead holder of the directory lock begins a
//! change first, so holds in flight in other processes give up or are seen,
//! as against a removal.
//!
//! A slot's list changes in the store without the lock only by its own
//! process; it is moved only under the lock and by its own process, so its
//! place is stable while a scan runs under the lock. A process killed while
//! its list moves leaves the directory lock poisoned, and the rebuild (see
//! [Recovery](#recovery)) clears the slots of dead processes, frees every
//! HOLDS block no live slot names (their lists, and a move cut short), and
//! frees REMOVED entries no live slot names. A live slot's list that is not
//! a HOLDS block of its own is `Corrupt` (nothing it may hold is freed).
//!
//! Entries whose last holders died are freed by `reclaim` (called by
//! `free_bytes`, by an insert or a hold list that finds no room, and by
//! `register` when the table is full): it asks whether each slot below the
//! mark is alive (one OFD lock query each: see [the lock](super::lock)),
//! and for each dead one gathers what its list and pending hold name,
//! frees the list, clears the slot, and settles each REMOVED entry
//! gathered. It never walks the heap. A list forged by a peer is read
//! through the same checks (its block, owner and length; each entry named
//! must be an entry's block outside what this process holds), and an
//! entry is freed only if no slot names it, so forged lists never free an
//! entry a live handle holds (they can keep a removed entry from being
//! freed, as a live holder does). [`Store::check`](crate::Store::check)
//! verifies the table and the lists, and reports a HOLDS block no slot
//! names, a list naming a block that is no entry, or a REMOVED entry no
//! slot names as `Corrupt`.
//!
//! ```
//! use shmstore::Store;
//!
//! # let name = format!("doc-design-store-{}", std::process::id());
//! let store = Store::create(&name, 64 * 1024)?;
//! let free = store.free_bytes()?;
//! let entry = store.insert::<u64>("answer", 42)?;
//! store.remove("answer")?;              // the key is gone at once...
//! assert!(!store.contains("answer")?);
//! assert!(store.free_bytes()? < free);  // ...the space once no handle holds the entry
//! assert_eq!(*entry.lock().unwrap(), 42);
//! drop(entry);
//! assert_eq!(store.free_bytes()?, free);
//! store.check()?;
//! # drop(store);
//! # Store::unlink(&name)?;
//! # Ok::<(), shmstore::Error>(())
//! ```
