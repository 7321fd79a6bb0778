//! Mirroring shared objects across hosts through Redis (feature `mirror`).
//!
//! Shared memory ends at the host. A mirror carries one shared value (a
//! [`Shared<T>`](crate::Shared), an untyped segment, or a store entry) to
//! the same value on other hosts: one host (or an operator) writes, every
//! host's local processes read their own copy from their own shared memory,
//! at local speed, with [`snapshot`](crate::Shared::snapshot) and
//! [`wait_for_change`](crate::Shared::wait_for_change), as if a local
//! process had written.
//!
//! ```no_run
//! use shmstore::mirror::MirrorOptions;
//! use shmstore::{Shareable, Shared};
//!
//! #[derive(Shareable, Clone, Copy, Default)]
//! #[repr(C)]
//! struct Config { max_connections: u32, port: u32 }
//!
//! // On the host that writes:
//! let config = Shared::<Config>::open_or_create("app-config", Config::default())?;
//! let _m = MirrorOptions::new("redis://config-redis:6379/")
//!     .publish("app-config", Shared::<Config>::open("app-config")?)?;
//! config.lock().unwrap().max_connections = 250; // reaches every host
//!
//! // On every other host:
//! let config = Shared::<Config>::open_or_create("app-config", Config::default())?;
//! let _m = MirrorOptions::new("redis://config-redis:6379/")
//!     .subscribe("app-config", Shared::<Config>::open("app-config")?)?;
//! // Local processes read `config` as usual; remote writes wake them.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Whole stores
//!
//! [`publish_store`](MirrorOptions::publish_store),
//! [`subscribe_store`](MirrorOptions::subscribe_store) and
//! [`both_store`](MirrorOptions::both_store) mirror every entry of a
//! [`Store`](crate::Store), and entries being created and removed, through
//! one Redis hash, as a [`StoreMirror`]. What follows the publisher, what
//! is refused, what a full store does and what is in Redis: see the
//! [`store`] module.
//!
//! # Direction
//!
//! A mirror [publishes](MirrorOptions::publish) (local commits go to
//! Redis), [subscribes](MirrorOptions::subscribe) (Redis's value comes into
//! local memory) or does [both](MirrorOptions::both). Choose one writer
//! host and `publish`/`subscribe` where you can; `both` is for objects that
//! several hosts write, under the conflict rule below.
//!
//! # What is in Redis
//!
//! For the object named `NAME`, the hash `shmstore:mirror:NAME` holds the
//! latest value: `value` (its bytes), `fingerprint` (of its layout, in
//! decimal, followed by the publisher's byte order and pointer width unless
//! they are little-endian 64-bit: see below), `type` (its type name), `size`, `generation` (on the host that
//! wrote it), `origin` (which mirror wrote it) and `rev` (its revision,
//! below). A small Lua script (`EVALSHA`) checks, stores and announces a
//! value in one atomic step: it refuses a value whose fingerprint differs
//! from the one stored, changes nothing when the bytes are those already
//! stored, else gives the write the next revision, writes the hash and
//! `PUBLISH`es the record (six lines of fields, then the bytes) on the
//! channel of the same name.
//!
//! A revision is the largest of: the stored one plus one, the largest this
//! mirror has seen plus one, and the Redis server's clock in microseconds.
//! So each write to reach Redis has a larger revision than every write
//! before it, also on a server that lost writes (a replica promoted by a
//! failover, a server restarted empty), and a subscriber never writes a
//! value with a smaller revision than one it has written (counted in
//! [`Stats::stale`]): no host ever goes back to an older value. (The clock
//! part assumes the servers' clocks differ by less than a failover takes:
//! seconds.)
//!
//! Subscribers `SUBSCRIBE` first and then read the hash (`HGETALL`), so no
//! write falls between the two. Announcements carry the record, so a
//! change costs no extra round trip; the hash is what closes the gaps
//! pub/sub leaves (a reconnect, a late joiner), and it is read again every
//! [`check_interval`](MirrorOptions::check_interval) when nothing was
//! heard, which also tells a live connection from a dead one. Streams
//! would keep a history nobody needs: a mirror wants the latest value only.
//!
//! # Type safety across the network
//!
//! A value is written into local memory only if it was published by a
//! build of this byte order and pointer width, its fingerprint, type name
//! and size are the local value's, and its bytes are exactly that many.
//! Anything else (another byte order, another layout, another type, missing or malformed
//! fields, any bytes at all in Redis) is refused: counted in
//! [`Stats::refused`], reported as [`Event::Refused`] and by
//! [`Mirror::last_refusal`], and never written. A publisher whose type
//! differs from the one Redis holds under that name is refused by the
//! script the same way: give a changed type a new object name (or delete
//! the key).
//!
//! # Byte order and pointer width
//!
//! A value's bytes are its numbers in the byte order of the build that
//! published it, and the layout fingerprint is the same on every host, so
//! the record also says which build that was. A little-endian 64-bit
//! build (x86_64, aarch64, riscv64, powerpc64le) writes the fingerprint
//! field as before, the fingerprint alone; any other build appends a colon
//! and its byte order and pointer width: `1234:be64` from s390x. So every
//! record written before the field existed counts as little-endian 64-bit,
//! which is all that earlier builds could be, and older and newer
//! little-endian builds mirror each other as before. A subscriber refuses a
//! value of another byte order or pointer width before anything else
//! (reported as [`Event::Refused`], with both named: "published by a
//! big-endian 64-bit build ..., and this host is a little-endian 64-bit
//! build") and never writes it. The fingerprint field differs, so the
//! publishing script refuses a write over the value of another byte order
//! as it refuses another layout, and the publisher reports that with both
//! byte orders named. Older builds, which know no such suffix, refuse such
//! records as malformed. An unknown suffix is malformed too.
//!
//! # Writing a remote value
//!
//! The subscriber takes the local segment's own lock (the robust,
//! process-shared one), writes the whole value, and releases it: one
//! committed write, so the generation counts one, snapshots never see half
//! of it, and `wait_for_change` sleepers wake. A value equal to the local
//! one is not written. A poisoned lock does not stop it (the remote value
//! replaces the whole value), but the poison stays for local users to see
//! and clear.
//!
//! # Slow subscribers skip to the newest value
//!
//! One thread reads announcements as they come and keeps only the newest
//! in a one-place mailbox; another takes the local lock and only then takes
//! what is in the mailbox. A subscriber whose local lock is held for long,
//! or whose host is busy, writes the newest value once when it can, never a
//! queue of stale ones.
//!
//! # Echoes, and the conflict rule for `both`
//!
//! A subscriber notes the generation its own write will have before it
//! releases the lock; the publisher of the same mirror skips that
//! generation, so a value that came from Redis is not sent back. (Run one
//! mirror per object per host: two separate mirror processes for one
//! segment cannot tell each other's writes from local ones.)
//!
//! When several hosts write one object (`both`), **the last write to reach
//! Redis wins**: Redis runs the script for one write at a time and numbers
//! them (`rev`), and every host applies what the hash holds, so all hosts
//! converge to the value with the highest `rev`. A local write that loses,
//! because another host's write reached Redis later, is overwritten on its
//! host when the winner arrives (local readers see both, in that order). A
//! remote value that arrives while a local write waits to be sent is not
//! written: the local write reaches Redis after it, and wins. Each host's
//! local generations are not compared across hosts: they count commits in
//! one segment and mean nothing elsewhere.
//!
//! One race needs a repair: a remote value that reached Redis just after
//! this host's write, and arrived here before the reply to that write,
//! is skipped by the rule above although it won. So a `both` mirror, each
//! time it reads the hash (every
//! [`check_interval`](MirrorOptions::check_interval) and after
//! reconnecting), writes Redis's value over the local one if they differ
//! and no local write is waiting to be sent, whoever wrote it. Hosts
//! therefore agree within about one check interval once writes stop.
//!
//! At start, a `both` mirror takes the value Redis holds, if any, over the
//! local one (a late joiner), and puts its local value there only if Redis
//! holds none; local writes made after it started are sent as usual. A
//! `publish` mirror sends its local value.
//!
//! # Failures
//!
//! - Redis down, restarted, or the network cut: every command has a
//!   timeout ([`io_timeout`](MirrorOptions::io_timeout)); a failed
//!   connection is dropped and made again after a pause that doubles from
//!   50 ms up to [`max_backoff`](MirrorOptions::max_backoff) (with jitter),
//!   for as long as it takes. Local readers keep the last good value
//!   meanwhile: nothing local changes while Redis is away.
//! - On reconnecting, the subscriber reads the hash and applies it if it is
//!   a write it has not applied; the publisher sends the local value if it
//!   changed while the connection was down, or if Redis lost it (a Redis
//!   restarted without persistence holds nothing, or holds an older write
//!   of this mirror). A `both` mirror with no local write waiting restores
//!   a lost value only if no other host has restored one first (the
//!   script's `init` mode), so a host's stale value never replaces a
//!   fresher one. So every host converges to the latest value.
//! - A publisher with nothing to send checks its connection every
//!   [`check_interval`](MirrorOptions::check_interval) (`PING`), so that a
//!   Redis that went away and came back (or failed over) gets what it lost
//!   without waiting for the next local write.
//! - [`Stats::disconnects`] counts lost and failed connections, and
//!   [`Event::Disconnected`] reports each, with the pause before the next
//!   try.
//! - Redis refuses the credentials, or a command the mirror needs is not
//!   allowed to its user: no retry can mend that, so starting the mirror
//!   fails with [`Error::Refused`] (it tries one connection first), or a
//!   running mirror stops, once, with [`Event::Stopped`] and
//!   [`Mirror::failure`] saying why.
//!
//! # Authentication and TLS
//!
//! The URL carries the credentials: `redis://USER:PASSWORD@HOST:PORT/` for
//! an ACL user, `redis://:PASSWORD@HOST:PORT/` for the legacy
//! `requirepass`. Passwords never appear in what a mirror prints, reports
//! or returns: every URL is shown as `redis://USER:***@HOST:PORT/`
//! ([`Mirror::redis`], `Debug`, errors, events). The least a mirror's ACL
//! user needs (tested):
//!
//! ```text
//! user mirror on >PASSWORD resetchannels ~shmstore:* &shmstore:* +@read +@write +@pubsub +@scripting +@connection +role +time
//! ```
//!
//! `rediss://` (and `rediss+sentinel://`) talk TLS, with the feature
//! `mirror-tls` (it adds rustls, ring and rustls-native-certs): the
//! server's certificate must be signed by a root the system trusts (or the
//! file `SSL_CERT_FILE` names), or by the root certificate given to
//! [`tls_root_certificate`](MirrorOptions::tls_root_certificate). Without
//! the feature, a TLS URL is an [`Error::InvalidUrl`] that says so.
//!
//! # Failover through Redis Sentinel
//!
//! A URL `redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER`
//! names sentinels and the master's name in their configuration. Each
//! connection asks the sentinels (the one that answered last first) for
//! the current primary, connects to it, and checks that it says it is the
//! primary (`ROLE`). When the primary dies, connections fail; while the
//! mirror waits to retry it listens to a sentinel's `+switch-master`
//! announcements, so it reconnects as soon as the sentinels have promoted
//! a replica, reports [`Event::Failover`], and converges as after any
//! reconnection (measured by the example `mirror_failover`: see the
//! README). A primary demoted to a replica answers writes with `READONLY`,
//! which also makes the mirror ask the sentinels again.
//!
//! A mirror follows a primary only to a host it was told of: the
//! sentinels' own hosts in the URL, and those given to
//! [`allow_primary`](MirrorOptions::allow_primary) (or any, with
//! [`allow_any_primary`](MirrorOptions::allow_any_primary)). A sentinel
//! that names another host, misconfigured or not the user's, is reported
//! and not followed. The sentinels' own password, if they require one, is
//! [`sentinel_password`](MirrorOptions::sentinel_password).
//!
//! **What a failover can lose.** Redis replicates asynchronously: a write
//! the old primary acknowledged but had not yet sent to the replica is not
//! on the new primary. Subscribers that had applied it keep it (they never
//! go back, see the revisions above), the others keep the older value, and
//! the publisher sends its current value again as soon as it reaches the
//! new primary (it finds its last write missing). So while the publisher
//! lives, hosts disagree for as long as the failover takes plus one
//! reconnection. If the publisher's host died with the primary, its last
//! unreplicated writes are lost from Redis until it writes again; store
//! mirrors send their entries, creations and removals again the same way.
//!
//! Dropping the [`Mirror`] stops its threads (within about 100 ms, or the
//! I/O timeout if a command is in flight).

mod link;
mod run;
pub mod store;
mod target;
mod url;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use run::Mirror;
pub use store::StoreMirror;
pub use target::Target;

/// What a mirror does with its object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Local commits are stored in Redis and announced.
    Publish,
    /// Values from Redis are written into local memory.
    Subscribe,
    /// Both, under the last-write-to-reach-Redis-wins rule.
    Both,
}

impl Direction {
    pub(crate) fn publishes(self) -> bool {
        matches!(self, Direction::Publish | Direction::Both)
    }

    pub(crate) fn subscribes(self) -> bool {
        matches!(self, Direction::Subscribe | Direction::Both)
    }
}

/// What a mirror reports as it goes (see [`MirrorOptions::on_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection to Redis was made (`"publish"` or `"subscribe"` side).
    Connected {
        /// Which side.
        side: &'static str,
    },
    /// A connection failed or was lost; the next try is after `retry_in`.
    Disconnected {
        /// Which side.
        side: &'static str,
        /// What went wrong.
        error: String,
        /// The pause before the next try.
        retry_in: Duration,
    },
    /// A local value was stored in Redis and announced.
    Published {
        /// Its revision in Redis.
        rev: u64,
        /// Its local generation.
        generation: u64,
    },
    /// A value from Redis was written into local memory.
    Applied {
        /// Its revision in Redis.
        rev: u64,
        /// The mirror that published it.
        origin: String,
        /// The local generation its write has.
        generation: u64,
    },
    /// A value was refused, and not written (remote) or not sent (local).
    Refused {
        /// Why.
        reason: String,
    },
    /// A store's entry was stored in Redis and announced.
    EntryPublished {
        /// The entry's key.
        key: String,
        /// Its revision in Redis.
        rev: u64,
        /// Its local generation.
        generation: u64,
    },
    /// A store entry's value from Redis was written into the local entry.
    EntryApplied {
        /// The entry's key.
        key: String,
        /// Its revision in Redis.
        rev: u64,
        /// The mirror that published it.
        origin: String,
        /// The local generation its write has.
        generation: u64,
    },
    /// A store entry was created here because the publisher's store has
    /// it.
    EntryCreated {
        /// The entry's key.
        key: String,
        /// Its type name.
        type_name: String,
        /// The mirror that published it.
        origin: String,
    },
    /// A store entry was removed here because the publisher removed it
    /// (handles open here keep working, as after
    /// [`Store::remove`](crate::Store::remove)).
    EntryRemoved {
        /// The entry's key.
        key: String,
        /// The mirror that removed it.
        origin: String,
    },
    /// The sentinels named another primary, and the mirror now talks to
    /// it (`HOST:PORT` each).
    Failover {
        /// The primary before.
        from: String,
        /// The primary now.
        to: String,
    },
    /// The mirror stopped for good: Redis refused its credentials, or a
    /// command its user may not run (see [`Mirror::failure`]).
    Stopped {
        /// Why.
        error: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Connected { side } => write!(f, "connected ({side})"),
            Event::Disconnected {
                side,
                error,
                retry_in,
            } => write!(
                f,
                "disconnected ({side}): {error}; retrying in {} ms",
                retry_in.as_millis()
            ),
            Event::Published { rev, generation } => {
                write!(f, "published rev={rev} generation={generation}")
            }
            Event::Applied {
                rev,
                origin,
                generation,
            } => write!(
                f,
                "applied rev={rev} origin={origin} generation={generation}"
            ),
            Event::Refused { reason } => write!(f, "refused: {reason}"),
            Event::EntryPublished {
                key,
                rev,
                generation,
            } => write!(f, "published {key} rev={rev} generation={generation}"),
            Event::EntryApplied {
                key,
                rev,
                origin,
                generation,
            } => write!(
                f,
                "applied {key} rev={rev} origin={origin} generation={generation}"
            ),
            Event::EntryCreated {
                key,
                type_name,
                origin,
            } => write!(f, "created {key} ({type_name}) origin={origin}"),
            Event::EntryRemoved { key, origin } => write!(f, "removed {key} origin={origin}"),
            Event::Failover { from, to } => write!(f, "failover: the primary was {from}, is {to}"),
            Event::Stopped { error } => write!(f, "stopped: {error}"),
        }
    }
}

/// Counters of what a mirror did (see [`Mirror::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Local values stored in Redis and announced.
    pub published: u64,
    /// Local values not stored because Redis held exactly those bytes
    /// already.
    pub unchanged: u64,
    /// Remote values not written because the local value was exactly
    /// those bytes already.
    pub skipped: u64,
    /// Local generations that were this mirror's own writes of remote
    /// values, not sent back.
    pub echoes: u64,
    /// Remote values written into local memory.
    pub applied: u64,
    /// Values refused: another layout, another byte order or pointer
    /// width, or malformed.
    pub refused: u64,
    /// Connections lost or failed (each followed by a retry).
    pub disconnects: u64,
    /// Store entries created here because the publisher has them.
    pub created: u64,
    /// Store entries removed here because the publisher removed them.
    pub removed: u64,
    /// Remote values not written because one of a later revision was
    /// written already (an older write that a failed-over Redis still
    /// held, or that arrived late).
    pub stale: u64,
}

/// What can go wrong when a mirror starts. (Once it runs, failures are
/// retried and reported as [`Event`]s, not returned.)
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The local segment or entry could not be opened.
    Shm(crate::Error),
    /// The local segment cannot be mirrored.
    Unusable {
        /// Its name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Subscribing needs write access to the local segment.
    ReadOnly {
        /// Its name.
        name: String,
    },
    /// The Redis URL is not one.
    InvalidUrl {
        /// The URL, without its password.
        url: String,
        /// The client's complaint.
        reason: String,
    },
    /// Redis refused the credentials (a wrong user name or password):
    /// retrying cannot help, so the mirror does not start.
    Refused {
        /// The server, without the password.
        server: String,
        /// What Redis said.
        reason: String,
    },
    /// An object name or origin that cannot be used.
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The result of starting a mirror.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shm(e) => e.fmt(f),
            Error::Unusable { name, reason } => {
                write!(f, "`{name}` cannot be mirrored: {reason}")
            }
            Error::ReadOnly { name } => write!(
                f,
                "`{name}` is open read-only: subscribing writes to it, so run as a user who may \
                 write it"
            ),
            Error::InvalidUrl { url, reason } => {
                write!(
                    f,
                    "`{url}` is not a Redis URL ({reason}): give redis://[USER:PASSWORD@]HOST:PORT/ \
                     or redis+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER"
                )
            }
            Error::Refused { server, reason } => f.write_str(&link::explain_fatal_text(server, reason)),
            Error::InvalidName { name, reason } => write!(f, "{name:?}: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Shm(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crate::Error> for Error {
    fn from(e: crate::Error) -> Error {
        Error::Shm(e)
    }
}

/// A callback for [`Event`]s.
type OnEvent = Arc<dyn Fn(&Event) + Send + Sync>;

/// How to mirror: the Redis server, timeouts, who we are. Set what you
/// need, then start a mirror with [`publish`](MirrorOptions::publish),
/// [`subscribe`](MirrorOptions::subscribe) or [`both`](MirrorOptions::both).
#[derive(Clone)]
pub struct MirrorOptions {
    url: String,
    origin: Option<String>,
    io_timeout: Duration,
    check_interval: Duration,
    max_backoff: Duration,
    on_event: Option<OnEvent>,
    allowed_primaries: Vec<String>,
    any_primary: bool,
    sentinel_password: Option<String>,
    tls_root: Option<Vec<u8>>,
}

impl fmt::Debug for MirrorOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorOptions")
            .field("url", &link::redact(&self.url))
            .field("origin", &self.origin)
            .field("io_timeout", &self.io_timeout)
            .field("check_interval", &self.check_interval)
            .field("max_backoff", &self.max_backoff)
            .field("allowed_primaries", &self.allowed_primaries)
            .field("any_primary", &self.any_primary)
            .finish_non_exhaustive()
    }
}

impl MirrorOptions {
    /// Mirroring through Redis at `url`:
    ///
    /// - one server: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`
    ///   (`rediss://` for TLS, with the feature `mirror-tls`);
    /// - the primary that Redis Sentinel names:
    ///   `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]`,
    ///   the sentinels' addresses and the master's name in their
    ///   configuration; the user and password are the data servers' (see
    ///   [`sentinel_password`](MirrorOptions::sentinel_password) for the
    ///   sentinels' own), and `rediss+sentinel://` talks TLS to them.
    ///
    /// A password never appears in what a mirror prints, reports or
    /// returns: URLs are shown as `redis://USER:***@HOST/`.
    pub fn new(url: impl Into<String>) -> MirrorOptions {
        MirrorOptions {
            url: url.into(),
            origin: None,
            io_timeout: Duration::from_secs(2),
            check_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(2),
            on_event: None,
            allowed_primaries: Vec::new(),
            any_primary: false,
            sentinel_password: None,
            tls_root: None,
        }
    }

    /// With TLS (`rediss://`, feature `mirror-tls`): trust this root
    /// certificate (PEM), a private CA's, instead of the system's roots.
    /// (The system's roots are read as OpenSSL does: the `SSL_CERT_FILE`
    /// environment variable names another file of them.)
    #[cfg(feature = "mirror-tls")]
    pub fn tls_root_certificate(&mut self, pem: impl Into<Vec<u8>>) -> &mut Self {
        self.tls_root = Some(pem.into());
        self
    }

    /// With Sentinel: a host (as the sentinels name it, usually an IP
    /// address) the primary may be on, besides the sentinels' own hosts.
    ///
    /// A mirror follows a primary only to a host it was told of: the
    /// sentinels' hosts in the URL, and those allowed here. A sentinel
    /// that names any other (misconfigured, or not the user's) is not
    /// followed: the mirror reports it and asks again after a pause.
    pub fn allow_primary(&mut self, host: impl Into<String>) -> &mut Self {
        self.allowed_primaries.push(host.into());
        self
    }

    /// With Sentinel: follows a primary on whatever host the sentinels
    /// name (see [`allow_primary`](MirrorOptions::allow_primary)).
    pub fn allow_any_primary(&mut self) -> &mut Self {
        self.any_primary = true;
        self
    }

    /// With Sentinel: the password the sentinels themselves require (their
    /// `requirepass`), if any; the URL's is the data servers'.
    pub fn sentinel_password(&mut self, password: impl Into<String>) -> &mut Self {
        self.sentinel_password = Some(password.into());
        self
    }

    /// The name this mirror writes as its values' `origin` (default: the
    /// host name, the process id and the start time): printable, no
    /// spaces, at most 128 bytes, and unique among running mirrors.
    pub fn origin(&mut self, origin: impl Into<String>) -> &mut Self {
        self.origin = Some(origin.into());
        self
    }

    /// How long one Redis command (or connecting) may take before the
    /// connection is given up for dead (default 2 s).
    pub fn io_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.io_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// How often a subscriber that heard nothing reads the hash anyway,
    /// and a publisher with nothing to send checks its connection
    /// (default 1 s).
    pub fn check_interval(&mut self, every: Duration) -> &mut Self {
        self.check_interval = every.max(Duration::from_millis(10));
        self
    }

    /// The longest pause between two tries to reconnect (default 2 s).
    pub fn max_backoff(&mut self, pause: Duration) -> &mut Self {
        self.max_backoff = pause.max(Duration::from_millis(50));
        self
    }

    /// Calls `f` with each [`Event`], on the mirror's threads: keep it
    /// short (print it, count it).
    pub fn on_event(&mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> &mut Self {
        self.on_event = Some(Arc::new(f));
        self
    }

    /// Publishes `target` (a [`Shared<T>`](crate::Shared) or a
    /// [`Target`]) as the object `object`: sends its value now, then on
    /// every committed change.
    pub fn publish(&self, object: &str, target: impl Into<Target>) -> Result<Mirror> {
        self.start(object, target.into(), Direction::Publish)
    }

    /// Keeps `target` equal to the object `object`: loads the latest value
    /// now, if Redis has one, then every new one.
    pub fn subscribe(&self, object: &str, target: impl Into<Target>) -> Result<Mirror> {
        self.start(object, target.into(), Direction::Subscribe)
    }

    /// Both directions, under the rule in the [module docs](self).
    pub fn both(&self, object: &str, target: impl Into<Target>) -> Result<Mirror> {
        self.start(object, target.into(), Direction::Both)
    }

    /// Starts a mirror of `target` as `object` in `direction`. Returns once
    /// its threads run; it connects (and reconnects) in the background.
    pub fn start(&self, object: &str, target: Target, direction: Direction) -> Result<Mirror> {
        let origin = self.names(object)?;
        if direction.subscribes() && !target.is_writable() {
            return Err(Error::ReadOnly {
                name: target.name().to_owned(),
            });
        }
        let runner = self.runner()?;
        Ok(run::start(
            run::Config {
                key: format!("{}{object}", wire::PREFIX),
                object: object.to_owned(),
                origin,
                target,
                direction,
                check_interval: self.check_interval,
            },
            runner,
        ))
    }

    /// The link to Redis, tried once: credentials Redis refuses are an
    /// error now ([`Error::Refused`]), not a mirror that retries forever.
    /// Redis unreachable is not an error: the mirror connects when it can.
    fn runner(&self) -> Result<link::Runner> {
        let shown = link::redact(&self.url);
        let invalid = |reason: String| Error::InvalidUrl {
            url: shown.clone(),
            reason,
        };
        let servers = match url::parse(&self.url).map_err(invalid)? {
            url::Parsed::One(info) => link::Servers::One(info),
            url::Parsed::Sentinel(mut s) => {
                s.auth.password = self.sentinel_password.clone();
                if self.any_primary {
                    s.allowed = None;
                } else if let Some(allowed) = &mut s.allowed {
                    allowed.extend(self.allowed_primaries.iter().cloned());
                }
                link::Servers::Sentinel(s)
            }
        };
        let link = link::Link::new(
            servers,
            shown.clone(),
            self.io_timeout,
            self.max_backoff,
            self.on_event.clone(),
            self.tls_root.clone(),
        );
        let tried = link
            .connect()
            .and_then(|mut con| redis::cmd("PING").query::<()>(&mut con));
        if let Err(e) = tried {
            if link::is_fatal(&e) {
                return Err(Error::Refused {
                    server: shown,
                    reason: e.to_string(),
                });
            }
        }
        Ok(link::Runner::new(link))
    }
}

impl MirrorOptions {
    /// Checks the object's name and this mirror's origin; the origin.
    fn names(&self, object: &str) -> Result<String> {
        check_name(
            object,
            200,
            "an object name is 1 to 200 printable bytes without spaces",
        )?;
        let origin = match &self.origin {
            Some(o) => o.clone(),
            None => default_origin(),
        };
        check_name(
            &origin,
            128,
            "an origin is 1 to 128 printable bytes without spaces",
        )?;
        Ok(origin)
    }
}

fn check_name(name: &str, max: usize, reason: &'static str) -> Result<()> {
    if name.is_empty()
        || name.len() > max
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        });
    }
    Ok(())
}

/// `HOST/PID/START`, unique among mirrors that run at one time.
fn default_origin() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let host: String = host
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .take(64)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let host = if host.is_empty() { "host".into() } else { host };
    format!("{host}/{}/{nanos:x}", std::process::id())
}
