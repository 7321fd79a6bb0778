//! The store: its directory, its heap of blocks, and its recovery.
//!
//! A [`Store`](crate::Store) segment has the usual header, lock and write
//! counter (those of its directory), then:
//!
//! ```text
//! content+0      meta (256 bytes): format, entry flags, bucket count, heap
//!                size, live entries, bytes in use, free-list heads
//! content+256    handle table: 64 slots of (pid, start time)
//! content+1280   buckets: a power of two of u32 (block index + 1, 0 empty)
//! heap           blocks, each a multiple of 64 bytes, back to back
//! ```
//!
//! A block starts with a 64-byte header: its size, the size of the block
//! before it (a hint), its state, and for an entry its key and type name
//! lengths, key hash, layout fingerprint, value size, alignment, schema
//! length and value offset, and the bitmap of handle slots holding it. The
//! key and type name follow; then, on a 64-byte boundary, the entry's lock
//! (32 bytes), its write counter (16 bytes) and its value: the same slot as
//! a single-value segment has, so an entry's handle is a
//! [`Shared<T>`](crate::Shared). The value's schema (what tools decode it
//! with) follows the value, 8-aligned.
//!
//! # Consistency
//!
//! Everything here is read and written under the store's directory lock
//! (the segment's own robust lock), with relaxed atomic loads and stores:
//! the lock orders them, and a peer that writes without it can make us read
//! garbage but never cause a data race or an access outside the mapping.
//! Every number read from the store is checked before it is used as an
//! offset; what fails a check is [`Error::Corrupt`](crate::Error::Corrupt).
//!
//! The heap is the source of truth: walking it from its start by block
//! sizes reaches exactly its end, at every moment, because each change to
//! its shape is one 8-byte store (a split writes the new block's header
//! inside the old block and then shrinks the old one; a merge grows the
//! first block over the second). Entry states change by one store too: a
//! block taken for a new entry is RESERVED until its key, lock and value
//! are written, then LIVE; a removed entry is unlinked from the buckets and
//! then freed, or marked REMOVED while handles still hold it.
//!
//! # Recovery
//!
//! The buckets, free lists, counters and `prev_size` hints are derived from
//! the heap. When the directory lock is taken over from a holder that died
//! (it is then poisoned), the next caller walks the heap and rebuilds them:
//! RESERVED blocks (a create cut short) become free, LIVE ones are entered
//! in the buckets again (a remove cut short is undone), and adjacent free
//! blocks are merged. A half-made entry is thus either complete or gone.
//! [`Store::check`](crate::Store::check) verifies every invariant: the heap
//! walk, the buckets, the free lists and the counters.
//!
//! # Handles
//!
//! Each `Store` handle takes a slot of the handle table. A process's
//! handles on an entry set that slot's bit in the entry's bitmap; a removed
//! entry's memory is freed once no bit is set. Bits of slots whose process
//! is dead (checked with its pid and start time) are cleared when an entry
//! is removed, when a slot is reused, when space runs out, and on recovery,
//! so a killed process leaks nothing.
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
