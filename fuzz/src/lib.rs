//! What the fuzz targets share: the value type, the parts of a segment's
//! layout (as src/segment/header.rs, src/lock/mod.rs, src/lock/seqlock.rs and
//! src/store/heap.rs document them), how a fuzz input becomes writes over a
//! segment, and lock identities.
//!
//! An input is a list of writes, each `selector:u8 position:u16 length:u8`
//! followed by `length % 17` bytes: the selector picks a part of the
//! layout, the position a byte in it (a field is always written from its
//! start), the bytes are what a peer writes there. A length byte of 0xf8
//! or more is followed by 4 bytes instead, and writes a record shaped as
//! the library writes them (see [`record`]): a lock word naming this
//! process, a process next to it or none, or a store handle slot naming
//! this process, one that is gone or garbage.

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use shmstore::{Shareable, ShmBool, ShmStr, ShmVec};

#[derive(Shareable, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

#[derive(Shareable, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Reading {
    pub at: u32,
    pub level: i16,
    pub flags: u16,
}

/// A value whose schema has every kind of part.
#[derive(Shareable, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Rich {
    pub id: u64,
    pub ratio: f64,
    pub origin: Point,
    pub path: [Point; 3],
    pub readings: ShmVec<Reading, 4>,
    pub name: ShmStr<20>,
    pub enabled: ShmBool,
    pub small: [i8; 3],
    pub count: u32,
}

/// The value every segment starts with.
pub fn sample() -> Rich {
    let mut r = Rich {
        id: 7,
        ratio: 0.5,
        origin: Point { x: -3, y: 4 },
        path: [Point { x: 1, y: 2 }; 3],
        enabled: ShmBool::new(true),
        small: [-1, 0, 1],
        count: 9,
        ..Rich::default()
    };
    r.name.set("station-7").unwrap();
    r.readings
        .push(Reading {
            at: 1,
            level: -2,
            flags: 3,
        })
        .unwrap();
    r
}

/// Reads every part of a `Rich` through its validating accessors.
pub fn read_fields(r: &Rich) {
    assert!(r.name.len() <= 20, "a ShmStr longer than its capacity");
    match r.name.as_str() {
        Ok(s) => assert_eq!(s.len(), r.name.len()),
        Err(_) => assert!(std::str::from_utf8(r.name.as_bytes()).is_err()),
    }
    let _ = r.name.to_string_lossy();
    assert!(r.readings.len() <= 4, "a ShmVec longer than its capacity");
    assert_eq!(r.readings.as_slice().len(), r.readings.len());
    let _ = r.enabled.get();
    let _ = format!("{r:?}");
}

/// A write through the validating setters, the same on any starting bytes.
pub fn scribble(r: &mut Rich) {
    r.id = r.id.wrapping_mul(3).wrapping_add(1);
    r.origin.x = r.origin.x.wrapping_add(1);
    r.name.set_truncated("written over hostile bytes");
    r.readings.truncate(1);
    let _ = r.readings.push(Reading {
        at: 5,
        level: 6,
        flags: 7,
    });
    r.enabled.set(!r.enabled.get());
}

/// The bytes of `value`, as another process sees them.
pub fn bytes_of<T: Shareable>(value: &T) -> &[u8] {
    // SAFETY: the pointer comes from a reference, so it is valid for reads
    // of size_of::<T>() bytes for the borrow's lifetime; a `Shareable` type
    // has no padding, so every one of those bytes is initialised.
    unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
    }
}

// ---------------------------------------------------------------------------
// Names

/// The POSIX name this process's `target` uses: one at a time, removed at
/// the end of every iteration. It starts with `shmstore-fuzz-RUN-`, where
/// RUN is `$SHMSTORE_FUZZ_RUN` (fuzz/run.sh sets it, and removes what a
/// crashed process left under it) or the PID namespace's inode: process
/// ids alone may repeat across the namespaces run.sh runs targets in.
pub fn name(target: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let run = std::env::var("SHMSTORE_FUZZ_RUN").unwrap_or_else(|_| {
        std::fs::metadata("/proc/self/ns/pid")
            .map_or(0, |m| m.ino())
            .to_string()
    });
    format!("shmstore-fuzz-{run}-{target}-{}", std::process::id())
}

/// Where the object of `name` is.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/{name}"))
}

/// Removes the name when dropped, also when an iteration returns early.
pub struct Unlink(pub String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = shmstore::unlink(self.0.as_str());
    }
}

// ---------------------------------------------------------------------------
// Layouts

/// Where the lock (word, sleepers, poison cause, holder or poisoner, poison
/// time) and then its write counter (sequence, flags, change time) are in a
/// segment.
pub const LOCK_AT: usize = 256;
/// Where the write counter's sequence is.
pub const SEQ_AT: usize = LOCK_AT + 32;
/// Where a `Rich` starts in its segment.
pub const VALUE_AT: usize = 304;
/// The lock word's flag bits (waiters, watched).
pub const LOCK_FLAGS: u64 = 3 << 30;

/// A part of a segment a write may hit: a field (written from its start)
/// or an area (written at a chosen place).
#[derive(Clone, Debug)]
pub struct Part {
    pub range: Range<usize>,
    pub field: bool,
}

fn field(at: usize, len: usize) -> Part {
    Part {
        range: at..at + len,
        field: true,
    }
}

fn area(range: Range<usize>) -> Part {
    Part {
        range,
        field: false,
    }
}

/// The header's fields (src/segment/header.rs) and its padding.
fn header_parts(out: &mut Vec<Part>) {
    for (at, len) in [
        (0, 8),
        (8, 4),
        (12, 4),
        (16, 4),
        (20, 4),
        (24, 8),
        (32, 8),
        (40, 8),
        (48, 8),
        (56, 8),
        (64, 8),
        (72, 4),
        (76, 4),
        (80, 8),
        (88, 8),
        (96, 8),
        (104, 4),
        (108, 4),
        (112, 128),
    ] {
        out.push(field(at, len));
    }
    out.push(area(240..256));
}

/// A slot's fields: lock word, sleepers, poison cause, holder or poisoner,
/// poison time, sequence, flags, change time.
fn slot_parts(out: &mut Vec<Part>, lock: usize) {
    for (at, len) in [
        (0, 8),
        (8, 4),
        (12, 4),
        (16, 8),
        (24, 8),
        (32, 8),
        (40, 4),
        (44, 4),
    ] {
        out.push(field(lock + at, len));
    }
}

/// The parts of a `Shared<Rich>` segment of `len` bytes.
pub fn value_parts(len: usize) -> Vec<Part> {
    let value_end = VALUE_AT + std::mem::size_of::<Rich>();
    let schema_at = value_end.div_ceil(8) * 8;
    let mut p = Vec::new();
    header_parts(&mut p);
    slot_parts(&mut p, LOCK_AT);
    p.push(area(VALUE_AT..value_end));
    p.push(field(VALUE_AT + std::mem::offset_of!(Rich, name), 4));
    p.push(field(VALUE_AT + std::mem::offset_of!(Rich, readings), 8));
    p.push(area(schema_at..len));
    p.push(area(0..len));
    p
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

/// Reads a `u64` at `at`.
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

/// The parts of a fresh store (src/store/heap.rs): header, directory slot,
/// meta fields, handle table, buckets, and every block's header fields,
/// key, slot, value, schema, or free space.
pub fn store_parts(b: &[u8]) -> Vec<Part> {
    const LIVE: u32 = 0x4c49_5645;
    const REMOVED: u32 = 0x5245_4d44;
    let content = u64_at(b, 56) as usize;
    let buckets = u64_at(b, content + 8) as usize;
    let heap_size = u64_at(b, content + 16) as usize;
    let handles = content + 256;
    // 4,096 slots of 16 bytes; those below the mark (meta +48) are read.
    let buckets_at = handles + 4096 * 16;
    let used = (u64_at(b, content + 48) as usize).clamp(1, 4096);
    let heap_at = buckets_at + (buckets * 8).div_ceil(64) * 64;
    let mut p = Vec::new();
    header_parts(&mut p);
    slot_parts(&mut p, LOCK_AT);
    for (at, len) in [
        (0, 4),
        (4, 4),
        (8, 8),
        (16, 8),
        (24, 8),
        (32, 8),
        (40, 8),
        (48, 8),
        // The table's place (0: in place; else a block index and the log2
        // of its bucket count) and the most the heap may grow to.
        (192, 8),
        (200, 8),
    ] {
        p.push(field(content + at, len));
    }
    p.push(area(content + 56..content + 256));
    p.push(area(handles..buckets_at));
    p.push(area(handles..handles + 16 * used));
    p.push(field(handles + 4, 4));
    p.push(area(buckets_at..heap_at));
    // Each bucket in use: its block index and its tag (the low and high
    // halves of a `u64`).
    // A store that grew keeps its buckets in a block of the heap (state
    // "TABL"), from the block's byte 64 on.
    let table = u64_at(b, content + 192);
    let table_at = (table != 0).then(|| heap_at + 64 * (table as u32 as usize - 1) + 64);
    let in_use = match table_at {
        Some(at) => at..at + 8 * (1usize << (table >> 32).min(40)),
        None => buckets_at..heap_at,
    };
    for at in in_use.clone().step_by(8) {
        if u64_at(b, at) != 0 {
            p.push(field(at, 4));
            p.push(field(at + 4, 4));
        }
    }
    if table_at.is_some() {
        p.push(area(in_use));
    }
    let mut off = 0;
    while off < heap_size {
        let at = heap_at + off;
        let size = u64_at(b, at) as usize;
        let state = u32_at(b, at + 16);
        for (f, len) in [(0, 8), (8, 8), (16, 4), (20, 4), (24, 8), (32, 8), (40, 8)] {
            p.push(field(at + f, len));
        }
        p.push(field(at + 48, 2));
        p.push(field(at + 50, 2));
        p.push(field(at + 52, 4));
        p.push(field(at + 56, 8));
        if state == LIVE || state == REMOVED {
            let lens = u32_at(b, at + 20) as usize;
            let slot = at + (64 + (lens & 0xffff) + (lens >> 16)).div_ceil(64) * 64;
            p.push(area(at + 64..slot));
            slot_parts(&mut p, slot);
        }
        p.push(area(at + 32..at + size));
        off += size.max(64);
    }
    p.push(area(0..b.len()));
    p
}

/// Writes what `input` says over the object at `path`.
/// Length bytes from this value on make a write of a record shaped as the
/// library writes them, naming this process (see [`record`]).
const RECORDS: u8 = 0xf8;

/// The bytes of record `kind` (0-7) made with `arg`: lock words and store
/// handle slots as src/lock/owner.rs and src/store/heap.rs encode them,
/// naming this process's incarnation (a live one), one next to it or one
/// made of `arg` (no process's), with thread ids and pids from `arg`.
pub fn record(kind: u8, arg: u32) -> Vec<u8> {
    let mine = my_incarnation();
    let other = (u64::from(arg) << 8 | u64::from(arg >> 24)) & ((1 << 40) - 1);
    let flags = u64::from(arg >> 30) << 30;
    // SAFETY: gettid takes no arguments and cannot fail.
    let me = unsafe { libc::gettid() } as u32;
    let slot = |pid: u32, list: u32, x: u64| {
        let mut b = pid.to_ne_bytes().to_vec();
        b.extend_from_slice(&list.to_ne_bytes());
        b.extend_from_slice(&x.to_ne_bytes());
        b
    };
    match kind {
        // This process, any thread id (mostly none it has).
        0 => (identity(arg, mine) | flags).to_ne_bytes().to_vec(),
        // This process's main thread (or, in a thread, another thread).
        1 => (identity(std::process::id(), mine) | flags)
            .to_ne_bytes()
            .to_vec(),
        // A process next to this one, this thread's id.
        2 => (identity(me, mine ^ 1) | flags).to_ne_bytes().to_vec(),
        // No process's incarnation.
        3 => (identity(arg, other) | flags).to_ne_bytes().to_vec(),
        // A handle slot naming this process, one that is gone, garbage,
        // with no hold list, a block near the heap's start, any index.
        4 => slot(arg | 1, 0, mine),
        5 => slot(arg | 1, arg >> 24, other),
        6 => slot(arg, arg, u64::from(arg) << 32 | u64::from(arg)),
        _ => slot(0, 0, mine),
    }
}

pub fn damage(path: &Path, parts: &[Part], input: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("the segment's file");
    let mut rest = input;
    while rest.len() >= 4 {
        let part = &parts[usize::from(rest[0]) % parts.len()];
        let pos = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
        let shape = rest[3];
        rest = &rest[4..];
        let record;
        let bytes = if shape >= RECORDS {
            // A record of this process's identity: the next 4 bytes say
            // which (see `record`).
            let mut arg = [0u8; 4];
            let got = rest.len().min(4);
            arg[..got].copy_from_slice(&rest[..got]);
            rest = &rest[got..];
            record = self::record(shape - RECORDS, u32::from_le_bytes(arg));
            &record[..]
        } else {
            let n = usize::from(shape) % 17;
            let bytes = &rest[..n.min(rest.len())];
            rest = &rest[bytes.len()..];
            bytes
        };
        let len = part.range.len();
        if len == 0 || bytes.is_empty() {
            continue;
        }
        let at = if part.field {
            part.range.start
        } else {
            part.range.start + pos % len
        };
        let room = part.range.end - at;
        file.write_all_at(&bytes[..bytes.len().min(room)], at as u64)
            .expect("writing over the segment");
    }
}

// ---------------------------------------------------------------------------
// Lock identities

/// The bits of a lock identity (src/lock/owner.rs) that hold the thread id.
const TID_MASK: u64 = (1 << 22) - 1;

/// The lock identity of thread `tid` of the process of incarnation `x`
/// (src/lock/owner.rs): the thread id in bits 0-21, the incarnation's low
/// 8 bits in bits 22-29 and its high 32 bits in bits 32-63.
pub fn identity(tid: u32, x: u64) -> u64 {
    ((x >> 8) << 32) | ((x & 0xff) << 22) | (u64::from(tid) & TID_MASK)
}

/// The incarnation a lock identity names.
pub fn incarnation_of(word: u64) -> u64 {
    let ident = word & !LOCK_FLAGS;
    ((ident >> 32) << 8) | ((ident >> 22) & 0xff)
}

/// This process's incarnation (see src/sys/linux/presence.rs), read once
/// off a lock word it wrote.
pub fn my_incarnation() -> u64 {
    static MINE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MINE.get_or_init(|| {
        let name = name("incarnation");
        let _unlink = Unlink(name.clone());
        let c = shmstore::Shared::create(name.as_str(), 0u64).expect("a segment");
        let g = c.lock().expect("a fresh lock");
        let word = u64_at(&std::fs::read(path(&name)).expect("its file"), LOCK_AT);
        drop(g);
        incarnation_of(word)
    })
}

/// Whether thread `tid` of this process runs (exists and is not a zombie).
fn runs_here(tid: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return false;
    };
    let state = text
        .rfind(')')
        .and_then(|at| text[at + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z" | "X" | "x"))
}

/// The lock identity of the calling thread.
pub fn my_identity() -> u64 {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() } as u32;
    identity(tid, my_incarnation())
}

/// Whether a lock word names a live thread, as `_design::lock` defines it:
/// its incarnation is one a live process shows in the segment (here only
/// this process uses it), and the thread id is one of this process's
/// threads that runs.
pub fn names_live_thread(word: u64) -> bool {
    let tid = (word & TID_MASK) as u32;
    incarnation_of(word) == my_incarnation() && tid != 0 && runs_here(tid)
}

/// Whether a lock word names the calling thread. The targets hold no lock
/// while they damage a segment, so such a word names no holder: a lock
/// taken over (poisoned), not a relock.
pub fn names_me(word: u64) -> bool {
    word & !LOCK_FLAGS == my_identity()
}
