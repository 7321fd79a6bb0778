//! Mirroring a whole [`Store`]: every entry, and entries created and
//! removed, through one Redis hash.
//!
//! [`MirrorOptions::publish_store`] sends a store's entries (each entry's
//! type name, layout fingerprint, alignment, schema and value) and every
//! change to them; [`MirrorOptions::subscribe_store`] makes a local store
//! follow; [`MirrorOptions::both_store`] does both, for stores that several
//! hosts change.
//!
//! ```no_run
//! use shmstore::mirror::MirrorOptions;
//! use shmstore::Store;
//!
//! // On the host that writes:
//! let store = Store::open_or_create("app-state", 1 << 20)?;
//! let _m = MirrorOptions::new("redis://state-redis:6379/").publish_store("app-state", &store)?;
//! *store.get_or_create::<u64>("jobs", 0)?.lock().unwrap() += 1; // reaches every host
//!
//! // On every other host: the same entries, each its own `Shared<T>`.
//! let store = Store::open_or_create("app-state", 1 << 20)?;
//! let _m = MirrorOptions::new("redis://state-redis:6379/").subscribe_store("app-state", &store)?;
//! // A moment later: store.get::<u64>("jobs")
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What follows the publisher
//!
//! - **Values**: each entry's committed writes, as a value mirror carries
//!   them (one committed write on the subscriber, `wait_for_change`
//!   sleepers woken, a value equal to the local one not written).
//! - **Creations**: an entry the publisher has and the subscriber lacks is
//!   created there with the publisher's type name, fingerprint, alignment,
//!   schema and value, so local processes open it with
//!   [`get::<T>`](Store::get) and their usual type checks.
//! - **Removals**: an entry removed on the publisher is
//!   [removed](Store::remove) on subscribers; handles open there keep
//!   working on the removed entry, as after any removal.
//! - **A late joiner** reads the whole hash when it connects, so it gets
//!   the current set of entries and their values.
//! - **Local entries the publisher never had**: a subscribed store follows
//!   the publisher's entry set, so they are removed, once the publisher has
//!   put its whole store in Redis (the `#full` field, below); a subscriber
//!   that started first looks again at its next checks once it has. While
//!   Redis holds no hash for the object (no publisher has run, or Redis
//!   lost everything) nothing local is removed.
//! - **The publisher's store is the entry set**: a publisher that connects
//!   (at start, and after a reconnection) removes from Redis every key its
//!   store lacks, as removed while it was away, including keys another
//!   host's [`both_store`](MirrorOptions::both_store) mirror added. Where
//!   several hosts create entries, use `both_store` on each.
//!
//! # Each entry keeps its type checks
//!
//! An entry whose key exists on the subscriber with another type name,
//! fingerprint or size is **refused**: counted in [`Stats::refused`],
//! reported as [`Event::Refused`] (with both types) and by
//! [`StoreMirror::last_refusal`], and left as it is; the other entries
//! carry on. A record from a build of another byte order or pointer width
//! is refused the same way. Remove the local entry to take the
//! publisher's.
//!
//! # A full store
//!
//! A subscriber whose store has no room for an entry reports it
//! (`Refused`, "store full", with the sizes) and changes nothing else:
//! other entries keep following. While an entry is missing this way, the
//! subscriber reads the whole hash again every
//! [`check_interval`](MirrorOptions::check_interval), so the entry is
//! created within about one interval of room appearing (an entry removed,
//! its last handle dropped). The refusal is reported once per revision.
//!
//! # What is in Redis
//!
//! For the store object `NAME`, the hash `shmstore:store:NAME` holds one
//! field per entry, named by the entry's key, whose value is the entry's
//! record:
//!
//! ```text
//! REV \n GENERATION \n ORIGIN \n FINGERPRINT \n SIZE \n ALIGN \n TYPE \n SCHEMA_LEN \n SCHEMA VALUE
//! ```
//!
//! (the fingerprint field carries the byte order as a value mirror's
//! does; `SCHEMA` is the entry's encoded [`Schema`](crate::Schema) and
//! `VALUE` its bytes), or, for a removed entry, a tombstone `REV \n - \n
//! ORIGIN`. Two fields cannot be entry keys (`#` is not allowed in keys):
//! `#rev`, the store's revision (the highest of its records'), and
//! `#full`, the origin of the publisher once all its entries are there.
//! Every write (a value, a creation, a removal) runs one Lua script that
//! stores the record, bumps `#rev` and `PUBLISH`es `KEY \n RECORD` on the
//! channel of the same name. A change of one entry sends that entry's
//! record only, whatever the size of the store.
//!
//! Revisions: the script gives each write `max(the key's revision + 1,
//! #rev + 1, floor + 1, Redis's clock in microseconds)`, where `floor` is
//! the highest revision the mirror has seen. A subscriber never writes a
//! record older than one it applied for that entry (counted in
//! [`Stats::stale`]), so after a Redis failover that lost acknowledged
//! writes no host goes back to an older value, and the publisher's next
//! writes get revisions above everything seen before.
//!
//! Subscribers `SUBSCRIBE` first, then read the whole hash in pieces
//! (`HSCAN` of 256 fields, through a script that replaces a record larger
//! than the local store by its length, so that it never crosses the
//! network). Every [`check_interval`](MirrorOptions::check_interval) they
//! read `#rev` alone, and the whole hash again only if it went back
//! (Redis lost writes), if it named a write that was still not announced
//! to them one interval later (pub/sub lost a message), or if an entry is
//! waiting for room: never once per change.
//!
//! Tombstones stay in the hash (a few dozen bytes per removed key): they
//! tell a host that reconnects, or a `both` host, that a key was removed
//! rather than never published. A key created again overwrites its
//! tombstone.
//!
//! # How local changes are noticed
//!
//! The publisher holds every entry (as a handle does) and looks at their
//! generations every 2 ms, and at the store's generation for creations and
//! removals (then it lists the entries again). Looking costs one load per
//! entry, and adds up: with 10,000 entries, a publisher and a subscriber
//! that nothing changes took about a tenth of one CPU together on a
//! shared 2-CPU Xeon VM (the example `mirror_store_bench` prints it for
//! a given machine). A change waits for the next look: up to 2 ms.
//! Several changes found in one look go to Redis in one round trip.
//!
//! # Bad input
//!
//! Anything in the hash or on the channel is checked before it touches
//! the local store: a field or announcement whose key is not a valid entry
//! key, a malformed record, a value larger than the store or of another
//! size than its record says, an alignment that is not a power of two up
//! to 64, a schema that does not decode or describes another size or
//! alignment, a removal of an entry this store does not have: each is
//! refused (`Event::Refused`, counted) and changes nothing. Thousands of
//! forged entries create at most what fits in the store (the rest are
//! refused as "store full" once the store has grown to its most), and
//! records wait to be written in a mailbox that holds at most about the
//! store's current capacity in bytes.
//!
//! # `both_store`
//!
//! Creations, removals and values made on any host reach the others; **the
//! last write to reach Redis wins, per entry**, as for
//! [`both`](MirrorOptions::both). A remote record is not written over an
//! entry with a local write waiting to be sent (that write reaches Redis
//! later, and wins), and this mirror's own writes of remote records are
//! not sent back. At start, Redis's record wins for every key Redis knows
//! (an entry or a tombstone) over a local entry not written since the
//! mirror started; local entries Redis has never heard of, and local
//! writes made after the start, are published. Corners, documented rather
//! than solved:
//!
//! - a key created on two hosts with two types: the later write wins in
//!   Redis, and the host whose entry has the other type refuses it (its
//!   entry stays; remove it to take the winner's);
//! - a removal and a value write of one entry on two hosts at once: the
//!   later of the two wins, so an entry removed on one host may come back
//!   with the other host's value;
//! - hosts agree within about one check interval once writes stop (a
//!   `both` mirror writes the hash's records over differing local entries
//!   at each full read, when no local write waits).
//!
//! # Failures
//!
//! As for value mirrors: timeouts, reconnection with growing pauses,
//! credentials refused stop the mirror ([`StoreMirror::failure`]). After
//! reconnecting, the publisher puts every entry in Redis again (Redis
//! keeps what it holds unchanged, and announces nothing for it), and
//! subscribers read the whole hash. A `both_store` mirror puts an entry
//! not written here since it last sent it only where Redis holds no newer
//! record of its key than this host has seen: another host's write made
//! while the connection was down, and not applied here yet, is not
//! overwritten by the older local value (it arrives and is applied), while
//! a record Redis lost is restored.

mod wire;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::{RedisResult, Value};

use super::link::{is_connection_error, spawn_threads, Counts, Heartbeat, Runner, TICK};
use super::link::lock;
use super::target::Target;
use super::{Direction, Error, Event, MirrorOptions, Result, Stats};
use crate::store::RawEntry;
use crate::Store;
use wire::{Body, Record};

/// How often the publisher looks at its entries' generations.
const POLL: Duration = Duration::from_millis(2);
/// Writes sent to Redis in one round trip, at most.
const BATCH: usize = 512;
/// Hash fields read per piece.
const SCAN_COUNT: usize = 256;
/// Refusals remembered so as to report each once.
const REMEMBERED: usize = 10_000;

impl MirrorOptions {
    /// Publishes every entry of `store` as the store object `object`: its
    /// entries now, then every committed change, creation and removal (see
    /// the [store mirror docs](crate::mirror::store)).
    pub fn publish_store(&self, object: &str, store: &Store) -> Result<StoreMirror> {
        self.start_store(object, store, Direction::Publish)
    }

    /// Makes `store` follow the store object `object`: its entries, their
    /// values, creations and removals.
    pub fn subscribe_store(&self, object: &str, store: &Store) -> Result<StoreMirror> {
        self.start_store(object, store, Direction::Subscribe)
    }

    /// Both directions, the last write to reach Redis winning per entry.
    pub fn both_store(&self, object: &str, store: &Store) -> Result<StoreMirror> {
        self.start_store(object, store, Direction::Both)
    }

    fn start_store(&self, object: &str, store: &Store, direction: Direction) -> Result<StoreMirror> {
        let origin = self.names(object)?;
        // A `both` mirror starting lets Redis's records win over these
        // (unless they change before it has connected).
        let at_start = match direction {
            Direction::Both => store
                .entries()?
                .into_iter()
                .map(|e| (e.key, e.generation))
                .collect(),
            _ => HashMap::new(),
        };
        let runner = self.runner()?;
        let hash = format!("{}{object}", wire::PREFIX);
        let core = Arc::new(Core {
            object: object.to_owned(),
            hash,
            origin,
            direction,
            check_interval: self.check_interval,
            store: store.clone(),
            runner,
            floor: AtomicU64::new(0),
            mailbox: Mutex::new(Mailbox::default()),
            mail: Condvar::new(),
            room: Condvar::new(),
            seen: Mutex::new(HashMap::new()),
            ours: Mutex::new(HashMap::new()),
            handled: Mutex::new(HashMap::new()),
            incomplete: AtomicBool::new(false),
            swept: AtomicBool::new(false),
            refused: Mutex::new(HashSet::new()),
            at_start: Mutex::new(at_start),
        });
        let threads = spawn_threads(&core, "store", direction, [listener, applier, publisher]);
        Ok(StoreMirror { core, threads })
    }
}

/// A running mirror of a whole store (see the [module docs](self)).
/// Dropping it stops its threads (within about 100 ms, or the I/O timeout
/// if a command is in flight).
pub struct StoreMirror {
    core: Arc<Core>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for StoreMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMirror")
            .field("object", &self.core.object)
            .field("store", &self.core.store.name())
            .field("server", &self.core.runner.link.shown())
            .field("origin", &self.core.origin)
            .field("direction", &self.core.direction)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl StoreMirror {
    /// What it did so far, over all entries.
    pub fn stats(&self) -> Stats {
        self.core.runner.stats()
    }

    /// Why the last refused record (or local entry) was refused.
    pub fn last_refusal(&self) -> Option<String> {
        self.core.runner.last_refusal()
    }

    /// The Redis address it uses, without the password.
    pub fn redis(&self) -> &str {
        self.core.runner.link.shown()
    }

    /// Why the mirror stopped by itself, if it did (see
    /// [`Mirror::failure`](super::Mirror::failure)).
    pub fn failure(&self) -> Option<String> {
        self.core.runner.failure()
    }

    /// The origin this mirror writes.
    pub fn origin(&self) -> &str {
        &self.core.origin
    }

    /// The store object's name.
    pub fn object(&self) -> &str {
        &self.core.object
    }

    /// Stops the mirror and waits for its threads.
    pub fn stop(self) {}
}

impl Drop for StoreMirror {
    fn drop(&mut self) {
        self.core.runner.stop();
        self.core.mail.notify_all();
        self.core.room.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}


/// What this mirror's applier did to an entry, for its publisher (`both`):
/// not to be sent back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ours {
    /// Wrote (or created) it; the entry's generation then.
    Wrote(u64),
    /// Removed it.
    Removed,
}

/// What the threads share.
struct Core {
    object: String,
    /// The hash, which is also the channel.
    hash: String,
    origin: String,
    direction: Direction,
    check_interval: Duration,
    store: Store,
    runner: Runner,
    /// The highest revision seen: the script's floor.
    floor: AtomicU64,
    /// Records waiting for the applier, newest per key.
    mailbox: Mutex<Mailbox>,
    mail: Condvar,
    /// Signalled when the applier emptied the mailbox.
    room: Condvar,
    /// The highest revision applied (written, created, removed, or found
    /// equal) per key, here.
    seen: Mutex<HashMap<String, u64>>,
    /// `both`: what the applier did, per key, for the publisher.
    ours: Mutex<HashMap<String, Ours>>,
    /// `both`: the local generation the publisher dealt with, per key; a
    /// later one is a local write waiting to be sent.
    handled: Mutex<HashMap<String, u64>>,
    /// A record could not be applied for want of room (or waited for a
    /// local write): read the whole hash again at the next check.
    incomplete: AtomicBool,
    /// `subscribe`: local entries the publisher never had were looked for
    /// in a read of the whole hash its publisher had completed (see
    /// [`resync`]).
    swept: AtomicBool,
    /// Refusals already reported: key and revision.
    refused: Mutex<HashSet<(String, u64)>>,
    /// `both`: the local entries' generations when the mirror started.
    at_start: Mutex<HashMap<String, u64>>,
}

impl Core {
    /// The largest value a record may carry: what this store can grow to
    /// (a larger one could never be created here).
    fn largest_record(&self) -> usize {
        self.store.max_capacity()
    }

    fn saw_rev(&self, rev: u64) {
        self.floor.fetch_max(rev, Ordering::Relaxed);
    }

    fn both(&self) -> bool {
        self.direction == Direction::Both
    }
}

/// Reads a field of the hash as a number (`None` if absent or not one).
fn hget_number(core: &Core, con: &mut redis::Connection, field: &str) -> RedisResult<Option<u64>> {
    let v: Option<Vec<u8>> = redis::cmd("HGET").arg(&core.hash).arg(field).query(con)?;
    Ok(v.and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()))
}

// ---------------------------------------------------------------------------
// Publishing

/// An entry the publisher holds.
struct Tracked {
    target: Target,
    at: usize,
    align: usize,
    schema: Vec<u8>,
    /// The generation last dealt with (sent, found unchanged, an echo).
    handled: Option<u64>,
}

/// What the publisher keeps across connections.
struct Published {
    tracked: HashMap<String, Tracked>,
    /// Removed local entries whose tombstones are not in Redis yet.
    removals: Vec<String>,
    /// The store's generation at the last listing.
    listed: Option<u64>,
    /// Whether no session has run yet.
    first: bool,
}

/// One write for the script.
struct Op {
    key: String,
    mode: &'static str,
    generation: u64,
    content: Vec<u8>,
    /// `again`: the newest revision of the key seen here.
    seen: u64,
}

/// Which entries [`collect`] sends, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Those written since they were last sent (`set`).
    Changed,
    /// A `both` mirror's start: every entry, and one untouched since the
    /// start only where Redis has nothing for it (`init`).
    Start,
    /// A `both` mirror back after a lost connection: every entry, since
    /// Redis may have lost writes; one not written since it was last sent
    /// only where Redis has no newer record than this host has seen
    /// (`again`), so that another host's write made meanwhile, not applied
    /// here yet, is not overwritten by the older local value.
    Again,
}

fn publisher(core: &Core) {
    let mut p = Published {
        tracked: HashMap::new(),
        removals: Vec::new(),
        listed: None,
        first: true,
    };
    core.runner.keep_connected("publish", || {
        let mut con = core.runner.link.connect()?;
        publish_session(core, &mut con, &mut p)
    });
}

fn publish_session(core: &Core, con: &mut redis::Connection, p: &mut Published) -> RedisResult<()> {
    let sha = redis::Script::new(wire::WRITE_SCRIPT).load(con)?;
    core.runner.event(Event::Connected { side: "publish" });
    // Every entry again: a first start, or Redis may have lost writes.
    relist(core, p);
    if core.direction == Direction::Publish {
        // Keys Redis holds that this store does not: removed while we
        // were away.
        for key in hash_keys(core, con)? {
            if !p.tracked.contains_key(&key) && !p.removals.contains(&key) {
                p.removals.push(key);
            }
        }
    }
    let first = std::mem::replace(&mut p.first, false);
    let pass = match (core.both(), first) {
        (true, true) => Pass::Start,
        (true, false) => Pass::Again,
        (false, _) => {
            // Every entry again: Redis may have lost writes.
            for t in p.tracked.values_mut() {
                t.handled = None;
            }
            Pass::Changed
        }
    };
    let mut ops = Vec::new();
    collect(core, p, pass, &mut ops);
    send(core, con, &sha, ops)?;
    if core.direction == Direction::Publish {
        let _: () = redis::cmd("HSET")
            .arg(&core.hash)
            .arg(wire::FULL_FIELD)
            .arg(&core.origin)
            .query(con)?;
    }
    let mut heartbeat = Heartbeat::new(core.check_interval);
    loop {
        if core.runner.stopped() {
            return Ok(());
        }
        if p.listed != Some(core.store.generation()) {
            relist(core, p);
        }
        let mut ops = Vec::new();
        collect(core, p, Pass::Changed, &mut ops);
        if ops.is_empty() {
            heartbeat.check(con)?;
            std::thread::sleep(POLL);
        } else {
            send(core, con, &sha, ops)?;
            heartbeat.used();
        }
    }
}

/// Every key in the hash (values are not read).
fn hash_keys(core: &Core, con: &mut redis::Connection) -> RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    scan(core, con, 0, |field, _| {
        if let Ok(key) = wire::parse_key(field) {
            keys.push(key);
        }
    })?;
    Ok(keys)
}

/// Brings the tracked entries in line with the store's entries: takes
/// new ones, and queues the tombstones of removed ones.
fn relist(core: &Core, p: &mut Published) {
    let generation = core.store.generation();
    let places = match core.store.entry_places() {
        Ok(places) => places,
        Err(e) => {
            core.runner.refuse(format!("listing `{}`: {e}", core.store.name()));
            // Looked at again at the next change.
            p.listed = Some(generation);
            return;
        }
    };
    let now: HashMap<&str, usize> = places.iter().map(|(k, at)| (k.as_str(), *at)).collect();
    let gone: Vec<String> = p
        .tracked
        .iter()
        .filter(|(k, t)| now.get(k.as_str()) != Some(&t.at))
        .map(|(k, _)| k.clone())
        .collect();
    for key in gone {
        p.tracked.remove(&key);
        if !now.contains_key(key.as_str()) {
            let ours = core.both() && lock(&core.ours).remove(&key) == Some(Ours::Removed);
            if !ours {
                p.removals.push(key);
            }
        }
    }
    for (key, at) in &places {
        if p.tracked.contains_key(key) {
            continue;
        }
        p.removals.retain(|k| k != key);
        match take(core, key, *at) {
            Ok(Some(t)) => {
                p.tracked.insert(key.clone(), t);
            }
            Ok(None) => {} // removed meanwhile: the next listing says so
            Err(e) => core.runner.refuse(format!("`{}` is not published: {e}", key)),
        }
    }
    p.listed = Some(generation);
}

/// Holds the entry `key` found at `at`; `None` if it is not there now.
fn take(core: &Core, key: &str, at: usize) -> Result<Option<Tracked>> {
    let target = match Target::entry(&core.store, key) {
        Ok(t) => t,
        Err(Error::Shm(crate::Error::NotFound { .. })) => return Ok(None),
        Err(e) => return Err(e),
    };
    // The target holds its entry, so its place is not reused: the entry
    // at `at` now is the target's.
    let shape = match core.store.entry_shape(key) {
        Ok(s) if s.at == at => s,
        Ok(_) | Err(crate::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Some(Tracked {
        target,
        at,
        align: shape.align,
        schema: shape.schema,
        handled: None,
    }))
}

/// The writes to make now: tombstones, then the entries `pass` says.
fn collect(core: &Core, p: &mut Published, pass: Pass, ops: &mut Vec<Op>) {
    for key in p.removals.drain(..) {
        ops.push(Op {
            key,
            mode: "del",
            generation: 0,
            content: Vec::new(),
            seen: 0,
        });
    }
    for (key, t) in p.tracked.iter_mut() {
        let g = t.target.generation();
        if t.handled == Some(g) && pass == Pass::Changed {
            continue;
        }
        let (bytes, generation) = match t.target.read() {
            Ok(read) => read,
            Err(why) => {
                if t.handled != Some(g) {
                    core.runner.refuse(format!("`{}` is not published: {why}", t.target.name()));
                }
                // Again at its next commit.
                t.handled = Some(g);
                continue;
            }
        };
        if core.both() && lock(&core.ours).get(key) == Some(&Ours::Wrote(generation)) {
            Counts::bump(&core.runner.counts.echoes);
            handle(core, t, key, generation);
            continue;
        }
        let (mode, seen) = match pass {
            // Unchanged since the start: Redis's record, if any, wins.
            Pass::Start if lock(&core.at_start).get(key) == Some(&generation) => ("init", 0),
            // Sent already: only over a record no newer than seen here.
            Pass::Again if t.handled == Some(generation) => {
                ("again", lock(&core.seen).get(key).copied().unwrap_or(0))
            }
            _ => ("set", 0),
        };
        handle(core, t, key, generation);
        ops.push(Op {
            key: key.clone(),
            mode,
            generation,
            seen,
            content: wire::content(
                t.target.fingerprint(),
                t.target.type_name(),
                t.target.size(),
                t.align,
                &t.schema,
                &bytes,
            ),
        });
        if ops.len() >= BATCH * 4 {
            // The rest at the next look.
            break;
        }
    }
}

fn handle(core: &Core, t: &mut Tracked, key: &str, generation: u64) {
    t.handled = Some(generation);
    if core.both() {
        lock(&core.handled).insert(key.to_owned(), generation);
    }
}

/// Runs the writes, [`BATCH`] per round trip.
fn send(core: &Core, con: &mut redis::Connection, sha: &str, ops: Vec<Op>) -> RedisResult<()> {
    for chunk in ops.chunks(BATCH) {
        let mut pipe = redis::pipe();
        let floor = core.floor.load(Ordering::Relaxed);
        for op in chunk {
            pipe.cmd("EVALSHA")
                .arg(sha)
                .arg(1)
                .arg(&core.hash)
                .arg(op.mode)
                .arg(&op.key)
                .arg(floor)
                .arg(op.generation)
                .arg(&core.origin)
                .arg(&core.hash)
                .arg(&op.content)
                .arg(op.seen);
        }
        let replies: Vec<Value> = match pipe.query(con) {
            Ok(r) => r,
            Err(e) if is_connection_error(&e) => return Err(e),
            Err(e) => {
                core.runner.refuse(format!("Redis refused writing `{}`: {e}", core.hash));
                continue;
            }
        };
        for (op, reply) in chunk.iter().zip(replies) {
            let items = match &reply {
                Value::Array(items) => items.as_slice(),
                _ => &[],
            };
            let rev = items
                .get(1)
                .and_then(super::wire::integer)
                .unwrap_or(0)
                .max(0) as u64;
            core.saw_rev(rev);
            match items.first().and_then(super::wire::integer) {
                Some(1) => {
                    Counts::bump(&core.runner.counts.published);
                    if op.mode != "del" {
                        core.runner.event(Event::EntryPublished {
                            key: op.key.clone(),
                            rev,
                            generation: op.generation,
                        });
                    }
                }
                Some(0) => {
                    Counts::bump(&core.runner.counts.unchanged);
                }
                _ => core.runner.refuse(format!("an unexpected reply from Redis: {reply:?}")),
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Subscribing

/// Where a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Came {
    /// An announcement.
    Announced,
    /// A read of the whole hash: a `both` mirror repairs a differing
    /// local entry even with a revision it has seen.
    Fetched,
    /// An announcement of this `both` mirror's own write. The local entry
    /// is that write, or newer, unless the applier wrote a remote record
    /// over it after it was sent: one of a lower revision (it reached
    /// Redis first, so ours won there), announced to us before our own.
    /// Applied only then, so that this host ends where Redis does.
    Own,
}

struct Mail {
    record: Record,
    came: Came,
}

#[derive(Default)]
struct Mailbox {
    records: BTreeMap<String, Mail>,
    /// Bytes of values waiting.
    bytes: usize,
    /// Local entries the publisher never had, to remove.
    sweep: Vec<String>,
}

fn listener(core: &Core) {
    let mut last = None;
    core.runner.keep_connected("subscribe", || {
        let mut commands = core.runner.link.connect()?;
        let mut sub = core.runner.link.connect()?;
        listen_session(core, &mut commands, &mut sub, &mut last)
    });
}

fn listen_session(
    core: &Core,
    commands: &mut redis::Connection,
    sub: &mut redis::Connection,
    last: &mut Option<u64>,
) -> RedisResult<()> {
    let mut pubsub = sub.as_pubsub();
    // Subscribed before reading the hash: a write after the read is
    // announced to us.
    pubsub.subscribe(&core.hash)?;
    pubsub.set_read_timeout(Some(TICK.min(core.check_interval)))?;
    core.runner.event(Event::Connected { side: "subscribe" });
    *last = resync(core, commands)?;
    let mut checked = Instant::now();
    // The newest revision announced in this session, and the store's
    // revision read at the last check if it was newer: announced to us by
    // the next check unless something was missed.
    let mut heard = last.unwrap_or(0);
    let mut ahead: Option<u64> = None;
    // Reads of the whole hash made to sweep, after the one above: a
    // subscriber that came before its publisher had completed the hash, or
    // read it while it changed, looks again once the publisher has
    // completed it, at the next checks, a few times at most.
    let mut sweeps = 0;
    loop {
        if core.runner.stopped() {
            return Ok(());
        }
        match pubsub.get_message() {
            Ok(msg) => match wire::parse_announcement(msg.get_payload_bytes(), core.largest_record()) {
                Ok(record) => {
                    heard = heard.max(record.rev);
                    offer(core, record, Came::Announced)
                }
                Err(reason) => core.runner.refuse(format!(
                    "an announcement for `{}` refused: {reason}",
                    core.object
                )),
            },
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e),
        }
        if checked.elapsed() >= core.check_interval {
            let now = hget_number(core, commands, wire::REV_FIELD)?;
            // Read the whole hash only if it went back (Redis lost
            // writes), or holds a write not announced to us within a
            // check interval, or a record waits for room.
            let missed = ahead.is_some_and(|rev| rev > heard);
            let sweep = core.direction == Direction::Subscribe
                && !core.swept.load(Ordering::Relaxed)
                && sweeps < SWEEP_TRIES
                && hget_bytes(core, commands, wire::FULL_FIELD)?.is_some();
            sweeps += usize::from(sweep);
            if now < *last || missed || sweep || core.incomplete.swap(false, Ordering::Relaxed) {
                *last = resync(core, commands)?;
                heard = heard.max(last.unwrap_or(0));
                ahead = None;
            } else {
                *last = now;
                ahead = now.filter(|&rev| rev > heard);
            }
            checked = Instant::now();
        }
    }
}

/// Reads the hash in pieces through [`wire::SCAN_SCRIPT`], calling `f`
/// with each field and its value (`None`: longer than `max` bytes).
fn scan(
    core: &Core,
    con: &mut redis::Connection,
    max: usize,
    mut f: impl FnMut(&[u8], Option<&[u8]>),
) -> RedisResult<()> {
    let script = redis::Script::new(wire::SCAN_SCRIPT);
    let mut cursor = b"0".to_vec();
    loop {
        let reply: Value = script
            .key(&core.hash)
            .arg(&cursor)
            .arg(SCAN_COUNT)
            .arg(max)
            .invoke(con)?;
        let Value::Array(items) = reply else {
            return Ok(());
        };
        let Some(next) = items.first().and_then(super::wire::bytes) else {
            return Ok(());
        };
        cursor = next.to_vec();
        for pair in items[1..].chunks(2) {
            let [field, value] = pair else { break };
            let Some(field) = super::wire::bytes(field) else {
                continue;
            };
            f(field, super::wire::bytes(value));
        }
        if cursor == b"0" || core.runner.stopped() {
            return Ok(());
        }
    }
}

/// How many more reads of the whole hash a subscriber makes in one
/// session to remove local entries the publisher never had (see
/// [`listen_session`]).
const SWEEP_TRIES: usize = 10;

/// The hash's field `field`, if it is there.
fn hget_bytes(core: &Core, con: &mut redis::Connection, field: &str) -> RedisResult<Option<Vec<u8>>> {
    redis::cmd("HGET").arg(&core.hash).arg(field).query(con)
}

/// Reads the whole hash and offers every record; sweeps local entries the
/// publisher never had (subscribe only). Returns the store's revision.
fn resync(core: &Core, con: &mut redis::Connection) -> RedisResult<Option<u64>> {
    let before = hget_number(core, con, wire::REV_FIELD)?;
    let full = hget_bytes(core, con, wire::FULL_FIELD)?;
    // A record is its value and at most a few hundred bytes more.
    let max = core.largest_record() + 64 * 1024 + 1024;
    let mut names: HashSet<String> = HashSet::new();
    let mut refusals = 0u64;
    let result = scan(core, con, max, |field, value| {
        if field.first() == Some(&b'#') {
            return;
        }
        let key = match wire::parse_key(field) {
            Ok(k) => k,
            Err(reason) => {
                refusals += 1;
                if refusals <= 10 {
                    core.runner.refuse(format!("a field of `{}` refused: {reason}", core.hash));
                } else {
                    Counts::bump(&core.runner.counts.refused);
                }
                return;
            }
        };
        if core.direction == Direction::Subscribe && names.len() < 1_000_000 {
            names.insert(key.clone());
        }
        let parsed = match value {
            Some(v) => wire::parse_record(key.clone(), v, core.largest_record()),
            None => Err(format!(
                "`{key}`: a record larger than this store can grow to ({} bytes)",
                core.largest_record()
            )),
        };
        match parsed {
            Ok(record) => offer(core, record, Came::Fetched),
            Err(reason) => refuse_once(core, &key, 0, reason),
        }
    });
    match result {
        Ok(()) => {}
        Err(e) if is_connection_error(&e) => return Err(e),
        Err(e) => {
            core.runner.refuse(format!("Redis refused reading `{}`: {e}", core.hash));
            return Ok(before);
        }
    }
    let after = hget_number(core, con, wire::REV_FIELD)?;
    if let Some(rev) = after {
        core.saw_rev(rev);
    }
    // Only a listing of one moment (no write meanwhile), of a hash its
    // publisher completed, may remove local entries.
    if core.direction == Direction::Subscribe
        && full.is_some()
        && before.is_some()
        && before == after
        && names.len() < 1_000_000
    {
        core.swept.store(true, Ordering::Relaxed);
        if let Ok(places) = core.store.entry_places() {
            let sweep: Vec<String> = places
                .into_iter()
                .map(|(k, _)| k)
                .filter(|k| !names.contains(k))
                .collect();
            if !sweep.is_empty() {
                lock(&core.mailbox).sweep = sweep;
                core.mail.notify_one();
            }
        }
    }
    Ok(after)
}

/// Refuses a record, reported (and counted) once per key and revision.
fn refuse_once(core: &Core, key: &str, rev: u64, reason: String) {
    let fresh = {
        let mut refused = lock(&core.refused);
        if refused.len() >= REMEMBERED {
            refused.clear();
        }
        refused.insert((key.to_owned(), rev))
    };
    if fresh {
        core.runner.refuse(reason);
    }
}

/// Leaves a checked record for the applier, replacing an older one of the
/// same key; waits while the mailbox holds more than the store's capacity.
fn offer(core: &Core, record: Record, came: Came) {
    core.saw_rev(record.rev);
    let mut came = came;
    if record.origin == core.origin && came == Came::Announced {
        if !core.both() {
            // Our own write: the local entry is it, or newer.
            mark(core, &record.key, record.rev);
            return;
        }
        // The applier decides (see `Came::Own`).
        came = Came::Own;
    }
    let size = match &record.body {
        Body::Entry(e) => e.value.len() + e.schema.len(),
        Body::Removed => 0,
    } + record.key.len();
    let mut mb = lock(&core.mailbox);
    while mb.bytes > core.store.capacity() && !core.runner.stopped() {
        mb = core
            .room
            .wait_timeout(mb, TICK)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    if let Some(old) = mb.records.get(&record.key) {
        if old.record.rev > record.rev {
            return;
        }
    }
    let key = record.key.clone();
    if let Some(old) = mb.records.insert(key, Mail { record, came }) {
        let old_size = match &old.record.body {
            Body::Entry(e) => e.value.len() + e.schema.len(),
            Body::Removed => 0,
        } + old.record.key.len();
        mb.bytes -= old_size.min(mb.bytes);
    }
    mb.bytes += size;
    core.mail.notify_one();
}

/// An entry the applier writes into.
struct Local {
    target: Target,
    at: usize,
    /// The store's generation when `at` was last found to be the key's.
    checked: u64,
}

fn applier(core: &Core) {
    let mut cache: HashMap<String, Local> = HashMap::new();
    loop {
        let (records, sweep) = {
            let mut mb = lock(&core.mailbox);
            while mb.records.is_empty() && mb.sweep.is_empty() {
                if core.runner.stopped() {
                    return;
                }
                mb = core
                    .mail
                    .wait_timeout(mb, TICK)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            mb.bytes = 0;
            (std::mem::take(&mut mb.records), std::mem::take(&mut mb.sweep))
        };
        core.room.notify_all();
        for (_, mail) in records {
            if core.runner.stopped() {
                return;
            }
            apply(core, &mut cache, mail);
        }
        for key in sweep {
            // Unless a record for it came meanwhile.
            if !lock(&core.seen).contains_key(&key) {
                remove(core, &mut cache, &key, 0, "its publisher");
            }
        }
    }
}

/// The local entry `key`, if there is one (checked to be the key's entry
/// now).
fn local<'c>(
    core: &Core,
    cache: &'c mut HashMap<String, Local>,
    key: &str,
) -> Result<Option<&'c Local>> {
    for _ in 0..3 {
        let generation = core.store.generation();
        if cache.get(key).is_some_and(|l| l.checked == generation) {
            return Ok(cache.get(key));
        }
        let shape = match core.store.entry_shape(key) {
            Ok(s) => s,
            Err(crate::Error::NotFound { .. }) => {
                cache.remove(key);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(l) = cache.get_mut(key).filter(|l| l.at == shape.at) {
            l.checked = generation;
            return Ok(cache.get(key));
        }
        cache.remove(key);
        match take(core, key, shape.at)? {
            Some(t) => {
                cache.insert(
                    key.to_owned(),
                    Local {
                        target: t.target,
                        at: t.at,
                        checked: generation,
                    },
                );
                return Ok(cache.get(key));
            }
            None => continue,
        }
    }
    Ok(None)
}

fn apply(core: &Core, cache: &mut HashMap<String, Local>, mail: Mail) {
    let Mail { record, came } = mail;
    let key = record.key.clone();
    if came == Came::Own && !overwritten_here(core, cache, &key) {
        mark(core, &key, record.rev);
        return;
    }
    let seen = lock(&core.seen).get(&key).copied();
    if let Some(seen) = seen {
        if record.rev < seen {
            Counts::bump(&core.runner.counts.stale);
            return;
        }
        if record.rev == seen && !(came == Came::Fetched && core.both()) {
            return;
        }
    }
    match &record.body {
        Body::Removed => {
            let had = match local(core, cache, &key) {
                Ok(l) => l.is_some(),
                Err(e) => {
                    refuse_once(core, &key, record.rev, format!("`{key}`: {e}"));
                    return;
                }
            };
            if had {
                if core.both() && waiting(core, cache, &key) {
                    core.incomplete.store(true, Ordering::Relaxed);
                    return;
                }
                remove(core, cache, &key, record.rev, &record.origin);
            } else if came == Came::Announced && seen.is_none() {
                refuse_once(
                    core,
                    &key,
                    record.rev,
                    format!(
                        "a removal of `{key}` from {}, which `{}` does not have: nothing removed",
                        record.origin,
                        core.store.name()
                    ),
                );
            }
            mark(core, &key, record.rev);
        }
        Body::Entry(e) => match local(core, cache, &key) {
            Ok(Some(_)) => write(core, cache, &record, e, came),
            Ok(None) => create(core, cache, &record, e, came),
            Err(err) => refuse_once(core, &key, record.rev, format!("`{key}`: {err}")),
        },
    }
}

/// Whether the last change of the local entry `key` was the applier's
/// (a remote record written, or a removal), not a local write (`both`).
fn overwritten_here(core: &Core, cache: &mut HashMap<String, Local>, key: &str) -> bool {
    let ours = lock(&core.ours).get(key).copied();
    match (ours, local(core, cache, key)) {
        (Some(Ours::Wrote(g)), Ok(Some(l))) => l.target.generation() == g,
        (Some(Ours::Removed), Ok(None)) => true,
        _ => false,
    }
}

fn mark(core: &Core, key: &str, rev: u64) {
    let mut seen = lock(&core.seen);
    let s = seen.entry(key.to_owned()).or_insert(0);
    *s = (*s).max(rev);
}

/// Whether a local write of `key` waits to be sent (`both`).
fn waiting(core: &Core, cache: &HashMap<String, Local>, key: &str) -> bool {
    let Some(l) = cache.get(key) else {
        return false;
    };
    lock(&core.handled).get(key) != Some(&l.target.generation())
}

fn remove(core: &Core, cache: &mut HashMap<String, Local>, key: &str, rev: u64, origin: &str) {
    match core.store.remove(key) {
        Ok(()) => {
            cache.remove(key);
            if core.both() {
                lock(&core.ours).insert(key.to_owned(), Ours::Removed);
            }
            Counts::bump(&core.runner.counts.removed);
            core.runner.event(Event::EntryRemoved {
                key: key.to_owned(),
                origin: origin.to_owned(),
            });
        }
        Err(crate::Error::NotFound { .. }) => {}
        Err(e) => refuse_once(core, key, rev, format!("`{key}` could not be removed: {e}")),
    }
}

fn write(core: &Core, cache: &mut HashMap<String, Local>, r: &Record, e: &wire::Entry, came: Came) {
    let Some(l) = cache.get(&r.key) else { return };
    let t = &l.target;
    if e.fingerprint != t.fingerprint() || e.type_name != t.type_name() || e.value.len() != t.size()
    {
        refuse_once(
            core,
            &r.key,
            r.rev,
            format!(
                "`{}` in Redis holds `{}` (fingerprint {}, {} bytes, from {}), this host's `{}` \
                 holds `{}` (fingerprint {}, {} bytes): another layout, not written",
                r.key,
                e.type_name,
                e.fingerprint,
                e.value.len(),
                r.origin,
                t.name(),
                t.type_name(),
                t.fingerprint(),
                t.size()
            ),
        );
        return;
    }
    let Some(mut held) = t.lock_unless(core.runner.stop_flag()) else {
        return;
    };
    if core.both() && lock(&core.handled).get(&r.key) != Some(&t.generation()) {
        // A local write waits to be sent: it reaches Redis later, and
        // wins; if it does not (it is an echo), the next read repairs.
        core.incomplete.store(true, Ordering::Relaxed);
        return;
    }
    if held.holds(&e.value) {
        if came == Came::Announced {
            Counts::bump(&core.runner.counts.skipped);
        }
        drop(held);
        mark(core, &r.key, r.rev);
        return;
    }
    let generation = held.write(&e.value);
    if core.both() {
        lock(&core.ours).insert(r.key.clone(), Ours::Wrote(generation));
    }
    drop(held);
    mark(core, &r.key, r.rev);
    Counts::bump(&core.runner.counts.applied);
    core.runner.event(Event::EntryApplied {
        key: r.key.clone(),
        rev: r.rev,
        origin: r.origin.clone(),
        generation,
    });
}

fn create(core: &Core, cache: &mut HashMap<String, Local>, r: &Record, e: &wire::Entry, came: Came) {
    let made = core.store.create_raw(&RawEntry {
        key: &r.key,
        type_name: &e.type_name,
        fingerprint: e.fingerprint,
        align: e.align,
        schema: &e.schema,
        value: &e.value,
    });
    match made {
        Ok((held, generation)) => {
            if core.both() {
                // The creation's generation: a local write may have
                // followed it already, and must not pass for ours.
                lock(&core.ours).insert(r.key.clone(), Ours::Wrote(generation));
                lock(&core.handled).insert(r.key.clone(), generation);
            }
            drop(held);
            mark(core, &r.key, r.rev);
            Counts::bump(&core.runner.counts.created);
            core.runner.event(Event::EntryCreated {
                key: r.key.clone(),
                type_name: e.type_name.clone(),
                origin: r.origin.clone(),
            });
        }
        Err(crate::Error::AlreadyExists { .. }) => {
            // Created here meanwhile: write into it (once).
            if let Ok(Some(_)) = local(core, cache, &r.key) {
                write(core, cache, r, e, came);
            }
        }
        Err(crate::Error::StoreFull {
            needed,
            free,
            largest_free,
            ..
        }) => {
            core.incomplete.store(true, Ordering::Relaxed);
            refuse_once(
                core,
                &r.key,
                r.rev,
                format!(
                    "`{}` from {} not created: store full (`{}` needs {needed} bytes, has \
                     {free} free, the largest piece {largest_free}); tried again at each check",
                    r.key,
                    r.origin,
                    core.store.name()
                ),
            );
        }
        Err(err) => refuse_once(
            core,
            &r.key,
            r.rev,
            format!("`{}` from {} not created: {err}", r.key, r.origin),
        ),
    }
}
