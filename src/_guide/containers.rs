//! Containers: sharing segments between processes in different PID
//! namespaces.
//!
//! Containers of one Kubernetes pod, Docker containers that share an IPC
//! namespace, and sidecars beside an application each run in a PID
//! namespace of their own: a process id in one means nothing in another.
//! shmstore does not need them to: it tells whether a lock holder lives from
//! a file lock that every process holds in the segment, which the kernel
//! drops when the process dies, whatever its namespace (see
//! [the lock](crate::_design::lock), *Who is alive*). So processes in
//! different PID namespaces share segments exactly as processes of one
//! namespace do: a holder killed in one container is taken over, poisoned,
//! from another within about 50 ms, also by a waiter already asleep, also
//! while the dead holder is a zombie nobody reaps.
//!
//! # What the containers must share
//!
//! | backend | shared between the containers |
//! |---|---|
//! | POSIX (names) | the same /dev/shm (one tmpfs mounted in each) |
//! | file | the file, on a volume mounted in each |
//! | System V (keys) | one IPC namespace, and the same /dev/shm: a System V segment has an empty stand-in file there through which its users show themselves (`.shmstore-sysv.…`, removed with the segment) |
//! | memfd | a Unix socket to pass the descriptor over ([`send_fd`](crate::send_fd)) |
//! | anonymous | nothing: only forked children share it |
//!
//! They need not share the PID namespace, nor the rest of the mount
//! namespace, nor the network. They should run as one user: a segment of
//! another user is [`Error::ForeignOwner`](crate::Error::ForeignOwner)
//! unless the opener allows it
//! ([`allow_foreign_owner`](crate::SharedOptions::allow_foreign_owner)),
//! and its mode decides who may open it at all.
//!
//! # Kubernetes
//!
//! The containers of a pod share an IPC namespace; give them one /dev/shm by
//! mounting the same memory-backed volume there (its size limit is the
//! segments' room):
//!
//! ```yaml
//! spec:
//!   securityContext: {runAsUser: 1000, runAsGroup: 1000}
//!   volumes:
//!     - {name: shm, emptyDir: {medium: Memory, sizeLimit: 64Mi}}
//!   containers:
//!     - name: app
//!       image: example/app
//!       volumeMounts: [{name: shm, mountPath: /dev/shm}]
//!     - name: exporter
//!       image: example/exporter
//!       volumeMounts: [{name: shm, mountPath: /dev/shm}]
//! ```
//!
//! `shareProcessNamespace` is not needed.
//!
//! # Docker
//!
//! Let the first container share its IPC namespace, and join it from the
//! others: they then share its /dev/shm too.
//!
//! ```sh
//! docker run -d --ipc=shareable --user 1000 --name app example/app
//! docker run -d --ipc=container:app --user 1000 example/exporter
//! ```
//!
//! With Compose, `ipc: shareable` on the first service and
//! `ipc: "service:app"` on the others. File segments on a volume mounted in
//! both containers work too, and survive the containers: a container
//! restarted (with a new PID namespace) reopens its file, and if its last
//! run died holding the lock, it gets the lock back poisoned, with the data
//! as it was left:
//!
//! ```no_run
//! use shmstore::{Location, Shared};
//!
//! let stats = Shared::<u64>::open_or_create(Location::file("/shared/stats"), 0)?;
//! *stats.lock().unwrap_or_else(|p| p.into_inner()) += 1;
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! # Rootless containers and user namespaces
//!
//! A rootless container runs in a user namespace that maps its root to an
//! ordinary user outside. A segment it creates belongs to that outside
//! user, and is that user's as far as every other process is concerned; a
//! process of the same user opens it as its own, inside or outside the
//! namespace. Inside, a segment of a user the namespace does not map shows
//! as owned by uid 65534 (the kernel's overflow id): a private one (0600)
//! is [`Error::PermissionDenied`](crate::Error::PermissionDenied), one that
//! everyone may write (0666) [`Error::ForeignOwner`](crate::Error::ForeignOwner)
//! unless allowed. (Tested in `tests/shmstore/namespaces.rs`.)
//!
//! # Good to know
//!
//! - Each process keeps one descriptor per segment it has open; that is
//!   the file lock that shows it alive (a memfd handle lends it for
//!   sharing).
//! - A thread of another process that ends holding a lock while its
//!   process lives (a forgotten guard) is a holder until that process ends:
//!   across PID namespaces threads cannot be seen.
//! - `shmstore ls` and `inspect` in any container show the segments of the
//!   shared /dev/shm, and count the processes that have each open in every
//!   namespace; `shmstore gc` removes a segment only once no process
//!   anywhere has it open.
