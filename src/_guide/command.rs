//! The `shmstore` command: what is inside a segment, from the shell.
//!
//! `ipcs` and `ls /dev/shm` show names and sizes; `shmstore` shows what is
//! inside: the type, the value decoded field by field, who holds the lock
//! and whether that process still runs, whether the creator runs, who has
//! the segment mapped, and whether it is stale. It works on POSIX, System V
//! and file-backed segments, and on every entry of a store.
//!
//! ```sh
//! cargo install shmstore --features cli   # or, in a clone: cargo run --features cli --bin shmstore -- ...
//! shmstore ls                  # every shmstore segment; --all adds foreign objects and unfinished ones, --json for scripts
//! shmstore inspect my-config   # header, lock, generation, and the value field by field
//! shmstore inspect --key 0x53484d01 --json
//! shmstore watch my-config     # the value now and on every committed change; --entry KEY in a store
//! shmstore rm my-config        # refuses what gc would keep (live, damaged, foreign, another user's) without --force
//! shmstore unpoison my-config  # clears the poison a dead or panicking holder left, saying whose it was
//! shmstore gc --dry-run        # what gc would remove (not live, not damaged, ours) and why the rest stays
//! ```
//!
//! ```text
//! $ shmstore ls --all          # (run in a PID namespace of its own, hence pid 3)
//! NAME         BACKEND  SIZE  TYPE               CREATOR        ATTACHED  PRESENT  LOCK              GEN  CHANGED
//! try-config   posix     548  Config             pid 3 dead            0  none     held by 3 (dead)    1  1s ago
//! try-counter  posix     368  Counter            pid 3 dead            0  none     free                0  -
//! try-damaged  posix     368  damaged            pid 3 dead            0  none     -                   -  -
//! try-foreign  posix      15  foreign            -                     0  -        -                   -  -
//! try-store    posix     70K  store (3 entries)  pid 3 dead            0  none     free                3  1s ago
//! 0x53484d7e   sysv      368  incomplete         pid 3 dead            0  none     -                   -  -
//!
//! $ shmstore inspect try-config
//! name:         try-config
//! type:         Config
//! creator:      pid 6999 (alive), root (uid 0)
//! lock:         free
//! generation:   1
//! value:        Config
//!   max_connections: 251
//!   origin:          Point
//!     x: 7
//!     y: -3
//!   name:            "web"
//!   ports:           [80, 443]
//!   verbose:         true
//! (header, owner, attachments and times trimmed)
//! ```
//!
//! - **Schemas**: `#[derive(Shareable)]` records the type's schema (field
//!   names, offsets, integer/float/atomic kinds, arrays, nested structs,
//!   `ShmStr`, `ShmVec`, `ShmBool`), and the library stores it in the
//!   segment after the value (and after each store entry's value). The
//!   command decodes values with it, without the Rust type. A schema is
//!   validated when read (depth, sizes, offsets, names, no trailing bytes):
//!   a damaged one is reported and the value is not decoded.
//! - **Foreign objects and damaged segments** are listed as such and never
//!   decoded; `rm` refuses them without `--force`, and `gc` never removes
//!   them. Foreign objects (another program's file, or no file at all: a
//!   FIFO, a socket, a directory, a symbolic link, a device) are listed only
//!   with `ls --all`, saying what they are (`foreign: a FIFO (named pipe)`);
//!   no command blocks on them or writes to them. A damaged segment has our
//!   magic but a header that is wrong, or was cut short: what it holds may
//!   still be read, so only `rm --force` removes it.
//! - **Live**, one definition for `rm` and `gc`
//!   ([`staleness`](crate::inspect::staleness)): a segment is live while a
//!   process maps it or is present in it (or whether one does is unknown),
//!   its creator still runs (also when it no longer maps it), or a running
//!   thread holds its lock or, for a store, an entry's lock. `gc` removes
//!   only segments that are ours, not damaged and not live (stale); `rm`
//!   without `--force` refuses whatever `gc` would keep, and says why.
//! - **Other PID namespaces** (containers sharing /dev/shm or System V
//!   segments): `PRESENT` counts the processes that show themselves in a
//!   segment, in any namespace, as the kernel tells it (`1 writer`, `2
//!   writers, 1 reader`; `present:` in `inspect`, `present` in `--json`),
//!   where `ATTACHED` sees this namespace only. A creator of another
//!   namespace is shown as `pid 1 in another PID namespace` (its pid
//!   there): whether it still runs cannot be checked from here, so its
//!   segment stays while any process is present in it and becomes stale
//!   once none is. A lock holder of another namespace is shown as `held by
//!   7 (pid 1 in another PID namespace, alive)` (`holder_pid` and
//!   `holder_pid_namespace` in `--json`); once it dies, `held by 7
//!   (dead)`. `gc` also removes the stand-ins (`.shmstore-sysv.*` in
//!   /dev/shm) that System V segments of this IPC namespace removed by
//!   other means (`ipcrm`) left behind.
//! - **Unfinished segments**: a new POSIX segment is made under a hidden
//!   temporary name (`.shmstore-new.…`) and renamed into place whole. A
//!   creator killed before that leaves the temporary name: `ls` shows it
//!   only with `--all`, as `unfinished, creator dead` (or `alive`), and
//!   `gc` removes it once its creator is dead (so does the next creator of
//!   the same name).
//! - **Attachments**: the kernel's count for System V; for POSIX and files,
//!   the processes whose `/proc/PID/maps` map the segment, among those this
//!   user may read (all, as root).
//! - **Change times** are shown for segments created with
//!   [`SharedOptions::record_change_time(true)`](crate::SharedOptions::record_change_time)
//!   (it reads the clock on every committed write, so it is off by
//!   default); otherwise `CHANGED` is `-`.
//! - **Poison**: `inspect` shows what poisoned a lock (a `poison:` line
//!   under the value's or the entry's lock: process, thread, cause, time;
//!   `poison` in `--json`). `shmstore unpoison NAME [--entry KEY]` clears
//!   it, with write permission: it takes the lock first (taking it over
//!   from a dead holder, which commits the write that holder left
//!   unfinished), then prints what it cleared, or that nothing was
//!   poisoned ([`inspect::unpoison`](crate::inspect::unpoison) does the same
//!   from a program). Check the value before clearing.
//! - **Watching** sleeps on the segment's change notification: with write
//!   permission it marks the lock word as a waiting handle does, or the
//!   segment was made with `wake_read_only`; read-only and without it, it
//!   looks every 100 ms.
//! - Output is an aligned table on a terminal and tab-separated in a pipe;
//!   errors are one line (`shmstore: what happened: what to do`) with exit
//!   status 1, usage errors exit 2.
//! - The command's dependency (clap) is behind the `cli` feature: the
//!   library does not pull it in.
//!
//! # The same from a program
//!
//! What the command shows is available to programs:
//! [`shmstore::inspect`](crate::inspect) ([`scan`](crate::inspect::scan),
//! [`report`](crate::inspect::report),
//! [`wait_for_change`](crate::inspect::wait_for_change),
//! [`staleness`](crate::inspect::staleness), [`remove`](crate::inspect::remove))
//! and [`shmstore::schema`](crate::schema) ([`Schema`](crate::Schema),
//! [`Value`](crate::Value), whose `Display` is
//! `Counter { value: 1234, last_pid: 4242 }` and which has `to_json`).
//!
//! ```
//! use shmstore::inspect::{self, State};
//! use shmstore::{Shareable, Shared};
//!
//! #[derive(Shareable, Clone, Copy, Default)]
//! #[repr(C)]
//! struct Counter { value: u64, last_pid: u32, hits: u32 }
//!
//! # let name = format!("doc-guide-command-{}", std::process::id());
//! let c = Shared::<Counter>::create(&name, Counter { value: 1234, last_pid: 4242, hits: 1 })?;
//!
//! // In any process, without the type:
//! let report = inspect::report(&name)?;
//! match report.state {
//!     State::Value { value: Some(value), .. } => {
//!         assert_eq!(value.to_string(), "Counter { value: 1234, last_pid: 4242, hits: 1 }");
//!     }
//!     other => panic!("not a readable value: {other:?}"),
//! }
//! # drop(c);
//! # shmstore::unlink(&name)?;
//! # Ok::<(), shmstore::Error>(())
//! ```
