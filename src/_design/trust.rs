//! Trust: what a process that maps a segment can do to the others.
//!
//! Other processes that map a segment can write anything into it. Nothing
//! they write makes this crate read outside the mapping or produce an
//! invalid value:
//!
//! - headers are copied out of the segment and checked before use; every
//!   number read from a store is checked before it is used as an offset;
//! - the lock word, the write counter and a store's directory are only
//!   accessed atomically; a lock word that names no live thread is a lock
//!   whose holder died, and one that names the calling thread without that
//!   thread holding the lock names no holder (see [the lock](super::lock));
//! - nothing in a segment names a file or a descriptor: which processes
//!   live is asked of the kernel, through this process's own description of
//!   the segment's object (a System V segment's stand-in is found by name,
//!   and refused unless it is a regular file of the segment's owner,
//!   creator or root);
//! - every bit pattern of a [`Shareable`](crate::Shareable) type is valid,
//!   which the derive proves at compile time, and the fixed-capacity types
//!   ([`ShmStr`](crate::ShmStr), [`ShmVec`](crate::ShmVec),
//!   [`ShmBool`](crate::ShmBool)) validate what they read every time;
//! - values are copied with volatile loads (see
//!   [snapshots](super::seqlock)) or reached through the lock; this process
//!   never makes a `&T` over bytes another process may be writing, except
//!   for [`LockFree`](crate::LockFree) types, whose every byte is inside an
//!   atomic;
//! - a segment shrunk under a mapping does not kill the process (see
//!   [segments](super::segment#shrunk-segments-and-sigbus)).
//!
//! Opening refuses what it should not trust: a segment of another user
//! ([`Error::ForeignOwner`](crate::Error::ForeignOwner), since anyone can
//! create a name in /dev/shm first and choose what the opener reads), of
//! another type or layout
//! ([`Error::LayoutMismatch`](crate::Error::LayoutMismatch)), not ours or
//! or damaged ([`Error::Corrupt`](crate::Error::Corrupt)).
//! To say what differs, a `LayoutMismatch` reads the schema the segment
//! records where its header's own figures put it, bounded by the object's
//! size, and decodes it with every check of
//! [`Schema::decode`](crate::Schema::decode): a schema that is damaged or
//! does not fit gives the error without the list, never another error.
//!
//! # What is not guaranteed
//!
//! - A peer that writes the value *without* taking the lock races with the
//!   holder and can make it read inconsistent numbers (never an invalid
//!   value or a read outside the mapping); only peers that follow the
//!   locking protocol get consistency.
//! - A peer can forge a store's directory so that an entry is placed inside
//!   another entry's value; the bytes are then shared as if the peer wrote
//!   them, but one process never holds two entries whose bytes overlap: the
//!   second handle is refused with `Error::Corrupt` (and
//!   [`Store::check`](crate::Store::check) reports the damage).
//! - A lock cannot stop a peer with write access from holding it: a word
//!   naming a live thread is a holder, whether that thread took the lock or
//!   a peer wrote its identity there, so `lock()` waits for it as it would
//!   for a peer that never unlocks
//!   ([`try_lock_for`](crate::Shared::try_lock_for) gives up when its time
//!   is up). The one identity that is told apart is the caller's own.
//! - A dead holder is noticed only when someone waits, within about 50 ms.
//!   A peer that can write the segment can also lock its incarnation bytes,
//!   and so make a dead holder look alive (as it can write a live holder's
//!   identity into the word); a peer that may only read can place read
//!   locks, which never count as a holder, but can so take the byte a new
//!   writer would show itself in: that writer's open is refused with an
//!   error that says so, while the peer keeps the lock.
//! - A program that installs a SIGBUS handler of its own after opening
//!   segments, without calling the previous one, turns the protection
//!   against shrunk segments off for itself.
//!
//! # Where the `unsafe` code is
//!
//! The crate root denies `unsafe_code`; the modules that allow it, and what
//! each does with it, are listed in the [crate docs](crate#where-unsafe-is-allowed):
//! the system calls and racy copies (`sys`), the lock's slots, guard,
//! seqlock and per-thread state (`lock`), the unsafe traits
//! [`Shareable`](crate::Shareable) and [`LockFree`](crate::LockFree)
//! (`types`), and the writing of a new segment's or store entry's bytes.
//! The handles contain none. Every `unsafe` block carries the argument for
//! its soundness next to it.
