//! A running mirror: its threads, their connections and their state.
//!
//! - The publisher waits for local commits and runs the publishing script.
//! - The listener owns the subscription: it reads announcements (and the
//!   hash, after connecting and when nothing was heard for a while) and
//!   leaves the newest acceptable record in a one-place mailbox.
//! - The applier takes the local lock, then the mailbox's record, and
//!   writes it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::{RedisResult, Value};

use super::link::{is_connection_error, lock, spawn_threads, Counts, Heartbeat, Runner, TICK};
use super::target::{Target, Unreadable};
use super::wire::{self, Build, Record};
use super::{Direction, Event, Stats};


/// What a mirror is started with.
pub(crate) struct Config {
    pub key: String,
    pub object: String,
    pub origin: String,
    pub target: Target,
    pub direction: Direction,
    pub check_interval: Duration,
}

/// What the threads share.
struct Core {
    cfg: Config,
    /// The connections, the stop flag, lost connections, failure.
    runner: Runner,
    /// The local generation when the mirror started: what a `both`
    /// mirror that finds another host's value in Redis does not send.
    start_generation: u64,
    /// The largest revision this mirror has published, or handed to the
    /// applier, or found to be its own: an older one is never written
    /// here, and every write this mirror publishes gets a larger one.
    newest_rev: AtomicU64,
    /// The local generation of the last remote value written here, set
    /// before the write is committed: the publisher does not send it back.
    applied_generation: Mutex<Option<u64>>,
    /// The last local generation the publisher dealt with (sent, found
    /// unchanged, an echo, or refused): a local generation past it is a
    /// local write waiting to be sent.
    handled: Mutex<Option<u64>>,
    /// The newest record not yet written (skip-to-newest).
    mailbox: Mutex<Option<Mail>>,
    mail: Condvar,
}

/// A running mirror of one object. Dropping it stops it.
pub struct Mirror {
    core: Arc<Core>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("object", &self.core.cfg.object)
            .field("origin", &self.core.cfg.origin)
            .field("direction", &self.core.cfg.direction)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Mirror {
    /// What it did so far.
    pub fn stats(&self) -> Stats {
        self.core.runner.stats()
    }

    /// Why the last refused value was refused.
    pub fn last_refusal(&self) -> Option<String> {
        self.core.runner.last_refusal()
    }

    /// Why the mirror stopped by itself, if it did: Redis refused its
    /// credentials, or a command this user may not run. Every other
    /// failure is retried, never this one (also reported as
    /// [`Event::Stopped`]).
    pub fn failure(&self) -> Option<String> {
        self.core.runner.failure()
    }

    /// The Redis address it uses, without the password (what its
    /// messages show).
    pub fn redis(&self) -> &str {
        self.core.runner.link.shown()
    }

    /// The origin this mirror writes.
    pub fn origin(&self) -> &str {
        &self.core.cfg.origin
    }

    /// The object's name.
    pub fn object(&self) -> &str {
        &self.core.cfg.object
    }

    /// The local value's type name, size and fingerprint.
    pub fn target(&self) -> &Target {
        &self.core.cfg.target
    }

    /// Stops the mirror and waits for its threads.
    pub fn stop(self) {}
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.core.runner.stop();
        self.core.mail.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

pub(crate) fn start(cfg: Config, runner: Runner) -> Mirror {
    let direction = cfg.direction;
    let start_generation = cfg.target.generation();
    let core = Arc::new(Core {
        cfg,
        runner,
        start_generation,
        newest_rev: AtomicU64::new(0),
        applied_generation: Mutex::new(None),
        // A `both` mirror's local value at start is not a write waiting
        // to be sent: Redis's value, if any, replaces it.
        handled: Mutex::new((direction == Direction::Both).then_some(start_generation)),
        mailbox: Mutex::new(None),
        mail: Condvar::new(),
    });
    let threads = spawn_threads(&core, "mirror", direction, [listener, applier, publisher]);
    Mirror { core, threads }
}



// ---------------------------------------------------------------------------
// Publishing

/// What the publisher remembers across connections.
struct Sent {
    /// The last local generation dealt with (kept in `Core::handled` too).
    handled: Option<u64>,
    /// The last local generation this mirror stored in Redis.
    stored: Option<u64>,
    /// Whether the local value is unreadable (reported once).
    unreadable: Option<Unreadable>,
    first: bool,
}

impl Sent {
    fn handle(&mut self, core: &Core, generation: u64) {
        self.handled = Some(generation);
        *lock(&core.handled) = Some(generation);
    }
}

fn publisher(core: &Core) {
    let mut sent = Sent {
        handled: lock(&core.handled).to_owned(),
        stored: None,
        unreadable: None,
        first: true,
    };
    core.runner.keep_connected("publish", || {
        let mut con = core.runner.link.connect()?;
        let script = redis::Script::new(wire::PUBLISH_SCRIPT);
        publish_session(core, &mut con, &script, &mut sent)
    });
}

fn publish_session(
    core: &Core,
    con: &mut redis::Connection,
    script: &redis::Script,
    sent: &mut Sent,
) -> RedisResult<()> {
    let target = &core.cfg.target;
    // What Redis holds decides whether the local value must go now.
    let held: Vec<Option<Vec<u8>>> = match redis::cmd("HMGET")
        .arg(&core.cfg.key)
        .arg("origin")
        .arg("generation")
        .query(con)
    {
        Ok(held) => held,
        Err(e) if is_connection_error(&e) => return Err(e),
        Err(e) => {
            // Something else under our key (WRONGTYPE): the script will be
            // refused too, and say so for each change.
            core.runner.refuse(format!("Redis refused reading `{}`: {e}", core.cfg.key));
            vec![None, None]
        }
    };
    core.runner.event(Event::Connected { side: "publish" });
    let origin = held.first().cloned().flatten();
    let generation = held
        .get(1)
        .cloned()
        .flatten()
        .and_then(|g| std::str::from_utf8(&g).ok()?.parse::<u64>().ok());
    let missing = origin.is_none();
    let must = match origin {
        // Nothing there: a first start, or Redis lost it.
        None => true,
        // An older write of ours: Redis lost the later ones.
        Some(o) if o == core.cfg.origin.as_bytes() => generation != sent.stored,
        // Another mirror's write. A `both` mirror starting takes it (the
        // subscriber loads it) rather than overwriting it with whatever
        // the local value was before it started; local writes made since
        // it started are sent.
        Some(_) => {
            if sent.first && core.cfg.direction == Direction::Both {
                sent.handle(core, core.start_generation);
            }
            false
        }
    };
    sent.first = false;
    if must {
        // A `both` mirror with no local write waiting restores Redis's
        // value only if no other host has done so meanwhile.
        let init = missing
            && core.cfg.direction == Direction::Both
            && sent.handled == Some(target.generation());
        send(core, con, script, sent, init)?;
    }
    let mut heartbeat = Heartbeat::new(core.cfg.check_interval);
    loop {
        if core.runner.stopped() {
            return Ok(());
        }
        let g = target.generation();
        if Some(g) != sent.handled {
            send(core, con, script, sent, false)?;
            heartbeat.used();
            continue;
        }
        heartbeat.check(con)?;
        target.wait(g, TICK);
    }
}

/// Sends the local value as it is now, unless it is an echo; with `init`,
/// echo or not, only if Redis holds nothing under the name.
fn send(
    core: &Core,
    con: &mut redis::Connection,
    script: &redis::Script,
    sent: &mut Sent,
    init: bool,
) -> RedisResult<()> {
    let target = &core.cfg.target;
    let (bytes, generation) = match target.read() {
        Ok(read) => {
            sent.unreadable = None;
            read
        }
        Err(why) => {
            if sent.unreadable != Some(why) {
                sent.unreadable = Some(why);
                core.runner.refuse(format!("`{}`: {why}", target.name()));
            }
            // Looked at again after a while, or at the next commit.
            target.wait(target.generation(), TICK);
            return Ok(());
        }
    };
    if !init && *lock(&core.applied_generation) == Some(generation) {
        Counts::bump(&core.runner.counts.echoes);
        sent.handle(core, generation);
        return Ok(());
    }
    let reply: RedisResult<Value> = script
        .key(&core.cfg.key)
        .arg(bytes)
        .arg(wire::fingerprint_field(target.fingerprint(), Build::NATIVE))
        .arg(target.type_name())
        .arg(target.size())
        .arg(generation)
        .arg(&core.cfg.origin)
        .arg(&core.cfg.key)
        .arg(if init { "init" } else { "set" })
        .arg(core.newest_rev.load(Ordering::Relaxed))
        .invoke(con);
    let reply = match reply {
        Ok(r) => r,
        Err(e) if is_connection_error(&e) => return Err(e),
        Err(e) => {
            core.runner.refuse(format!("Redis refused `{}`: {e}", core.cfg.object));
            sent.handle(core, generation);
            return Ok(());
        }
    };
    sent.handle(core, generation);
    let items = match &reply {
        Value::Array(items) => items.as_slice(),
        _ => &[],
    };
    match items.first().and_then(wire::integer) {
        Some(1) => {
            let rev = items.get(1).and_then(wire::integer).unwrap_or(0) as u64;
            core.newest_rev.fetch_max(rev, Ordering::Relaxed);
            sent.stored = Some(generation);
            Counts::bump(&core.runner.counts.published);
            core.runner.event(Event::Published { rev, generation });
        }
        // Another host restored it first: the subscriber takes that.
        Some(2) => {}
        Some(0) => {
            Counts::bump(&core.runner.counts.unchanged);
        }
        Some(-1) => {
            let text = |i: usize| {
                items
                    .get(i)
                    .and_then(wire::bytes)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            let held = items.get(1).and_then(wire::bytes).unwrap_or_default();
            let reason = match wire::parse_fingerprint(held) {
                Ok((_, build)) if build != Build::NATIVE => format!(
                    "Redis holds `{}` from a {build} build, and this host is a {} build: \
                     its numbers mean other numbers here, so this host's value is not \
                     published over it; use another object name for this host's build, \
                     or delete the key `{}`",
                    core.cfg.object,
                    Build::NATIVE,
                    core.cfg.key
                ),
                _ => format!(
                    "Redis holds `{}` as `{}` (fingerprint {}), this host's value is `{}` \
                     (fingerprint {}): not published; use another object name for another \
                     layout, or delete the key `{}`",
                    core.cfg.object,
                    text(2),
                    text(1),
                    target.type_name(),
                    target.fingerprint(),
                    core.cfg.key
                ),
            };
            core.runner.refuse(reason);
        }
        _ => core.runner.refuse(format!("an unexpected reply from Redis: {reply:?}")),
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Subscribing

/// A record for the applier.
struct Mail {
    record: Record,
    /// Read from the hash by a `both` mirror, whoever wrote it (this
    /// mirror too): it repairs a local value left behind.
    repair: bool,
}

/// What the listener remembers across connections.
struct Heard {
    /// The stamp of the last record handed to the applier (or skipped as
    /// this mirror's own).
    last: Option<(String, u64)>,
    /// The last refused record's stamp and revision, reported once.
    refused: Option<(String, u64, u64)>,
    /// The last stale record's stamp, counted once.
    stale: Option<(String, u64)>,
}

fn listener(core: &Core) {
    let mut heard = Heard {
        last: None,
        refused: None,
        stale: None,
    };
    core.runner.keep_connected("subscribe", || {
        let mut commands = core.runner.link.connect()?;
        let mut sub = core.runner.link.connect()?;
        listen_session(core, &mut commands, &mut sub, &mut heard)
    });
}

fn listen_session(
    core: &Core,
    commands: &mut redis::Connection,
    sub: &mut redis::Connection,
    heard: &mut Heard,
) -> RedisResult<()> {
    let mut pubsub = sub.as_pubsub();
    // Subscribed before reading the hash: a write after the read is
    // announced to us.
    pubsub.subscribe(&core.cfg.key)?;
    pubsub.set_read_timeout(Some(TICK.min(core.cfg.check_interval)))?;
    core.runner.event(Event::Connected { side: "subscribe" });
    // The newest revision seen in this session: an announcement read after
    // the hash may be older than what the hash gave.
    let mut newest = fetch(core, commands, heard)?;
    let mut checked = Instant::now();
    loop {
        if core.runner.stopped() {
            return Ok(());
        }
        match pubsub.get_message() {
            Ok(msg) => match wire::parse_message(msg.get_payload_bytes()) {
                Ok(record) if record.rev > newest => {
                    newest = record.rev;
                    offer(core, heard, record, false);
                }
                Ok(_) => {}
                Err(reason) => core.runner.refuse(format!(
                    "a malformed announcement for `{}`: {reason}",
                    core.cfg.object
                )),
            },
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e),
        }
        if checked.elapsed() >= core.cfg.check_interval {
            newest = fetch(core, commands, heard)?;
            checked = Instant::now();
        }
    }
}

/// Reads the hash and offers what it holds; returns its revision.
fn fetch(core: &Core, commands: &mut redis::Connection, heard: &mut Heard) -> RedisResult<u64> {
    let reply: Value = match redis::cmd("HGETALL").arg(&core.cfg.key).query(commands) {
        Ok(v) => v,
        Err(e) if is_connection_error(&e) => return Err(e),
        Err(e) => {
            // WRONGTYPE and the like: something else is under our key.
            core.runner.refuse(format!("Redis refused reading `{}`: {e}", core.cfg.key));
            return Ok(0);
        }
    };
    match wire::parse_hash(&reply) {
        Ok(Some(record)) => {
            let rev = record.rev;
            offer(core, heard, record, true);
            Ok(rev)
        }
        Ok(None) => Ok(0),
        Err(reason) => {
            let seen = ("malformed".to_owned(), reason.len() as u64, 0);
            if heard.refused.as_ref() != Some(&seen) {
                heard.refused = Some(seen);
                core.runner.refuse(format!(
                    "`{}` in Redis is malformed: {reason}",
                    core.cfg.key
                ));
            }
            Ok(0)
        }
    }
}

/// Checks a record against the local value and, if it is new, leaves it
/// in the mailbox for the applier.
///
/// A `both` mirror also hands on what it read from the hash (`fetched`)
/// when it is not new, or its own: if its local value differs from
/// Redis's while no local write waits to be sent, the local value is stale
/// (a remote write was applied here just after this mirror's later write
/// reached Redis) and is repaired.
fn offer(core: &Core, heard: &mut Heard, record: Record, fetched: bool) {
    let stamp = record.stamp();
    let repair = fetched && core.cfg.direction == Direction::Both;
    if heard.last.as_ref() == Some(&stamp) && !repair {
        return;
    }
    if let Err(reason) = check(core, &record) {
        let seen = (stamp.0, stamp.1, record.rev);
        if heard.refused.as_ref() != Some(&seen) {
            heard.refused = Some(seen);
            core.runner.refuse(reason);
        }
        return;
    }
    let newest = core.newest_rev.load(Ordering::Relaxed);
    if record.rev < newest {
        // Older than a write this host has: what a Redis that failed over
        // (or restarted) kept of a write it later lost. Its publisher, if
        // alive, sends its newest value again, with a larger revision.
        if heard.stale.as_ref() != Some(&stamp) {
            Counts::bump(&core.runner.counts.stale);
            heard.stale = Some(stamp);
        }
        return;
    }
    core.newest_rev.fetch_max(record.rev, Ordering::Relaxed);
    heard.last = Some(stamp);
    if record.origin == core.cfg.origin && !repair {
        // Our own write: the local value is it, or newer.
        return;
    }
    *lock(&core.mailbox) = Some(Mail { record, repair });
    core.mail.notify_one();
}

/// Whether a record may be written into the local value.
fn check(core: &Core, r: &Record) -> Result<(), String> {
    let t = &core.cfg.target;
    // First: of another byte order, every number in it (the fingerprint
    // aside, which is the layout's and the same) would read wrong here.
    if r.build != Build::NATIVE {
        return Err(format!(
            "`{}` in Redis was published by a {} build (from {}), and this host is a {} build: \
             its numbers would read as other numbers here, not written",
            core.cfg.object,
            r.build,
            r.origin,
            Build::NATIVE
        ));
    }
    if r.fingerprint != t.fingerprint() || r.type_name != t.type_name() {
        return Err(format!(
            "`{}` in Redis holds `{}` (fingerprint {}, from {}), this host's `{}` holds `{}` \
             (fingerprint {}): another layout, not written",
            core.cfg.object,
            r.type_name,
            r.fingerprint,
            r.origin,
            t.name(),
            t.type_name(),
            t.fingerprint()
        ));
    }
    if r.size != t.size() as u64 || r.value.len() != t.size() {
        return Err(format!(
            "`{}` in Redis says {} bytes and has {}, `{}` is {} bytes: not written",
            core.cfg.object,
            r.size,
            r.value.len(),
            t.type_name(),
            t.size()
        ));
    }
    Ok(())
}

fn applier(core: &Core) {
    let target = &core.cfg.target;
    loop {
        // Wait for mail without taking it.
        {
            let mut mail = lock(&core.mailbox);
            while mail.is_none() {
                if core.runner.stopped() {
                    return;
                }
                mail = core
                    .mail
                    .wait_timeout(mail, TICK)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        // The lock first, then the newest record: whatever arrived while
        // the lock was busy replaces what was there.
        let Some(mut held) = target.lock_unless(core.runner.stop_flag()) else {
            return;
        };
        let Some(Mail { record, repair }) = lock(&core.mailbox).take() else {
            continue;
        };
        if core.cfg.direction == Direction::Both
            && *lock(&core.handled) != Some(target.generation())
        {
            // A local write waits to be sent: it will reach Redis after
            // this value, and win.
            continue;
        }
        if held.holds(&record.value) {
            if !repair {
                Counts::bump(&core.runner.counts.skipped);
            }
            continue;
        }
        let generation = held.write(&record.value);
        *lock(&core.applied_generation) = Some(generation);
        drop(held);
        Counts::bump(&core.runner.counts.applied);
        core.runner.event(Event::Applied {
            rev: record.rev,
            origin: record.origin,
            generation,
        });
    }
}
