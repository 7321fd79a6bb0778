//! Mirroring: values and whole stores kept in step across hosts through Redis.
//!
//! Shared memory ends at the host. With the `mirror` feature, a shared value
//! (a `Shared<T>`, a segment opened without its type, or a store entry) is
//! kept in step with the same object on other hosts through a Redis server:
//! one host writes, every host's local processes read their own copy at
//! local speed, with `snapshot()` and `wait_for_change()`, exactly as if a
//! local process had written it. Library users who do not enable the
//! feature build none of it. The API is [`shmstore::mirror`].
//!
//! ```toml
//! shmstore = { version = "0.1", features = ["mirror"] }
//! ```
//!
//! ```no_run
//! # #[cfg(feature = "mirror")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmstore::mirror::MirrorOptions;
//! use shmstore::{Shareable, Shared};
//!
//! #[derive(Shareable, Clone, Copy, Default)]
//! #[repr(C)]
//! struct Config { max_connections: u32, port: u32 }
//!
//! // the host that writes
//! let _m = MirrorOptions::new("redis://redis-host:6379/")
//!     .publish("app-config", Shared::<Config>::open("app-config")?)?;
//! // every other host
//! let _m = MirrorOptions::new("redis://redis-host:6379/")
//!     .subscribe("app-config", Shared::<Config>::open("app-config")?)?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "mirror"))]
//! # fn main() {}
//! ```
//!
//! Without a type, from the command line (`cargo install shmstore --features
//! cli,mirror`):
//!
//! ```sh
//! shmstore mirror publish app-config --redis redis://redis-host:6379/
//! shmstore mirror subscribe app-config --redis redis://redis-host:6379/
//! shmstore mirror subscribe my-app --entry limits --object limits --redis redis://redis-host:6379/
//! shmstore mirror subscribe my-app --store --redis redis://redis-host:6379/   # every entry
//! ```
//!
//! In production, with a password kept out of `ps` and a Sentinel setup that
//! survives the loss of the primary (`--json` prints one event per line for a
//! supervisor):
//!
//! ```sh
//! echo 'redis+sentinel://mirror:PASSWORD@10.0.0.7:26379,10.0.0.8:26379,10.0.0.9:26379/main' \
//!     > /run/secrets/redis-url
//! shmstore mirror publish my-app --store --redis-url-file /run/secrets/redis-url --json
//! ```
//!
//! - **How**: the latest value lives in the Redis hash `shmstore:mirror:NAME`
//!   (bytes, layout fingerprint, type name, size, generation, origin,
//!   revision), written and announced (`PUBLISH`) atomically by a small Lua
//!   script. Subscribers subscribe, then read the hash, so nothing is missed
//!   and a late joiner starts from the latest value; announcements carry the
//!   value, so a change costs one round trip. Pub/sub plus the hash rather
//!   than streams: a mirror wants the latest value, not a history. A
//!   subscriber writes a remote value under the segment's own robust lock as
//!   one committed write: the generation counts one and `wait_for_change`
//!   sleepers wake.
//! - **Type safety**: a value whose fingerprint, type name or size differs
//!   from the local one is refused (counted in `Stats::refused`, reported as
//!   an `Event`, printed by the command) and never written; so is anything
//!   malformed. A publisher of another layout is refused too: give a changed
//!   type a new object name. A value published by a build of another byte
//!   order or pointer width (an s390x host's, read on x86_64) is refused the
//!   same way, with a message that names both, never written as other
//!   numbers; and a publisher does not write over one.
//! - **Direction** is explicit: `publish`, `subscribe` or `both`. With
//!   `both`, the last write to reach Redis wins (Redis numbers the writes;
//!   hosts' generations are never compared); every host converges to it,
//!   and a host's own applied values are never sent back. Run one mirror
//!   per object per host.
//! - **Whole stores** (`publish_store`, `subscribe_store`, `both_store`,
//!   `--store`): every entry's value, and entries created and removed,
//!   follow the publisher; each entry keeps its type checks; one entry's
//!   change sends that entry only (the `store` module of
//!   [`shmstore::mirror`]).
//! - **Authentication, TLS, Sentinel**: ACL users and the legacy password in
//!   the URL (never printed); a refused password is an error, not a retry
//!   loop; `rediss://` with the feature `mirror-tls`;
//!   `redis+sentinel://` follows the primary the sentinels name, and
//!   revisions never go backwards, so no host goes back to an older value
//!   after a failover (what can be lost, and for how long: the module
//!   docs).
//! - **Failures**: Redis down or restarted, or the network cut: commands
//!   time out (2 s), the mirror reconnects with backoff (50 ms doubling to
//!   2 s, with jitter), local readers keep the last good value meanwhile,
//!   and on reconnecting every host converges to the latest value (a
//!   publisher re-sends what changed while it was away, or what Redis
//!   lost). A slow subscriber writes the newest value once, never a queue of
//!   stale ones.
//! - **Limits**: echo suppression works within one mirror, hence one mirror
//!   per object per host; with `both`, a host can be one value behind for up
//!   to the check interval (1 s) after a rare race; a remote value is
//!   written even when the local lock is poisoned (the poison stays for
//!   local users to clear); the command runs until killed (or until Redis
//!   refuses its credentials).
//!
//! `cargo run --release --features mirror --example mirror` runs two hosts
//! (as root, each in its own mount namespace with its own /dev/shm) kept in
//! step through a `redis-server` it starts itself; `mirror_failover` fails
//! a Sentinel setup over ten times and `mirror_store_bench` measures a store
//! of 10,000 entries. What a mirror costs is in [costs](super::costs).
//!
#![cfg_attr(
    not(feature = "mirror"),
    doc = "[`shmstore::mirror`]: https://docs.rs/shmstore/latest/shmstore/mirror/index.html"
)]
