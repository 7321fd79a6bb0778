//! Platforms: what shmstore runs on, what it refuses, and the plan for
//! macOS and FreeBSD.
//!
//! # Today
//!
//! | target | status |
//! |---|---|
//! | x86_64 Linux, aarch64 Linux | supported and tested: the whole test suite, child processes included (aarch64 under emulation in CI) |
//! | s390x Linux | compiled in CI (library, command, examples and tests), not run |
//! | riscv64gc, powerpc64le Linux | compiled in CI (library and command), not run |
//! | loongarch64 and powerpc64 (big-endian) Linux | accepted by the build, neither compiled nor run in CI |
//! | 32-bit Linux (i686, armv7, x32, ...) | refused at compile time |
//! | every other OS (macOS, FreeBSD, Windows, ...) | refused at compile time |
//!
//! Refused means one `compile_error!` from the crate root that says why,
//! and nothing else: the crate's items are left out on those targets, so no
//! Linux-only call fails to resolve first. The reasons:
//!
//! - **32-bit targets.** The lock is one 64-bit word (owner thread id and
//!   process incarnation) taken with an 8-byte compare-exchange, and read-only
//!   handles make relaxed 8-byte atomic loads from read-only mappings. The
//!   standard library defines such loads on read-only memory only up to
//!   the pointer width ("Atomic accesses to read-only memory" in
//!   `core::sync::atomic`): i686 makes an 8-byte atomic load with
//!   `cmpxchg8b`, a write, which faults on a read-only page.
//! - **Other 64-bit architectures** (sparc64, mips64, ...) are refused for
//!   the same rule: only the architectures of that table are accepted.
//! - **Other operating systems.** Every mechanism below is Linux's; the
//!   other systems have equivalents for most, with different guarantees,
//!   and no port has been written. A build that compiled there would fail
//!   at its first futex call, or worse, run with guarantees it does not
//!   have.
//!
//! # Where the Linux code is
//!
//! The operating-system layer `sys` (the crate's FFI, see the crate docs)
//! keeps what another Unix could reuse in its own files and Linux's own in
//! `src/sys/linux/`, behind one module chosen memmap2-style:
//!
//! ```text
//! #[cfg_attr(target_os = "linux", path = "linux/mod.rs")]
//! mod os;
//! pub(crate) use os::{futex, maps, memfd, presence, sysv, thread};
//! ```
//!
//! | file | Linux mechanism | a port provides |
//! |---|---|---|
//! | `sys/linux/futex.rs` | `futex` `FUTEX_WAIT`/`FUTEX_WAKE` (shared and `_PRIVATE`), `futex_waitv` | wait and wake on a shared 32-bit word; `waitv` may answer `Unsupported` (the async waits then use a thread per awaited counter, as on Linux before 5.16) |
//! | `sys/linux/thread.rs` | `gettid`, `kill(tid, 0)`, `/proc/TID/task/TID/stat` (state, start time), `/proc/self/task/TID/stat` | the calling thread's id; whether a thread of this process runs; whether a process id runs (creators and temporary names) |
//! | `sys/linux/presence.rs` | open file description locks (`F_OFD_SETLK`, `F_OFD_GETLK`) on bytes past a segment's end, descriptions reopened through `/proc/self/fd`, `pthread_atfork`, `getrandom` | which processes, in any PID namespace, have a segment open (see [the lock](super::lock)) |
//! | `sys/linux/maps.rs` | `/proc/self/maps`, `/proc/*/maps` | whether two addresses reach the same memory; which files other processes map (may answer "unknown") |
//! | `sys/linux/memfd.rs` | `memfd_create`, `F_ADD_SEALS`, `F_GET_SEALS` | an anonymous object whose size can be sealed, or nothing (the memfd backend is then left out) |
//! | `sys/linux/sysv.rs` | `shmget`/`shmat`/`shmctl` with Linux's `shmid_ds`, `IPC_INFO`, `SHM_INFO`, `SHM_DEST`, `/proc/sysvipc/shm` | the same calls with the system's structures, its limits (sysctl), and the list of segments |
//! | `sys/mapping.rs`, `sys/sigbus.rs`, `sys/fdpass.rs` | `mmap`, `shmat`/`shmdt`, `sigaction` with `si_addr`, `SCM_RIGHTS` | kept (POSIX), with the differences noted below |
//! | `sys/racy.rs` | per architecture, not per OS | kept |
//!
//! Left outside `sys/` for now, each a step of a port:
//!
//! - `segment/publish.rs`: POSIX segments are created as files in
//!   `/dev/shm` (Linux's tmpfs behind `shm_open`) and published with
//!   `renameat2(RENAME_NOREPLACE)` and, for migrations,
//!   `renameat2(RENAME_EXCHANGE)`; `inspect` lists `/dev/shm`. This is
//!   the segment protocol itself (see [segments](super::segment)), not one
//!   call: a port needs another way to publish a complete segment under
//!   its name atomically (below).
//! - `segment/header.rs`: the creator's PID namespace (the inode of
//!   `/proc/self/ns/pid`), to know whether the recorded creator's process
//!   id can be checked from here (`inspect`).
//! - The `shmstore` command's `watch` reads `/proc/sysvipc/shm` to notice a
//!   System V segment's removal (it sees only the public API).
//! - `mirror` reads the host name from `/proc/sys/kernel/hostname`.
//!
//! # The port plan
//!
//! What each system offers for each mechanism. The facts were checked
//! against the systems' manual pages and headers where marked (checked);
//! the rest is to be verified on the system before the port relies on it.
//!
//! ## Waiting on a word, across processes
//!
//! - **Linux**: `futex` on the low half of the lock word, not `_PRIVATE`,
//!   so that sleepers and wakers meet through the physical page.
//! - **macOS**: `os_sync_wait_on_address` / `os_sync_wake_by_address_any`
//!   / `_all` with `OS_SYNC_WAIT_ON_ADDRESS_SHARED` and
//!   `OS_SYNC_WAKE_BY_ADDRESS_SHARED`, macOS 14.4 and later, on 4- or
//!   8-byte values, with a deadline variant
//!   (`os_sync_wait_on_address_with_timeout`/`_with_deadline`) (checked:
//!   Apple's documentation; the `libc` crate declares them). Before 14.4
//!   only the private `__ulock_wait`/`__ulock_wake` with
//!   `UL_COMPARE_AND_WAIT_SHARED` (timeout in microseconds) exist: an
//!   undocumented interface Apple may change, acceptable as a fallback
//!   only. The 8-byte form could wait on the whole lock word.
//! - **FreeBSD**: `_umtx_op` with `UMTX_OP_WAIT_UINT` and `UMTX_OP_WAKE`
//!   (checked: `_umtx_op(2)`): not the `_PRIVATE` variants, which key
//!   sleepers by the process's address space; the shared ones key them by
//!   the object behind the mapping. Timeouts are a `struct _umtx_time`
//!   passed with its size.
//!
//! ## Waiting on several words (async waits)
//!
//! Linux's `futex_waitv` (5.16 and later) sleeps on up to 128 words. Neither
//! macOS nor FreeBSD has an equivalent for shared words (FreeBSD's kqueue
//! `EVFILT_USER` is per process). The async waits already run without it,
//! one background thread per awaited counter (the path Linux before 5.16
//! takes): a port answers `Unsupported` and keeps that path; the costs
//! chapter of the guide says what it costs.
//!
//! ## Lock holders: thread ids, incarnations, liveness
//!
//! The lock word names its holder by kernel thread id (below 2^22 on Linux)
//! and its process's incarnation, and a waiter checks a holder of another
//! process with an open file description lock on the segment's object (see
//! [the lock](super::lock)), a thread of its own with
//! `/proc/self/task/TID`.
//!
//! - **macOS**: no open file description locks (`F_OFD_*` are Linux's);
//!   `flock(2)` locks whole files per open file description, so one
//!   liveness file per process and segment (or a directory of them) would
//!   take the bytes' place, at a descriptor each. Thread ids are 64-bit
//!   (`pthread_threadid_np`), too wide for the word's 22 bits: a
//!   per-process thread number would take their place, and a thread of the
//!   process itself that exits holding a lock would be told by that
//!   number's table.
//! - **FreeBSD**: no `F_OFD_*` either (to be verified on 14); `flock(2)`
//!   as on macOS. `thr_self` gives the calling thread's id (`lwpid_t`,
//!   32-bit), not below 2^22 (ids start above `PID_MAX`): the word's id
//!   limit (`TID_LIMIT`, in `sys::thread`) becomes per-OS, or a per-process
//!   thread number is used as on macOS.
//!
//! ## PID namespaces
//!
//! Linux tells liveness through file locks, which the kernel keeps per
//! object whatever the PID namespace, so processes in different namespaces
//! share segments (containers of one pod, `docker --ipc=container:NAME`).
//! macOS has one process-id space. FreeBSD jails that share a file system
//! would get the same from `flock(2)`; the creator's pid, which `inspect`
//! shows, is then the jail's view.
//!
//! ## memfd and seals
//!
//! - **FreeBSD**: `memfd_create` and `F_ADD_SEALS` / `F_GET_SEALS` with
//!   `F_SEAL_SHRINK`, `F_SEAL_GROW`, `F_SEAL_SEAL` (checked: `shm_open(2)`
//!   lists `memfd_create`; seals were added in FreeBSD 13), plus the older
//!   `shm_open(SHM_ANON)` for an unnamed object without seals. The memfd
//!   backend can stay as it is.
//! - **macOS**: no memfd and no seals. The memfd backend (and
//!   `Shared::from_fd`'s check that a received descriptor is sealed) is left
//!   out; a descriptor-passed segment could be an unlinked POSIX object,
//!   without the guarantee that no peer can truncate it.
//!
//! ## POSIX names and listing segments
//!
//! - **macOS**: names of at most 31 characters (`PSHMNAMLEN` in xnu's
//!   `sys/posix_shm.h`, checked) instead of 255, so
//!   [`MAX_SEGMENT_NAME_LEN`](crate::MAX_SEGMENT_NAME_LEN) becomes per-OS;
//!   there is no directory of objects and no way to list them, so
//!   `shmstore ls` and `gc` need a registry of their own (a directory of
//!   marker files, say); and no rename of shared-memory objects, so
//!   publishing a complete segment under its name needs another protocol
//!   (create with `O_EXCL` and mark the header complete last, say).
//!   Whether an object's size can change after its first `ftruncate` is
//!   to be verified (if not, growing migrations change too).
//! - **FreeBSD**: objects live in a kernel namespace, not a file system;
//!   `shm_rename` (FreeBSD 13) renames atomically, with flags for "no
//!   replace" and "exchange" (to be verified against the manual page), and
//!   `posixshmcontrol ls` shows that the kernel can list them (a sysctl).
//!
//! ## System V
//!
//! - **Linux** reads its limits with `IPC_INFO` and `SHM_INFO` and lists
//!   segments in `/proc/sysvipc/shm`; `shmid_ds` has Linux's layout
//!   (`__key`, `SHM_DEST` in the mode).
//! - **macOS** defaults are tiny: `kern.sysv.shmmax` 4 MiB, `shmmni` 32
//!   segments system-wide, `shmseg` 8 per process, `shmall` 1024 pages
//!   (checked: Apple's support article and reports), settable only at boot.
//!   The System V backend would work for small values only.
//! - **FreeBSD** sizes its defaults from memory at boot (`kern.ipc.shmmax`,
//!   `shmmni`, `shmseg`, `shmall`: to be checked on the system), read with
//!   `sysctl`.
//!
//! Both have their own `shmid_ds` and `ipc_perm` layouts: the file
//! `sys/<os>/sysv.rs` is per OS as a whole.
//!
//! ## Segments shrunk under a mapping (SIGBUS)
//!
//! The SIGBUS handler (POSIX `sigaction` with `SA_SIGINFO`, `si_addr`, and
//! `mmap(MAP_FIXED)` of zeroed pages over the missing ones) is portable in
//! form. Whether a touch past the end of a shrunk object raises SIGBUS or
//! SIGSEGV on macOS and FreeBSD is to be verified on each; the handler must
//! catch whichever it is. On FreeBSD sealed memfds remove the risk as on
//! Linux.
//!
//! ## Descriptor passing
//!
//! `SCM_RIGHTS` is POSIX. Linux and FreeBSD set close-on-exec as the
//! descriptor arrives (`MSG_CMSG_CLOEXEC`); macOS has no such flag, so the
//! receiver would set `FD_CLOEXEC` after `recvmsg`, with a short window in
//! which a concurrent `fork` and `exec` of another thread inherits it.
//!
//! # Which guarantees would change
//!
//! | guarantee | macOS | FreeBSD |
//! |---|---|---|
//! | a lock whose holder *process* died is poisoned, never stuck | kept (`flock` files) | kept (`flock` files) |
//! | a lock whose holder *thread* exited while its process lives is poisoned (by the process's other threads) | kept (a per-process thread table) | kept |
//! | sleeping waiters, no spinning | macOS 14.4+ (`os_sync_*`), else a private API | kept (`_umtx_op`) |
//! | async waits on many counters with few threads | one thread per awaited counter | one thread per awaited counter |
//! | memfd segments that no peer can truncate | no memfd backend | kept |
//! | names up to 255 bytes, `ls`/`gc` without a registry | 31 characters; a registry needed | kept if the kernel's list can be read |
//! | System V segments of useful sizes | 4 MiB by default | kept |
//!
//! A port is done when `sys/<os>/` holds the six files above, the items
//! left outside `sys/` have their per-OS answer, the compile-time refusal
//! in `src/lib.rs` admits the OS, and the whole test suite runs there in
//! CI: until then the refusal stays.
