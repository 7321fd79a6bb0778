//! Backends: where the memory comes from.
//!
//! The same [`Shared<T>`](crate::Shared), lock, poisoning and checks,
//! wherever the memory comes from. A `&str` names a POSIX shared-memory
//! object, a [`SysvKey`](crate::SysvKey) a System V segment and a `&Path` a
//! regular file (all three through [`IntoLocation`](crate::IntoLocation),
//! or an explicit [`Location`](crate::Location)); memfd and anonymous
//! segments have no name at all.
//!
//! ```
//! use std::path::PathBuf;
//! use shmstore::{Shareable, Shared, SysvKey};
//!
//! #[derive(Shareable, Clone, Copy, Default)]
//! #[repr(C)]
//! struct Counter { value: u64 }
//! let v = Counter::default();
//!
//! # let pid = std::process::id();
//! # let name = format!("doc-guide-backends-{pid}");
//! # // Doc tests take System V keys in 0x4000_0000..0x4fff_ffff, one per process.
//! # let key = SysvKey::new((0x4000_0000 | (pid & 0x3f_ffff) << 6) as i32);
//! # let path = std::env::temp_dir().join(format!("doc-guide-backends-{pid}"));
//! // POSIX shm_open: /dev/shm/NAME (the default)
//! let posix = Shared::<Counter>::open_or_create(&name, v)?;
//! // System V shmget/shmat, with a key both sides agree on
//! let sysv = Shared::<Counter>::open_or_create(key, v)?;
//! // System V IPC_PRIVATE: nobody can find it by key; for forked children
//! let private = Shared::<Counter>::create(SysvKey::private(), v)?;
//! // MAP_SHARED | MAP_ANONYMOUS: for children forked after this
//! let anonymous = Shared::<Counter>::anonymous(v)?;
//! // a regular file: survives reboots (flush() makes writes durable)
//! let file = Shared::<Counter>::open_or_create(path.as_path(), v)?;
//! file.flush()?;
//!
//! let info = sysv.sysv_info().expect("a System V segment")?;
//! assert_eq!(info.key, key.key());
//! assert_eq!(info.attach_count, 1);
//!
//! shmstore::unlink(&name)?;   // shm_unlink
//! shmstore::unlink(key)?;     // IPC_RMID: gone once the last process detaches
//! shmstore::unlink(path.as_path())?;  // unlink(2)
//! # drop((posix, sysv, private, anonymous, file));
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! A sealed memfd is shared by its descriptor, inherited by children or sent
//! over a Unix socket with [`send_fd`](crate::send_fd) and
//! [`recv_fd`](crate::recv_fd):
//!
//! ```
//! # use shmstore::{Shareable, Shared};
//! # #[derive(Shareable, Clone, Copy, Default)]
//! # #[repr(C)]
//! # struct Counter { value: u64 }
//! use std::os::unix::net::UnixStream;
//!
//! let mine = Shared::<Counter>::memfd(Counter::default())?;
//! let (here, there) = UnixStream::pair()?;
//! shmstore::send_fd(&here, mine.as_fd().expect("a memfd segment"))?;
//! // ... in the other process, which has the other end of the socket:
//! let theirs = Shared::<Counter>::from_fd(shmstore::recv_fd(&there)?)?;
//! theirs.lock().unwrap().value = 7;
//! assert_eq!(mine.lock().unwrap().value, 7);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | backend | found by | removed by | notes |
//! |---|---|---|---|
//! | POSIX (default) | name, in /dev/shm | `shmstore::unlink(name)` | owner and mode checked; created under a hidden temporary name and renamed into place whole; a full /dev/shm is `NoSpace` at creation |
//! | System V | key (a number, `ftok`, or private) | `shmstore::unlink(key)` = `IPC_RMID`: the segment lives until the last process detaches | [`sysv_info()`](crate::Shared::sysv_info) shows key, id, owner, attach count; size limits (SHMMAX, SHMMNI, SHMALL) are named in the error; an empty stand-in file in /dev/shm (`.shmstore-sysv.…`), removed with the segment, tells its users' liveness (see `_design::lock`), so processes sharing it must share /dev/shm too |
//! | anonymous | inheritance: children forked after creation | nothing to remove: gone with the last process | `examples/fork_workers.rs` |
//! | memfd | its descriptor, inherited or sent over a Unix socket (`send_fd`/`recv_fd`) | gone with the last descriptor and mapping | sealed against shrinking and growing: nobody can truncate it under a mapping (no SIGBUS); `from_fd` accepts only sealed memfds, and closes the descriptor it was given once mapped (hand it over, don't keep it: a kept copy keeps the sender looking alive to its lock's waiters); `examples/memfd_socket.rs` |
//! | file | path | `shmstore::unlink(path)` | survives reboots of the host; [`flush()`](crate::Shared::flush) (`msync`) makes what was written durable, otherwise the kernel writes back within about 30 s; made in the file's directory under a temporary name and renamed into place whole (the directory must be writable); a symlink, FIFO or directory at the path is refused (`Corrupt`); a container restarted with a new PID namespace reopens its file and takes over a lock its previous run died holding |
//!
//! # System V keys
//!
//! [`SysvKey::new`](crate::SysvKey::new) takes a number both sides agree
//! on; [`SysvKey::ftok`](crate::SysvKey::ftok) derives one from an
//! existing file and a project byte, as `ftok(3)` does:
//!
//! ```
//! # use shmstore::SysvKey;
//! let key = SysvKey::ftok("/", 7)?;
//! assert_eq!(key, SysvKey::ftok("/", 7)?);   // the same file gives the same key
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! `ftok` keys collide: `ftok` keeps only 8 bits of `proj` and the low 16
//! bits of the file's inode (8 of its device), so different files can share
//! a key, and a file deleted and re-created usually gets the old key back.
//! A System V segment that another program made under your key is refused
//! ([`Error::Corrupt`](crate::Error::Corrupt)), never interpreted.
//!
//! How each backend's segments are created and opened safely is in
//! [`_design::segment`](crate::_design::segment).
