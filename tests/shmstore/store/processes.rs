//! Cross-process behaviour of `Store`: real processes (this test binary run
//! again, see `common`) that share one store, race to create the same key,
//! are SIGKILLed in the middle of inserts and removes, die holding handles
//! or an entry's lock, and die while creating the store itself.
//!
//! Each test asserts what a user would notice: a lost increment, a key that
//! exists twice or not at all, an entry whose value was never written in
//! full, space that never comes back, a directory `check()` finds damaged.
//! Bounds on time are liveness bounds the documentation promises ("a dead
//! holder is noticed within about 50 ms", asserted as 1 s), never
//! measurements of speed.
//!
//! 1. Six processes churn one store at once; the store ends exactly as
//!    they believe it is.
//! 2. Eight processes, woken together, `get_or_create` or `insert` one key:
//!    it exists once.
//! 3. Children SIGKILLed at random points of inserts and removes (alone,
//!    and while survivors keep working) leave a store that `check()`s, and
//!    only entries written in full.
//! 4. Handles of dead processes never keep space.
//! 5. A process killed holding (or writing) an entry poisons that entry only.
//! 6. Processes killed while creating the store leave it usable.
//!
//! The kill tests print what their kills hit (`--nocapture` shows it).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use common::{command, field, heavy, role, say, scaled, Counter, Key, Kid, Rng, Segment, Tally};
use shmstore::{Error, Location, Shareable, Shared, Store, SysvKey};

/// The liveness bound for noticing a dead holder (documented: about 50 ms).
const RECOVERY: Duration = Duration::from_secs(1);

/// This file's range of System V keys (see `common::Key`).
const KEY_BASE: u32 = 0x6100_0000;

/// Where the store's directory lock and its change counter are in the
/// segment (the segment's own lock and versions: src/segment/header.rs), and the
/// flag bits of a lock word (src/lock/mod.rs); read from /dev/shm to tell what
/// a kill interrupted.
const DIR_LOCK_AT: u64 = 256;
const DIR_SEQ_AT: u64 = 288;
const LOCK_FLAGS: u64 = (1 << 31) | (1 << 30);
/// Where the header's state word is, and its READY value (src/segment/header.rs).
const STATE_AT: u64 = 12;
const STATE_READY: u32 = 2;
/// Where a store's format word is (its content, after the header and lock
/// area), and its value once the first directory lock has formatted it
/// (src/store/heap.rs).
const FORMAT_AT: u64 = 320;
const FORMATTED: u32 = 0x5354_3033;

// ===========================================================================
// Values that check themselves

fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn pattern(h: u64, serial: u64, i: usize) -> u64 {
    let mut r = Rng(h ^ serial.rotate_left(29) ^ (i as u64).wrapping_mul(0x9e37_79b9));
    r.next()
}

fn checksum(h: u64, serial: u64, words: &[u64]) -> u64 {
    words
        .iter()
        .fold(h.rotate_left(7) ^ serial, |s, &w| s.rotate_left(5) ^ w)
        .wrapping_add(0x5eed)
}

/// A value derived from its key and a serial number, with a checksum: one
/// that was not written in full (or belongs to another key) fails
/// `verify`.
trait Blob: Shareable + Copy {
    fn make(key: &str, serial: u64) -> Self;
    /// Writes the value of `key` and `serial` in place, a word at a time
    /// (so that a writer killed in the middle leaves a torn value).
    fn fill(&mut self, key: &str, serial: u64);
    /// The serial of a value written in full for `key`, or what is wrong.
    fn verify(&self, key: &str) -> Result<u64, String>;
}

macro_rules! blob {
    ($name:ident, $words:expr) => {
        #[derive(Shareable, Clone, Copy)]
        #[repr(C)]
        struct $name {
            key: u64,
            serial: u64,
            words: [u64; $words],
            sum: u64,
        }

        impl Blob for $name {
            fn make(key: &str, serial: u64) -> Self {
                let mut v = $name {
                    key: 0,
                    serial: 0,
                    words: [0; $words],
                    sum: 0,
                };
                v.fill(key, serial);
                v
            }

            fn fill(&mut self, key: &str, serial: u64) {
                let h = key_hash(key);
                self.key = h;
                self.serial = serial;
                for (i, w) in self.words.iter_mut().enumerate() {
                    *w = pattern(h, serial, i);
                }
                self.sum = checksum(h, serial, &self.words);
            }

            fn verify(&self, key: &str) -> Result<u64, String> {
                let h = key_hash(key);
                if self.key != h {
                    return Err(format!("{}: the value of another key", stringify!($name)));
                }
                for (i, &w) in self.words.iter().enumerate() {
                    if w != pattern(h, self.serial, i) {
                        return Err(format!(
                            "{}: word {i} of serial {} is wrong",
                            stringify!($name),
                            self.serial
                        ));
                    }
                }
                if self.sum != checksum(h, self.serial, &self.words) {
                    return Err(format!("{}: bad checksum", stringify!($name)));
                }
                Ok(self.serial)
            }
        }
    };
}

// Entries of 32 bytes, 128 bytes, 1 KiB and 8 KiB (blocks of 192 bytes to
// a little over 8 KiB).
blob!(Tiny, 1);
blob!(Small, 13);
blob!(Medium, 125);
blob!(Large, 1021);

/// Calls `$f::<T>(args)` with the blob type of kind `$kind` (0 to 3).
macro_rules! by_kind {
    ($kind:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $kind {
            0 => $f::<Tiny>($($arg),*),
            1 => $f::<Small>($($arg),*),
            2 => $f::<Medium>($($arg),*),
            _ => $f::<Large>($($arg),*),
        }
    };
}

/// The type name and value size of blob kind `kind`.
fn kind_info(kind: usize) -> (&'static str, usize) {
    fn info<T: Blob>() -> (&'static str, usize) {
        (T::TYPE_NAME, std::mem::size_of::<T>())
    }
    by_kind!(kind, info())
}

/// A value that takes a store's whole heap: the block of key `whole` and
/// type `WholeNNN` (128 bytes for the header, key and type name, 32 bytes of
/// lock and versions, the value, then its schema of less than 96 bytes,
/// rounded up to 64) and the inserting handle's first hold list (128 bytes)
/// are exactly the capacity. It can be inserted only when nothing else
/// takes any space.
macro_rules! whole {
    ($name:ident, $cap:expr) => {
        #[derive(Shareable, Clone, Copy)]
        #[repr(C)]
        struct $name {
            words: [u64; ($cap - 256 - 128) / 8],
        }

        impl $name {
            fn new() -> Box<$name> {
                Box::new($name {
                    words: [7; ($cap - 256 - 128) / 8],
                })
            }
        }
    };
}

const KILL_CAP: usize = 256 * 1024;
const HOLD_CAP: usize = 64 * 1024;
whole!(Whole256, KILL_CAP);
whole!(Whole64, HOLD_CAP);

/// A store that never grows (its `max_capacity` is its capacity): for the
/// tests that fill it on purpose.
fn fixed_store(name: &str, capacity: usize) -> Store {
    shmstore::SharedOptions::new()
        .max_capacity(capacity)
        .create_store(name, capacity)
        .unwrap()
}

/// Inserts `whole` (which needs every byte of the heap) and removes it
/// again; panics with `why` if it does not fit.
fn whole_fits<W: Shareable + Copy>(store: &Store, value: &W, why: &str) {
    match store.insert("whole", *value) {
        Ok(h) => drop(h),
        Err(e) => panic!(
            "{why}: an entry as large as the store does not fit: {e} \
             (free_bytes {:?} of {})",
            store.free_bytes(),
            store.capacity()
        ),
    }
    store.remove("whole").expect("removing `whole`");
}

/// The name of an error's variant (common's, with the store's).
fn variant(e: &Error) -> &'static str {
    match e {
        Error::StoreFull { .. } => "StoreFull",
        Error::HandleLimit { .. } => "HandleLimit",
        e => common::variant(e),
    }
}

fn outcome<T>(r: &Result<T, Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => variant(e),
    }
}

fn num(line: &str, key: &str) -> u64 {
    field(line, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key}= is not a number in `{line}`"))
}

/// A location from a child's arguments: `posix NAME`, `sysv KEY`, `file PATH`.
fn location(kind: &str, target: &str) -> Location {
    match kind {
        "posix" => Location::posix(target).unwrap(),
        "sysv" => Location::sysv(SysvKey::new(target.parse().unwrap())),
        "file" => Location::file(target),
        other => panic!("unknown location kind {other}"),
    }
}

// ---------------------------------------------------------------------------
// Blob operations, one monomorphic entry point per kind (see `by_kind!`)

/// A handle kept open on an entry, of whatever type.
trait Held {
    fn key(&self) -> &str;
    /// The serial of its value, read under the lock.
    fn serial(&self) -> Result<u64, String>;
}

struct HeldBlob<T: Blob> {
    key: String,
    handle: Shared<T>,
}

impl<T: Blob> Held for HeldBlob<T> {
    fn key(&self) -> &str {
        &self.key
    }

    fn serial(&self) -> Result<u64, String> {
        let g = self
            .handle
            .lock()
            .map_err(|_| format!("{} is poisoned", self.key))?;
        g.verify(&self.key)
    }
}

fn blob_insert<T: Blob>(store: &Store, key: &str, serial: u64) -> Result<Box<dyn Held>, Error> {
    let handle = store.insert(key, T::make(key, serial))?;
    Ok(Box::new(HeldBlob {
        key: key.to_owned(),
        handle,
    }))
}

fn blob_get_or_create<T: Blob>(
    store: &Store,
    key: &str,
    serial: u64,
) -> Result<Box<dyn Held>, Error> {
    let handle = store.get_or_create(key, T::make(key, serial))?;
    Ok(Box::new(HeldBlob {
        key: key.to_owned(),
        handle,
    }))
}

fn blob_get<T: Blob>(store: &Store, key: &str) -> Result<Box<dyn Held>, Error> {
    let handle = store.get::<T>(key)?;
    Ok(Box::new(HeldBlob {
        key: key.to_owned(),
        handle,
    }))
}

/// Rewrites the entry's value in full under its lock (taking over from a
/// dead holder if need be).
fn blob_rewrite<T: Blob>(store: &Store, key: &str, serial: u64) -> Result<(), Error> {
    let handle = store.get::<T>(key)?;
    let mut g = handle.lock().unwrap_or_else(PoisonError::into_inner);
    g.fill(key, serial);
    Ok(())
}

/// What the parent found in an entry after a kill.
#[derive(Default)]
struct Found {
    poisoned: bool,
    torn: bool,
}

/// Checks the entry `key` of a store whose writer was killed: it must be a
/// `T` whose value was written in full, unless its lock was taken over
/// from a holder that died (poisoned), which may have been writing it; such
/// a value is repaired. Clears the poison.
fn blob_after_kill<T: Blob>(store: &Store, key: &str, context: &str) -> Found {
    let handle = store
        .get::<T>(key)
        .unwrap_or_else(|e| panic!("{context}: get::<{}>({key}): {e}", T::TYPE_NAME));
    let mut found = Found::default();
    let mut g = match handle.lock() {
        Ok(g) => g,
        Err(p) => {
            found.poisoned = true;
            p.into_inner()
        }
    };
    if let Err(why) = g.verify(key) {
        assert!(
            found.poisoned,
            "{context}: entry {key} holds a value never written in full ({why}), \
             and its lock is not poisoned"
        );
        found.torn = true;
        *g = T::make(key, 0);
    }
    drop(g);
    if found.poisoned {
        handle.clear_poison();
    }
    found
}

// ===========================================================================
// Roles played by child processes

/// The entry point of child processes (does nothing in a normal test run).
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let arg = |i: usize| args[i].as_str();
    let code = match arg(0) {
        "churn" => churn(arg(1), arg(2).parse().unwrap(), arg(3).parse().unwrap()),
        "racer" => racer(arg(1), arg(2).parse().unwrap()),
        "churn-until-killed" => churn_until_killed(arg(1), arg(2).parse().unwrap()),
        "hold-entry" => hold_entry(arg(1), arg(2), arg(3)),
        "hold-many-until-killed" => hold_many_until_killed(arg(1), arg(2).parse().unwrap()),
        "get-and-keep" => get_and_keep(arg(1), arg(2).parse().unwrap(), arg(3).parse().unwrap()),
        "replace" => replace(arg(1), arg(2).parse().unwrap(), arg(3).parse().unwrap()),
        "lock-and-die" => lock_and_die(arg(1), arg(2)),
        "rewrite-forever" => rewrite_forever(arg(1), arg(2)),
        "poison-check" => poison_check(arg(1), arg(2), arg(3)),
        "create-store" => create_store(arg(1), arg(2), arg(3).parse().unwrap()),
        "verify-store" => verify_store(arg(1), arg(2), arg(3).parse().unwrap()),
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

/// Microseconds of the wall clock, comparable between processes.
fn micros_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn open_store(name: &str) -> Store {
    Store::open(name).unwrap_or_else(|e| panic!("child could not open store {name}: {e}"))
}

const SHARED_KEYS: usize = 4;
const OWN_KEYS: u64 = 12;

fn own_key(me: usize, j: usize) -> String {
    format!("own/{me}/{j}")
}

/// Waits for "go", then does random operations on shared keys (all
/// processes) and own keys (this process only), checking every answer
/// against what it knows, at least `ops` of them and until the `stop`
/// entry is not 0; then reports the increments it made on each shared key
/// and the own keys it believes exist, with their serials.
fn churn(name: &str, me: usize, ops: u64) -> i32 {
    let store = open_store(name);
    let stop = store.get::<u64>("stop").unwrap();
    let pid = std::process::id();
    let mut rng = Rng(0xc0ff_ee00 + me as u64);
    let mut acked = [0u64; SHARED_KEYS];
    // Own key index -> (serial of its value, incarnation): every creation
    // of a key makes a new incarnation.
    let mut own: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    let mut incarnations = 0u64;
    // Handles kept open: key index, incarnation, the serial they must show.
    let mut held: Vec<(usize, u64, u64, Box<dyn Held>)> = Vec::new();
    say("ready");
    assert_eq!(command().as_deref(), Some("go"));
    let started = micros_now();
    let mut op = 0;
    loop {
        op += 1;
        if op > ops && op % 64 == 0 && stop.snapshot().unwrap() != 0 {
            break;
        }
        let serial = (me as u64) << 32 | op;
        let j = rng.below(OWN_KEYS) as usize;
        let key = own_key(me, j);
        let kind = j % 4;
        let believed = own.get(&j).copied();
        match rng.below(100) {
            // A shared counter, by get_or_create or get.
            0..=22 => {
                let i = rng.below(SHARED_KEYS as u64) as usize;
                let skey = format!("shared/{i}");
                let c = if acked[i] > 0 && rng.below(2) == 0 {
                    store.get::<Counter>(&skey)
                } else {
                    store.get_or_create(&skey, Counter::default())
                }
                .unwrap_or_else(|e| panic!("op {op}: {skey}: {e}"));
                let mut g = c.lock().expect("nobody dies in this test");
                // Read, now and then give the CPU away, write: two holders
                // at once would lose an update here.
                let v = g.value;
                if op % 8 == 0 {
                    std::thread::yield_now();
                }
                g.value = v + 1;
                g.last_pid = pid;
                drop(g);
                acked[i] += 1;
            }
            // A shared counter, asked for as another type.
            23..=24 => {
                let i = rng.below(SHARED_KEYS as u64) as usize;
                let skey = format!("shared/{i}");
                if acked[i] > 0 {
                    let got = store.get::<Tally>(&skey);
                    assert_eq!(outcome(&got), "LayoutMismatch", "op {op}: get {skey}");
                    let got = store.get_or_create(&skey, Tally::default());
                    assert_eq!(outcome(&got), "LayoutMismatch", "op {op}: goc {skey}");
                }
            }
            25..=42 => {
                let got = by_kind!(kind, blob_insert(&store, &key, serial));
                match (believed, &got) {
                    (None, Ok(_)) => {
                        incarnations += 1;
                        own.insert(j, (serial, incarnations));
                    }
                    (Some(_), Err(Error::AlreadyExists { .. })) => {}
                    _ => panic!(
                        "op {op}: insert {key} believed {believed:?}: {}",
                        outcome(&got)
                    ),
                }
            }
            // Remove (handles kept on it go on working).
            43..=57 => {
                let got = store.remove(&key);
                match (believed, &got) {
                    (Some(_), Ok(())) => {
                        own.remove(&j);
                    }
                    (None, Err(Error::NotFound { .. })) => {}
                    _ => panic!(
                        "op {op}: remove {key} believed {believed:?}: {}",
                        outcome(&got)
                    ),
                }
            }
            // Get, with the right type and with a wrong one.
            58..=70 => {
                let got = by_kind!(kind, blob_get(&store, &key));
                match (believed, got) {
                    (Some((s, _)), Ok(h)) => {
                        assert_eq!(h.serial(), Ok(s), "op {op}: get {key}")
                    }
                    (None, Err(Error::NotFound { .. })) => {}
                    (b, got) => panic!("op {op}: get {key} believed {b:?}: {}", outcome(&got)),
                }
                let wrong = store.get::<Counter>(&key);
                let want = if believed.is_some() {
                    "LayoutMismatch"
                } else {
                    "NotFound"
                };
                assert_eq!(outcome(&wrong), want, "op {op}: get {key} as a Counter");
            }
            71..=79 => {
                let h = by_kind!(kind, blob_get_or_create(&store, &key, serial))
                    .unwrap_or_else(|e| panic!("op {op}: get_or_create {key}: {e}"));
                let found = h.serial().unwrap();
                match believed {
                    Some((s, _)) => {
                        assert_eq!(found, s, "op {op}: get_or_create {key} changed it")
                    }
                    None => {
                        assert_eq!(
                            found, serial,
                            "op {op}: get_or_create {key} made no new one"
                        );
                        incarnations += 1;
                        own.insert(j, (serial, incarnations));
                    }
                }
            }
            80..=87 => {
                let got = by_kind!(kind, blob_rewrite(&store, &key, serial));
                match (believed, &got) {
                    (Some((_, inc)), Ok(())) => {
                        own.insert(j, (serial, inc));
                        for h in held.iter_mut().filter(|h| h.0 == j && h.1 == inc) {
                            h.2 = serial;
                        }
                    }
                    (None, Err(Error::NotFound { .. })) => {}
                    _ => panic!(
                        "op {op}: rewrite {key} believed {believed:?}: {}",
                        outcome(&got)
                    ),
                }
            }
            // Keep a handle, or let one go after checking it shows the
            // value of its incarnation (removed or not).
            88..=93 => match believed {
                Some((s, inc)) if held.len() < 4 => {
                    let h = by_kind!(kind, blob_get(&store, &key)).unwrap();
                    held.push((j, inc, s, h));
                }
                _ if !held.is_empty() => {
                    let (_, _, s, h) = held.remove(rng.below(held.len() as u64) as usize);
                    assert_eq!(h.serial(), Ok(s), "op {op}: kept handle on {}", h.key());
                }
                _ => {}
            },
            94..=96 => {
                let got = store.contains(&key).unwrap();
                assert_eq!(got, believed.is_some(), "op {op}: contains {key}");
            }
            _ => {
                // Own keys in the listing: exactly the believed ones.
                let prefix = format!("own/{me}/");
                let listed: BTreeSet<String> = store
                    .entries()
                    .unwrap()
                    .into_iter()
                    .filter(|e| e.key.starts_with(&prefix))
                    .map(|e| e.key)
                    .collect();
                let want: BTreeSet<String> = own.keys().map(|&j| own_key(me, j)).collect();
                assert_eq!(listed, want, "op {op}: entries()");
                for (_, _, s, h) in &held {
                    assert_eq!(h.serial(), Ok(*s), "op {op}: kept handle on {}", h.key());
                }
            }
        }
    }
    drop(held);
    let acked: Vec<String> = acked.iter().map(u64::to_string).collect();
    let own: Vec<String> = own.iter().map(|(j, (s, _))| format!("{j}.{s}")).collect();
    let own = if own.is_empty() {
        "-".to_owned()
    } else {
        own.join(",")
    };
    say(format!(
        "done acked={} own={own} start={started} end={} ops={op}",
        acked.join(","),
        micros_now()
    ));
    0
}

/// Takes commands `WHAT KEY ROUND`, sent to all racers: each says
/// "armed", then sleeps until the store's `start` entry reaches ROUND (one
/// write of the parent's wakes them all at once), then races to
/// `goc` (get_or_create a Counter and increment it), `mixed` (the same with
/// a Tally for odd racers) or `ins` (insert a Counter), and reports the
/// outcome and who initialised the value.
fn racer(name: &str, me: u32) -> i32 {
    let store = open_store(name);
    let start = store.get::<u64>("start").unwrap();
    let pid = std::process::id();
    let mine = Counter {
        value: 0,
        last_pid: pid,
        _pad: me + 1,
    };
    say("ready");
    while let Some(cmd) = command() {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        if words[0] == "quit" {
            break;
        }
        let (what, key, round) = (words[0], words[1], words[2].parse::<u64>().unwrap());
        let mut seen = start.generation();
        say("armed");
        while start.snapshot().unwrap() < round {
            seen = start
                .wait_for_change(seen, common::PATIENCE)
                .unwrap()
                .expect("the parent starts the round");
        }
        match what {
            "goc" => match store.get_or_create(key, mine) {
                Ok(c) => {
                    let mut g = c.lock().expect("not poisoned");
                    g.value += 1;
                    let creator = g._pad;
                    drop(g);
                    say(format!("result=ok creator={creator}"));
                }
                Err(e) => say(format!("result={}", variant(&e))),
            },
            "mixed" if me % 2 == 1 => {
                let got = store.get_or_create(
                    key,
                    Tally {
                        count: 0,
                        pid,
                        spare: me + 1,
                    },
                );
                match got {
                    Ok(t) => {
                        let mut g = t.lock().expect("not poisoned");
                        g.count += 1;
                        let creator = g.spare;
                        drop(g);
                        say(format!("result=ok creator={creator}"));
                    }
                    Err(e) => say(format!("result={}", variant(&e))),
                }
            }
            "mixed" => match store.get_or_create(key, mine) {
                Ok(c) => {
                    let mut g = c.lock().expect("not poisoned");
                    g.value += 1;
                    let creator = g._pad;
                    drop(g);
                    say(format!("result=ok creator={creator}"));
                }
                Err(e) => say(format!("result={}", variant(&e))),
            },
            "ins" => {
                let got = store.insert(key, Counter { value: 1, ..mine });
                say(format!("result={}", outcome(&got)));
            }
            other => panic!("unknown command {other}"),
        }
    }
    0
}

const KILL_KEYS: u64 = 24;
const KILL_COUNTERS: u64 = 4;
/// The operations a `churn-until-killed` child does before it says ready.
const READY_AFTER: u64 = 8;

fn kill_key(j: u64) -> String {
    format!("k/{j:02}")
}

/// Inserts, removes, gets, rewrites and increments entries of mixed sizes
/// as fast as it can until killed, saying only `ready` after its first
/// [`READY_AFTER`] operations. Keeps a few handles open, but never on an
/// entry it removes.
fn churn_until_killed(name: &str, seed: u64) -> i32 {
    let store = open_store(name);
    let mut rng = Rng(seed);
    let mut held: Vec<Box<dyn Held>> = Vec::new();
    let mut serial = seed << 32;
    loop {
        serial += 1;
        // Ready once it has a few changes behind it, so that the kill
        // lands in the churn (an emulated process's first calls are slow).
        if serial == (seed << 32) + READY_AFTER {
            say("ready");
        }
        let j = rng.below(KILL_KEYS);
        let key = kill_key(j);
        let kind = j as usize % 4;
        match rng.below(100) {
            // Insert, or remove what is there: a change either way.
            0..=54 => {
                held.retain(|h| h.key() != key);
                match by_kind!(kind, blob_insert(&store, &key, serial)) {
                    Ok(h) if held.len() < 3 && rng.below(3) == 0 => held.push(h),
                    Ok(_) | Err(Error::StoreFull { .. }) => {}
                    Err(Error::AlreadyExists { .. }) => match store.remove(&key) {
                        Ok(()) | Err(Error::NotFound { .. }) => {}
                        Err(e) => panic!("remove {key}: {e}"),
                    },
                    Err(e) => panic!("insert {key}: {e}"),
                }
            }
            55..=69 => match by_kind!(kind, blob_get_or_create(&store, &key, serial)) {
                Ok(_) | Err(Error::StoreFull { .. }) => {}
                Err(e) => panic!("get_or_create {key}: {e}"),
            },
            70..=79 => match by_kind!(kind, blob_rewrite(&store, &key, serial)) {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => panic!("rewrite {key}: {e}"),
            },
            80..=94 => {
                let ckey = format!("c/{}", rng.below(KILL_COUNTERS));
                match store.get_or_create(&ckey, Counter::default()) {
                    Ok(c) => {
                        let mut g = c.lock().unwrap_or_else(PoisonError::into_inner);
                        g.value += 1;
                    }
                    Err(Error::StoreFull { .. }) => {}
                    Err(e) => panic!("get_or_create {ckey}: {e}"),
                }
            }
            _ => {
                store.entries().expect("entries");
                store.contains(&key).expect("contains");
                if !held.is_empty() {
                    held.remove(0);
                }
            }
        }
    }
}

/// Inserts (`insert`) or gets (`get`) the Large entry `key` and holds it
/// until the end of its input; on `bump`, rewrites it through the handle
/// and says which serial it reads back.
fn hold_entry(name: &str, key: &str, how: &str) -> i32 {
    let store = open_store(name);
    let handle = match how {
        "insert" => store.insert(key, Large::make(key, 1)),
        "get" => store.get::<Large>(key),
        other => panic!("unknown way {other}"),
    }
    .unwrap_or_else(|e| panic!("{how} {key}: {e}"));
    say("holding");
    let mut serial = 1;
    while let Some(cmd) = command() {
        match cmd.as_str() {
            "bump" => {
                serial += 1;
                let mut g = handle.lock().expect("not poisoned");
                *g = Large::make(key, serial);
                drop(g);
                let back = handle.snapshot().expect("not poisoned").verify(key);
                say(format!("bumped serial={}", back.unwrap()));
            }
            "quit" => break,
            other => panic!("unknown command {other}"),
        }
    }
    0
}

/// Gets the `u64` entries `held/0` to `held/{n-1}` one after the other,
/// keeping every handle (so that its store handle's hold list grows, moving
/// to larger blocks), drops them all, and again, until killed; says
/// "ready" after the first round.
fn hold_many_until_killed(name: &str, n: usize) -> i32 {
    let store = open_store(name);
    let mut said = false;
    loop {
        let held: Vec<Shared<u64>> = (0..n)
            .map(|i| store.get::<u64>(&format!("held/{i}")).expect("get"))
            .collect();
        drop(held);
        if !said {
            say("ready");
            said = true;
        }
    }
}

/// Keys that `get-and-keep` and `replace` race on.
const RACE_KEYS: u64 = 6;

/// For `millis` ms: gets one of the `race/` entries (as a `Small`), keeping up
/// to four handles, and checks every kept handle's value each time: the
/// value it had when it was got, whatever `replace` does to the key meanwhile
/// (a removed entry lives on in its handles; an entry freed while held would
/// show another value as soon as its block is used again). Says how many
/// gets found an entry.
fn get_and_keep(name: &str, seed: u64, millis: u64) -> i32 {
    let store = open_store(name);
    let mut rng = Rng(seed);
    let mut kept: Vec<(String, u64, Shared<Small>)> = Vec::new();
    let mut found = 0u64;
    let end = Instant::now() + Duration::from_millis(millis);
    for op in 0u64.. {
        if op % 256 == 0 && Instant::now() > end {
            break;
        }
        let key = format!("race/{}", rng.below(RACE_KEYS));
        match store.get::<Small>(&key) {
            Ok(h) => {
                let serial = h
                    .snapshot()
                    .unwrap()
                    .verify(&key)
                    .unwrap_or_else(|e| panic!("op {op}: {key} as got: {e}"));
                found += 1;
                if kept.len() == 4 {
                    kept.remove(rng.below(4) as usize);
                }
                kept.push((key, serial, h));
            }
            Err(Error::NotFound { .. }) => {}
            Err(e) => panic!("op {op}: get {key}: {e}"),
        }
        for (key, serial, h) in &kept {
            assert_eq!(
                h.snapshot().unwrap().verify(key),
                Ok(*serial),
                "op {op}: a kept handle of {key} changed"
            );
        }
    }
    say(format!("found={found}"));
    0
}

/// For `millis` ms: removes one of the `race/` entries and inserts it
/// again with a new value (a serial of its own); says how many it replaced.
fn replace(name: &str, seed: u64, millis: u64) -> i32 {
    let store = open_store(name);
    let mut rng = Rng(seed);
    let mut replaced = 0u64;
    let end = Instant::now() + Duration::from_millis(millis);
    for op in 0u64.. {
        if op % 64 == 0 && Instant::now() > end {
            break;
        }
        let key = format!("race/{}", rng.below(RACE_KEYS));
        match store.remove(&key) {
            Ok(()) => replaced += 1,
            Err(Error::NotFound { .. }) => {}
            Err(e) => panic!("op {op}: remove {key}: {e}"),
        }
        match store.insert(&key, Small::make(&key, seed << 32 | op)) {
            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("op {op}: insert {key}: {e}"),
        }
    }
    say(format!("replaced={replaced}"));
    0
}

/// Locks the Counter `key`, writes 42 and its pid, says so, and holds the
/// lock until killed (or leaves holding it when its input ends).
fn lock_and_die(name: &str, key: &str) -> i32 {
    let store = open_store(name);
    let c = store.get::<Counter>(key).unwrap();
    let mut g = c.lock().expect("a fresh entry is not poisoned");
    g.value = 42;
    g.last_pid = std::process::id();
    say(format!("locked pid={}", std::process::id()));
    let _ = command();
    std::process::exit(3)
}

/// Rewrites the Large entry `key` in full under its lock, over and over,
/// until killed (taking over from a dead predecessor).
fn rewrite_forever(name: &str, key: &str) -> i32 {
    let store = open_store(name);
    let h = store.get::<Large>(key).unwrap();
    say("ready");
    for serial in 1.. {
        let mut g = h.lock().unwrap_or_else(PoisonError::into_inner);
        g.fill(key, serial);
    }
    unreachable!()
}

/// Locks the Counter `victim` (whose holder died) and the Counter
/// `bystander`, and says what it got.
fn poison_check(name: &str, victim: &str, bystander: &str) -> i32 {
    let store = open_store(name);
    let v = store.get::<Counter>(victim).unwrap();
    let t0 = Instant::now();
    match v.lock() {
        Ok(g) => say(format!("victim=ok value={}", g.value)),
        Err(p) => {
            let took = t0.elapsed().as_millis();
            let mut g = p.into_inner();
            say(format!(
                "victim=poisoned value={} pid={} took_ms={took}",
                g.value, g.last_pid
            ));
            g.value += 1;
        }
    }
    let again = if v.lock().is_err() { "poisoned" } else { "ok" };
    say(format!("again={again}"));
    let snap = if v.snapshot().is_err() {
        "poisoned"
    } else {
        "ok"
    };
    say(format!("snapshot={snap}"));
    let b = store.get::<Counter>(bystander).unwrap();
    match b.lock() {
        Ok(g) => say(format!("bystander=ok value={}", g.value)),
        Err(_) => say("bystander=poisoned"),
    }
    let fresh = store.insert(
        "fresh",
        Counter {
            value: 5,
            ..Counter::default()
        },
    );
    say(format!("fresh={}", outcome(&fresh)));
    0
}

/// Waits for "go", then opens (or creates) the store at `kind target` over
/// and over, making, changing and removing entries in it, until killed.
fn create_store(kind: &str, target: &str, capacity: usize) -> i32 {
    let loc = location(kind, target);
    let pid = std::process::id();
    say("ready");
    assert_eq!(command().as_deref(), Some("go"));
    for round in 0u64.. {
        let store = Store::open_or_create(&loc, capacity)
            .unwrap_or_else(|e| panic!("open_or_create {loc} (round {round}): {e}"));
        let boot = store
            .get_or_create("boot", Counter::default())
            .unwrap_or_else(|e| panic!("get_or_create boot: {e}"));
        let mut g = boot.lock().unwrap_or_else(PoisonError::into_inner);
        g.value += 1;
        g.last_pid = pid;
        drop(g);
        drop(boot);
        let key = format!("k/{}", round % 8);
        match store.insert(&key, Small::make(&key, round)) {
            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("insert {key}: {e}"),
        }
        if round % 3 == 0 {
            match store.remove(&key) {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => panic!("remove {key}: {e}"),
            }
        }
    }
    unreachable!()
}

/// Opens (or creates) the store at `kind target` after its creators were
/// killed, checks it, and uses it.
fn verify_store(kind: &str, target: &str, capacity: usize) -> i32 {
    let loc = location(kind, target);
    let store = match Store::open_or_create(&loc, capacity) {
        Ok(s) => s,
        Err(e) => {
            say(format!("open_or_create={} ({e})", variant(&e)));
            return 0;
        }
    };
    say("open_or_create=ok");
    match store.check() {
        Ok(()) => say("check=ok"),
        Err(e) => say(format!("check={} ({e})", variant(&e))),
    }
    let mut entries = 0;
    for e in store.entries().unwrap() {
        entries += 1;
        if e.key == "boot" {
            let c = store.get::<Counter>("boot").unwrap();
            drop(c.lock().unwrap_or_else(PoisonError::into_inner));
            c.clear_poison();
        } else {
            let f = blob_after_kill::<Small>(&store, &e.key, "verify-store");
            assert!(!f.torn, "{}: inserts write values before they exist", e.key);
        }
    }
    let after = store.insert("after", Counter::default());
    let removed = store.remove("after");
    say(format!(
        "used entries={entries} insert={} remove={} check={} capacity={}",
        outcome(&after),
        outcome(&removed),
        outcome(&store.check()),
        store.capacity()
    ));
    0
}

// ===========================================================================
// Helpers of the parent

/// The directory lock word and change counter of the POSIX store `seg`,
/// read from /dev/shm without any lock.
fn raw_directory(seg: &Segment) -> (u64, u64) {
    let f = std::fs::File::open(seg.path()).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, DIR_LOCK_AT).unwrap();
    let word = u64::from_ne_bytes(b);
    f.read_exact_at(&mut b, DIR_SEQ_AT).unwrap();
    (word, u64::from_ne_bytes(b))
}

/// Starts round `round` of `what KEY` in all racers at once: sends the
/// command, waits until every racer is armed (and a little more, so that
/// they are asleep), then writes the round number into the `start` entry,
/// which wakes them all; collects one `result=` line from each.
fn race_round(store: &Store, kids: &mut [Kid], what: &str, round: u64) -> Vec<String> {
    for k in kids.iter_mut() {
        k.send(&format!("{what} {round}"));
    }
    for k in kids.iter_mut() {
        k.expect("armed");
    }
    std::thread::sleep(Duration::from_millis(5));
    *store.get::<u64>("start").unwrap().lock().unwrap() = round;
    kids.iter_mut().map(|k| k.expect("result=")).collect()
}

/// Removes every entry, and checks the store is empty and consistent.
fn remove_all(store: &Store, context: &str) {
    for e in store.entries().unwrap() {
        store
            .remove(&e.key)
            .unwrap_or_else(|err| panic!("{context}: remove {}: {err}", e.key));
    }
    assert_eq!(store.len().unwrap(), 0, "{context}: len after removing all");
    assert!(store.entries().unwrap().is_empty(), "{context}");
    store
        .check()
        .unwrap_or_else(|e| panic!("{context}: check after removing all: {e}"));
}

/// Removes every entry; then, with no process holding anything, all the
/// space is free.
fn empty_the_store(store: &Store, context: &str) {
    remove_all(store, context);
    assert_eq!(
        store.free_bytes().unwrap(),
        store.capacity(),
        "{context}: free_bytes with no entry and no handle"
    );
}

// ===========================================================================
// 1. Many processes at once

/// What churning processes' reports say the store holds.
struct Beliefs {
    /// Acknowledged increments of each shared counter, over all processes.
    sums: [u64; SHARED_KEYS],
    /// Own keys believed to exist: blob kind and serial.
    own: BTreeMap<String, (usize, u64)>,
    ops: u64,
}

impl Beliefs {
    fn from_reports(reports: &[String]) -> Beliefs {
        let mut b = Beliefs {
            sums: [0; SHARED_KEYS],
            own: BTreeMap::new(),
            ops: 0,
        };
        for (me, r) in reports.iter().enumerate() {
            for (i, n) in field(r, "acked").split(',').enumerate() {
                b.sums[i] += n.parse::<u64>().unwrap();
            }
            let list = field(r, "own");
            if list != "-" {
                for item in list.split(',') {
                    let (j, s) = item.split_once('.').unwrap();
                    let j: usize = j.parse().unwrap();
                    b.own.insert(own_key(me, j), (j % 4, s.parse().unwrap()));
                }
            }
            b.ops += num(r, "ops");
        }
        b
    }

    /// The shared and own keys that must exist.
    fn keys(&self) -> BTreeSet<String> {
        let mut want: BTreeSet<String> = self.own.keys().cloned().collect();
        for (i, &n) in self.sums.iter().enumerate() {
            if n > 0 {
                want.insert(format!("shared/{i}"));
            }
        }
        want
    }

    /// Checks the listed shared and own entries against the beliefs:
    /// exactly the believed keys, every counter at its sum of increments,
    /// every own entry of its type holding its owner's last value.
    fn verify(&self, store: &Store, entries: &[shmstore::EntryInfo]) {
        let listed: BTreeSet<String> = entries
            .iter()
            .filter(|e| e.key.starts_with("own/") || e.key.starts_with("shared/"))
            .map(|e| e.key.clone())
            .collect();
        assert_eq!(
            listed,
            self.keys(),
            "entries() against what the processes believe"
        );
        for (i, &n) in self.sums.iter().enumerate() {
            if n > 0 {
                let c = store.get::<Counter>(&format!("shared/{i}")).unwrap();
                assert_eq!(
                    c.lock().unwrap().value,
                    n,
                    "shared/{i}: increments lost or counted twice"
                );
            }
        }
        for e in entries {
            if let Some(&(kind, serial)) = self.own.get(&e.key) {
                let (type_name, size) = kind_info(kind);
                assert_eq!(
                    (e.type_name.as_str(), e.size),
                    (type_name, size),
                    "{}",
                    e.key
                );
                assert!(!e.locked && !e.poisoned, "{e:?}");
                let h = by_kind!(kind, blob_get(store, &e.key)).unwrap();
                assert_eq!(
                    h.serial(),
                    Ok(serial),
                    "{}: the value its owner wrote last",
                    e.key
                );
            } else if e.key.starts_with("shared/") {
                assert_eq!(e.type_name, "Counter", "{}", e.key);
            }
        }
    }
}

/// When the churners report, how long all of them ran at once (from
/// their wall clocks), in microseconds.
fn together(reports: &[String]) -> u64 {
    let last_start = reports.iter().map(|r| num(r, "start")).max().unwrap();
    let first_end = reports.iter().map(|r| num(r, "end")).min().unwrap();
    first_end.saturating_sub(last_start)
}

#[test]
fn many_processes_keep_the_directory_consistent() {
    const PROCS: usize = 6;
    let _heavy = heavy();
    let seg = Segment::new("churn");
    let store = Store::create(seg.name(), 1 << 20).unwrap();
    // Churners stop as soon as they have done their operations.
    drop(store.insert::<u64>("stop", 1).unwrap());
    let ops = scaled(20_000, 1_000).to_string();
    let mut kids: Vec<Kid> = (0..PROCS)
        .map(|k| Kid::spawn("churn", &[seg.name(), &k.to_string(), &ops]))
        .collect();
    for k in &mut kids {
        k.expect("ready");
    }
    let t0 = Instant::now();
    for k in &mut kids {
        k.send("go");
    }
    let reports: Vec<String> = kids.iter_mut().map(|k| k.expect("done")).collect();
    for k in &mut kids {
        k.wait_success();
    }
    let took = t0.elapsed();

    store.check().expect("check() after the churn");
    let beliefs = Beliefs::from_reports(&reports);
    let entries = store.entries().unwrap();
    let listed: BTreeSet<String> = entries.iter().map(|e| e.key.clone()).collect();
    assert_eq!(listed.len(), entries.len(), "a key is listed twice");
    let mut want = beliefs.keys();
    want.insert("stop".to_owned());
    assert_eq!(listed, want, "entries() against what the processes believe");
    assert_eq!(store.len().unwrap(), want.len());
    beliefs.verify(&store, &entries);

    eprintln!(
        "store_process: {PROCS} processes, {} ops in {took:?} (all {PROCS} running for \
         {} us of it): {} shared increments, {} own entries left",
        beliefs.ops,
        together(&reports),
        beliefs.sums.iter().sum::<u64>(),
        beliefs.own.len()
    );
    // Every process is gone and the parent holds nothing: all space is
    // free once the entries are removed.
    empty_the_store(&store, "after the churn");
}

// ===========================================================================
// 2. One key, many creators at once

/// Eight racers on a new store, ready for commands.
fn racers(store: &Store, seg: &Segment) -> Vec<Kid> {
    drop(store.insert::<u64>("start", 0).unwrap());
    let mut kids: Vec<Kid> = (0..8)
        .map(|i| Kid::spawn("racer", &[seg.name(), &i.to_string()]))
        .collect();
    for k in &mut kids {
        k.expect("ready");
    }
    kids
}

/// The entries of a race store, but for the `start` entry.
fn race_entries(store: &Store) -> Vec<shmstore::EntryInfo> {
    let mut list = store.entries().unwrap();
    list.retain(|e| e.key != "start");
    list
}

fn finish(kids: &mut [Kid]) {
    for k in kids.iter_mut() {
        k.send("quit");
    }
    for k in kids.iter_mut() {
        k.wait_success();
    }
}

#[test]
fn same_key_created_at_once_by_many_processes_exists_once() {
    const ROUNDS: usize = 6;
    let _heavy = heavy();
    let seg = Segment::new("same-key");
    let store = Store::create(seg.name(), 64 * 1024).unwrap();
    let mut kids = racers(&store, &seg);
    let mut created_by = [0; 8];
    for round in 0..ROUNDS {
        let results = race_round(&store, &mut kids, "goc the-key", round as u64 + 1);
        let creators: BTreeSet<u64> = results.iter().map(|r| num(r, "creator")).collect();
        assert!(
            results.iter().all(|r| r.starts_with("ok")),
            "round {round}: {results:?}"
        );
        assert_eq!(
            creators.len(),
            1,
            "round {round}: several creators {results:?}"
        );
        let creator = *creators.first().unwrap();
        assert!((1..=8).contains(&creator));
        let list = race_entries(&store);
        assert_eq!(list.len(), 1, "round {round}: {list:?}");
        assert_eq!(list[0].key, "the-key");
        created_by[creator as usize - 1] += 1;
        let c = store.get::<Counter>("the-key").unwrap();
        let v = *c.lock().unwrap();
        assert_eq!(
            v.value, 8,
            "round {round}: every racer incremented the one entry"
        );
        assert_eq!(u64::from(v._pad), creator);
        assert_eq!(v.last_pid, kids[creator as usize - 1].pid());
        drop(c);
        store.remove("the-key").unwrap();
    }

    // Two types race for one key: one wins, the other's racers are told
    // it holds another type.
    for round in 0..ROUNDS {
        let results = race_round(
            &store,
            &mut kids,
            "mixed the-key",
            (ROUNDS + round) as u64 + 1,
        );
        let list = race_entries(&store);
        assert_eq!(list.len(), 1, "round {round}: {list:?}");
        let winner_odd = list[0].type_name == "Tally";
        assert!(
            winner_odd || list[0].type_name == "Counter",
            "round {round}: {list:?}"
        );
        let mut creators = BTreeSet::new();
        for (i, r) in results.iter().enumerate() {
            if (i % 2 == 1) == winner_odd {
                assert!(r.starts_with("ok"), "round {round}, racer {i}: {r}");
                creators.insert(num(r, "creator"));
            } else {
                assert_eq!(r, "LayoutMismatch", "round {round}, racer {i}");
            }
        }
        assert_eq!(creators.len(), 1, "round {round}: {results:?}");
        let count = if winner_odd {
            store.get::<Tally>("the-key").unwrap().lock().unwrap().count
        } else {
            store
                .get::<Counter>("the-key")
                .unwrap()
                .lock()
                .unwrap()
                .value
        };
        assert_eq!(count, 4, "round {round}");
        store.remove("the-key").unwrap();
    }
    eprintln!("store_process: get_or_create races won by racer: {created_by:?}");
    finish(&mut kids);
    store.check().unwrap();
    empty_the_store(&store, "after the races");
}

#[test]
fn same_key_inserted_at_once_by_many_processes_succeeds_once() {
    const ROUNDS: usize = 8;
    let _heavy = heavy();
    let seg = Segment::new("same-insert");
    let store = Store::create(seg.name(), 64 * 1024).unwrap();
    let mut kids = racers(&store, &seg);
    let mut wins = [0; 8];
    for round in 0..ROUNDS {
        let results = race_round(&store, &mut kids, "ins the-key", round as u64 + 1);
        let winners: Vec<usize> = (0..8).filter(|&i| results[i] == "ok").collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert_eq!(
            results.iter().filter(|r| *r == "AlreadyExists").count(),
            7,
            "round {round}: {results:?}"
        );
        let w = winners[0];
        wins[w] += 1;
        let list = race_entries(&store);
        assert_eq!(list.len(), 1, "round {round}: {list:?}");
        assert_eq!(list[0].key, "the-key");
        let v = *store.get::<Counter>("the-key").unwrap().lock().unwrap();
        assert_eq!(
            v,
            Counter {
                value: 1,
                last_pid: kids[w].pid(),
                _pad: w as u32 + 1
            },
            "round {round}: the value is the winner's"
        );
        store.remove("the-key").unwrap();
    }
    eprintln!("store_process: insert races won by racer: {wins:?}");
    finish(&mut kids);
    empty_the_store(&store, "after the insert races");
}

// ===========================================================================
// 3. SIGKILL in the middle of inserts and removes

/// What the kills of one run hit.
#[derive(Default, Debug)]
struct KillStats {
    kills: u64,
    dir_lock_held: u64,
    mid_change: u64,
    entry_lock_held: u64,
    poisoned: u64,
    torn: u64,
    entries_recovered: u64,
    slow_takeovers: u64,
}

#[test]
fn sigkill_during_inserts_and_removes_leaves_a_consistent_store() {
    let kills = scaled(200, 20);
    let _heavy = heavy();
    let t0 = Instant::now();
    let seg = Segment::new("kill-churn");
    let store = Store::create(seg.name(), KILL_CAP).unwrap();
    assert_eq!(store.capacity(), KILL_CAP);
    let whole = Whole256::new();
    whole_fits(&store, &*whole, "a new store");
    let mut rng = Rng(0x0dea_d0c0);
    let mut st = KillStats::default();

    for i in 0..kills {
        let context = format!("kill {i}");
        let mut kid = Kid::spawn("churn-until-killed", &[seg.name(), &(i + 1).to_string()]);
        kid.expect("ready");
        let delay = Duration::from_micros(200 + rng.below(2800));
        std::thread::sleep(delay);
        kid.kill_and_reap(&context);
        st.kills += 1;

        // What the kill interrupted, before anyone touches the store.
        let (word, seq) = raw_directory(&seg);
        if word & !LOCK_FLAGS != 0 {
            st.dir_lock_held += 1;
        }
        if seq & 1 != 0 {
            st.mid_change += 1;
        }

        let t = Instant::now();
        store
            .check()
            .unwrap_or_else(|e| panic!("{context}: check() after the kill: {e}"));
        if t.elapsed() >= Duration::from_millis(40) {
            st.slow_takeovers += 1;
        }
        assert!(
            t.elapsed() < RECOVERY,
            "{context}: taking the directory over took {:?}",
            t.elapsed()
        );
        let list = store.entries().unwrap();
        assert_eq!(list.len(), store.len().unwrap(), "{context}");
        let keys: BTreeSet<&str> = list.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys.len(), list.len(), "{context}: a key is listed twice");
        for e in &list {
            if e.locked {
                st.entry_lock_held += 1;
            }
            let found = victim_entry(&store, e, &context);
            st.poisoned += u64::from(found.poisoned);
            st.torn += u64::from(found.torn);
        }
        st.entries_recovered += list.len() as u64;
        // The entries of the last kill stay for the next child now and
        // then; otherwise the store is emptied and must be all free.
        if i % 4 == 3 || i == kills - 1 {
            empty_the_store(&store, &context);
            whole_fits(&store, &*whole, &context);
        }
        store
            .check()
            .unwrap_or_else(|e| panic!("{context}: check() after verifying: {e}"));
    }
    eprintln!(
        "store_process: {} kills in {:?}: directory lock held by the dead child {} times \
         ({} in the middle of a change, {} taken over slowly), an entry lock held {} times; \
         {} entries recovered in all, {} poisoned, {} torn values",
        st.kills,
        t0.elapsed(),
        st.dir_lock_held,
        st.mid_change,
        st.slow_takeovers,
        st.entry_lock_held,
        st.entries_recovered,
        st.poisoned,
        st.torn
    );
    assert!(
        st.entries_recovered > 0,
        "no kill left any entry behind: {st:?}"
    );
}

/// Checks an entry that `churn-until-killed` children made: its key is one
/// of theirs, its type the key's, and its value (if it is a blob) one they
/// wrote in full, unless they died writing it (see `blob_after_kill`).
fn victim_entry(store: &Store, e: &shmstore::EntryInfo, context: &str) -> Found {
    if let Some(c) = e.key.strip_prefix("c/") {
        assert!(
            c.parse::<u64>().unwrap() < KILL_COUNTERS,
            "{context}: {e:?}"
        );
        assert_eq!(e.type_name, "Counter", "{context}: {e:?}");
        let h = store.get::<Counter>(&e.key).unwrap();
        let poisoned = h.lock().is_err();
        h.clear_poison();
        return Found {
            poisoned,
            torn: false,
        };
    }
    let j: u64 = e
        .key
        .strip_prefix("k/")
        .and_then(|j| j.parse().ok())
        .unwrap_or_else(|| panic!("{context}: a key nobody made: {e:?}"));
    assert!(j < KILL_KEYS, "{context}: {e:?}");
    let kind = j as usize % 4;
    let (type_name, size) = kind_info(kind);
    assert_eq!(
        (e.type_name.as_str(), e.size),
        (type_name, size),
        "{context}: {e:?}"
    );
    by_kind!(kind, blob_after_kill(store, &e.key, context))
}

#[test]
fn survivors_keep_working_while_other_processes_die_mid_change() {
    // Three processes churn (checking every answer against what they
    // know) while others, one after another, insert and remove as fast as
    // they can and are SIGKILLed wherever they are. The survivors take the
    // directory over from the dead and rebuild it, at once, while they
    // work: none of them may see an error or a wrong answer, and at the
    // end the store holds exactly what they believe, plus whole entries of
    // the dead.
    const SURVIVORS: usize = 3;
    const OPS: u64 = 2000;
    const KILLS: u64 = 40;
    let _heavy = heavy();
    let t0 = Instant::now();
    let seg = Segment::new("survivors");
    let store = Store::create(seg.name(), 1 << 20).unwrap();
    let stop = store.insert::<u64>("stop", 0).unwrap();
    let ops = OPS.to_string();
    let mut kids: Vec<Kid> = (0..SURVIVORS)
        .map(|k| Kid::spawn("churn", &[seg.name(), &k.to_string(), &ops]))
        .collect();
    for k in &mut kids {
        k.expect("ready");
    }
    for k in &mut kids {
        k.send("go");
    }
    let mut rng = Rng(0x5e1f);
    let mut st = KillStats::default();
    for i in 0..KILLS {
        let mut victim = Kid::spawn("churn-until-killed", &[seg.name(), &(1000 + i).to_string()]);
        victim.expect("ready");
        std::thread::sleep(Duration::from_micros(200 + rng.below(2800)));
        victim.kill_and_reap(&format!("victim {i}"));
        st.kills += 1;
        let (word, seq) = raw_directory(&seg);
        st.dir_lock_held += u64::from(word & !LOCK_FLAGS != 0);
        st.mid_change += u64::from(seq & 1 != 0);
    }
    *stop.lock().unwrap() = 1;
    let reports: Vec<String> = kids.iter_mut().map(|k| k.expect("done")).collect();
    for k in &mut kids {
        k.wait_success();
    }
    drop(stop);

    store.check().expect("check() after the kills");
    let beliefs = Beliefs::from_reports(&reports);
    let entries = store.entries().unwrap();
    beliefs.verify(&store, &entries);
    for e in &entries {
        if !(e.key.starts_with("own/") || e.key.starts_with("shared/") || e.key == "stop") {
            let found = victim_entry(&store, e, "after the kills");
            st.poisoned += u64::from(found.poisoned);
            st.torn += u64::from(found.torn);
            st.entries_recovered += 1;
        }
    }
    eprintln!(
        "store_process: {SURVIVORS} survivors did {} ops in {:?} while {} others were killed \
         (directory lock held by the dead {} times, {} in the middle of a change); \
         {} entries of the dead left, {} poisoned, {} torn",
        beliefs.ops,
        t0.elapsed(),
        st.kills,
        st.dir_lock_held,
        st.mid_change,
        st.entries_recovered,
        st.poisoned,
        st.torn
    );
    assert!(
        st.dir_lock_held > 0,
        "no victim died holding the directory lock: {st:?}"
    );
    empty_the_store(&store, "after the survivors");
}

// ===========================================================================
// 4. Handles of processes that die

/// 256 processes (a part of them with `SHMSTORE_TEST_PERCENT` below 100)
/// hold handles of one store at once, each having opened it
/// and got the same entry; a random quarter of them are killed (SIGKILL),
/// the entry is removed, and the others let go and exit: the entry's
/// space, and every byte the processes' handles took, is free again, and
/// the store checks.
#[test]
fn a_removed_entry_held_by_many_processes_a_quarter_killed_is_freed() {
    let holders = scaled(256, 16) as usize;
    let _heavy = heavy();
    let seg = Segment::new("many-holders");
    let store = Store::create(seg.name(), 1 << 20).unwrap();
    let before = store.free_bytes().unwrap();
    drop(store.insert("big", Large::make("big", 1)).unwrap());
    let with_big = store.free_bytes().unwrap();
    let mut kids: Vec<Kid> = (0..holders)
        .map(|_| Kid::spawn("hold-entry", &[seg.name(), "big", "get"]))
        .collect();
    for kid in &mut kids {
        kid.expect("holding");
    }
    assert_eq!(
        store.free_bytes().unwrap(),
        with_big - holders * common::HOLD_LIST,
        "each holder's handle has a hold list"
    );

    let mut rng = Rng(u64::from(std::process::id()));
    let mut killed = BTreeSet::new();
    while killed.len() < holders / 4 {
        killed.insert(rng.below(holders as u64) as usize);
    }
    for &i in &killed {
        kids[i].kill();
        kids[i].wait();
    }
    store.remove("big").unwrap();
    assert!(!store.contains("big").unwrap());
    assert!(
        store.free_bytes().unwrap() < before,
        "live processes hold the removed entry"
    );
    for (i, kid) in kids.iter_mut().enumerate() {
        if !killed.contains(&i) {
            kid.send("quit");
        }
    }
    for (i, kid) in kids.iter_mut().enumerate() {
        if !killed.contains(&i) {
            kid.wait_success();
        }
    }
    assert_eq!(
        store.free_bytes().unwrap(),
        before,
        "the entry and every holder's hold list are free again (killed: {killed:?})"
    );
    store.check().unwrap();
}

/// A process killed at random points while its hold list grows and shrinks
/// (many gets kept, then dropped, in a loop): after the next caller's
/// recovery the store checks, and everything it held is free once it is
/// found dead.
#[test]
fn sigkill_while_a_hold_list_grows_leaves_a_consistent_store() {
    let kills = scaled(20, 8);
    const HELD: usize = 200;
    let _heavy = heavy();
    let seg = Segment::new("hold-list-kill");
    let store = Store::create(seg.name(), 1 << 20).unwrap();
    for i in 0..HELD {
        drop(store.insert::<u64>(&format!("held/{i}"), 0).unwrap());
    }
    let base = store.free_bytes().unwrap();
    let mut rng = Rng(0x005e_ed0f_4015);
    let mut rebuilt = 0;
    for round in 0..kills {
        let generation = store.generation();
        let mut kid = Kid::spawn("hold-many-until-killed", &[seg.name(), &HELD.to_string()]);
        kid.expect("ready");
        std::thread::sleep(Duration::from_micros(rng.below(5_000)));
        kid.kill_and_reap(&format!("round {round}"));
        store
            .check()
            .unwrap_or_else(|e| panic!("round {round}: after the kill: {e}"));
        // A rebuild of the directory is a change; gets are not.
        rebuilt += u32::from(store.generation() != generation);
        assert_eq!(
            store.free_bytes().unwrap(),
            base,
            "round {round}: the killed process's holds were not all freed"
        );
        store.check().unwrap();
        assert_eq!(store.len().unwrap(), HELD, "round {round}");
    }
    // Gets and drops take the directory lock only to move the list to a
    // larger block (three times in the first round), so most kills land in
    // holds and lettings go made without it: the checks above cover both.
    eprintln!("{rebuilt} of {kills} kills landed under the directory lock");
}

/// Gets (which take no lock when nothing overlaps them) race removals and
/// insertions of the same keys in other processes: every get finds a whole
/// value of its key, a handle's value never changes under it (its entry is
/// never freed while held, even when removed the moment it was got), and
/// afterwards the store checks and every byte comes back.
#[test]
fn gets_racing_removals_never_hold_a_freed_entry() {
    let millis = scaled(1_500, 300).to_string();
    let _heavy = heavy();
    let seg = Segment::new("get-race");
    let store = Store::create(seg.name(), 1 << 20).unwrap();
    let before = store.free_bytes().unwrap();
    for j in 0..RACE_KEYS {
        let key = format!("race/{j}");
        drop(store.insert(&key, Small::make(&key, 0)).unwrap());
    }
    let mut kids: Vec<Kid> = (1..=2)
        .map(|i| Kid::spawn("get-and-keep", &[seg.name(), &i.to_string(), &millis]))
        .chain([Kid::spawn("replace", &[seg.name(), "3", &millis])])
        .collect();
    let reports: Vec<String> = kids.iter_mut().map(|k| k.expect("")).collect();
    for kid in &mut kids {
        kid.wait_success();
    }
    let found: u64 = reports[..2].iter().map(|r| num(r, "found")).sum();
    let replaced = num(&reports[2], "replaced");
    assert!(found > 0 && replaced > 0, "{reports:?}");
    eprintln!("{reports:?}");
    store.check().unwrap();
    for j in 0..RACE_KEYS {
        store.remove(&format!("race/{j}")).unwrap();
    }
    store.check().unwrap();
    assert_eq!(store.free_bytes().unwrap(), before, "{reports:?}");
}

#[test]
fn dead_holders_space_comes_back_when_the_entry_is_removed() {
    let seg = Segment::new("dead-holder");
    let store = fixed_store(seg.name(), HOLD_CAP);
    drop(store.insert("before", Small::make("before", 1)).unwrap());
    let before = store.free_bytes().unwrap();

    let mut a = Kid::spawn("hold-entry", &[seg.name(), "big", "insert"]);
    a.expect("holding");
    let with_big = store.free_bytes().unwrap();
    assert!(with_big < before, "{with_big} < {before}");
    drop(store.insert("after", Small::make("after", 1)).unwrap());
    let full = store.free_bytes().unwrap();
    a.kill();
    a.wait();

    // The entry outlives the process that made it and held it.
    let h = store.get::<Large>("big").unwrap();
    assert_eq!(h.lock().unwrap().verify("big"), Ok(1));
    drop(h);
    assert_eq!(
        store.free_bytes().unwrap(),
        full + common::HOLD_LIST,
        "the dead process's hold list is freed once it is found dead"
    );

    // Removed, it goes at once: the dead process's handle counts for nothing.
    store.remove("big").unwrap();
    assert_eq!(
        store.free_bytes().unwrap(),
        full + (before - with_big),
        "the space of an entry held only by a dead process comes back on remove"
    );
    store.remove("after").unwrap();
    assert_eq!(store.free_bytes().unwrap(), before);
    store.check().unwrap();

    // Two holders, one killed: the space comes back when the live one lets
    // go, without the dead one ever dropping its handle.
    let mut b = Kid::spawn("hold-entry", &[seg.name(), "big", "insert"]);
    b.expect("holding");
    let mut c = Kid::spawn("hold-entry", &[seg.name(), "big", "get"]);
    c.expect("holding");
    b.kill();
    b.wait();
    store.remove("big").unwrap();
    assert!(!store.contains("big").unwrap());
    assert_eq!(
        store.free_bytes().unwrap(),
        with_big,
        "a live process holds it"
    );
    c.send("bump");
    assert_eq!(
        c.expect("bumped"),
        "serial=2",
        "a removed entry's handle works"
    );
    c.send("quit");
    c.wait_success();
    assert_eq!(
        store.free_bytes().unwrap(),
        before,
        "the last live holder let go"
    );
    store.check().unwrap();
    empty_the_store(&store, "after the holders");
}

#[test]
fn removed_entry_whose_holder_dies_gives_its_space_to_a_new_entry() {
    let seg = Segment::new("removed-held");
    let store = fixed_store(seg.name(), HOLD_CAP);
    let whole = Whole64::new();
    whole_fits(&store, &*whole, "a new store");
    let mut a = Kid::spawn("hold-entry", &[seg.name(), "big", "insert"]);
    a.expect("holding");
    let with_big = store.free_bytes().unwrap();

    // Removed while a live process holds it: gone from the directory, kept
    // for the holder, and the key can be made again meanwhile.
    store.remove("big").unwrap();
    assert!(!store.contains("big").unwrap());
    assert_eq!(
        variant(&common::failure(store.get::<Large>("big"))),
        "NotFound"
    );
    assert_eq!(store.free_bytes().unwrap(), with_big);
    a.send("bump");
    assert_eq!(a.expect("bumped"), "serial=2");
    drop(store.insert("big", Large::make("big", 9)).unwrap());
    assert_eq!(
        store
            .get::<Large>("big")
            .unwrap()
            .snapshot()
            .unwrap()
            .verify("big"),
        Ok(9),
        "the new entry is not the removed one"
    );
    store.remove("big").unwrap();

    a.kill();
    a.wait();
    // Space runs out for an entry that needs all of it: the removed
    // entry's dead holder is found and its space given to the new entry.
    whole_fits(&store, &*whole, "after its only holder died");
    assert_eq!(store.free_bytes().unwrap(), store.capacity());
    store.check().unwrap();
}

/// The same across PID namespaces: a process in a container of its own
/// holds the removed entry; while it lives its space is not given away,
/// and once it is killed it is. Root only.
#[test]
fn a_holder_in_another_pid_namespace_keeps_its_entry_until_it_dies() {
    if !common::is_root() {
        eprintln!("skip: needs root");
        return;
    }
    let seg = Segment::new("removed-held-ns");
    let store = fixed_store(seg.name(), HOLD_CAP);
    let whole = Whole64::new();
    let mut a = Kid::spawn_in(
        common::Apart::container(),
        "hold-entry",
        &[seg.name(), "big", "insert"],
    );
    a.expect("holding");
    store.remove("big").unwrap();
    // Its handle slot names a live process this namespace cannot see: its
    // space stays its own.
    assert_eq!(
        variant(&common::failure(store.insert("whole", *whole))),
        "StoreFull",
        "the entry of a live holder in another PID namespace was given away"
    );
    a.send("bump");
    assert_eq!(a.expect("bumped"), "serial=2");

    a.kill_player();
    a.wait();
    whole_fits(
        &store,
        &*whole,
        "after its holder in another namespace died",
    );
    assert_eq!(store.free_bytes().unwrap(), store.capacity());
    store.check().unwrap();
}

/// An entry's lock held by a process in another PID namespace that is
/// killed: the next locker here gets it back poisoned within a second.
/// Root only.
#[test]
fn an_entry_lock_holder_killed_in_another_pid_namespace_is_taken_over() {
    if !common::is_root() {
        eprintln!("skip: needs root");
        return;
    }
    let seg = Segment::new("entry-poison-ns");
    let store = fixed_store(seg.name(), HOLD_CAP);
    drop(store.insert("victim", Counter::default()).unwrap());
    let mut a = Kid::spawn_in(
        common::Apart::container(),
        "lock-and-die",
        &[seg.name(), "victim"],
    );
    a.expect("locked");
    let victim = store.get::<Counter>("victim").unwrap();
    assert!(
        victim.try_lock_for(Duration::from_millis(200)).is_err(),
        "a live holder in another namespace keeps its lock"
    );
    a.kill_player();
    let t0 = Instant::now();
    let got = victim.lock();
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(got.expect_err("poisoned").into_inner().value, 42);
}

#[test]
fn free_bytes_counts_removed_entries_whose_holders_died_as_free() {
    // What free_bytes says once the only holder of a removed entry is dead.
    // Its space is free for new entries (the test above: an insert that
    // needs it gets it), and nothing but a dead process holds it, yet
    // free_bytes() counts it as used until some insert runs out of space
    // (or the directory is rebuilt): free_bytes() only walks the heap,
    // without clearing dead holders as `Heap::create` does on StoreFull.
    let seg = Segment::new("free-dead");
    let store = fixed_store(seg.name(), HOLD_CAP);
    let empty = store.free_bytes().unwrap();
    let mut a = Kid::spawn("hold-entry", &[seg.name(), "big", "insert"]);
    a.expect("holding");
    store.remove("big").unwrap();
    a.kill();
    a.wait();
    assert_eq!(store.len().unwrap(), 0);
    assert_eq!(
        store.free_bytes().unwrap(),
        empty,
        "no entry, no live holder: free_bytes() must be the whole capacity \
         (an insert would get it all)"
    );
}

// ===========================================================================
// 5. A process that dies holding an entry's lock

#[test]
fn killed_entry_lock_holder_poisons_that_entry_only() {
    let seg = Segment::new("entry-poison");
    let store = fixed_store(seg.name(), HOLD_CAP);
    drop(
        store
            .insert(
                "victim",
                Counter {
                    value: 1,
                    ..Counter::default()
                },
            )
            .unwrap(),
    );
    drop(
        store
            .insert(
                "bystander",
                Counter {
                    value: 7,
                    ..Counter::default()
                },
            )
            .unwrap(),
    );
    drop(store.insert("blob", Medium::make("blob", 3)).unwrap());

    let mut a = Kid::spawn("lock-and-die", &[seg.name(), "victim"]);
    let pid = num(&a.expect("locked"), "pid");
    a.kill();
    a.wait();

    // Until someone locks it, the entry shows locked (by the dead process)
    // and not yet poisoned; the others are untouched.
    let info = |key: &str| {
        store
            .entries()
            .unwrap()
            .into_iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no {key}"))
    };
    let v = info("victim");
    assert!(v.locked && !v.poisoned, "{v:?}");
    for key in ["bystander", "blob"] {
        let e = info(key);
        assert!(!e.locked && !e.poisoned, "{e:?}");
    }

    let mut b = Kid::spawn("poison-check", &[seg.name(), "victim", "bystander"]);
    let line = b.expect("victim=");
    assert!(line.starts_with("poisoned"), "{line}");
    assert_eq!(num(&line, "value"), 42, "what the dead holder wrote stays");
    assert_eq!(num(&line, "pid"), pid);
    let took = Duration::from_millis(num(&line, "took_ms"));
    assert!(took < RECOVERY, "noticing the dead holder took {took:?}");
    assert_eq!(b.expect("again="), "poisoned", "poison stays until cleared");
    assert_eq!(b.expect("snapshot="), "poisoned");
    assert_eq!(b.expect("bystander="), "ok value=7");
    assert_eq!(b.expect("fresh="), "ok", "the directory is not affected");
    b.wait_success();

    let v = info("victim");
    assert!(!v.locked && v.poisoned, "{v:?}");
    for key in ["bystander", "blob", "fresh"] {
        let e = info(key);
        assert!(!e.locked && !e.poisoned, "{e:?}");
    }
    let victim = store.get::<Counter>("victim").unwrap();
    let g = victim.lock().unwrap_err().into_inner();
    assert_eq!(g.value, 43, "the taker's write through into_inner stays");
    drop(g);
    victim.clear_poison();
    assert_eq!(victim.lock().expect("poison cleared").value, 43);
    assert!(!info("victim").poisoned);
    assert_eq!(
        store
            .get::<Medium>("blob")
            .unwrap()
            .lock()
            .unwrap()
            .verify("blob"),
        Ok(3)
    );
    drop(victim);
    store.check().unwrap();
    empty_the_store(&store, "after the poison");
}

#[test]
fn writer_killed_mid_write_leaves_poison_never_a_torn_value_that_looks_fine() {
    const KILLS: u64 = 20;
    let seg = Segment::new("mid-write");
    let store = fixed_store(seg.name(), HOLD_CAP);
    drop(store.insert("page", Large::make("page", 0)).unwrap());
    drop(store.insert("other", Medium::make("other", 5)).unwrap());
    let page = store.get::<Large>("page").unwrap();
    let mut rng = Rng(0x3417e);
    let (mut poisoned, mut torn, mut snapshot_refused) = (0, 0, 0);
    for i in 0..KILLS {
        let mut w = Kid::spawn("rewrite-forever", &[seg.name(), "page"]);
        w.expect("ready");
        std::thread::sleep(Duration::from_micros(200 + rng.below(2800)));
        w.kill();
        w.wait();
        // A snapshot is a value written in full, or an error.
        match page.snapshot() {
            Ok(v) => assert!(
                v.verify("page").is_ok(),
                "kill {i}: snapshot gave a torn value"
            ),
            Err(_) => snapshot_refused += 1,
        }
        let t = Instant::now();
        let mut g = match page.lock() {
            Ok(g) => g,
            Err(p) => {
                poisoned += 1;
                p.into_inner()
            }
        };
        assert!(
            t.elapsed() < RECOVERY,
            "kill {i}: lock took {:?}",
            t.elapsed()
        );
        if let Err(why) = g.verify("page") {
            assert!(
                page.is_poisoned(),
                "kill {i}: torn ({why}) but not poisoned"
            );
            torn += 1;
            *g = Large::make("page", 0);
        }
        drop(g);
        page.clear_poison();
        let other = store.get::<Medium>("other").unwrap();
        assert_eq!(other.lock().unwrap().verify("other"), Ok(5), "kill {i}");
    }
    eprintln!(
        "store_process: {KILLS} writers killed: {poisoned} poisoned, {torn} torn values, \
         {snapshot_refused} snapshots refused"
    );
    drop(page);
    store.check().unwrap();
    empty_the_store(&store, "after the writers");
}

// ===========================================================================
// 6. Processes killed while creating the store

#[test]
fn creators_killed_while_creating_the_store_leave_it_usable() {
    let rounds = scaled(60, 15);
    const CREATORS: usize = 3;
    const CAP: usize = KILL_CAP;
    let _heavy = heavy();
    let t0 = Instant::now();
    let mut rng = Rng(0x00c4_ea7e);
    let whole = Whole256::new();
    let key = Key::in_range(KEY_BASE);
    let dir = std::env::temp_dir().join(format!("shmstore-it-storeproc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cap = CAP.to_string();
    // State of the object each kill left (POSIX and file only).
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();

    for round in 0..rounds {
        let seg = Segment::new("create-kill");
        let path: PathBuf = dir.join(format!("store-{round}"));
        let (kind, target) = match round % 3 {
            0 => ("posix", seg.name().to_owned()),
            1 => ("sysv", key.arg()),
            _ => ("file", path.to_str().unwrap().to_owned()),
        };
        let loc = location(kind, &target);
        let context = format!("round {round} ({kind})");
        let mut creators: Vec<Kid> = (0..CREATORS)
            .map(|_| Kid::spawn("create-store", &[kind, &target, &cap]))
            .collect();
        for k in &mut creators {
            k.expect("ready");
        }
        let delay = Duration::from_micros(rng.below(500));
        for k in &mut creators {
            k.send("go");
        }
        std::thread::sleep(delay);
        for k in &mut creators {
            k.kill();
        }
        for k in &mut creators {
            k.reap_killed(&format!("{context}: a creator"));
        }

        let file = match kind {
            "posix" => Some(seg.path()),
            "file" => Some(path.clone()),
            _ => None,
        };
        if let Some(file) = file {
            let state = match std::fs::File::open(&file) {
                Err(_) => "absent",
                Ok(f) => {
                    let mut b = [0u8; 8];
                    let len = f.metadata().unwrap().len();
                    if len == 0 {
                        "empty"
                    } else if f.read_exact_at(&mut b[..4], STATE_AT).is_err()
                        || u32::from_ne_bytes(b[..4].try_into().unwrap()) != STATE_READY
                    {
                        "initialising"
                    } else if f.read_exact_at(&mut b[..4], FORMAT_AT).is_err()
                        || u32::from_ne_bytes(b[..4].try_into().unwrap()) != FORMATTED
                    {
                        "ready, not formatted"
                    } else if f.read_exact_at(&mut b, DIR_LOCK_AT).is_ok()
                        && u64::from_ne_bytes(b) & !LOCK_FLAGS != 0
                    {
                        "formatted, directory locked"
                    } else {
                        "formatted"
                    }
                }
            };
            *states.entry(state).or_default() += 1;
        }

        let mut v = Kid::spawn("verify-store", &[kind, &target, &cap]);
        assert_eq!(
            v.expect("open_or_create="),
            "ok",
            "{context}: {}",
            v.stderr()
        );
        assert_eq!(v.expect("check="), "ok", "{context}");
        let used = v.expect("used");
        assert_eq!(field(&used, "insert"), "ok", "{context}: {used}");
        assert_eq!(field(&used, "remove"), "ok", "{context}: {used}");
        assert_eq!(field(&used, "check"), "ok", "{context}: {used}");
        assert_eq!(num(&used, "capacity"), CAP as u64, "{context}: {used}");
        v.wait_success();

        let store = Store::open(&loc).unwrap_or_else(|e| panic!("{context}: open: {e}"));
        store
            .check()
            .unwrap_or_else(|e| panic!("{context}: check: {e}"));
        // Creators killed while holding a removed entry leave its space to
        // be found when space runs out: an entry as large as the store
        // finds it; then all of it is free.
        remove_all(&store, &context);
        whole_fits(&store, &*whole, &context);
        assert_eq!(store.free_bytes().unwrap(), store.capacity(), "{context}");
        drop(store);
        Store::unlink(&loc).unwrap_or_else(|e| panic!("{context}: unlink: {e}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "store_process: {rounds} rounds of {CREATORS} creators killed in {:?}; \
         POSIX and file objects left {states:?}",
        t0.elapsed()
    );
}
