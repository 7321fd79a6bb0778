//! Segments: what they hold, and how they are created and opened safely.
//!
//! # Layout
//!
//! ```text
//! offset 0    header (240 bytes): magic, format version, init state, kind
//!             (one value or a store), layout fingerprint, size/align/offset
//!             of T, total size, type name, creator, PID namespace
//! offset 256  lock (32 bytes): word (8), sleepers (4), poison cause (4),
//!             last holder or poisoner (8), poison time (8)
//! offset 288  write sequence counter (8), flags (4), change time (4)
//! offset 304  T (rounded up to T's alignment)
//! then        the schema of T, 8-aligned: what tools decode the value with,
//!             and what a LayoutMismatch compares with this build's T
//! ```
//!
//! The lock sits on the same cache line as the start of the value, so a
//! small value and its lock move between CPUs together. A store has the
//! same header, lock and counter (those of its directory), then its
//! directory and heap (see [the store](super::store)).
//!
//! Headers are read with `pread` into a local buffer and parsed with
//! zerocopy (`FromBytes`), written from a local value with `IntoBytes`: no
//! reference is ever made to header bytes that another process may be
//! writing.
//!
//! # Byte order and pointer width
//!
//! A segment holds its numbers (header, lock, counters, the value) in the
//! byte order of the build that made it: segments in memory never leave
//! their host, but a file segment on a disk that several hosts share may
//! meet a build of the other byte order (s390x and powerpc64 are
//! big-endian; x86_64, aarch64, riscv64 and powerpc64le little-endian). The
//! magic is bytes, the same in either order; the format version is a small
//! number, so one that reads as a large number here and as a small one
//! with its bytes reversed was written in the other order ("format version
//! 83886080" is version 5 of a big-endian build, read on a little-endian
//! one). Every reader checks it first, before anything else of the header
//! is read as numbers: `open` and its variants give
//! [`Error::OtherByteOrder`](crate::Error::OtherByteOrder), which names
//! both byte orders, whatever type the segment holds, and change nothing;
//! [`inspect`](crate::inspect) reports
//! [`State::OtherByteOrder`](crate::inspect::State::OtherByteOrder) (never
//! stale: whether its users run cannot be read from here), and `shmstore
//! ls`/`inspect` say so. The layout fingerprint is not what tells byte
//! orders apart: it is computed from the type alone, the same on every
//! host, and it is itself a number in the header.
//!
//! Pointer width needs no mark: every field of the header is a fixed-width
//! integer, `Shareable` types have no `usize`, `isize` or pointers, and the
//! fingerprint covers each type's size and alignment (which differ for
//! `u64` fields in a 32-bit x86 build), so a layout that pointer width
//! changed would be another layout. And 32-bit targets are refused at
//! compile time: the lock word and sequence counter are 64-bit atomics.
//!
//! # Backends
//!
//! Where segments come from. A backend only produces a mapping (or an open
//! object that can be sized and mapped) and a way to remove its name; the
//! header, the lock and the typed handle never know which backend made
//! their segment.
//!
//! | backend | object | name | removal |
//! |---|---|---|---|
//! | POSIX | `shm_open` object in /dev/shm | `"name"` | `shm_unlink` |
//! | file | a regular file | a path | `unlink` |
//! | System V | `shmget` segment | a key | `IPC_RMID` |
//! | memfd | sealed `memfd_create` object | none: share the descriptor | last descriptor and mapping gone |
//! | anonymous | `MAP_SHARED \| MAP_ANONYMOUS` memory | none: forked children inherit it | last mapping gone |
//!
//! # Creating POSIX and file segments: publication
//!
//! A name never shows a segment of ours mid-creation. A new segment is
//! made complete under a temporary name in the same directory (POSIX: the
//! tmpfs behind `shm_open`, /dev/shm on Linux; a file: the file's
//! directory), then put under its name in one atomic step (Linux's
//! `renameat2`; other systems would need another protocol, see
//! [platforms](super::platforms)):
//!
//! 1. Remove the temporary names of the same final name whose creator is
//!    dead (a creator killed mid-way leaves one; see below).
//! 2. Make the temporary name `.shmstore-new.<hash>.<pid>.<n>` (a hidden
//!    file; `<hash>`: 16 hex digits of FNV-1a of the final name, so it is
//!    short enough for any valid name; `<n>`: a per-process counter) with
//!    `O_CREAT | O_EXCL | O_NOFOLLOW`, and `fchmod` it to exactly the mode
//!    asked for (the umask applied at creation).
//! 3. Write the header with state INITIALISING (our magic from the first
//!    byte on), set the exact size and allocate every page
//!    (`posix_fallocate`: a full /dev/shm is an error now and never a
//!    SIGBUS later), map it, write the lock (unlocked) and the initial
//!    value, and publish state READY with a release store.
//! 4. `renameat2(temporary, name, RENAME_NOREPLACE)`: the complete segment
//!    appears under the name, or the call fails with `EEXIST` because the
//!    name exists. A filesystem that refuses the flag (`EINVAL`) gets
//!    `link(temporary, name)` + `unlink(temporary)`, which never replaces
//!    either.
//! 5. `EEXIST`: `create` removes its temporary name and reports
//!    [`Error::AlreadyExists`](crate::Error::AlreadyExists);
//!    `open_or_create` lost a race, removes its temporary name and opens
//!    the winner's segment, complete by construction.
//!    [`Shared::created`](crate::Shared::created) says which of the two
//!    happened.
//!
//! A creator killed at any step leaves the name as it was (absent, or the
//! winner's) and at most a temporary name. The next creator of the same
//! name removes those whose pid is dead (step 1; one whose header records
//! another PID namespace is left alone: its pid says nothing in ours); `shmstore gc` removes
//! every one in /dev/shm whose creator is dead; `shmstore ls` shows them
//! only with `--all`, as "unfinished, creator dead" (or alive).
//!
//! A migration (one segment replacing another under a name) uses the same
//! temporary segment and `renameat2(RENAME_EXCHANGE)`, then checks that the
//! object it took off the name (device, inode) is the one it meant to
//! replace, and exchanges back if not.
//!
//! # Opening POSIX and file segments: look before opening
//!
//! Anyone may make objects in /dev/shm (sticky and world-writable), and a
//! file's directory may hold anything. Whatever sits under the name, an
//! opener answers at once, never blocks and never writes to it:
//!
//! 1. `fstatat(name, AT_SYMLINK_NOFOLLOW)`: anything but a regular file (a
//!    FIFO, a socket, a directory, a symbolic link, a device) is
//!    [`Error::Corrupt`](crate::Error::Corrupt) saying what it is ("a FIFO
//!    (named pipe), not a shmstore segment").
//! 2. `open` with `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC` (POSIX
//!    names: the tmpfs path directly, since `shm_open` would block on a
//!    FIFO), read-write or read-only as the handle needs.
//! 3. `fstat` again: an object swapped in between the two looks is caught
//!    here.
//!
//! Since names show complete segments only, an object under a name that
//! is empty, shorter than a header, or still INITIALISING is nobody's
//! creation in progress: `Error::Corrupt` at once ("empty", "N bytes,
//! shorter than a header", "never finished by its creator"), for `open`
//! and `open_or_create` alike, and nothing is written to it. Nobody waits:
//! the only waits left are System V's (below), whose segments have no
//! name that could be swapped in atomically.
//!
//! Before anything is mapped, `fstat` gives the object's size and owner
//! (another user's is [`Error::ForeignOwner`](crate::Error::ForeignOwner)
//! unless allowed), the header is read with `pread` and checked against the
//! size and against `T` (magic, format version, kind, fingerprint, offsets,
//! PID namespace), and only then are exactly that many bytes mapped.
//!
//! ```
//! use shmstore::{Error, Shared};
//!
//! # let name = format!("doc-design-segment-{}", std::process::id());
//! let path = format!("/dev/shm/{name}");
//! std::fs::write(&path, b"somebody else's data")?;     // not a shmstore segment
//! assert!(matches!(Shared::<u64>::open_or_create(&name, 0), Err(Error::Corrupt { .. })));
//! assert_eq!(std::fs::read(&path)?, b"somebody else's data");   // never written over
//!
//! std::fs::remove_file(&path)?;
//! let n = Shared::<u64>::create(&name, 7)?;
//! assert!(matches!(Shared::<u32>::open(&name), Err(Error::LayoutMismatch { .. })));
//! # drop(n);
//! # shmstore::unlink(&name)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Creating and opening: System V
//!
//! A System V segment has no name in a directory, so it cannot be
//! published whole: it exists, zero-filled, from the moment `shmget` makes
//! it. The lock inside the segment serialises its initialisation, and an
//! opener waits (at most about 5 s) for a creator that has made the
//! segment but not started writing; this is the one protocol that still
//! waits. A new segment is
//! zero-filled by the kernel, and all zeroes is an unlocked lock at offset
//! 256 and state 0 in the header, so the lock works before anyone has
//! written a byte.
//!
//! 1. `shmget(key, size, IPC_CREAT | IPC_EXCL | mode)` for `create` and
//!    `open_or_create` (whoever succeeds made the segment); otherwise, or on
//!    `EEXIST` for `open_or_create`, `shmget(key, 0, 0)` for the existing
//!    one.
//! 2. `IPC_STAT` before attaching: the owner must be us (or
//!    [`allow_foreign_owner`](crate::SharedOptions::allow_foreign_owner)).
//! 3. Attach, and read the state with an acquire load. READY: copy the
//!    header out and check it (type, layout, size = `shm_segsz`, PID
//!    namespace); done, without the lock.
//! 4. Not READY: the segment's size must fit a `T` (or a store), and ours
//!    (our magic) or zeroed (nobody has started); anything else is another
//!    program's segment or another type's, refused with
//!    [`Error::Corrupt`](crate::Error::Corrupt) or
//!    [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) and never
//!    written, not even the lock.
//! 5. Take the lock (waiting at most about 5 s) and look again, now also
//!    checking that a segment without magic is zero after the header (one
//!    that is not is refused; its lock word, zero before, is zero again
//!    after). Still not READY: `create` and `open_or_create` initialise it:
//!    magic, release fence, the rest of the header, state INITIALISING
//!    (release), the value, state READY (release); then clear the poison
//!    and unlock. `open` unlocks and waits for a creator that has not
//!    started yet, and reports `Error::Incomplete` at once for one that
//!    died: whoever holds the lock and still sees our magic without READY
//!    knows that nobody is writing, because initialisers write only while
//!    holding it. A creator that died holding the lock leaves it to the
//!    lock's dead-owner detection (taken over poisoned; cleared once
//!    initialised).
//!
//! **The exception: an all-zero segment.** A segment of exactly the size a
//! `T` (or the store) needs, every byte zero, is what `shmget` gives our
//! creator before it writes its first byte; another program's segment that
//! happens to be so cannot be told from it, whatever marker a creator
//! would write first (the window between `shmget` and the first write
//! remains). So `open_or_create` takes such a segment over and initialises
//! it, and `open` waits for it as for a creator that has not started.
//! Any byte that is not zero, any other size, or our magic with another
//! type is refused and never written. (Test:
//! `backends::sysv::open_waits_for_a_creator_that_has_not_started`.)
//!
//! Openers read the header of a segment that is not READY while an
//! initialiser may be writing it, so both sides access the header only in
//! atomic 32-bit words (the value, written with plain stores, is read only
//! under the lock). The magic is stored before any other byte, followed by
//! a release fence; openers load the other bytes first, then an acquire
//! fence, then the magic: an opener that sees any byte of an initialiser's
//! also sees its magic, and never takes a segment being initialised for a
//! foreign one.
//!
//! `IPC_RMID` frees the key at once; the segment lives until its last
//! detach, and Linux still lets its id be attached meanwhile. A private
//! segment ([`SysvKey::private`](crate::SysvKey::private)) is marked for
//! removal as soon as it is attached: nobody can find it by key, so it
//! could otherwise only leak; its handle and the children forked afterwards
//! keep it alive.
//!
//! # Shrunk segments and SIGBUS
//!
//! A POSIX shared-memory object or a file can be truncated by any process
//! that may write it, also while others have it mapped. Touching a page
//! that now lies past the end of the object raises SIGBUS, which kills the
//! process. POSIX objects and plain files cannot be sealed against this
//! (memfds are; System V segments cannot shrink), so shmstore catches the
//! fault instead, as libwayland does for client buffers:
//!
//! - every mapping of a descriptor is entered in a registry that a signal
//!   handler can read without locks or allocation;
//! - on the first such mapping, a SIGBUS handler is installed; the handler
//!   that was there before (Rust's own, usually) is kept and called for
//!   every fault that is not in a registered mapping, and for SIGBUS sent by
//!   `kill`, so the process dies of those as it would have without
//!   shmstore;
//! - a fault inside a registered mapping maps private zeroed memory over the
//!   pages from the faulting one to the end of the mapping, marks the
//!   mapping *cut*, and returns: the faulting instruction runs again and now
//!   reads zeros (or writes to memory nobody else sees). The pages before it
//!   stay shared.
//!
//! The handles check the mark where their answer could depend on those
//! pages, and report [`Error::Truncated`](crate::Error::Truncated) (from
//! [`check`](crate::Shared::check) and every [`Store`](crate::Store) call)
//! or a poisoned lock (for `lock()` and `snapshot()`) instead of a value.
//! A program that installs its own SIGBUS handler *after* opening a
//! segment, without calling the previous one, turns this off for itself.
