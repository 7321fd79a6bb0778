//! Records a peer writes that it does not own: lock words naming another
//! process's incarnation or none at all, store handle slots naming live,
//! dead and impossible processes, and a System V segment's stand-in file
//! squatted before the segment is opened. What a user notices is what a
//! forged identity always gave: no hang, no break of mutual exclusion, at
//! worst a take-over that is poisoned.
//!
//! 1. A lock word naming a live process's incarnation (a real child that
//!    has the segment open, in this PID namespace or, as root, in one of
//!    its own) with a thread id that process does not have is a held lock:
//!    `try_lock` and `try_lock_for` give `WouldBlock`. When that process
//!    exits, a waiter already asleep in `lock()` gets the lock, poisoned,
//!    within 1 s.
//! 2. A lock word naming an incarnation no process shows (random ones, the
//!    smallest and the largest, with any flags) is taken over, poisoned,
//!    within 1 s.
//! 3. Store handle slots forged to name a live process, a dead one or
//!    garbage, with hold lists that are not theirs or not lists, and an
//!    entry's unused header field (where holders were once counted)
//!    forged: the store keeps working, `check` says what is wrong, the
//!    removed entry's space comes back once the live process is gone, a
//!    rebuild of the directory keeps it so, and new handles find slots
//!    wherever the forged ones name nobody. A dead process's hold list
//!    forged in every way never frees an entry a live handle holds.
//! 4. The stand-in of a System V segment (a FIFO, a symbolic link, a
//!    directory, another user's file, a file whose incarnation bytes a
//!    peer read-locks): opening answers at once with a typed error that
//!    names the stand-in and what is wrong with it, follows no link and
//!    writes nothing through it.
//! 5. A reader of a POSIX segment that read-locks every incarnation's byte
//!    keeps writers out (a process that cannot show itself must not take
//!    locks): opening for writing says so at once, reading still works,
//!    and writers open again once the reader lets go.

use crate::common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, TryLockError};
use std::time::{Duration, Instant};

use common::{command, is_root, role, say, within, Apart, Counter, Key, Kid, Segment};
use shmstore::{Error, Location, Shared, Store};

/// The bound for taking over a dead holder's lock: the design's is about
/// 50 ms, and this leaves room for a loaded machine.
const RECOVERY: Duration = Duration::from_secs(1);
/// Where the lock word sits in a segment (src/segment/header.rs).
const LOCK_AT: u64 = 256;
/// The lock word's flag bits (src/lock/owner.rs): waiters and watched.
const LOCK_FLAGS: u64 = 3 << 30;
/// A thread id the child processes here do not have (they have a few
/// threads with ids near their pids).
const NO_SUCH_TID: u32 = (1 << 22) - 3;
/// This file's range of System V keys (see `common::Key`).
const KEY_BASE: u32 = 0x6600_0000;
use common::{
    STORE_HANDLES_FROM_CONTENT as HANDLES_FROM_CONTENT, STORE_HANDLE_BYTES as HANDLE_BYTES,
    STORE_HANDLE_SLOTS as HANDLE_SLOTS,
};
/// Where the meta's count of handle slots ever used is, from the content.
const MARK_FROM_CONTENT: usize = 48;
/// The states of an entry's block (src/store/heap.rs).
const LIVE_OR_REMOVED: (u32, u32) = (0x4c49_5645, 0x5245_4d44);
const FREE: u32 = 0x4652_4545;

// ===========================================================================
// Roles played by child processes

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    match args[0].as_str() {
        "keep" => keep(&args[1]),
        "keep-store" => keep_store(&args[1], &args[2..]),
        other => panic!("unknown role {other}"),
    }
}

/// Opens the POSIX segment `name` for writing, says its incarnation (read
/// off a lock word it wrote), and keeps it open until stdin closes.
fn keep(name: &str) {
    let c = Shared::<Counter>::open(name).expect("open");
    let g = c.lock().expect("an unpoisoned lock");
    let word = word_in(&PathBuf::from(format!("/dev/shm/{name}")));
    drop(g);
    say(format!("x {}", incarnation_of(word)));
    while command().is_some() {}
}

/// Opens the store `name`, gets the entries `keys` (each a `Counter`),
/// and keeps them until stdin closes.
fn keep_store(name: &str, keys: &[String]) {
    let store = Store::open(name).expect("open the store");
    let held: Vec<_> = keys
        .iter()
        .map(|k| store.get::<Counter>(k).expect("get"))
        .collect();
    say("ready");
    while command().is_some() {}
    drop(held);
    drop(store);
}

// ===========================================================================
// Lock words

/// The lock identity of thread `tid` of the process of incarnation `x`
/// (src/lock/owner.rs `compose_ident`).
fn ident(tid: u32, x: u64) -> u64 {
    ((x >> 8) << 32) | ((x & 0xff) << 22) | u64::from(tid)
}

fn incarnation_of(word: u64) -> u64 {
    let ident = word & !LOCK_FLAGS;
    ((ident >> 32) << 8) | ((ident >> 22) & 0xff)
}

fn word_in(path: &Path) -> u64 {
    let file = std::fs::File::open(path).expect("the segment's file");
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, LOCK_AT).unwrap();
    u64::from_ne_bytes(b)
}

/// Writes `word` over the lock word, as a peer with write access would.
fn forge_word(path: &Path, word: u64) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("the segment's file");
    file.write_all_at(&word.to_ne_bytes(), LOCK_AT).unwrap();
}

/// A lock word naming a live child's incarnation, with a thread id the
/// child does not have, is held while the child lives and taken over,
/// poisoned, within 1 s once it is gone, by a waiter already asleep.
fn forged_live_incarnation(apart: Option<Apart>) {
    let seg = Segment::new("forged-live");
    let c = Shared::create(
        seg.name(),
        Counter {
            value: 7,
            ..Counter::default()
        },
    )
    .unwrap();
    let mut kid = match apart {
        Some(a) => Kid::spawn_in(a, "keep", &[seg.name()]),
        None => Kid::spawn("keep", &[seg.name()]),
    };
    let x: u64 = kid.expect("x ").parse().unwrap();
    for flags in [0, 1 << 31, 3 << 30] {
        forge_word(&seg.path(), ident(NO_SUCH_TID, x) | flags);
        assert!(
            matches!(c.try_lock(), Err(TryLockError::WouldBlock)),
            "a lock word naming a live process (flags {flags:#x}) is a held lock"
        );
        assert!(matches!(
            c.try_lock_for(Duration::from_millis(150)),
            Err(TryLockError::WouldBlock)
        ));
    }
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let got = c.lock();
            let at = Instant::now();
            let poisoned = got.is_err();
            let value = match got {
                Ok(g) => g.value,
                Err(p) => p.into_inner().value,
            };
            tx.send((at, poisoned, value)).unwrap();
        });
        // Asleep in lock() (or about to be) before the process goes.
        std::thread::sleep(Duration::from_millis(200));
        assert!(rx.try_recv().is_err(), "the waiter got a held lock");
        kid.kill_player();
        let killed = Instant::now();
        let (at, poisoned, value) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the waiter never got the lock of a dead holder");
        assert!(poisoned, "a dead holder's lock is taken over poisoned");
        assert_eq!(value, 7, "the value as it was");
        let took = at.saturating_duration_since(killed);
        assert!(took < RECOVERY, "taken over after {took:?}");
    });
}

#[test]
fn a_lock_word_naming_a_live_process_is_held_until_it_exits() {
    forged_live_incarnation(None);
}

#[test]
fn a_lock_word_naming_a_process_in_another_pid_namespace_is_held_until_it_exits() {
    if !is_root() {
        eprintln!("skip: needs root");
        return;
    }
    forged_live_incarnation(Some(Apart::pid_ns()));
    forged_live_incarnation(Some(Apart::container()));
}

/// A few random numbers (no crate for it: the clock and the pid are
/// enough to vary the cases between runs; each case is printed).
fn randoms(n: usize) -> Vec<u64> {
    let mut s = Instant::now().elapsed().as_nanos() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
        ^ u64::from(std::process::id()) << 32;
    (0..n)
        .map(|_| {
            // splitmix64
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
        .collect()
}

#[test]
fn a_lock_word_naming_no_process_is_taken_over_poisoned() {
    let seg = Segment::new("forged-none");
    let c = Shared::create(
        seg.name(),
        Counter {
            value: 3,
            ..Counter::default()
        },
    )
    .unwrap();
    let mine = {
        let g = c.lock().unwrap();
        let w = word_in(&seg.path());
        drop(g);
        incarnation_of(w)
    };
    let mut words: Vec<u64> = vec![
        ident(1, 1),
        ident(NO_SUCH_TID, (1 << 40) - 1),
        ident(common::gettid() + 1, 0),
        !LOCK_FLAGS,
    ];
    // Random incarnations and thread ids, with random flags.
    words.extend(
        randoms(24)
            .into_iter()
            .map(|r| r & !(1 << 30) | (r & 1) << 30),
    );
    for word in words {
        if incarnation_of(word) == mine || word & !LOCK_FLAGS == 0 {
            continue; // this process's, or no holder at all
        }
        forge_word(&seg.path(), word);
        let start = Instant::now();
        match c.try_lock_for(Duration::from_secs(5)) {
            Err(TryLockError::Poisoned(p)) => {
                let took = start.elapsed();
                assert!(
                    took < RECOVERY,
                    "word {word:#018x}: taken over after {took:?}"
                );
                assert_eq!(p.into_inner().value, 3, "word {word:#018x}");
            }
            Ok(_) => panic!("word {word:#018x}: taken, not poisoned"),
            Err(TryLockError::WouldBlock) => {
                panic!("word {word:#018x}: a lock naming nobody was held")
            }
        }
        c.clear_poison();
        assert!(c.try_lock().is_ok(), "word {word:#018x}: released");
    }
}

// ===========================================================================
// Store handle slots

/// Where the store's content starts (the header's value offset).
fn content_of(bytes: &[u8]) -> usize {
    u64::from_ne_bytes(bytes[56..64].try_into().unwrap()) as usize
}

/// Where handle slot `slot` of the store in `bytes` starts.
fn handle_at(bytes: &[u8], slot: usize) -> usize {
    content_of(bytes) + HANDLES_FROM_CONTENT + HANDLE_BYTES * slot
}

/// How many handle slots the store says were ever used (the mark: the
/// slots past it are not read).
fn mark(path: &Path) -> usize {
    let b = std::fs::read(path).unwrap();
    let at = content_of(&b) + MARK_FROM_CONTENT;
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap()) as usize
}

/// Writes `bytes` at `at` of the file at `path`, as a peer would.
fn poke(path: &Path, at: usize, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, at as u64).unwrap();
}

fn forge_mark(path: &Path, mark: usize) {
    let at = content_of(&std::fs::read(path).unwrap()) + MARK_FROM_CONTENT;
    poke(path, at, &(mark as u64).to_ne_bytes());
}

/// The used slots of the store's handle table: (pid, hold list, incarnation) each.
fn slots(path: &Path) -> Vec<(u32, u32, u64)> {
    let mark = mark(path);
    let b = std::fs::read(path).unwrap();
    (0..mark)
        .map(|s| {
            let at = handle_at(&b, s);
            (
                u32::from_ne_bytes(b[at..at + 4].try_into().unwrap()),
                u32::from_ne_bytes(b[at + 4..at + 8].try_into().unwrap()),
                u64::from_ne_bytes(b[at + 8..at + 16].try_into().unwrap()),
            )
        })
        .collect()
}

fn forge_slot(path: &Path, slot: usize, pid: u32, list: u32, x: u64) {
    let at = handle_at(&std::fs::read(path).unwrap(), slot);
    poke(path, at, &pid.to_ne_bytes());
    poke(path, at + 4, &list.to_ne_bytes());
    poke(path, at + 8, &x.to_ne_bytes());
}

/// Where block index `index` (as slots and buckets name blocks) starts
/// (src/store/heap.rs: blocks after the handle table and the buckets).
fn block_at(bytes: &[u8], index: u32) -> usize {
    let content = content_of(bytes);
    let buckets = u64::from_ne_bytes(bytes[content + 8..content + 16].try_into().unwrap());
    let heap_at = handle_at(bytes, HANDLE_SLOTS) + ((buckets * 8).div_ceil(64) * 64) as usize;
    heap_at + 64 * (index as usize - 1)
}

/// The block index of the entry keyed `key`, or of the first free block
/// if `key` is empty (each block a 64-byte header, its size first, its
/// state at +16, the key lengths at +20, then the key).
fn index_of_entry(path: &Path, key: &str) -> u32 {
    let b = std::fs::read(path).unwrap();
    let content = content_of(&b);
    let heap_size = u64::from_ne_bytes(b[content + 16..content + 24].try_into().unwrap()) as usize;
    let heap_at = block_at(&b, 1);
    let mut at = heap_at;
    while at < heap_at + heap_size {
        let key_len = u32::from_ne_bytes(b[at + 20..at + 24].try_into().unwrap()) as usize & 0xffff;
        let state = u32::from_ne_bytes(b[at + 16..at + 20].try_into().unwrap());
        let found = if key.is_empty() {
            state == FREE
        } else {
            (state == LIVE_OR_REMOVED.0 || state == LIVE_OR_REMOVED.1)
                && b.get(at + 64..at + 64 + key_len) == Some(key.as_bytes())
        };
        if found {
            return ((at - heap_at) / 64 + 1) as u32;
        }
        at += (u64::from_ne_bytes(b[at..at + 8].try_into().unwrap()) as usize).max(64);
    }
    panic!("no entry {key}");
}

/// Adds `delta` to the unused field of the entry keyed `key`'s header (at
/// +56 of its block, where holders were once counted).
fn forge_count(path: &Path, key: &str, delta: u64) {
    let index = index_of_entry(path, key);
    let b = std::fs::read(path).unwrap();
    let at = block_at(&b, index) + 56;
    let old = u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
    poke(path, at, &old.wrapping_add(delta).to_ne_bytes());
}

/// Writes `words` (u32 each) at `offset` of the block of index `index`.
fn forge_block(path: &Path, index: u32, offset: usize, words: &[u32]) {
    let at = block_at(&std::fs::read(path).unwrap(), index) + offset;
    for (i, w) in words.iter().enumerate() {
        poke(path, at + 4 * i, &w.to_ne_bytes());
    }
}

/// Makes the next user of the store rebuild its directory, as after a
/// process killed holding the directory lock: a lock word naming a thread
/// of no process.
fn forge_dead_directory_holder(path: &Path) {
    forge_word(path, ident(NO_SUCH_TID, (1 << 40) - 1));
}

#[test]
fn forged_handle_slots_and_counts_neither_hang_nor_keep_space_forever() {
    let seg = Segment::new("forged-slots");
    let path = seg.path();
    let store = Store::create(seg.name(), 64 << 10).unwrap();
    let free = store.free_bytes().unwrap();
    store
        .insert(
            "doomed",
            Counter {
                value: 1,
                ..Counter::default()
            },
        )
        .unwrap();
    let held = store.get::<Counter>("doomed").unwrap();

    // A live process holding the entry, and one that had it and is gone.
    let mut live = Kid::spawn("keep-store", &[seg.name(), "doomed"]);
    live.expect("ready");
    let mut gone = Kid::spawn("keep-store", &[seg.name(), "doomed"]);
    gone.expect("ready");
    let table = slots(&path);
    let slot_of = |pid: u32| {
        *table
            .iter()
            .find(|s| s.0 == pid)
            .unwrap_or_else(|| panic!("no slot of process {pid}: {table:?}"))
    };
    let ((_, live_list, live_x), (_, _, gone_x)) = (slot_of(live.pid()), slot_of(gone.pid()));
    gone.close_stdin();
    gone.wait_success();

    // Forged slots past the mark (and the mark raised over them): the live
    // process again, naming its hold list; the dead one; garbage, naming
    // no block, a block out of the heap, an entry.
    let at = mark(&path);
    let doomed = index_of_entry(&path, "doomed");
    let forged: [(u32, u32, u64); 5] = [
        (1, live_list, live_x),
        (gone.pid(), 0, gone_x),
        (u32::MAX, u32::MAX, u64::MAX),
        (12345, 7, 0),
        (1, doomed, 1 << 40),
    ];
    for (i, &(pid, list, x)) in forged.iter().enumerate() {
        forge_slot(&path, at + i, pid, list, x);
    }
    forge_mark(&path, at + forged.len());
    // And the unused header field, where holders were once counted.
    forge_count(&path, "doomed", 5);

    let name = seg.name().to_owned();
    let after = within(Duration::from_secs(20), "using the store", move || {
        let store = Store::open(&name).unwrap();
        store.remove("doomed").unwrap();
        assert!(!store.contains("doomed").unwrap());
        match store.check() {
            Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("hold"), "{reason}"),
            other => panic!("forged holds pass the check: {other:?}"),
        }
        store
    });
    drop(held);
    assert!(
        after.free_bytes().unwrap() < free,
        "a removed entry that a live process holds keeps its space"
    );
    live.close_stdin();
    live.wait_success();
    // No slot names the entry once the live process is gone (the forged
    // field counts for nothing): its space comes back, and stays back
    // through a rebuild of the directory, as after a crash. (Asked of
    // `store`, which frees its own empty hold list first.)
    assert!(
        common::eventually(Duration::from_secs(5), || store.free_bytes().unwrap()
            == free),
        "the space comes back once no live process holds the entry: {} of {free}",
        store.free_bytes().unwrap()
    );
    forge_dead_directory_holder(&path);
    assert_eq!(store.free_bytes().unwrap(), free);
    after.check().unwrap();

    // Every used slot forged to name nobody: new handles still find slots.
    let name = seg.name().to_owned();
    let mine: Vec<usize> = slots(&path)
        .iter()
        .enumerate()
        .filter(|(_, s)| s.0 == std::process::id())
        .map(|(i, _)| i)
        .collect();
    for slot in (0..mark(&path)).filter(|s| !mine.contains(s)) {
        let junk = randoms(1)[0];
        forge_slot(&path, slot, junk as u32 | 1, 0, junk >> 24);
    }
    within(
        Duration::from_secs(20),
        "opening over forged slots",
        move || {
            let handles: Vec<Store> = (0..4).map(|_| Store::open(&name).unwrap()).collect();
            handles[0].get_or_create("again", 1u32).unwrap();
            handles[3].check().unwrap();
        },
    );
    drop(store);
}

/// A dead process's hold list forged in each way a peer could (entries
/// named more often than held, out of the heap, at a free block; longer
/// than its block; owned by another slot): reclaiming it never hangs or
/// panics, and never frees an entry a live handle holds; a rebuild of the
/// directory then makes every count right again.
#[test]
fn forged_hold_lists_never_free_an_entry_a_live_handle_holds() {
    let seg = Segment::new("forged-lists");
    let path = seg.path();
    let store = Store::create(seg.name(), 64 << 10).unwrap();
    let free = store.free_bytes().unwrap();
    for key in ["kept", "other"] {
        store.insert(key, Counter::default()).unwrap();
    }
    let kept = index_of_entry(&path, "kept");
    let my_slot = slots(&path)
        .iter()
        .position(|s| s.0 == std::process::id())
        .unwrap();
    // (what, where in the list block, the words written there)
    let forgeries: [(&str, usize, Vec<u32>); 5] = [
        (
            "held entries named thrice",
            24,
            vec![3, 0, kept, kept, kept],
        ),
        ("an entry out of the heap", 32, vec![u32::MAX]),
        ("a free block", 32, vec![0]), // found below, once the list is made
        ("longer than its block", 24, vec![u32::MAX]),
        ("owned by another slot", 20, vec![my_slot as u32]),
    ];
    for (what, offset, words) in forgeries {
        let held = store.get::<Counter>("kept").unwrap();
        let mut kid = Kid::spawn("keep-store", &[seg.name(), "kept", "other"]);
        kid.expect("ready");
        let (_, list, _) = *slots(&path).iter().find(|s| s.0 == kid.pid()).unwrap();
        assert_ne!(list, 0, "a handle holding entries has a hold list");
        kid.kill();
        kid.wait();
        let words = match words[..] {
            [0] => vec![index_of_entry(&path, "")],
            _ => words,
        };
        forge_block(&path, list, offset, &words);
        store.remove("kept").unwrap();
        let name = seg.name().to_owned();
        within(Duration::from_secs(20), what, move || {
            let store = Store::open(&name).unwrap();
            store.free_bytes().unwrap();
            let _ = store.check();
        });
        // Still held here: not freed, and it works.
        held.lock().unwrap().value += 1;
        assert!(held.snapshot().unwrap().value >= 1, "{what}");
        assert!(!store.contains("kept").unwrap(), "{what}");
        drop(held);
        // The rebuild recounts every entry from the live lists.
        forge_dead_directory_holder(&path);
        store.free_bytes().unwrap();
        store
            .check()
            .unwrap_or_else(|e| panic!("{what}: after the rebuild: {e}"));
        store.insert("kept", Counter::default()).unwrap();
        assert_eq!(index_of_entry(&path, "kept"), kept, "{what}");
    }
    store.remove("kept").unwrap();
    store.remove("other").unwrap();
    assert_eq!(store.free_bytes().unwrap(), free);
    store.check().unwrap();
}

#[test]
fn a_table_of_live_slots_is_full_not_a_hang() {
    let seg = Segment::new("forged-full");
    let store = Store::create(seg.name(), 16 << 10).unwrap();
    let mut live = Kid::spawn("keep-store", &[seg.name()]);
    live.expect("ready");
    let table = slots(&seg.path());
    let x = table.iter().find(|s| s.0 == live.pid()).unwrap().2;
    for slot in 0..HANDLE_SLOTS {
        if table.get(slot).is_none_or(|s| s.0 == 0) {
            forge_slot(&seg.path(), slot, 1, 0, x);
        }
    }
    forge_mark(&seg.path(), HANDLE_SLOTS);
    let name = seg.name().to_owned();
    let got = within(Duration::from_secs(20), "opening a full table", move || {
        Store::open(&name).map(drop)
    });
    assert!(
        matches!(got, Err(Error::HandleLimit { .. })),
        "every slot names a live process: {got:?}"
    );
    live.close_stdin();
    live.wait_success();
    let name = seg.name().to_owned();
    within(
        Duration::from_secs(20),
        "opening once it is gone",
        move || {
            Store::open(&name).expect("slots of a process that is gone are free again");
        },
    );
    drop(store);
}

// ===========================================================================
// System V stand-ins

/// The stand-in file of System V segment `id` (src/sys/linux/sysv.rs).
fn stand_in(id: i32) -> PathBuf {
    let ns = std::fs::metadata("/proc/self/ns/ipc").unwrap().ino();
    PathBuf::from(format!("/dev/shm/.shmstore-sysv.{ns}.{id}"))
}

fn shmid(key: &Key) -> i32 {
    // SAFETY: shmget takes integers.
    let id = unsafe { libc::shmget(key.key().key(), 0, 0) };
    assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
    id
}

/// What opening the System V segment of `key` gives with its stand-in
/// replaced by what `squat` makes there; the stand-in's path.
fn open_squatted(tag: &str, squat: impl FnOnce(&PathBuf)) -> (Result<(), Error>, PathBuf) {
    let key = Key::in_range(KEY_BASE);
    drop(
        Shared::create(
            Location::sysv(key.key()),
            Counter {
                value: 9,
                ..Counter::default()
            },
        )
        .unwrap(),
    );
    let path = stand_in(shmid(&key));
    assert!(path.exists(), "{tag}: the creator made the stand-in");
    std::fs::remove_file(&path).unwrap();
    squat(&path);
    let loc = Location::sysv(key.key());
    let got = within(Duration::from_secs(20), tag, move || {
        let got = Shared::<Counter>::open(loc).map(|c| {
            assert_eq!(c.lock().unwrap().value, 9);
        });
        drop(key);
        got
    });
    (got, path)
}

/// A refusal that names the stand-in and says what is wrong with it.
fn assert_names(tag: &str, got: &Result<(), Error>, path: &Path, what: &str) {
    let Err(e) = got else {
        panic!("{tag}: opened through a squatted stand-in")
    };
    let msg = e.to_string();
    assert!(
        msg.contains(&*path.to_string_lossy()) && msg.contains(what),
        "{tag}: the error should name {} and say `{what}`: {msg} ({e:?})",
        path.display()
    );
}

#[test]
fn a_squatted_stand_in_is_a_clear_error_at_once() {
    let (got, path) = open_squatted("fifo", |p| {
        nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    });
    assert_names("fifo", &got, &path, "not a regular file");
    let _ = std::fs::remove_file(&path);

    let dir = tempdir("forged-link");
    let target = dir.join("target");
    std::fs::write(&target, b"").unwrap();
    let (got, path) = open_squatted("symlink", |p| {
        std::os::unix::fs::symlink(&target, p).unwrap();
    });
    assert_names("symlink", &got, &path, "symbolic link");
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"",
        "the link was not followed"
    );
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir_all(&dir);

    let (got, path) = open_squatted("directory", |p| std::fs::create_dir(p).unwrap());
    assert_names("directory", &got, &path, "not a regular file");
    let _ = std::fs::remove_dir(&path);

    if is_root() {
        let (got, path) = open_squatted("foreign", |p| {
            std::fs::write(p, b"").unwrap();
            std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
        });
        assert_names("foreign", &got, &path, "owned by");
        let _ = std::fs::remove_file(&path);
    } else {
        eprintln!("skip (another user's stand-in): needs root");
    }
}

#[test]
fn read_locked_incarnations_in_a_stand_in_are_a_clear_error_at_once() {
    let mut holder = None;
    let (got, path) = open_squatted("read-locked", |p| {
        std::fs::write(p, b"").unwrap();
        holder = Some(read_lock_incarnations(p));
    });
    match &got {
        Ok(()) => {}
        Err(_) => assert_names("read-locked", &got, &path, "holds a lock"),
    }
    drop(holder);
    let _ = std::fs::remove_file(&path);
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shmstore-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Holds a read lock on every incarnation's byte of the object at `path`,
/// as any process that may read it can, until dropped.
fn read_lock_incarnations(path: &Path) -> std::fs::File {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: `flock` is plain integers, for which zeroes are valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_RDLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 1 << 56;
    fl.l_len = 1 << 40;
    // SAFETY: `fl` is a valid flock that outlives the call.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    f
}

/// A reader of a POSIX segment that read-locks every incarnation's byte
/// keeps writers out (a process that cannot show itself must not take
/// locks): opening for writing says so at once; reading still works; once
/// the reader lets go, writers open again.
#[test]
fn read_locked_incarnations_in_a_segment_refuse_writers_clearly() {
    let seg = Segment::new("forged-rdlock");
    drop(
        Shared::create(
            seg.name(),
            Counter {
                value: 4,
                ..Counter::default()
            },
        )
        .unwrap(),
    );
    let holder = read_lock_incarnations(&seg.path());
    let name = seg.name().to_owned();
    let (got, read) = within(Duration::from_secs(20), "opening", move || {
        let got = Shared::<Counter>::open(name.as_str()).map(drop);
        let read = shmstore::SharedReader::<Counter>::open(name.as_str())
            .map(|r| r.snapshot().unwrap().value);
        (got, read)
    });
    let msg = match got {
        Err(e) => e.to_string(),
        Ok(()) => panic!("opened for writing without showing itself"),
    };
    assert!(msg.contains("holds a lock"), "{msg}");
    assert_eq!(read.unwrap(), 4, "readers still read");
    drop(holder);
    assert_eq!(
        Shared::<Counter>::open(seg.name())
            .unwrap()
            .lock()
            .unwrap()
            .value,
        4
    );
}
