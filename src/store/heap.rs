//! The inside of a store: its directory (keys to entries), its heap of
//! blocks, and the table of handles that hold entries; every read of it is
//! checked, since any process may have written anything there.
//!
//! The layout, the recovery after a crash, and what is checked:
//! `shmstore::_design::store` (src/_design/store.rs).

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::{fence, AtomicU64, Ordering, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys::mapping::Mapping;

/// `format` before the first directory lock formats the heap.
const UNFORMATTED: u32 = 0;
/// `format` of a formatted store of this build.
/// "ST04": a heap that grows in place up to [`M_MAX_HEAP`], its bucket
/// table moved to a TABLE block of the heap when it fills ([`M_TABLE`]);
/// keys hashed by [`hash`] (8 bytes at a time), 8-byte buckets with a tag
/// ([`BUCKET_BYTES`]), 4,096 handle slots whose hold lists name the
/// entries they hold, with a pending hold each ([`L_PENDING`]), so that a
/// `get` holds an entry without the directory lock. "ST03" stores (the
/// same with a holder count per entry, holds taken under the lock), "ST02"
/// stores (without growth) and "ST01" stores (FNV-1a, 64 slots, holder
/// bits) are refused, as the store's fingerprint includes this word.
pub(crate) const FORMATTED: u32 = 0x5354_3034; // "ST04"
/// `format` while [`Heap::format`] runs: left only by a process that died
/// formatting, whose heap holds no entry yet, so it is formatted again.
const FORMATTING: u32 = 0x5354_3030; // "ST00"

/// Bytes of the meta area.
pub(crate) const META: usize = 256;
/// Handle slots in a store: at most this many `Store` handles are open at
/// once. The table is 64 KiB, but only the pages of slots ever used are
/// touched (see [`M_SLOTS`]), so tmpfs gives it memory only as handles come.
pub(crate) const HANDLE_SLOTS: usize = 4096;
/// Bytes of one handle slot: the process id (u32, 0 for a free slot), the
/// index of the slot's hold list block (u32, 0 for none) and the process's
/// incarnation (u64).
const HANDLE_BYTES: usize = 16;
const H_PID: usize = 0;
const H_LIST: usize = 4;
const H_INCARNATION: usize = 8;
/// Bytes of one bucket: a `u64`, the block's index in its low 32 bits and
/// the high 32 bits of its key's hash (the tag) in the high 32, so that a
/// probe past another key reads no block.
const BUCKET_BYTES: usize = 8;
/// Block sizes are multiples of this, and blocks start on it.
pub(crate) const BLOCK_ALIGN: u64 = 64;
/// The smallest block; a free remainder smaller than this is not split off.
const MIN_BLOCK: u64 = 128;
/// Free-list size classes: class `k` holds blocks of `64 << k` bytes up to
/// twice that.
const CLASSES: usize = 32;
/// The fewest buckets a store has.
const MIN_BUCKETS: u64 = 16;
/// The most heap a store can have: block indexes are 32-bit.
pub(crate) const MAX_HEAP: u64 = (u32::MAX as u64 - 1) * BLOCK_ALIGN;
/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 128;
/// The longest type name kept in an entry.
pub(crate) const MAX_TYPE_LEN: usize = 128;
/// The largest value alignment an entry can have: blocks are aligned to 64.
pub(crate) const MAX_ALIGN: usize = 64;

// Meta fields (offsets from the content's start).
const M_FORMAT: usize = 0;
const M_FLAGS: usize = 4;
const M_BUCKETS: usize = 8;
const M_HEAP: usize = 16;
const M_ENTRIES: usize = 24;
const M_USED: usize = 32;
/// The replacement in progress (a migration): the new block's index in the
/// low 32 bits, the old one's in the high 32; 0 outside a replacement.
const M_REPLACING: usize = 40;
/// How many handle slots were ever used (the high-water mark): slots at and
/// above it are free and never read, so scans of the table stop there.
const M_SLOTS: usize = 48;
const M_HEADS: usize = 64;
/// The bucket table in use: 0 for the one in place after the handle slots
/// (of [`M_BUCKETS`] buckets); else a TABLE block's index in the low 32
/// bits and log2 of its bucket count in the high 32 (its buckets start at
/// the block's byte [`B_KEY`]).
const M_TABLE: usize = 192;
/// The most bytes of heap the store may grow to (set at creation).
const M_MAX_HEAP: usize = 200;
const _: () = assert!(M_HEADS + CLASSES * 4 <= M_TABLE && M_MAX_HEAP + 8 <= META);

// Block header fields (offsets from the block's start).
const B_SIZE: usize = 0;
const B_PREV: usize = 8;
const B_STATE: usize = 16;
const B_LENS: usize = 20;
const B_HASH: usize = 24;
const B_NEXT_FREE: usize = 24;
const B_PREV_FREE: usize = 28;
const B_FINGERPRINT: usize = 32;
const B_VALUE_SIZE: usize = 40;
const B_VALUE_ALIGN: usize = 48; // u16
const B_SCHEMA_LEN: usize = 50; // u16
const B_VALUE_OFFSET: usize = 52;
/// Unused (8 bytes, written 0): "ST03" counted the entry's holders here.
const B_RESERVED: usize = 56;
/// Where the key starts.
const B_KEY: usize = 64;
/// Bytes of an entry's lock and versions, before its value.
const SLOT_HEAD: usize = 48;

/// Block states (distinct words, so that stray bytes are noticed).
const FREE: u32 = 0x4652_4545;
const RESERVED: u32 = 0x5253_5644;
const LIVE: u32 = 0x4c49_5645;
const REMOVED: u32 = 0x5245_4d44;
/// A handle slot's hold list: the block indexes of the entries it holds.
const HOLDS: u32 = 0x484f_4c44;
/// A bucket table (see [`M_TABLE`]).
const TABLE: u32 = 0x5441_424c;

// Hold list fields (offsets from the block's start).
/// The handle slot whose list it is (u32).
const L_OWNER: usize = 20;
/// How many entries it names (u32).
const L_LEN: usize = 24;
/// The slot's pending hold (u64): the block index of an entry its process
/// is about to hold without the directory lock (low 32 bits), which no
/// removal frees meanwhile; with [`DROPPING`] set, the index of one it is
/// letting go of, which protects nothing but tells whoever clears a dead
/// slot where to look; 0 for none. See `_design::store`, "Holds without
/// the lock".
const L_PENDING: usize = 32;
/// Where the entries' block indexes (u32 each) start.
const L_ITEMS: usize = 40;
/// In [`L_PENDING`]: an entry being let go of, not held.
const DROPPING: u64 = 1 << 32;
/// The size of a slot's first hold list (22 entries); a full list moves to a
/// block twice its size.
const FIRST_LIST: u64 = 128;

/// Where the parts of a store lie in its mapping (absolute offsets), as
/// computed here from its size: the numbers in the store are only checked
/// against it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub content: usize,
    /// The buckets of the table in place (the first table; see [`M_TABLE`]).
    pub buckets: u64,
    pub buckets_at: usize,
    pub handles_at: usize,
    pub heap_at: usize,
    /// The most heap the store may grow to, as its meta said at opening
    /// (checked: at least the heap, at most [`MAX_HEAP`]).
    pub max_heap: u64,
}

impl Geometry {
    /// The bytes of the mapping (from its start) that the store may ever
    /// use: the tables and the heap at its most. A store of a backend that
    /// grows is mapped this long from the start (see `_design::store`).
    pub(crate) fn reservation(&self) -> usize {
        self.heap_at + self.max_heap as usize
    }
}

/// The shape of a new store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// The content's size: tables and heap.
    pub content: usize,
    pub buckets: u64,
    pub heap: u64,
    /// The most heap it may grow to.
    pub max_heap: u64,
}

/// The shape of a new store with `capacity` bytes of heap, which may grow
/// to `max_capacity` (at least the capacity, at most [`MAX_HEAP`]).
pub(crate) fn plan(capacity: u64, max_capacity: u64) -> Plan {
    let heap = capacity.max(MIN_BLOCK).div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN;
    // Every block is at least MIN_BLOCK = 2 * 64 bytes, so with a bucket
    // per 64 bytes of heap the table is never more than half full (until
    // the heap grows: then entries move to a larger table, see `rehash`).
    let buckets = (heap / BLOCK_ALIGN).max(MIN_BUCKETS).next_power_of_two();
    let tables = META + HANDLE_BYTES * HANDLE_SLOTS + bucket_bytes(buckets);
    let max_heap = (max_capacity.min(MAX_HEAP).div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN).max(heap);
    Plan {
        content: tables + heap as usize,
        buckets,
        heap,
        max_heap,
    }
}

fn bucket_bytes(buckets: u64) -> usize {
    ((buckets * BUCKET_BYTES as u64).div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN) as usize
}

/// The bucket of the block of index `index` whose key hashes to `h`.
fn bucket_word(index: u32, h: u64) -> u64 {
    u64::from(index) | (h & !u64::from(u32::MAX))
}

/// The block index a bucket holds (0: none).
fn bucket_index(word: u64) -> u32 {
    word as u32
}

/// The smallest content a store can have.
pub(crate) const MIN_CONTENT: usize =
    META + HANDLE_BYTES * HANDLE_SLOTS + (MIN_BUCKETS as usize * BUCKET_BYTES) + MIN_BLOCK as usize;

/// The meta area of a new store: what its content starts with.
pub(crate) fn initial_meta(plan: &Plan, flags: u32) -> Vec<u8> {
    let Plan {
        buckets,
        heap,
        max_heap,
        ..
    } = *plan;
    let mut meta = vec![0u8; META];
    meta[M_FORMAT..M_FORMAT + 4].copy_from_slice(&UNFORMATTED.to_ne_bytes());
    meta[M_FLAGS..M_FLAGS + 4].copy_from_slice(&flags.to_ne_bytes());
    meta[M_BUCKETS..M_BUCKETS + 8].copy_from_slice(&buckets.to_ne_bytes());
    meta[M_HEAP..M_HEAP + 8].copy_from_slice(&heap.to_ne_bytes());
    meta[M_MAX_HEAP..M_MAX_HEAP + 8].copy_from_slice(&max_heap.to_ne_bytes());
    meta
}

impl Geometry {
    /// The geometry of the store whose content starts at `content`, of
    /// which the object held `size` bytes when it was mapped, checked
    /// against what its meta says: the heap fits the object (a heap smaller
    /// than the object is a growth cut short, whose room the next growth
    /// reuses), and the most it may grow to is at least the heap and at
    /// most [`MAX_HEAP`]. A heap that says more than `size` is checked
    /// again against the object's size now (`now`, the whole object's
    /// size, from `fstat`, read after the heap's size): another process
    /// may have grown the store since it was mapped.
    pub(crate) fn read(
        map: &Mapping,
        label: &str,
        content: usize,
        size: usize,
        now: &dyn Fn() -> Option<u64>,
    ) -> Result<Geometry> {
        let corrupt = |reason: String| Error::Corrupt {
            name: label.to_owned(),
            reason,
        };
        let buckets = map.atomic_u64(content + M_BUCKETS).load(Relaxed);
        if !(MIN_BUCKETS..=1 << 32).contains(&buckets) || !buckets.is_power_of_two() {
            return Err(corrupt(format!("its store says {buckets} buckets")));
        }
        let handles_at = content + META;
        let buckets_at = handles_at + HANDLE_BYTES * HANDLE_SLOTS;
        let heap_at = buckets_at + bucket_bytes(buckets);
        let stored = map.atomic_u64(content + M_HEAP).load(Relaxed);
        let max_heap = map.atomic_u64(content + M_MAX_HEAP).load(Relaxed);
        let tables = (heap_at - content) as u64;
        let mut room = (size as u64).checked_sub(tables);
        if room.is_some_and(|room| stored > room) {
            if let Some(object) = now() {
                room = object.checked_sub(content as u64 + tables);
            }
        }
        match room {
            Some(room)
                if stored <= room
                    && stored >= MIN_BLOCK
                    && stored % BLOCK_ALIGN == 0
                    && (stored..=MAX_HEAP).contains(&max_heap)
                    && max_heap % BLOCK_ALIGN == 0 =>
            {
                Ok(Geometry {
                    content,
                    buckets,
                    buckets_at,
                    handles_at,
                    heap_at,
                    max_heap,
                })
            }
            _ => Err(corrupt(format!(
                "its store says {buckets} buckets and {stored} bytes of heap, growing to at \
                 most {max_heap}, which do not fit its {size} bytes"
            ))),
        }
    }
}

/// How much heap this process knows its store's object to hold: the
/// object's size at opening, and again (one `fstat`) each time the heap
/// says more, after another process grew it. Never more than the mapping
/// reaches, so that no view of the heap reads past it, whatever a peer
/// writes in the meta.
#[derive(Debug)]
pub(crate) struct Room {
    known: AtomicU64,
}

impl Room {
    /// The room of a store of geometry `geo` whose object was `object`
    /// bytes long when it was mapped.
    pub(crate) fn new(map: &Mapping, geo: &Geometry, object: usize) -> Room {
        let room = Room {
            known: AtomicU64::new(0),
        };
        room.learn(map, geo, object as u64);
        room
    }

    /// Records that the object holds `object` bytes now (bounded by the
    /// mapping; rounded down to whole blocks); returns the heap room.
    fn learn(&self, map: &Mapping, geo: &Geometry, object: u64) -> u64 {
        let reach = object.min(map.len() as u64);
        let room = reach.saturating_sub(geo.heap_at as u64) / BLOCK_ALIGN * BLOCK_ALIGN;
        self.known.fetch_max(room, Relaxed).max(room)
    }

    /// The heap's size now (`M_HEAP`), if the object holds it: a load and
    /// a compare, and an `fstat` only when the heap grew past what this
    /// process knew; `Err(size)` with the size the heap says if it is
    /// larger than the object (damage).
    #[inline]
    fn heap_size(&self, map: &Mapping, geo: &Geometry) -> std::result::Result<u64, u64> {
        let stored = map.atomic_u64(geo.content + M_HEAP).load(Relaxed);
        if stored <= self.known.load(Relaxed) {
            return Ok(stored);
        }
        self.refresh(map, geo, stored)
    }

    #[cold]
    fn refresh(&self, map: &Mapping, geo: &Geometry, stored: u64) -> std::result::Result<u64, u64> {
        let room = match map.object_len() {
            Some(object) => self.learn(map, geo, object),
            None => self.known.load(Relaxed),
        };
        if stored <= room {
            Ok(stored)
        } else {
            Err(stored)
        }
    }

    /// For a holder of the directory lock: the heap's size now, if the
    /// heap can be used without a closer look: its size fits what the
    /// object holds, and its bucket table is the one in place (else
    /// `Heap::checked` and `Heap::table_bytes` say whether it is sound).
    #[inline]
    pub(crate) fn plain(&self, map: &Mapping, geo: &Geometry) -> Option<u64> {
        let meta = map.atomic_u64s(geo.content, META / 8);
        let size = meta[M_HEAP / 8].load(Relaxed);
        let plain = size <= self.known.load(Relaxed) && meta[M_TABLE / 8].load(Relaxed) == 0;
        plain.then_some(size)
    }

    /// The bytes of heap the mapping reaches (the most it can use).
    fn reach(map: &Mapping, geo: &Geometry) -> u64 {
        (map.len() as u64).saturating_sub(geo.heap_at as u64) / BLOCK_ALIGN * BLOCK_ALIGN
    }
}

/// The hash of a key: 8 bytes at a time, read little-endian whatever the
/// CPU, so that every process (of any architecture and byte order) agrees
/// on it; the stored hashes and the buckets depend on it. Not meant to
/// resist chosen keys: probes are bounded, and a peer can write anything
/// into the directory anyway.
pub(crate) fn hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K);
        h ^= h >> 32;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        h = (h ^ tail_le(rest)).wrapping_mul(K);
    }
    // MurmurHash3's finaliser: every bit of the input moves every bit of
    // the result, so the low bits (the home bucket) and the high bits (the
    // bucket's tag) are both well spread.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The 1 to 7 bytes `rest`, zero-padded to 8 and read little-endian:
/// the last word of a key, for [`hash`] and the key compare of a probe,
/// without a copy (two overlapping loads, or three bytes).
#[inline]
fn tail_le(rest: &[u8]) -> u64 {
    let n = rest.len();
    debug_assert!((1..8).contains(&n));
    let u32_at = |i: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&rest[i..i + 4]);
        u64::from(u32::from_le_bytes(w))
    };
    if n >= 4 {
        // Bytes 0..4 and n-4..n: they overlap on equal bytes.
        u32_at(0) | u32_at(n - 4) << (8 * (n - 4))
    } else {
        let b = |i: usize| u64::from(rest[i]) << (8 * i);
        b(0) | b(n / 2) | b(n - 1)
    }
}

/// Whether the words `stored` (loaded from a block, at least as many as
/// `key` takes) begin with the bytes of `key`; bytes past the key's end in
/// its last word are not compared.
#[inline]
fn key_is(stored: &[AtomicU64], key: &[u8]) -> bool {
    let mut chunks = key.chunks_exact(8);
    for (word, chunk) in stored.iter().zip(&mut chunks) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        if word.load(Relaxed) != u64::from_ne_bytes(w) {
            return false;
        }
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return true;
    }
    let Some(last) = stored.get(key.len() / 8) else {
        return false;
    };
    // The word's bytes in memory order, read little-endian as `tail_le` reads.
    let last = u64::from_le_bytes(last.load(Relaxed).to_ne_bytes());
    last & (u64::MAX >> (64 - 8 * rest.len())) == tail_le(rest)
}

/// What a [probe](Heap::probe) for a key found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The key's entry: its bucket and its block's offset.
    Found { bucket: u64, at: usize },
    /// No entry has the key.
    Missing,
    /// A bucket on the way holds this block index, outside the heap.
    Damaged(u32),
}

/// Where an entry's parts lie in its block, and how big the block is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryLayout {
    /// The lock; the versions follow it.
    pub slot: usize,
    pub value: usize,
    pub schema: usize,
    pub schema_len: usize,
    pub block: u64,
}

impl EntryLayout {
    /// The layout for a key and type name of these lengths, a value of
    /// this size and alignment (at most [`MAX_ALIGN`]) and a schema of
    /// `schema_len` bytes.
    pub(crate) fn new(
        key_len: usize,
        type_len: usize,
        size: usize,
        align: usize,
        schema_len: usize,
    ) -> EntryLayout {
        let slot =
            (B_KEY + key_len + type_len).div_ceil(BLOCK_ALIGN as usize) * BLOCK_ALIGN as usize;
        // `align` is a power of two (callers check it): rounding up is a
        // mask, not a division.
        debug_assert!(align.is_power_of_two());
        let value = (slot + SLOT_HEAD + align - 1) & !(align - 1);
        let schema = (value + size).div_ceil(8) * 8;
        let block = ((schema + schema_len) as u64)
            .div_ceil(BLOCK_ALIGN)
            .max(MIN_BLOCK / BLOCK_ALIGN)
            * BLOCK_ALIGN;
        EntryLayout {
            slot,
            value,
            schema,
            schema_len,
            block,
        }
    }
}

/// What a LIVE or REMOVED block says of its entry, checked.
#[derive(Clone, Debug)]
pub(crate) struct EntryMeta {
    /// The block's absolute offset in the mapping.
    pub at: usize,
    pub key: Vec<u8>,
    pub type_name: String,
    pub fingerprint: u64,
    pub value_size: usize,
    pub value_align: usize,
    pub layout: EntryLayout,
}

/// What a lookup needs of a LIVE or REMOVED block, checked as
/// [`Heap::entry`] checks it, without copying its key or type name: where
/// its parts are, and what its type's check compares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    /// The block's absolute offset in the mapping.
    pub at: usize,
    pub key_len: usize,
    pub type_len: usize,
    pub fingerprint: u64,
    pub value_size: usize,
    pub value_align: usize,
    pub layout: EntryLayout,
}

impl Shape {
    /// The entry as holding it needs it (`Store::hold`, `entry_slot`), for
    /// the key `key` it was found by: its type name is left empty, as a
    /// lookup does not read it (errors read it: [`Heap::type_name`]).
    pub(crate) fn meta(&self, key: &[u8]) -> EntryMeta {
        EntryMeta {
            at: self.at,
            key: key.to_vec(),
            type_name: String::new(),
            fingerprint: self.fingerprint,
            value_size: self.value_size,
            value_align: self.value_align,
            layout: self.layout,
        }
    }
}

/// What a new entry is made of.
pub(crate) struct NewEntry<'a> {
    pub key: &'a [u8],
    pub type_name: &'a str,
    pub fingerprint: u64,
    pub value: &'a [u8],
    pub align: usize,
    pub schema: &'a [u8],
}

/// Space figures for errors and statistics.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Space {
    pub free: u64,
    pub largest: u64,
}

/// A handle slot's hold list, checked (see [`Heap::hold_list`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HoldList {
    /// The block's absolute offset.
    at: usize,
    /// How many entries its block has room for.
    room: u32,
    /// How many it names.
    len: u32,
}

/// Blocks a piece of a listing visits, at most, before it ends at the next
/// entry: a piece holds the directory lock (or needs a quiet moment) for
/// about 1,024 x 0.3 µs at most.
const PIECE_BLOCKS: usize = 1024;
/// How long a piece of a listing runs, at most, before it ends at the next
/// entry (on slow or emulated CPUs, where [`PIECE_BLOCKS`] takes longer).
const PIECE_TIME: Duration = Duration::from_micros(250);
/// How many entries back a piece looks for one still in its place when the
/// last listed was removed, before it starts again at the heap's start.
const LOOK_BACK: usize = 64;
/// Pieces that had to go back (see [`Heap::list_piece`]) after which the
/// rest of a listing is made in one piece, so that it ends whatever the
/// churn.
const MAX_GOING_BACK: usize = 16;

/// One piece of a listing: see [`Heap::list_piece`].
pub(crate) struct Piece {
    /// The entries it found, in heap order.
    pub entries: Vec<EntryMeta>,
    /// Whether it reached the heap's end.
    pub done: bool,
    /// Whether the last entry listed before it had been removed, so that
    /// it started further back.
    pub went_back: bool,
}

/// Every entry of a store, listed in pieces: `piece(listed, bounded)` makes
/// the next piece ([`Heap::list_piece`]) under the directory lock, or in a
/// moment no change overlapped, and lets go before the next. Each key comes
/// once (the last listed of it), in heap order.
///
/// An entry present for the whole listing is found by at least one piece
/// (each starts at a block boundary no later than where the one
/// before stopped, and walks the heap from there), so it comes exactly
/// once. After [`MAX_GOING_BACK`] pieces that went back, the rest is one
/// piece, so that a listing ends under any churn.
pub(crate) fn in_pieces<E>(
    mut piece: impl FnMut(&[EntryMeta], bool) -> std::result::Result<Piece, E>,
) -> std::result::Result<Vec<EntryMeta>, E> {
    let mut listed: Vec<EntryMeta> = Vec::new();
    let mut went_back = 0;
    loop {
        let p = piece(&listed, went_back < MAX_GOING_BACK)?;
        went_back += usize::from(p.went_back);
        listed.extend(p.entries);
        if p.done {
            break;
        }
    }
    // A key listed twice was removed and made again, or passed twice after
    // going back: keep its last listing.
    let mut seen = HashSet::new();
    let mut once: Vec<EntryMeta> = listed
        .into_iter()
        .rev()
        .filter(|e| seen.insert(e.key.clone()))
        .collect();
    once.sort_by_key(|e| e.at);
    Ok(once)
}

/// A bucket table: where its buckets start (absolute), how many there are
/// (a power of two), and the TABLE block it lies in (`None`: the table in
/// place).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Table {
    at: usize,
    count: u64,
    block: Option<usize>,
}

/// The store's directory and heap, to be used only while holding the
/// directory lock.
pub(crate) struct Heap<'a> {
    pub map: &'a Mapping,
    pub geo: &'a Geometry,
    pub label: &'a str,
    /// What the object is known to hold.
    room: &'a Room,
    /// The heap's size in this view: `M_HEAP` when it was made, and again
    /// after [`grow`](Heap::grow).
    size: Cell<u64>,
}

impl<'a> Heap<'a> {
    /// A view of the heap as it is now; [`Error::Corrupt`] if the meta
    /// says the heap is larger than the object.
    pub(crate) fn checked(
        map: &'a Mapping,
        geo: &'a Geometry,
        label: &'a str,
        room: &'a Room,
    ) -> Result<Heap<'a>> {
        match room.heap_size(map, geo) {
            Ok(size) => Ok(Heap::of_size(map, geo, label, room, size)),
            Err(stored) => Err(Error::Corrupt {
                name: label.to_owned(),
                reason: format!(
                    "its store directory is damaged: its heap says {stored} bytes, more than \
                     its object holds"
                ),
            }),
        }
    }

    /// A view of the heap as it is now, for a read without the lock or a
    /// holder of the lock that checked it ([`checked`](Heap::checked)): a
    /// heap that says it is larger than the object is cut to the object,
    /// so that every read stays inside it (what such a read finds is
    /// thrown away, or reported by the next `checked`).
    #[inline]
    pub(crate) fn bounded(
        map: &'a Mapping,
        geo: &'a Geometry,
        label: &'a str,
        room: &'a Room,
    ) -> Heap<'a> {
        let size = room
            .heap_size(map, geo)
            .unwrap_or_else(|_| room.known.load(Relaxed));
        Heap::of_size(map, geo, label, room, size)
    }

    /// A view of a heap of `size` bytes, which the caller checked against
    /// the object (a holder of the directory lock, which keeps the size it
    /// found when it took the lock, and after each growth it makes).
    #[inline]
    pub(crate) fn of_size(
        map: &'a Mapping,
        geo: &'a Geometry,
        label: &'a str,
        room: &'a Room,
        size: u64,
    ) -> Heap<'a> {
        Heap {
            map,
            geo,
            label,
            room,
            size: Cell::new(size),
        }
    }

    /// A view for a lookup without the lock ([`probe`](Heap::probe)), as
    /// cheap as can be: bounded by what this process knows the object
    /// holds (one load of its own), not by `M_HEAP`. Every read stays
    /// inside the object; a bucket that leads past the heap (damage, or an
    /// entry of a growth this process has not seen yet: `fstat` tells, see
    /// [`checked`](Heap::checked)) is [`Probe::Damaged`], never a hit. For
    /// probes only: a walk needs the heap's end.
    #[inline]
    pub(crate) fn for_probe(
        map: &'a Mapping,
        geo: &'a Geometry,
        label: &'a str,
        room: &'a Room,
    ) -> Heap<'a> {
        Heap::of_size(map, geo, label, room, room.known.load(Relaxed))
    }
}

impl Heap<'_> {
    /// The heap's size in this view.
    #[inline]
    pub(crate) fn heap_size(&self) -> u64 {
        self.size.get()
    }

    /// The most bytes of heap the store may grow to: what its meta says,
    /// as far as the mapping reaches (a store of a backend that cannot
    /// grow is mapped as it is).
    pub(crate) fn max_heap(&self) -> u64 {
        let max = self.u64(self.meta(M_MAX_HEAP)).min(MAX_HEAP);
        max.min(Room::reach(self.map, self.geo)).max(self.heap_size())
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt {
            name: self.label.to_owned(),
            reason: format!("its store directory is damaged: {reason}"),
        }
    }

    // Plain accessors: relaxed atomics at checked offsets.

    fn u32(&self, at: usize) -> u32 {
        self.map.atomic_u32(at).load(Relaxed)
    }
    fn set_u32(&self, at: usize, v: u32) {
        self.map.atomic_u32(at).store(v, Relaxed);
    }
    fn u64(&self, at: usize) -> u64 {
        self.map.atomic_u64(at).load(Relaxed)
    }
    fn set_u64(&self, at: usize, v: u64) {
        self.map.atomic_u64(at).store(v, Relaxed);
    }
    fn meta(&self, field: usize) -> usize {
        self.geo.content + field
    }

    /// Whether the heap has been formatted. Acquires the format word
    /// (a relaxed load and an acquire fence, which read-only mappings
    /// allow): a reader without the lock that sees it formatted sees the
    /// heap [`format`](Heap::format) wrote before it.
    pub(crate) fn formatted(&self) -> bool {
        let formatted = self.u32(self.meta(M_FORMAT)) == FORMATTED;
        fence(Ordering::Acquire);
        formatted
    }

    /// The versions flags entries are made with.
    pub(crate) fn entry_flags(&self) -> u32 {
        self.u32(self.meta(M_FLAGS))
            & (crate::lock::seqlock::WAKE_ALL | crate::lock::seqlock::TIMED)
    }

    /// Live entries.
    pub(crate) fn entries(&self) -> u64 {
        self.u64(self.meta(M_ENTRIES))
    }

    /// Bytes in blocks that are not free.
    pub(crate) fn used(&self) -> u64 {
        self.u64(self.meta(M_USED))
    }

    /// Block offset (absolute) from a heap offset.
    fn abs(&self, heap_off: u64) -> usize {
        self.geo.heap_at + heap_off as usize
    }

    /// The heap offset of an absolute block offset.
    fn rel(&self, at: usize) -> u64 {
        (at - self.geo.heap_at) as u64
    }

    /// A block index (as buckets and free lists store it) to an absolute
    /// offset, checked to leave room for a block header.
    fn block_at(&self, index: u32) -> Result<usize> {
        // Index 0 (no block) is refused before any arithmetic: a damaged
        // one must not overflow here (indexes are 32-bit, so the rest fit).
        let off = u64::from(index.wrapping_sub(1)) * BLOCK_ALIGN;
        if index == 0 || off + MIN_BLOCK > self.heap_size() {
            return Err(self.out_of_heap(index));
        }
        Ok(self.abs(off))
    }

    #[cold]
    fn out_of_heap(&self, index: u32) -> Error {
        self.corrupt(format!("block index {index} is out of the heap"))
    }

    fn index_of(&self, at: usize) -> u32 {
        (self.rel(at) / BLOCK_ALIGN + 1) as u32
    }

    /// The size of the block at `at`, checked to be a whole block inside
    /// the heap.
    fn size_of(&self, at: usize) -> Result<u64> {
        let size = self.u64(at + B_SIZE);
        let off = self.rel(at);
        let left = self.heap_size().saturating_sub(off);
        if size < BLOCK_ALIGN || size % BLOCK_ALIGN != 0 || size > left {
            return Err(self.corrupt(format!("block at heap offset {off} says size {size}")));
        }
        Ok(size)
    }

    fn state(&self, at: usize) -> u32 {
        self.u32(at + B_STATE)
    }

    /// Stores the size of the block at `at`, with release ordering: every
    /// change to the heap's shape is one such store, and a walk without the
    /// lock that loads the new size (then an acquire fence, see
    /// [`walk`](Heap::walk)) also sees the header it leads to, written
    /// before. Not all of these changes bump the directory's generation
    /// (a block is reserved before the change begins, a removed entry is
    /// freed when its last holder lets go), so this ordering is what keeps
    /// such a walk on block boundaries on weakly ordered CPUs.
    fn set_size(&self, at: usize, size: u64) {
        self.map
            .atomic_u64(at + B_SIZE)
            .store(size, Ordering::Release);
    }

    /// Formats an empty heap: one free block, no entries. Also what a
    /// store whose formatting was cut short gets again.
    pub(crate) fn format(&self) {
        // First of all: a process killed from here on leaves a heap that
        // says it was being formatted, not one that looks used.
        self.map
            .atomic_u32(self.meta(M_FORMAT))
            .store(FORMATTING, Ordering::Release);
        let t = self.table_in_place();
        for b in 0..t.count {
            self.set_bucket(t, b, 0);
        }
        self.set_u64(self.meta(M_TABLE), 0);
        // No slot is used yet: the table past the mark is never read (and
        // its pages are not touched here).
        self.set_u64(self.meta(M_SLOTS), 0);
        for c in 0..CLASSES {
            self.set_u32(self.meta(M_HEADS + 4 * c), 0);
        }
        let first = self.geo.heap_at;
        self.set_size(first, self.heap_size());
        self.set_u64(first + B_PREV, 0);
        self.set_u32(first + B_STATE, FREE);
        self.push_free(first, self.heap_size());
        self.set_u64(self.meta(M_ENTRIES), 0);
        self.set_u64(self.meta(M_USED), 0);
        self.set_u64(self.meta(M_REPLACING), 0);
        // Release: who acquires FORMATTED (`formatted`) sees all the above.
        self.map
            .atomic_u32(self.meta(M_FORMAT))
            .store(FORMATTED, Ordering::Release);
    }

    // ---- Free lists ----

    fn class_of(size: u64) -> usize {
        let units = (size / BLOCK_ALIGN).max(1);
        (63 - units.leading_zeros() as usize).min(CLASSES - 1)
    }

    fn push_free(&self, at: usize, size: u64) {
        let head_at = self.meta(M_HEADS + 4 * Self::class_of(size));
        let head = self.u32(head_at);
        let me = self.index_of(at);
        self.set_u32(at + B_NEXT_FREE, head);
        self.set_u32(at + B_PREV_FREE, 0);
        if head != 0 {
            // Only a free block's link is ours to write: a damaged head
            // must not make us write into an entry.
            if let Ok(h) = self.block_at(head) {
                if self.state(h) == FREE {
                    self.set_u32(h + B_PREV_FREE, me);
                }
            }
        }
        self.set_u32(head_at, me);
    }

    fn unlink_free(&self, at: usize, size: u64) -> Result<()> {
        let next = self.u32(at + B_NEXT_FREE);
        let prev = self.u32(at + B_PREV_FREE);
        let me = self.index_of(at);
        // The neighbours' links are written below: they must be free
        // blocks that link back to this one, or a damaged link would make
        // us write into another entry.
        let linked = |index: u32, back: usize| -> Result<usize> {
            let b = self.block_at(index)?;
            if self.state(b) != FREE || self.u32(b + back) != me {
                return Err(self.corrupt("a free list's links do not agree".into()));
            }
            Ok(b)
        };
        let prev_at = if prev == 0 {
            None
        } else {
            Some(linked(prev, B_NEXT_FREE)?)
        };
        let next_at = if next == 0 {
            None
        } else {
            Some(linked(next, B_PREV_FREE)?)
        };
        if prev == 0 {
            let head_at = self.meta(M_HEADS + 4 * Self::class_of(size));
            if self.u32(head_at) != self.index_of(at) {
                return Err(self.corrupt("a free list does not start where it should".into()));
            }
            self.set_u32(head_at, next);
        }
        if let Some(p) = prev_at {
            self.set_u32(p + B_NEXT_FREE, next);
        }
        if let Some(n) = next_at {
            self.set_u32(n + B_PREV_FREE, prev);
        }
        Ok(())
    }

    /// Takes a free block of at least `need` bytes for a new entry (state
    /// RESERVED), splitting off what is left over; `None` if none is big
    /// enough.
    ///
    /// `held(start, end)` says whether bytes `start..end` of the mapping
    /// belong to an entry this process holds: a forged free list may lead
    /// there, and a guard may be handing out `&mut` to those bytes, so the
    /// block is refused ([`Error::Corrupt`]) before anything is written, to
    /// it, to its free-list neighbours' links or to the block after it.
    fn take(&self, need: u64, held: &dyn Fn(usize, usize) -> bool) -> Result<Option<usize>> {
        let first = Self::class_of(need);
        for class in first..CLASSES {
            let mut index = self.u32(self.meta(M_HEADS + 4 * class));
            let mut steps = 0u64;
            while index != 0 {
                let at = self.block_at(index)?;
                let size = self.size_of(at)?;
                if self.state(at) != FREE {
                    return Err(self.corrupt("a free list holds a block in use".into()));
                }
                if size >= need {
                    if self.touches_held(at, size, held)? {
                        return Err(self
                            .corrupt("a free list leads into an entry this process holds".into()));
                    }
                    self.unlink_free(at, size)?;
                    self.set_u32(at + B_STATE, RESERVED);
                    if size - need >= MIN_BLOCK {
                        self.split(at, size, need)?;
                    }
                    return Ok(Some(at));
                }
                steps += 1;
                if steps > self.heap_size() / BLOCK_ALIGN {
                    return Err(self.corrupt("a free list loops".into()));
                }
                index = self.u32(at + B_NEXT_FREE);
            }
        }
        Ok(None)
    }

    /// Whether taking the free block at `at` (of `size` bytes) would write
    /// into bytes `held` says this process holds: the block itself, its
    /// free-list neighbours, whose links `unlink_free` rewrites, and the
    /// block after it, whose `B_PREV` a split rewrites.
    fn touches_held(
        &self,
        at: usize,
        size: u64,
        held: &dyn Fn(usize, usize) -> bool,
    ) -> Result<bool> {
        let end = at.saturating_add(usize::try_from(size).unwrap_or(usize::MAX));
        if held(at, end) || held(end.saturating_add(B_PREV), end.saturating_add(B_PREV + 8)) {
            return Ok(true);
        }
        for link in [B_NEXT_FREE, B_PREV_FREE] {
            let index = self.u32(at + link);
            if index != 0 {
                let b = self.block_at(index)?;
                if held(b, b.saturating_add(BLOCK_ALIGN as usize)) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Splits the block at `at` (of `size` bytes) after `keep` bytes; the
    /// rest becomes a free block.
    fn split(&self, at: usize, size: u64, keep: u64) -> Result<()> {
        let rest = at + keep as usize;
        self.set_size(rest, size - keep);
        self.set_u64(rest + B_PREV, keep);
        self.set_u32(rest + B_STATE, FREE);
        // The one store that makes the new block appear in the walk
        // (release: its header above is seen with it).
        self.set_size(at, keep);
        self.set_next_prev(rest, size - keep);
        self.push_free(rest, size - keep);
        Ok(())
    }

    /// Tells the block after `at` (of `size` bytes), if any, that `size`
    /// precedes it.
    fn set_next_prev(&self, at: usize, size: u64) {
        let next = self.rel(at) + size;
        if next < self.heap_size() {
            self.set_u64(self.abs(next) + B_PREV, size);
        }
    }

    /// Frees the block at `at`, merging it with free neighbours.
    fn free(&self, at: usize) -> Result<()> {
        let mut at = at;
        let mut size = self.size_of(at)?;
        self.set_u64(self.meta(M_USED), self.used().saturating_sub(size));
        self.set_u32(at + B_STATE, FREE);
        // The next block.
        let next_off = self.rel(at) + size;
        if next_off < self.heap_size() {
            let next = self.abs(next_off);
            if self.state(next) == FREE {
                let next_size = self.size_of(next)?;
                self.unlink_free(next, next_size)?;
                size += next_size;
                self.set_size(at, size);
            }
        }
        // The previous block, found through the hint and checked.
        let prev_size = self.u64(at + B_PREV);
        let off = self.rel(at);
        if prev_size != 0 && prev_size % BLOCK_ALIGN == 0 && prev_size <= off {
            let prev = self.abs(off - prev_size);
            if self.u64(prev + B_SIZE) == prev_size && self.state(prev) == FREE {
                self.unlink_free(prev, prev_size)?;
                size += prev_size;
                at = prev;
                self.set_size(at, size);
            }
        }
        self.set_next_prev(at, size);
        self.push_free(at, size);
        Ok(())
    }

    /// Free bytes, and the largest free block.
    pub(crate) fn space(&self) -> Result<Space> {
        let mut space = Space::default();
        self.walk(|_, size, state| {
            if state == FREE {
                space.free += size;
                space.largest = space.largest.max(size);
            }
            Ok(())
        })?;
        Ok(space)
    }

    /// Calls `f(at, size, state)` for every block, in heap order.
    fn walk(&self, mut f: impl FnMut(usize, u64, u32) -> Result<()>) -> Result<()> {
        self.walk_from(0, |at, size, state| f(at, size, state).map(|()| true))?;
        Ok(())
    }

    /// Calls `f(at, size, state)` for every block from heap offset `off`
    /// (a block's start) on, in heap order, until it returns `false`;
    /// returns the heap offset after the last block it was called for.
    fn walk_from(
        &self,
        mut off: u64,
        mut f: impl FnMut(usize, u64, u32) -> Result<bool>,
    ) -> Result<u64> {
        while off < self.heap_size() {
            let at = self.abs(off);
            let size = self.size_of(at)?;
            // Pairs with the release store of the size (`set_size`): the
            // block this size leads to is read after it, also without the
            // lock and on weakly ordered CPUs.
            fence(Ordering::Acquire);
            off += size;
            if !f(at, size, self.state(at))? {
                break;
            }
        }
        Ok(off)
    }

    // ---- Entries ----

    /// Reads and checks the entry in the block at `at`.
    pub(crate) fn entry(&self, at: usize) -> Result<EntryMeta> {
        let shape = self.shape(at)?;
        let mut key = vec![0u8; shape.key_len];
        self.map.copy_out(at + B_KEY, &mut key);
        Ok(EntryMeta {
            at,
            key,
            type_name: self.type_name(&shape),
            fingerprint: shape.fingerprint,
            value_size: shape.value_size,
            value_align: shape.value_align,
            layout: shape.layout,
        })
    }

    /// Reads and checks the header of the entry in the block at `at`: what
    /// [`entry`](Heap::entry) checks, without its copies.
    pub(crate) fn shape(&self, at: usize) -> Result<Shape> {
        let size = self.size_of(at)?;
        let state = self.state(at);
        if state != LIVE && state != REMOVED {
            return Err(self.corrupt(format!("an entry's block is in state {state:#x}")));
        }
        let lens = self.u32(at + B_LENS);
        let (key_len, type_len) = ((lens & 0xffff) as usize, (lens >> 16) as usize);
        let value_size = self.u64(at + B_VALUE_SIZE);
        let value_align = usize::from(self.map.atomic_u16(at + B_VALUE_ALIGN).load(Relaxed));
        let schema_len = usize::from(self.map.atomic_u16(at + B_SCHEMA_LEN).load(Relaxed));
        let value_off = self.u32(at + B_VALUE_OFFSET) as usize;
        if key_len == 0 || key_len > MAX_KEY_LEN || type_len > MAX_TYPE_LEN {
            return Err(self.corrupt(format!(
                "an entry says its key is {key_len} bytes and its type name {type_len}"
            )));
        }
        if !value_align.is_power_of_two() || value_align > MAX_ALIGN || value_size > size {
            return Err(self.corrupt(format!(
                "an entry says its value is {value_size} bytes aligned to {value_align}"
            )));
        }
        let layout = EntryLayout::new(
            key_len,
            type_len,
            value_size as usize,
            value_align,
            schema_len,
        );
        if layout.value != value_off || layout.block > size {
            return Err(self.corrupt(format!(
                "an entry's value at {value_off} ({value_size} bytes) does not fit its {size}-byte block"
            )));
        }
        Ok(Shape {
            at,
            key_len,
            type_len,
            fingerprint: self.u64(at + B_FINGERPRINT),
            value_size: value_size as usize,
            value_align,
            layout,
        })
    }

    /// The type name of the entry `shape` (checked by [`shape`](Heap::shape)
    /// to lie inside its block), printable: bytes that are not UTF-8 or are
    /// control characters show as replacement characters or `?`.
    pub(crate) fn type_name(&self, shape: &Shape) -> String {
        let mut type_name = vec![0u8; shape.type_len];
        self.map
            .copy_out(shape.at + B_KEY + shape.key_len, &mut type_name);
        String::from_utf8_lossy(&type_name)
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    }

    /// Bucket `i`'s word (see [`BUCKET_BYTES`]) of table `t`, loaded whole.
    fn bucket(&self, t: Table, i: u64) -> u64 {
        self.u64(t.at + BUCKET_BYTES * i as usize)
    }

    fn set_bucket(&self, t: Table, i: u64, word: u64) {
        self.set_u64(t.at + BUCKET_BYTES * i as usize, word);
    }

    /// The table in place after the handle slots.
    fn table_in_place(&self) -> Table {
        Table {
            at: self.geo.buckets_at,
            count: self.geo.buckets,
            block: None,
        }
    }

    /// The bucket table in use ([`M_TABLE`]), checked: the table in place,
    /// or a TABLE block inside the heap with room for its buckets;
    /// [`Error::Corrupt`] otherwise.
    fn table(&self) -> Result<Table> {
        let word = self.u64(self.meta(M_TABLE));
        if word == 0 {
            return Ok(self.table_in_place());
        }
        self.table_block(word).ok_or_else(|| {
            self.corrupt(format!(
                "its bucket table ({word:#x}) is not a table block of the heap"
            ))
        })
    }

    /// The bytes of the TABLE block in use, if the table moved into the
    /// heap ([`Error::Corrupt`] if `M_TABLE` names no table block).
    pub(crate) fn table_bytes(&self) -> Result<Option<(usize, usize)>> {
        let t = self.table()?;
        Ok(t.block.map(|at| (at, t.at + t.count as usize * BUCKET_BYTES)))
    }

    /// [`table_block`](Heap::table_block) out of line, for the probe: the
    /// table in place is the common case, and its path stays short.
    #[inline(never)]
    fn moved_table(&self, word: u64) -> Option<Table> {
        self.table_block(word)
    }

    /// The TABLE block `word` (an [`M_TABLE`] other than 0) names, if it
    /// is one: inside the heap, in state TABLE, with room for `2^log`
    /// buckets from its byte [`B_KEY`]. Only loads.
    #[inline]
    fn table_block(&self, word: u64) -> Option<Table> {
        let log = word >> 32;
        if !(MIN_BUCKETS.trailing_zeros() as u64..=32).contains(&log) {
            return None;
        }
        let count = 1u64 << log;
        let at = self.block_at(word as u32).ok()?;
        let size = self.size_of(at).ok()?;
        if self.state(at) != TABLE || B_KEY as u64 + count * BUCKET_BYTES as u64 > size {
            return None;
        }
        Some(Table {
            at: at + B_KEY,
            count,
            block: Some(at),
        })
    }

    /// The bucket and entry of `key`, if it is in the directory.
    pub(crate) fn find(&self, key: &[u8]) -> Result<Option<(u64, EntryMeta)>> {
        match self.locate(key)? {
            Some((i, at)) => Ok(Some((i, self.entry(at)?))),
            None => Ok(None),
        }
    }

    /// The bucket and entry shape of `key`, if it is in the directory: a
    /// [`find`](Heap::find) that copies nothing out.
    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Option<(u64, Shape)>> {
        match self.locate(key)? {
            Some((i, at)) => Ok(Some((i, self.shape(at)?))),
            None => Ok(None),
        }
    }

    /// [`lookup`](Heap::lookup) for a read without the lock, which builds
    /// no error: the entry of `key` (`Some(None)` for none, or a store
    /// never formatted); `None` if a bucket or the entry's header does not
    /// check (the lookup under the lock says why).
    #[inline]
    pub(crate) fn lookup_shape(&self, key: &[u8]) -> Option<Option<Shape>> {
        if !self.formatted() {
            return Some(None);
        }
        match self.probe(key) {
            Probe::Found { at, .. } => self.shape(at).ok().map(Some),
            Probe::Missing => Some(None),
            Probe::Damaged(_) => None,
        }
    }

    /// Whether `key` is in the directory: a LIVE entry holds it (the
    /// entry's other header fields are checked when it is used).
    pub(crate) fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.locate(key)?.is_some())
    }

    /// The bucket of `key` and its block's offset, if it is in the
    /// directory: a [`probe`](Heap::probe), a damaged bucket as
    /// [`Error::Corrupt`].
    fn locate(&self, key: &[u8]) -> Result<Option<(u64, usize)>> {
        match self.probe(key) {
            Probe::Found { bucket, at } => Ok(Some((bucket, at))),
            Probe::Missing => Ok(None),
            Probe::Damaged(index) => Err(match self.table() {
                Err(e) => e,
                Ok(_) => self.out_of_heap(index),
            }),
        }
    }

    /// Looks for `key` (a valid key, at most [`MAX_KEY_LEN`] bytes) in
    /// the buckets: at most one probe per bucket, whatever a peer wrote.
    /// A bucket whose tag differs is passed without reading its block; a
    /// block whose tag matches is read through one checked slice of its
    /// header and of the words a key of this length takes (bounds checked
    /// once for the block, not per field), and holds the key if its hash,
    /// state (LIVE), key length and key bytes are the key's. Only loads:
    /// what a read without the lock may call (see `reader::read_quiet`).
    #[inline]
    pub(crate) fn probe(&self, key: &[u8]) -> Probe {
        let h = hash(key);
        let tag = bucket_word(0, h);
        // The table in use: one load, and a look at its block once it
        // moved into the heap.
        let word = self.u64(self.meta(M_TABLE));
        let t = if word == 0 {
            self.table_in_place()
        } else {
            match self.moved_table(word) {
                Some(t) => t,
                None => return Probe::Damaged(0),
            }
        };
        let mask = t.count - 1;
        let buckets = self.map.atomic_u64s(t.at, t.count as usize);
        // The header's words and the key's, rounded up to whole words: the
        // words past the key's end in its last word (the type name's) are
        // not compared.
        let words = B_KEY / 8 + key.len().div_ceil(8);
        let mut i = h & mask;
        for _ in 0..t.count {
            let word = buckets[i as usize].load(Relaxed);
            i = (i + 1) & mask;
            let index = bucket_index(word);
            if index == 0 {
                return Probe::Missing;
            }
            // Another key's tag: its block is not read.
            if word ^ tag > u64::from(u32::MAX) {
                continue;
            }
            let off = u64::from(index - 1) * BLOCK_ALIGN;
            if off + MIN_BLOCK > self.heap_size() {
                return Probe::Damaged(index);
            }
            if off + (words * 8) as u64 > self.heap_size() {
                continue; // a damaged block: not this key
            }
            let at = self.abs(off);
            let block = self.map.atomic_u64s(at, words);
            let halves = Mapping::halves(block);
            if block[B_HASH / 8].load(Relaxed) == h
                && halves[B_STATE / 4].load(Relaxed) == LIVE
                && halves[B_LENS / 4].load(Relaxed) & 0xffff == key.len() as u32
                && key_is(&block[B_KEY / 8..], key)
            {
                return Probe::Found {
                    bucket: (i.wrapping_sub(1)) & mask,
                    at,
                };
            }
        }
        Probe::Missing
    }

    /// Enters the block at `at` (whose key hashes to `h`) in the buckets.
    fn insert_bucket(&self, at: usize, h: u64) -> Result<()> {
        self.insert_bucket_in(self.table()?, at, h)
    }

    /// Enters the block at `at` (whose key hashes to `h`) in table `t`.
    fn insert_bucket_in(&self, t: Table, at: usize, h: u64) -> Result<()> {
        let mask = t.count - 1;
        let mut i = h & mask;
        for _ in 0..t.count {
            if bucket_index(self.bucket(t, i)) == 0 {
                self.set_bucket(t, i, bucket_word(self.index_of(at), h));
                return Ok(());
            }
            i = (i + 1) & mask;
        }
        Err(self.corrupt("its buckets are all taken".into()))
    }

    /// Takes bucket `i` out, moving later entries of its run back so that
    /// lookups still find them (no tombstones).
    fn delete_bucket(&self, i: u64) -> Result<()> {
        let t = self.table()?;
        let mask = t.count - 1;
        let mut hole = i;
        let mut j = i;
        for _ in 0..t.count {
            j = (j + 1) & mask;
            let word = self.bucket(t, j);
            let index = bucket_index(word);
            if index == 0 {
                break;
            }
            let home = self.u64(self.block_at(index)? + B_HASH) & mask;
            // Move it into the hole unless its home lies cyclically in
            // (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.set_bucket(t, hole, word);
                hole = j;
            }
        }
        self.set_bucket(t, hole, 0);
        Ok(())
    }

    /// The type name as an entry keeps it, and where the entry's parts go.
    fn plan_entry<'n>(new: &NewEntry<'n>) -> (&'n [u8], EntryLayout) {
        let type_name = &new.type_name.as_bytes()[..new.type_name.len().min(MAX_TYPE_LEN)];
        let layout = EntryLayout::new(
            new.key.len(),
            type_name.len(),
            new.value.len(),
            new.align,
            new.schema.len(),
        );
        (type_name, layout)
    }

    /// Takes a block for `new` (RESERVED until [`fill`](Heap::fill) makes
    /// it an entry), and room for one more entry in handle slot `slot`'s
    /// hold list, so that holding the new entry cannot fail for want of
    /// space once it exists; [`Error::StoreFull`] if there is no room for
    /// both (then nothing is taken). `held` is as for `take`.
    pub(crate) fn reserve(
        &self,
        new: &NewEntry<'_>,
        slot: usize,
        held: &dyn Fn(usize, usize) -> bool,
    ) -> Result<usize> {
        let (_, layout) = Self::plan_entry(new);
        // Our own empty hold list may go if there is no room: the hold is
        // made room for next, in a place of its own.
        let at = self.take_room_for(layout.block, held, slot)?;
        match self.room_to_hold(slot, held) {
            Ok(_) => Ok(at),
            Err(Error::StoreFull { needed, .. }) => {
                self.unreserve(at)?;
                let space = self.space()?;
                Err(Error::StoreFull {
                    name: self.label.to_owned(),
                    needed: layout.block + needed,
                    free: space.free,
                    largest_free: space.largest,
                })
            }
            Err(e) => {
                self.unreserve(at)?;
                Err(e)
            }
        }
    }

    /// Gives back a block [`reserve`](Heap::reserve) took and nothing
    /// filled.
    fn unreserve(&self, at: usize) -> Result<()> {
        if self.state(at) != RESERVED {
            return Err(self.corrupt("a reserved block was taken from under us".into()));
        }
        // `free` takes the block's size off the bytes in use, which a
        // RESERVED block is not counted in yet.
        let used = self.used().saturating_add(self.size_of(at)?);
        self.set_u64(self.meta(M_USED), used);
        self.free(at)
    }

    /// A free block of at least `need` bytes, RESERVED (see `take`), after
    /// reclaiming dead processes' holds if there is none at first;
    /// [`Error::StoreFull`] if there is none then either.
    fn take_room(&self, need: u64, held: &dyn Fn(usize, usize) -> bool) -> Result<usize> {
        self.take_room_for(need, held, usize::MAX)
    }

    /// [`take_room`](Heap::take_room), whose reclaiming also frees the
    /// empty hold list of slot `own` (see [`reclaim`](Heap::reclaim)).
    fn take_room_for(
        &self,
        need: u64,
        held: &dyn Fn(usize, usize) -> bool,
        own: usize,
    ) -> Result<usize> {
        if let Some(at) = self.take(need, held)? {
            return Ok(at);
        }
        // Entries removed while held by processes that have died since:
        // their space is free now.
        self.reclaim(held, own)?;
        if let Some(at) = self.take(need, held)? {
            return Ok(at);
        }
        let space = self.space()?;
        Err(Error::StoreFull {
            name: self.label.to_owned(),
            needed: need,
            free: space.free,
            largest_free: space.largest,
        })
    }

    // ---- Growth ----

    /// Whether the heap is below the most it may grow to.
    pub(crate) fn can_grow(&self) -> bool {
        self.heap_size() < self.max_heap()
    }

    /// Grows the heap, in place, for a block of `need` bytes that found no
    /// room: to twice its size, or to what `need` takes if more, up to
    /// [`max_heap`](Heap::max_heap); `Ok(false)` if it is there already or
    /// its object cannot grow. The steps (see `_design::store`, "Growth"):
    ///
    /// 1. the object is allocated to the new size (`posix_fallocate`): a
    ///    full filesystem is [`Error::NoSpace`];
    /// 2. the new room becomes one FREE block, its header written past
    ///    the heap's end, where nothing is read yet;
    /// 3. the commit: `M_HEAP` takes the new size (release);
    /// 4. the new block goes on its free list, merged first with the last
    ///    block if that one is free.
    ///
    /// A process killed before 3 leaves the object larger than the heap
    /// (the next growth uses it); after 3, a free block that no list holds
    /// or two free neighbours, which recovery's rebuild merges and lists.
    /// Runs inside a change of the directory (its generation moves).
    pub(crate) fn grow(&self, need: u64) -> Result<bool> {
        let old = self.heap_size();
        let max = self.max_heap();
        if old >= max {
            return Ok(false);
        }
        let want = old
            .saturating_mul(2)
            .max(old.saturating_add(need).saturating_add(MIN_BLOCK));
        let new = want.div_ceil(BLOCK_ALIGN).saturating_mul(BLOCK_ALIGN).min(max);
        let last = self.last_block()?;
        // 1. The object.
        let object = self.geo.heap_at as u64 + new;
        match self.map.grow_object(object) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) if crate::sys::mapping::is_no_space(&e) => {
                return Err(Error::NoSpace {
                    name: self.label.to_owned(),
                    size: object,
                })
            }
            Err(e) => {
                return Err(Error::Io {
                    op: "growing",
                    name: self.label.to_owned(),
                    source: e,
                })
            }
        }
        if self.room.learn(self.map, self.geo, object) < new {
            // The mapping does not reach it (checked by `max_heap`): never.
            return Ok(false);
        }
        // 2. The new room's block, past the heap's end.
        let added = new - old;
        let region = self.abs(old);
        self.set_u64(region + B_PREV, last.map_or(0, |(_, size)| size));
        self.set_u32(region + B_STATE, FREE);
        self.set_size(region, added);
        // 3. The commit.
        self.map
            .atomic_u64(self.meta(M_HEAP))
            .store(new, Ordering::Release);
        self.size.set(new);
        // 4. Onto a free list.
        match last {
            Some((at, size)) if self.state(at) == FREE => {
                self.unlink_free(at, size)?;
                self.set_size(at, size + added);
                self.push_free(at, size + added);
            }
            _ => self.push_free(region, added),
        }
        Ok(true)
    }

    /// The last block of the heap (its offset and size).
    fn last_block(&self) -> Result<Option<(usize, u64)>> {
        let mut last = None;
        self.walk(|at, size, _| {
            last = Some((at, size));
            Ok(())
        })?;
        Ok(last)
    }

    // ---- Bucket tables ----

    /// Whether one more entry would fill the bucket table in use past
    /// half of its buckets: then [`rehash`](Heap::rehash) first.
    pub(crate) fn needs_rehash(&self) -> Result<bool> {
        let t = self.table()?;
        Ok(self.entries().saturating_add(1) > t.count / 2)
    }

    /// Moves the directory to a bucket table four times as large (at
    /// least), in a TABLE block of the heap: the block is taken
    /// ([`Error::StoreFull`] if there is no room: grow and call again),
    /// filled from the table in use, then named in `M_TABLE` (release: the
    /// commit), and the old table's block, if it was one, is freed (the
    /// table in place just stays unused). A process killed before the
    /// commit leaves a TABLE block that `M_TABLE` does not name, and one
    /// killed after it the old one: recovery frees it. Runs inside a
    /// change of the directory, so lock-free lookups that overlapped it
    /// are made again. `held` is as for `take`.
    pub(crate) fn rehash(&self, held: &dyn Fn(usize, usize) -> bool) -> Result<()> {
        let old = self.table()?;
        let want = self.entries().saturating_add(1).saturating_mul(2);
        let mut count = old.count.saturating_mul(4);
        while count < want && count < 1 << 32 {
            count *= 2;
        }
        let bytes = (B_KEY as u64 + count * BUCKET_BYTES as u64).div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN;
        if count > 1 << 32 || bytes > MAX_HEAP {
            return Err(self.corrupt(format!("it counts {} entries", self.entries())));
        }
        let at = self.take_room(bytes, held)?;
        let t = Table {
            at: at + B_KEY,
            count,
            block: Some(at),
        };
        for b in 0..count {
            self.set_bucket(t, b, 0);
        }
        for b in 0..old.count {
            let index = bucket_index(self.bucket(old, b));
            if index != 0 {
                let e = self.block_at(index)?;
                self.insert_bucket_in(t, e, self.u64(e + B_HASH))?;
            }
        }
        self.set_u32(at + B_STATE, TABLE);
        self.set_u64(
            self.meta(M_USED),
            self.used().saturating_add(self.size_of(at)?),
        );
        // The commit: lookups from now on probe the new table.
        let word = u64::from(self.index_of(at)) | u64::from(count.trailing_zeros()) << 32;
        self.map
            .atomic_u64(self.meta(M_TABLE))
            .store(word, Ordering::Release);
        if let Some(b) = old.block {
            self.free(b)?;
        }
        Ok(())
    }

    /// Makes the block `at` from [`reserve`](Heap::reserve) the LIVE entry
    /// `new`, held by no handle yet ([`hold`](Heap::hold) follows); returns
    /// it. The caller checked that the key is not in the directory.
    pub(crate) fn fill(&self, at: usize, new: &NewEntry<'_>) -> Result<EntryMeta> {
        let h = self.write_entry(at, new);
        // The one store that makes the entry exist.
        self.map
            .atomic_u32(at + B_STATE)
            .store(LIVE, std::sync::atomic::Ordering::Release);
        self.insert_bucket(at, h)?;
        // Counters come from the segment: a damaged one must not overflow
        // here (`check` reports it; `recover` recounts).
        self.set_u64(self.meta(M_ENTRIES), self.entries().saturating_add(1));
        let used = self.used().saturating_add(self.size_of(at)?);
        self.set_u64(self.meta(M_USED), used);
        self.entry(at)
    }

    /// Makes the block `at` from [`reserve`](Heap::reserve) the entry
    /// `new` (held by no handle yet), in place of `old`, the LIVE entry of
    /// the same key found in bucket `i`; returns the new entry.
    /// `old` becomes REMOVED (freed if no live process holds it).
    ///
    /// The record at `M_REPLACING` names both blocks first; then one store
    /// (the new block turning LIVE) is the switch: a recovery that finds
    /// the record and the new block LIVE removes the old entry, and one
    /// that finds the new block still RESERVED frees it, leaving the old
    /// entry as it was. The key names one complete entry at every moment.
    pub(crate) fn replace(
        &self,
        i: u64,
        old: &EntryMeta,
        at: usize,
        new: &NewEntry<'_>,
    ) -> Result<EntryMeta> {
        let t = self.table()?;
        if i >= t.count
            || bucket_index(self.bucket(t, i)) != self.index_of(old.at)
            || self.state(old.at) != LIVE
            || new.key != old.key
        {
            return Err(self.corrupt("an entry to replace is not where it was found".into()));
        }
        let h = self.write_entry(at, new);
        let record = u64::from(self.index_of(at)) | u64::from(self.index_of(old.at)) << 32;
        self.set_u64(self.meta(M_REPLACING), record);
        // The one store that makes the new entry the key's.
        self.map
            .atomic_u32(at + B_STATE)
            .store(LIVE, std::sync::atomic::Ordering::Release);
        // Same key, same hash: the new block takes the old one's bucket.
        self.set_bucket(t, i, bucket_word(self.index_of(at), h));
        let used = self.used().saturating_add(self.size_of(at)?);
        self.set_u64(self.meta(M_USED), used);
        self.set_u32(old.at + B_STATE, REMOVED);
        self.settle(old.at)?;
        self.set_u64(self.meta(M_REPLACING), 0);
        self.entry(at)
    }

    /// Writes the entry `new`, held by no handle, into the RESERVED block
    /// `at`, leaving it RESERVED; returns its key's hash.
    #[allow(unsafe_code)] // initialises memory no reference reaches: see the SAFETY comment
    fn write_entry(&self, at: usize, new: &NewEntry<'_>) -> u64 {
        let (type_name, layout) = Self::plan_entry(new);
        let h = hash(new.key);
        let lens = new.key.len() as u32 | (type_name.len() as u32) << 16;
        self.set_u32(at + B_LENS, lens);
        self.set_u64(at + B_HASH, h);
        self.set_u64(at + B_FINGERPRINT, new.fingerprint);
        self.set_u64(at + B_VALUE_SIZE, new.value.len() as u64);
        self.map
            .atomic_u16(at + B_VALUE_ALIGN)
            .store(new.align as u16, Relaxed);
        self.map
            .atomic_u16(at + B_SCHEMA_LEN)
            .store(new.schema.len() as u16, Relaxed);
        self.set_u32(at + B_VALUE_OFFSET, layout.value as u32);
        self.set_u64(at + B_RESERVED, 0);
        let flags = self.entry_flags();
        // SAFETY: the block is RESERVED: no bucket, free list or handle
        // points at it, so no process following the protocol reads or
        // writes these bytes until the caller turns it LIVE, under the
        // directory lock we hold; and no reference of this process reaches them, since
        // `take` refuses a block in the value of an entry this process
        // holds (the only bytes guards hand out), whatever a peer forged.
        // Every range lies inside the block (`EntryLayout`), which `take`
        // found inside the heap.
        unsafe {
            self.map.write_bytes(at + B_KEY, new.key);
            self.map.write_bytes(at + B_KEY + new.key.len(), type_name);
            self.map.write_bytes(at + layout.value, new.value);
            self.map.write_bytes(at + layout.schema, new.schema);
        }
        self.map.raw_lock(at + layout.slot).reset();
        self.map
            .versions(at + layout.slot + crate::lock::LOCK_SIZE)
            .reset(flags);
        h
    }

    /// Takes the entry found in bucket `i` out of the directory and marks
    /// it REMOVED; frees it at once if no handle slot names it (see
    /// [`settle`](Heap::settle)), else the last slot to let go frees it.
    pub(crate) fn remove(&self, i: u64, entry: &EntryMeta) -> Result<()> {
        self.delete_bucket(i)?;
        self.set_u64(self.meta(M_ENTRIES), self.entries().saturating_sub(1));
        self.set_u32(entry.at + B_STATE, REMOVED);
        self.settle(entry.at)
    }

    /// Under the lock: frees the entry at `at` if it is REMOVED and no
    /// handle slot names it (see [`named`](Heap::named)); otherwise a
    /// holder still has it, and its letting go settles it again.
    pub(crate) fn settle(&self, at: usize) -> Result<()> {
        if self.state(at) == REMOVED && !self.named(self.index_of(at)) {
            self.free(at)?;
        }
        Ok(())
    }

    /// Whether a used handle slot names the entry of block index `index`:
    /// its hold list has it, or its pending hold is it (a pending hold
    /// marked [`DROPPING`] names nothing). Scans the slots below the mark,
    /// and the lists they name.
    ///
    /// The fence first pairs with the one of a hold without the lock
    /// (`Store::get`): whoever set the entry REMOVED, or began the change
    /// of the directory that removes it, before this fence, either is seen
    /// by the holder checking after its own fence, or sees the holder's
    /// pending hold here; and a pending hold read as cleared (acquire)
    /// shows the list entry written before it was cleared.
    fn named(&self, index: u32) -> bool {
        fence(Ordering::SeqCst);
        (0..self.mark()).any(|slot| {
            self.u32(self.handle_at(slot) + H_PID) != 0 && self.slot_names(slot, index)
        })
    }

    /// Whether handle slot `slot` names block index `index`, in its pending
    /// hold or (read after it) its list. A list that does not check names
    /// nothing.
    fn slot_names(&self, slot: usize, index: u32) -> bool {
        let Some(list) = self.list_of(slot) else {
            return false;
        };
        if self.pending_hold(&list) == Some(index) {
            return true;
        }
        let len = self.list_len(&list);
        (0..len).any(|i| self.item(&list, i) == index)
    }

    // ---- Hold lists ----

    /// Handle slot `slot`'s hold list, checked: a HOLDS block of that slot,
    /// no longer than its block; `None` if the slot has none.
    fn hold_list(&self, slot: usize) -> Result<Option<HoldList>> {
        let index = self.u32(self.handle_at(slot) + H_LIST);
        if index == 0 {
            return Ok(None);
        }
        let at = self.block_at(index)?;
        let size = self.size_of(at)?;
        if self.state(at) != HOLDS || self.u32(at + L_OWNER) as usize != slot {
            return Err(self.corrupt(format!(
                "handle slot {slot} names a hold list that is not its own"
            )));
        }
        // `size_of` checked the block to be at least 64 bytes.
        let room = ((size - L_ITEMS as u64) / 4).min(u64::from(u32::MAX)) as u32;
        let len = self.u32(at + L_LEN);
        if len > room {
            return Err(self.corrupt(format!(
                "handle slot {slot}'s hold list says {len} entries, its block has room for {room}"
            )));
        }
        Ok(Some(HoldList { at, room, len }))
    }

    /// Entry `i` (below the list's length) of a checked hold list.
    fn item(&self, list: &HoldList, i: u32) -> u32 {
        self.u32(list.at + L_ITEMS + 4 * i as usize)
    }

    fn set_item(&self, list: &HoldList, i: u32, index: u32) {
        self.set_u32(list.at + L_ITEMS + 4 * i as usize, index);
    }

    /// The list's length now (acquire: the entries below it were written
    /// before it), at most its room.
    fn list_len(&self, list: &HoldList) -> u32 {
        self.map
            .atomic_u32(list.at + L_LEN)
            .load(Ordering::Acquire)
            .min(list.room)
    }

    /// The list's pending hold ([`L_PENDING`]), acquired.
    fn pending(&self, list: &HoldList) -> u64 {
        self.map
            .atomic_u64(list.at + L_PENDING)
            .load(Ordering::Acquire)
    }

    /// The entry the list's pending hold protects: its block index, unless
    /// there is none or it is marked [`DROPPING`].
    fn pending_hold(&self, list: &HoldList) -> Option<u32> {
        let pending = self.pending(list);
        (pending != 0 && pending & DROPPING == 0).then_some(pending as u32)
    }

    fn set_pending(&self, list: &HoldList, v: u64, order: Ordering) {
        self.map.atomic_u64(list.at + L_PENDING).store(v, order);
    }

    /// Handle slot `slot`'s hold list with room for one more entry: its
    /// first (a 128-byte block), or a full one moved to a block twice its
    /// size (allocate, copy, switch the slot's index, free the old one: a
    /// process killed in between leaves a HOLDS block no slot names, which
    /// recovery frees). [`Error::StoreFull`] if there is no room for it.
    /// `held` is as for `take`. Only the slot's own process moves its
    /// list, under the lock and its map of held entries (no hold without
    /// the lock runs meanwhile).
    pub(crate) fn room_to_hold(
        &self,
        slot: usize,
        held: &dyn Fn(usize, usize) -> bool,
    ) -> Result<HoldList> {
        let old = self.hold_list(slot)?;
        let need = match &old {
            Some(list) if list.len < list.room => return Ok(*list),
            Some(list) => self.size_of(list.at)?.saturating_mul(2),
            None => FIRST_LIST,
        };
        let at = self.take_room(need, held)?;
        let size = self.size_of(at)?;
        let len = old.map_or(0, |l| l.len);
        self.set_u32(at + L_OWNER, slot as u32);
        self.set_u32(at + L_LEN, len);
        let list = HoldList {
            at,
            room: ((size - L_ITEMS as u64) / 4).min(u64::from(u32::MAX)) as u32,
            len,
        };
        let pending = old.map_or(0, |l| self.pending(&l));
        self.set_pending(&list, pending, Relaxed);
        if let Some(old) = &old {
            for i in 0..len {
                self.set_item(&list, i, self.item(old, i));
            }
        }
        self.set_u32(at + B_STATE, HOLDS);
        self.set_u64(self.meta(M_USED), self.used().saturating_add(size));
        self.set_u32(self.handle_at(slot) + H_LIST, self.index_of(at));
        if let Some(old) = old {
            self.free(old.at)?;
        }
        Ok(list)
    }

    /// Under the lock: handle slot `slot` holds the entry at `at` from now
    /// on, at the end of its hold list; returns its position there (for
    /// [`unhold`](Heap::unhold)). [`Error::StoreFull`] if the list must
    /// grow and there is no room.
    pub(crate) fn hold(
        &self,
        at: usize,
        slot: usize,
        held: &dyn Fn(usize, usize) -> bool,
    ) -> Result<u32> {
        let list = self.room_to_hold(slot, held)?;
        Ok(self.append(&list, at))
    }

    /// Puts the entry at `at` at the end of `list` (which has room): the
    /// entry first, then the length (release). Returns its position.
    fn append(&self, list: &HoldList, at: usize) -> u32 {
        self.set_item(list, list.len, self.index_of(at));
        self.map
            .atomic_u32(list.at + L_LEN)
            .store(list.len + 1, Ordering::Release);
        list.len
    }

    /// Takes the entry at position `pos` of `list` out (it must be the
    /// entry at `at`): the last entry of the list takes its place (the
    /// entry first, then the length, release, so that a scan always finds
    /// every entry still held). Returns the moved entry's block offset, if
    /// one moved.
    fn take_out(&self, list: &HoldList, at: usize, pos: u32) -> Result<Option<usize>> {
        if pos >= list.len || self.item(list, pos) != self.index_of(at) {
            return Err(self.corrupt(format!(
                "handle slot {}'s hold list lost an entry it holds",
                self.u32(list.at + L_OWNER)
            )));
        }
        let last = list.len - 1;
        let moved = self.item(list, last);
        self.set_item(list, pos, moved);
        self.map
            .atomic_u32(list.at + L_LEN)
            .store(last, Ordering::Release);
        Ok(if pos < last {
            self.block_at(moved).ok()
        } else {
            None
        })
    }

    /// Under the lock: handle slot `slot` no longer holds the entry at
    /// `at`, at position `pos` of its hold list ([`take_out`]); the entry is
    /// freed if it was removed and nobody else names it. Returns the entry
    /// moved to `pos`, if any. A list left empty is kept for the next hold.
    pub(crate) fn unhold(&self, at: usize, slot: usize, pos: u32) -> Result<Option<usize>> {
        let state = self.state(at);
        if state != LIVE && state != REMOVED {
            return Err(self.corrupt("a held entry's block was freed".into()));
        }
        let Some(list) = self.hold_list(slot)? else {
            return Err(self.corrupt(format!(
                "handle slot {slot}'s hold list lost an entry it holds"
            )));
        };
        let moved = self.take_out(&list, at, pos)?;
        self.settle(at)?;
        Ok(moved)
    }

    // ---- Holds without the lock (see `_design::store`) ----

    /// Handle slot `slot`'s hold list, if it has one with room for another
    /// entry: what a hold without the lock needs (else it takes the lock).
    pub(crate) fn list_with_room(&self, slot: usize) -> Option<HoldList> {
        self.list_of(slot).filter(|list| list.len < list.room)
    }

    /// Handle slot `slot`'s hold list, as [`hold_list`](Heap::hold_list)
    /// checks it; `None` if it has none or it does not check.
    pub(crate) fn list_of(&self, slot: usize) -> Option<HoldList> {
        self.hold_list(slot).ok().flatten()
    }

    /// First step of a hold without the lock: names the entry at `at` as
    /// `list`'s pending hold, then a sequentially consistent fence (it pairs
    /// with the one in [`named`](Heap::named)). The caller then checks that
    /// the directory did not change since it found the entry: if so, no
    /// removal can have freed it, and none frees it before
    /// [`finish_hold`](Heap::finish_hold) or [`abandon`](Heap::abandon).
    pub(crate) fn begin_hold(&self, list: &HoldList, at: usize) {
        // Relaxed, then the fence: the store and the caller's next load are
        // the pair the fence orders (a store with SeqCst as well would be a
        // second full barrier on x86-64, for nothing).
        self.set_pending(list, u64::from(self.index_of(at)), Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Last step of a hold without the lock: the entry goes into the list,
    /// then the pending hold is cleared (release). Returns its position.
    pub(crate) fn finish_hold(&self, list: &HoldList, at: usize) -> u32 {
        let pos = self.append(list, at);
        self.set_pending(list, 0, Ordering::Release);
        pos
    }

    /// Gives a pending hold of the entry at `at` up (the directory changed
    /// after `begin_hold`): the pending hold becomes a [`DROPPING`] one,
    /// then a sequentially consistent fence, then the entry's state. `true`
    /// if the entry is REMOVED: a removal may have left it to this slot,
    /// and the caller must [`settle`](Heap::settle) it under the lock, then
    /// [`clear_pending`](Heap::clear_pending); `false`: the pending hold is
    /// cleared and nothing is left to do.
    pub(crate) fn abandon(&self, list: &HoldList, at: usize) -> bool {
        let index = u64::from(self.index_of(at));
        self.set_pending(list, index | DROPPING, Relaxed);
        self.removed_after_letting_go(list, at)
    }

    /// The end of letting go of (or giving up) the entry at `at`, named by
    /// `list`'s pending hold as [`DROPPING`]: a sequentially consistent
    /// fence (it pairs with the one in [`named`](Heap::named)), then the
    /// entry's state. REMOVED: `true`, and the pending hold stays for the
    /// caller's settling; otherwise the pending hold is cleared.
    fn removed_after_letting_go(&self, list: &HoldList, at: usize) -> bool {
        fence(Ordering::SeqCst);
        let removed = self.state(at) == REMOVED;
        if !removed {
            self.set_pending(list, 0, Relaxed);
        }
        removed
    }

    /// Lets go of the entry at `at`, at position `pos` of `list`, without
    /// the lock: a [`DROPPING`] pending hold names it first (for whoever
    /// clears this slot if the process dies next), then [`take_out`], a
    /// sequentially consistent fence and the entry's state. `Ok(true)` if
    /// it is REMOVED: the caller must [`settle`](Heap::settle) it under the
    /// lock, then [`clear_pending`](Heap::clear_pending). The second value
    /// is the entry moved to `pos`, if any.
    pub(crate) fn let_go_quiet(
        &self,
        list: &HoldList,
        at: usize,
        pos: u32,
    ) -> Result<(bool, Option<usize>)> {
        let index = u64::from(self.index_of(at));
        self.set_pending(list, index | DROPPING, Relaxed);
        let moved = match self.take_out(list, at, pos) {
            Ok(moved) => moved,
            Err(e) => {
                self.set_pending(list, 0, Relaxed);
                return Err(e);
            }
        };
        Ok((self.removed_after_letting_go(list, at), moved))
    }

    /// Clears handle slot `slot`'s pending hold, if it has a list.
    pub(crate) fn clear_pending(&self, slot: usize) {
        if let Some(list) = self.list_of(slot) {
            self.set_pending(&list, 0, Relaxed);
        }
    }

    /// Frees removed entries whose holders have all died: forgets the
    /// holds of every dead process's handle slot (below the mark) and
    /// clears the slot; and frees the empty hold list of slot `own` (the
    /// caller's, whose holds without the lock its map of held entries,
    /// held by the caller, keeps out meanwhile; `usize::MAX` for none).
    /// Other live slots keep their lists: their processes may be writing
    /// to them. Costs one presence query per slot used and a step per
    /// hold of the dead slots, never a walk of the heap. `held` is as for
    /// `take`.
    pub(crate) fn reclaim(&self, held: &dyn Fn(usize, usize) -> bool, own: usize) -> Result<()> {
        let mut dead = Vec::new();
        for slot in (0..self.mark()).filter(|&s| self.u32(self.handle_at(s) + H_PID) != 0) {
            if !self.handle_alive(slot) {
                dead.push(slot);
            } else if slot == own {
                if let Some(list) = self.list_of(slot) {
                    if list.len == 0 && self.pending(&list) == 0 && !held(list.at, list.at + L_ITEMS)
                    {
                        self.set_u32(self.handle_at(slot) + H_LIST, 0);
                        self.free(list.at)?;
                    }
                }
            }
        }
        self.forget(&dead, held)
    }

    /// Forgets the holds of handle slots `slots` (dead, or this process's
    /// own being given back) and clears them: their lists are freed, and
    /// each entry they named (in the list or as the pending hold) that is
    /// REMOVED is freed if no other slot names it. A list or an entry of
    /// it that does not check is skipped (recovery frees a HOLDS block no
    /// slot names), so a forged list never frees an entry a live handle
    /// holds.
    fn forget(&self, slots: &[usize], held: &dyn Fn(usize, usize) -> bool) -> Result<()> {
        let mut candidates = Vec::new();
        for &slot in slots {
            if let Some(list) = self.list_of(slot) {
                let end = list.at + L_ITEMS + 4 * list.room as usize;
                if !held(list.at, end) {
                    let pending = self.pending(&list);
                    if pending != 0 {
                        candidates.push(pending as u32);
                    }
                    candidates.extend((0..list.len).map(|i| self.item(&list, i)));
                    self.free(list.at)?;
                }
            }
            self.clear_handle(slot);
        }
        for index in candidates {
            if let Some(at) = self.removed_entry(index, held) {
                self.settle(at)?;
            }
        }
        Ok(())
    }

    /// The REMOVED entry of block index `index`, if it names one outside
    /// what this process holds.
    fn removed_entry(&self, index: u32, held: &dyn Fn(usize, usize) -> bool) -> Option<usize> {
        let at = self.block_at(index).ok()?;
        // A header is never inside a value this process holds: bytes there
        // are not a header, whatever they say.
        if self.state(at) != REMOVED || held(at, at + B_KEY) || self.entry(at).is_err() {
            return None;
        }
        Some(at)
    }

    // ---- Handle slots ----

    /// How many handle slots were ever used: scans stop there.
    fn mark(&self) -> usize {
        self.u64(self.meta(M_SLOTS)).min(HANDLE_SLOTS as u64) as usize
    }

    fn handle_at(&self, slot: usize) -> usize {
        self.geo.handles_at + HANDLE_BYTES * slot
    }

    fn clear_handle(&self, slot: usize) {
        self.set_u32(self.handle_at(slot) + H_PID, 0);
        self.set_u32(self.handle_at(slot) + H_LIST, 0);
        self.set_u64(self.handle_at(slot) + H_INCARNATION, 0);
    }

    /// Whether the process in handle slot `slot` is alive: it still shows
    /// its incarnation in this store (see `lock::owner::present`), in
    /// whatever PID namespace it runs.
    fn handle_alive(&self, slot: usize) -> bool {
        let at = self.handle_at(slot);
        let pid = self.u32(at + H_PID);
        let x = self.u64(at + H_INCARNATION);
        let addr = self.map.atomic_u64(at + H_INCARNATION) as *const _ as usize;
        pid != 0 && crate::lock::owner::present(addr, x)
    }

    /// Takes a handle slot for this process: the first free one below the
    /// mark, else the one at the mark (raising it), else, with all
    /// [`HANDLE_SLOTS`] used, the first freed by reclaiming dead
    /// processes' slots; [`Error::HandleLimit`] if every one is alive.
    pub(crate) fn register(&self) -> Result<usize> {
        let pid = std::process::id();
        let x = crate::lock::owner::incarnation().map_err(|e| Error::Io {
            op: "registering with",
            name: self.label.to_owned(),
            source: e,
        })?;
        let mark = self.mark();
        let free = |s: &usize| self.u32(self.handle_at(*s) + H_PID) == 0;
        let slot = match (0..mark).find(free) {
            Some(slot) => slot,
            None if mark < HANDLE_SLOTS => {
                self.set_u64(self.meta(M_SLOTS), mark as u64 + 1);
                mark
            }
            None => {
                self.reclaim(&|_, _| false, usize::MAX)?;
                (0..mark).find(free).ok_or_else(|| Error::HandleLimit {
                    name: self.label.to_owned(),
                    limit: HANDLE_SLOTS,
                })?
            }
        };
        self.set_u32(self.handle_at(slot) + H_PID, pid);
        self.set_u32(self.handle_at(slot) + H_LIST, 0);
        self.set_u64(self.handle_at(slot) + H_INCARNATION, x);
        Ok(slot)
    }

    /// Gives handle slot `slot` back, with whatever it still holds.
    pub(crate) fn unregister(&self, slot: usize, held: &dyn Fn(usize, usize) -> bool) -> Result<()> {
        self.forget(&[slot], held)
    }

    /// The next piece of a listing in pieces (see [`in_pieces`]) that has
    /// listed `listed` so far: the entries from the end of the last of
    /// them still in its place on, over at most [`PIECE_BLOCKS`] blocks
    /// and [`PIECE_TIME`] if `bounded` (then up to the next entry), else to
    /// the heap's end.
    ///
    /// Where it starts (see `_design::store`, "Listing in pieces"): an entry
    /// found in the directory by its key, at the offset it was listed at,
    /// is a block there now (entries never move while present), so the
    /// heap offset after it starts a block and a walk from there stays on
    /// block boundaries. The last entry listed is tried first; if it was
    /// removed, the ones before it (at most [`LOOK_BACK`]); if none is
    /// left, the heap's start.
    pub(crate) fn list_piece(&self, listed: &[EntryMeta], bounded: bool) -> Result<Piece> {
        if bounded {
            let until = Instant::now() + PIECE_TIME;
            self.piece(listed, PIECE_BLOCKS, Some(until))
        } else {
            self.piece(listed, usize::MAX, None)
        }
    }

    /// [`list_piece`](Heap::list_piece) over at most `blocks` blocks and
    /// until `until` (then up to the next entry).
    fn piece(&self, listed: &[EntryMeta], blocks: usize, until: Option<Instant>) -> Result<Piece> {
        if !self.formatted() {
            // Nothing was ever made in it.
            return Ok(Piece {
                entries: Vec::new(),
                done: true,
                went_back: false,
            });
        }
        let mut start = None;
        for (back, e) in listed.iter().rev().take(LOOK_BACK).enumerate() {
            if self.find(&e.key)?.is_some_and(|(_, now)| now.at == e.at) {
                start = Some((self.rel(e.at) + self.size_of(e.at)?, back > 0));
                break;
            }
        }
        let (start, went_back) = start.unwrap_or((0, !listed.is_empty()));
        let (mut entries, mut seen, mut spent) = (Vec::new(), 0usize, false);
        let end = self.walk_from(start, |at, _, state| {
            seen += 1;
            // The clock only now and then: a block costs a few nanoseconds.
            spent = spent
                || seen >= blocks
                || (seen % 64 == 0 && until.is_some_and(|t| Instant::now() >= t));
            if state != LIVE {
                return Ok(true);
            }
            entries.push(self.entry(at)?);
            // A piece ends after an entry: where the next one starts.
            Ok(!spent)
        })?;
        Ok(Piece {
            entries,
            done: end >= self.heap_size(),
            went_back,
        })
    }

    /// Checks every invariant of the directory and heap: blocks tile the
    /// heap, no two free blocks are neighbours, the `prev_size` hints are
    /// right, every free block is on its size class's list and nothing else
    /// is, every live entry is found by its key and the buckets hold
    /// nothing else, the counters agree, and the holds agree (see
    /// [`check_holds`](Heap::check_holds)).
    pub(crate) fn check(&self) -> Result<()> {
        let replacing = self.u64(self.meta(M_REPLACING));
        if replacing != 0 {
            return Err(self.corrupt(format!(
                "it records a replacement of an entry ({replacing:#x}) outside a change"
            )));
        }
        let (heap, max) = (self.heap_size(), self.u64(self.meta(M_MAX_HEAP)));
        if heap < MIN_BLOCK || heap % BLOCK_ALIGN != 0 || heap > max || max > MAX_HEAP {
            return Err(self.corrupt(format!(
                "its heap says {heap} bytes, growing to at most {max}"
            )));
        }
        let table = self.table()?;
        let mut table_seen = table.block.is_none();
        let mut prev: Option<(u64, u32)> = None;
        let mut free_blocks = Vec::new();
        let mut live = Vec::new();
        let mut entries = Vec::new();
        let mut lists = Vec::new();
        let mut used = 0;
        let mut off = 0;
        while off < self.heap_size() {
            let at = self.abs(off);
            let size = self.size_of(at)?;
            let state = self.state(at);
            let hint = self.u64(at + B_PREV);
            let want = prev.map_or(0, |(s, _)| s);
            if hint != want {
                return Err(self.corrupt(format!(
                    "block at heap offset {off} says the block before is {hint} bytes, not {want}"
                )));
            }
            match state {
                FREE => {
                    if prev.is_some_and(|(_, s)| s == FREE) {
                        return Err(self.corrupt(format!(
                            "free blocks at heap offset {off} and before it are not merged"
                        )));
                    }
                    free_blocks.push(at);
                }
                LIVE => {
                    self.entry(at)?;
                    live.push(at);
                    entries.push(at);
                    used += size;
                }
                REMOVED => {
                    self.entry(at)?;
                    entries.push(at);
                    used += size;
                }
                HOLDS => {
                    lists.push(at);
                    used += size;
                }
                TABLE if table.block == Some(at) => {
                    table_seen = true;
                    used += size;
                }
                TABLE => {
                    return Err(self.corrupt(format!(
                        "block at heap offset {off} is a bucket table not in use"
                    )))
                }
                other => {
                    return Err(self.corrupt(format!(
                        "block at heap offset {off} is in state {other:#x} outside a change"
                    )))
                }
            }
            prev = Some((size, state));
            off += size;
        }
        if !table_seen {
            return Err(self.corrupt("its bucket table is not a block of the heap".into()));
        }
        // Free lists: exactly the free blocks, each in its class.
        let mut listed = 0;
        for class in 0..CLASSES {
            let mut index = self.u32(self.meta(M_HEADS + 4 * class));
            let mut back = 0;
            while index != 0 {
                let at = self.block_at(index)?;
                let size = self.size_of(at)?;
                if self.state(at) != FREE || Self::class_of(size) != class {
                    return Err(self.corrupt(format!(
                        "free list {class} holds a block that does not belong there"
                    )));
                }
                if self.u32(at + B_PREV_FREE) != back {
                    return Err(self.corrupt(format!("free list {class} is not linked back")));
                }
                listed += 1;
                if listed > free_blocks.len() {
                    return Err(
                        self.corrupt("the free lists hold more blocks than are free".into())
                    );
                }
                back = index;
                index = self.u32(at + B_NEXT_FREE);
            }
        }
        if listed != free_blocks.len() {
            return Err(self.corrupt(format!(
                "{} blocks are free but the free lists hold {listed}",
                free_blocks.len()
            )));
        }
        // Buckets: exactly the live entries, each found by its key, with
        // the table at most half full.
        let mut in_buckets = 0;
        let t = table;
        for b in 0..t.count {
            let word = self.bucket(t, b);
            let index = bucket_index(word);
            if index == 0 {
                if word != 0 {
                    return Err(self.corrupt(format!("bucket {b} has a tag but no block")));
                }
                continue;
            }
            let at = self.block_at(index)?;
            if self.state(at) != LIVE {
                return Err(self.corrupt(format!("bucket {b} points at a block not in use")));
            }
            if bucket_word(index, self.u64(at + B_HASH)) != word {
                return Err(self.corrupt(format!(
                    "bucket {b}'s tag is not its entry's key hash"
                )));
            }
            in_buckets += 1;
        }
        for &at in &live {
            let e = self.entry(at)?;
            match self.find(&e.key)? {
                Some((_, found)) if found.at == at => {}
                _ => {
                    return Err(self.corrupt(format!(
                        "entry `{}` is not found by its key",
                        String::from_utf8_lossy(&e.key)
                    )))
                }
            }
        }
        if in_buckets as u64 > t.count / 2 {
            return Err(self.corrupt(format!(
                "its bucket table of {} holds {in_buckets} entries",
                t.count
            )));
        }
        if in_buckets != live.len() || self.entries() != live.len() as u64 {
            return Err(self.corrupt(format!(
                "{} entries are live, the buckets hold {in_buckets} and the count says {}",
                live.len(),
                self.entries()
            )));
        }
        if self.used() != used {
            return Err(self.corrupt(format!(
                "{used} bytes are in use, the count says {}",
                self.used()
            )));
        }
        self.check_holds(&entries, &lists)
    }

    /// Checks the handle table and the holds, given the heap's entry blocks
    /// and HOLDS blocks (in heap order): the mark is at most
    /// [`HANDLE_SLOTS`]; each used slot's hold list checks, is a HOLDS
    /// block of its own and names entries only; every HOLDS block is a used
    /// slot's list; and no removed entry is left that no slot names (in its
    /// list or as its pending hold, letting go included: such a slot's
    /// process frees the entry next). A list may name an entry twice for a
    /// moment while a process lets go of one without the lock.
    fn check_holds(&self, entries: &[usize], lists: &[usize]) -> Result<()> {
        let mark = self.u64(self.meta(M_SLOTS));
        if mark > HANDLE_SLOTS as u64 {
            return Err(self.corrupt(format!(
                "it says {mark} handle slots were used, of {HANDLE_SLOTS}"
            )));
        }
        fence(Ordering::SeqCst);
        let mut named_entry = vec![false; entries.len()];
        let mut named = vec![false; lists.len()];
        let entry_of = |index: u32| {
            self.block_at(index)
                .ok()
                .and_then(|at| entries.binary_search(&at).ok())
        };
        for slot in 0..self.mark() {
            let at = self.handle_at(slot);
            if self.u32(at + H_PID) == 0 {
                if self.u32(at + H_LIST) != 0 {
                    return Err(self.corrupt(format!("free handle slot {slot} names a hold list")));
                }
                continue;
            }
            let Some(list) = self.hold_list(slot)? else {
                continue;
            };
            match lists.binary_search(&list.at) {
                Ok(k) if !named[k] => named[k] = true,
                _ => {
                    return Err(self.corrupt(format!(
                        "handle slot {slot}'s hold list is not a block of its own"
                    )))
                }
            }
            let pending = self.pending(&list);
            if pending != 0 {
                if let Some(k) = entry_of(pending as u32) {
                    named_entry[k] = true;
                }
            }
            for i in 0..self.list_len(&list) {
                let index = self.item(&list, i);
                match entry_of(index) {
                    Some(k) => named_entry[k] = true,
                    None => {
                        return Err(self.corrupt(format!(
                            "handle slot {slot}'s hold list names block {index}, not an entry"
                        )))
                    }
                }
            }
        }
        if named.contains(&false) {
            return Err(self.corrupt("a hold list belongs to no handle slot".into()));
        }
        for (&at, &held) in entries.iter().zip(&named_entry) {
            if !held && self.state(at) == REMOVED {
                let key = String::from_utf8_lossy(&self.entry(at).map(|e| e.key).unwrap_or_default())
                    .into_owned();
                return Err(self.corrupt(format!(
                    "removed entry `{key}` is held by no handle but was not freed"
                )));
            }
        }
        Ok(())
    }

    // ---- Recovery ----

    /// Finishes or undoes a replacement (see [`replace`](Heap::replace))
    /// that a holder of the directory lock left half done: if its new block
    /// is LIVE beside the old one, of the same key, the old one becomes
    /// REMOVED (the rest of recovery frees it unless live processes hold
    /// it); otherwise nothing changes here, and a RESERVED new block is
    /// freed as any. The record is then cleared. A record that names no
    /// such pair of blocks (damaged) changes nothing but itself.
    fn finish_replacement(&self) -> Result<()> {
        let record = self.u64(self.meta(M_REPLACING));
        if record == 0 {
            return Ok(());
        }
        let (new_index, old_index) = (record as u32, (record >> 32) as u32);
        if let (Ok(new), Ok(old)) = (self.block_at(new_index), self.block_at(old_index)) {
            let mut starts = (false, false);
            self.walk(|at, _, _| {
                starts.0 |= at == new;
                starts.1 |= at == old;
                Ok(())
            })?;
            if new != old
                && starts == (true, true)
                && self.state(new) == LIVE
                && self.state(old) == LIVE
            {
                if let (Ok(n), Ok(o)) = (self.entry(new), self.entry(old)) {
                    if n.key == o.key {
                        self.set_u32(old + B_STATE, REMOVED);
                    }
                }
            }
        }
        self.set_u64(self.meta(M_REPLACING), 0);
        Ok(())
    }

    /// Rebuilds everything derived from the heap (see the module docs).
    pub(crate) fn recover(&self) -> Result<()> {
        if !self.formatted() {
            // Formatting is for a heap nobody has used: a creator that died
            // before formatting left zeros, one that died formatting left
            // FORMATTING. A damaged format word over a used heap must not
            // erase every entry.
            let first = self.abs(0);
            let word = self.u32(self.meta(M_FORMAT));
            let unused = word == FORMATTING
                || (word == UNFORMATTED && self.u64(first + B_SIZE) == 0);
            if !unused {
                return Err(self.corrupt(
                    "its format word is damaged over a heap in use; nothing was erased".into(),
                ));
            }
            self.format();
            return Ok(());
        }
        self.finish_replacement()?;
        let table = self.table()?;
        let mut table_seen = table.block.is_none();
        let (keep, named) = self.named_holds()?;

        // Pass 1: normalise states and merge free neighbours, each merge
        // one store of a size.
        let mut off = 0;
        let mut prev: Option<(usize, u64)> = None; // (at, size) of the block before
        let mut live = Vec::new();
        let mut used = 0;
        while off < self.heap_size() {
            let at = self.abs(off);
            let size = self.size_of(at)?;
            let mut state = self.state(at);
            match state {
                FREE => {}
                RESERVED => state = FREE,
                LIVE | REMOVED => {
                    self.entry(at)?;
                    if state == REMOVED && !named.contains(&self.index_of(at)) {
                        state = FREE;
                    }
                }
                HOLDS => {
                    if !keep.contains(&at) {
                        state = FREE;
                    }
                }
                // A table left by a move cut short (the new one before
                // its commit, the old one after it).
                TABLE if table.block != Some(at) => state = FREE,
                TABLE => table_seen = true,
                other => {
                    return Err(self.corrupt(format!(
                        "block at heap offset {off} is in unknown state {other:#x}"
                    )))
                }
            }
            self.set_u32(at + B_STATE, state);
            off += size;
            match prev {
                Some((p, psize)) if state == FREE && self.state(p) == FREE => {
                    self.set_size(p, psize + size);
                    prev = Some((p, psize + size));
                }
                _ => {
                    if let Some((_, psize)) = prev {
                        self.set_u64(at + B_PREV, psize);
                    } else {
                        self.set_u64(at + B_PREV, 0);
                    }
                    if state == LIVE {
                        live.push(at);
                    }
                    if state != FREE {
                        used += size;
                    }
                    prev = Some((at, size));
                }
            }
        }

        if !table_seen {
            return Err(self.corrupt("its bucket table is not a block of the heap".into()));
        }
        // Pass 2: free lists and buckets from scratch.
        for c in 0..CLASSES {
            self.set_u32(self.meta(M_HEADS + 4 * c), 0);
        }
        self.walk(|at, size, state| {
            if state == FREE {
                self.push_free(at, size);
            }
            Ok(())
        })?;
        let t = table;
        for b in 0..t.count {
            self.set_bucket(t, b, 0);
        }
        for &at in &live {
            let e = self.entry(at)?;
            if self.find(&e.key)?.is_some() {
                return Err(self.corrupt(format!(
                    "two entries have the key `{}`",
                    String::from_utf8_lossy(&e.key)
                )));
            }
            self.insert_bucket_in(t, at, hash(&e.key))?;
        }
        self.set_u64(self.meta(M_ENTRIES), live.len() as u64);
        self.set_u64(self.meta(M_USED), used);
        Ok(())
    }

    /// The holds as the live handle slots say: clears dead processes'
    /// slots (their lists are then named by no slot), and returns the
    /// HOLDS blocks live slots name (in heap order) and the block indexes
    /// they name, in their lists or as a pending hold (not one marked
    /// [`DROPPING`]), as [`named`](Heap::named) counts them. A live slot
    /// whose list is not a HOLDS block of its own is [`Error::Corrupt`]
    /// (its holds are unknown, and nothing it may hold is freed).
    fn named_holds(&self) -> Result<(HashSet<usize>, HashSet<u32>)> {
        let mut lists = Vec::new();
        self.walk(|at, _, state| {
            if state == HOLDS {
                lists.push(at);
            }
            Ok(())
        })?;
        // After the change of the directory this recovery began: as in
        // `named`.
        fence(Ordering::SeqCst);
        let mut keep = HashSet::new();
        let mut named = HashSet::new();
        for slot in 0..self.mark() {
            if self.u32(self.handle_at(slot) + H_PID) == 0 || !self.handle_alive(slot) {
                self.clear_handle(slot);
                continue;
            }
            let Some(list) = self.hold_list(slot)? else {
                continue;
            };
            if lists.binary_search(&list.at).is_err() || !keep.insert(list.at) {
                return Err(self.corrupt(format!(
                    "handle slot {slot}'s hold list is not a block of its own"
                )));
            }
            named.extend(self.pending_hold(&list));
            named.extend((0..self.list_len(&list)).map(|i| self.item(&list, i)));
        }
        Ok((keep, named))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    // The key hash of `k`, `key/99999` and a 20-byte key, worked out
    // independently of this code (from its definition, byte by byte).
    const HASH_K: u64 = 0xac75_c326_25ee_4551;
    const HASH_KEY_99999: u64 = 0xa091_e94e_e471_d843;
    const HASH_20: u64 = 0xeb1c_ac0b_95a9_dc43;

    #[test]
    fn plans_leave_the_bucket_table_at_most_half_full() {
        for cap in [0, 1, 4096, 1 << 20, 100 << 20] {
            let p = plan(cap, cap);
            let heap = p.content - META - HANDLE_BYTES * HANDLE_SLOTS - bucket_bytes(p.buckets);
            assert_eq!(heap as u64, p.heap);
            assert!(p.heap >= cap.max(MIN_BLOCK));
            assert!(p.heap / MIN_BLOCK <= p.buckets / 2 + 1, "{cap}");
            assert!(p.content >= MIN_CONTENT);
        }
    }

    #[test]
    fn entry_layouts_put_the_slot_on_a_line_and_fit_the_value() {
        let l = EntryLayout::new(3, 3, 8, 8, 0);
        assert_eq!(l.slot, 128);
        assert_eq!(l.value, 176);
        assert_eq!(l.block, 192);
        let l = EntryLayout::new(128, 128, 1, 64, 0);
        assert_eq!(l.slot, 320);
        assert_eq!(l.value, 384);
        assert_eq!(l.block % BLOCK_ALIGN, 0);
        assert!(l.block > l.value as u64);
        assert!(EntryLayout::new(1, 0, 0, 1, 0).block >= MIN_BLOCK);
    }

    /// A formatted store of `capacity` bytes of heap in anonymous memory.
    fn test_heap(capacity: u64) -> (Mapping, Geometry) {
        test_growing_heap(capacity, capacity)
    }

    /// A formatted store of `capacity` bytes of heap that may grow to
    /// `max` bytes, in anonymous memory as long as its heap at its most
    /// (growth within it needs no allocation).
    fn test_growing_heap(capacity: u64, max: u64) -> (Mapping, Geometry) {
        let plan = plan(capacity, max);
        let tables = plan.content - plan.heap as usize;
        let map = Mapping::anonymous(tables + plan.max_heap as usize).unwrap();
        for (i, b) in initial_meta(&plan, 0).chunks(8).enumerate() {
            let word = u64::from_ne_bytes(b.try_into().unwrap());
            map.atomic_u64(8 * i).store(word, Relaxed);
        }
        let geo = Geometry::read(&map, "test", 0, plan.content, &|| None).unwrap();
        heap_of(&map, geo).heap().format();
        (map, geo)
    }

    /// What a view of a test store's heap borrows: its geometry and room.
    struct Views<'m> {
        map: &'m Mapping,
        geo: Geometry,
        room: Room,
    }

    impl Views<'_> {
        /// The heap, as it is now.
        fn heap(&self) -> Heap<'_> {
            Heap::checked(self.map, &self.geo, "test", &self.room).unwrap()
        }
    }

    /// What views of the heap of a store from [`test_heap`] borrow.
    fn heap_of(map: &Mapping, geo: Geometry) -> Views<'_> {
        let room = Room::new(map, &geo, map.len());
        Views { map, geo, room }
    }

    /// Makes the entry `k` (a `u64`-sized value, fingerprint 1), held by
    /// no handle; returns its block.
    fn put_k(heap: &Heap<'_>) -> usize {
        let value = [1u8; 8];
        let at = bare_reserve(heap, &entry_of(&value, 1)).unwrap();
        heap.fill(at, &entry_of(&value, 1)).unwrap();
        at
    }

    /// A block for `new`, with no handle to hold it.
    fn bare_reserve(heap: &Heap<'_>, new: &NewEntry<'_>) -> Result<usize> {
        heap.take_room(Heap::plan_entry(new).1.block, &|_, _| false)
    }

    fn entry_of(value: &[u8], fingerprint: u64) -> NewEntry<'_> {
        NewEntry {
            key: b"k",
            type_name: "T",
            fingerprint,
            value,
            align: 8,
            schema: &[],
        }
    }

    /// A replacement cut short at each of its steps: recovery leaves the
    /// key with exactly one complete entry (the new one once it is LIVE),
    /// and a heap that checks.
    #[test]
    fn recovery_finishes_or_undoes_a_replacement_cut_short() {
        for committed in [false, true] {
            let (map, geo) = test_heap(4096);
            let heap_views = heap_of(&map, geo);
            let heap = heap_views.heap();
            let old_value = [1u8; 8];
            let at = bare_reserve(&heap, &entry_of(&old_value, 1))
                .unwrap();
            let old = heap.fill(at, &entry_of(&old_value, 1)).unwrap();
            let free = heap.space().unwrap().free;
            // The steps of `replace` up to the switch (or just before it).
            let new_value = [2u8; 16];
            let new = entry_of(&new_value, 2);
            let at = bare_reserve(&heap, &new).unwrap();
            heap.write_entry(at, &new);
            let record = u64::from(heap.index_of(at)) | u64::from(heap.index_of(old.at)) << 32;
            heap.set_u64(heap.meta(M_REPLACING), record);
            if committed {
                heap.set_u32(at + B_STATE, LIVE);
            }
            assert!(heap.check().is_err(), "a replacement in progress checks");
            heap.recover().unwrap();
            heap.check().unwrap();
            let (_, found) = heap.find(b"k").unwrap().unwrap();
            assert_eq!(heap.entries(), 1);
            if committed {
                assert_eq!(found.at, at);
                assert_eq!(found.fingerprint, 2);
                // No handle held the old entry: it is freed.
                assert_eq!(heap.space().unwrap().free, free, "the old block leaked");
            } else {
                assert_eq!(found.at, old.at);
                assert_eq!(found.fingerprint, 1);
                assert_eq!(heap.space().unwrap().free, free, "the new block leaked");
            }
            heap.check().unwrap();
        }
    }

    /// A damaged record names no replacement: recovery clears it and
    /// changes nothing else.
    #[test]
    fn recovery_ignores_a_damaged_replacement_record() {
        let (map, geo) = test_heap(4096);
        let heap_views = heap_of(&map, geo);
        let heap = heap_views.heap();
        let at = put_k(&heap);
        for record in [
            1,
            u64::MAX,
            u64::from(heap.index_of(at)) * 0x1_0000_0001,
            3 << 32 | 1,
        ] {
            heap.set_u64(heap.meta(M_REPLACING), record);
            heap.recover().unwrap();
            heap.check().unwrap();
            assert_eq!(heap.find(b"k").unwrap().unwrap().1.at, at);
        }
    }

    #[test]
    fn a_format_cut_short_is_formatted_again_and_damage_is_refused() {
        let (map, geo) = test_heap(4096);
        let heap_views = heap_of(&map, geo);
        let heap = heap_views.heap();
        // A creator killed in `format` after it wrote the first block's
        // size (what a kill storm under emulation found).
        heap.set_u32(heap.meta(M_FORMAT), FORMATTING);
        heap.set_u64(heap.abs(0) + B_SIZE, 4096);
        heap.recover().unwrap();
        assert!(heap.formatted());
        heap.check().unwrap();

        // Zero over a heap in use is damage: refused, nothing erased.
        let at = put_k(&heap);
        heap.set_u32(heap.meta(M_FORMAT), UNFORMATTED);
        assert!(matches!(heap.recover(), Err(Error::Corrupt { .. })));
        heap.set_u32(heap.meta(M_FORMAT), FORMATTED);
        assert_eq!(heap.find(b"k").unwrap().unwrap().1.at, at);
    }

    /// Listing in pieces of a few blocks while entries around the place
    /// where each piece stopped are removed (free blocks merging over it,
    /// the last entry listed among them) and created (free blocks split):
    /// every entry present throughout is listed exactly once, no key twice.
    #[test]
    fn a_listing_in_pieces_survives_removals_and_merges_between_pieces() {
        let (map, geo) = test_heap(1 << 20);
        let heap_views = heap_of(&map, geo);
        let heap = heap_views.heap();
        let value = [7u8; 512];
        // Entries of several sizes, so that blocks freed and merged where a
        // piece stopped are split again elsewhere, with entries' bytes
        // over the headers that were there.
        let put = |key: &str, len: usize| {
            let new = NewEntry {
                key: key.as_bytes(),
                ..entry_of(&value[..len], 1)
            };
            let at = bare_reserve(&heap, &new).unwrap();
            heap.fill(at, &new).unwrap();
        };
        let take = |key: &str| {
            if let Some((i, e)) = heap.find(key.as_bytes()).unwrap() {
                heap.remove(i, &e).unwrap();
            }
        };
        // Stayers and churners interleaved in the heap.
        for i in 0..300 {
            put(&format!("stay/{i}"), 8);
            put(&format!("churn/{i}/0"), 8);
            put(&format!("churn/{i}/1"), 8);
        }
        for seed in 0..20u64 {
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut made = 0u64;
            let listed = in_pieces(|listed, _| {
                // Remove the churners last listed (merging their blocks
                // with free neighbours), and some at random; make new ones.
                for e in listed.iter().rev().take(3) {
                    let key = String::from_utf8(e.key.clone()).unwrap();
                    if key.starts_with("churn/") && next() % 2 == 0 {
                        take(&key);
                    }
                }
                for _ in 0..4 {
                    let i = next() % 300;
                    match next() % 3 {
                        0 => take(&format!("churn/{i}/0")),
                        1 => take(&format!("churn/{i}/1")),
                        _ => {
                            made += 1;
                            let len = [8, 40, 72, 200, 400][(next() % 5) as usize];
                            put(&format!("churn/new/{seed}/{made}"), len);
                        }
                    }
                }
                heap.check().unwrap();
                heap.piece(listed, 1 + (next() % 5) as usize, None)
            })
            .unwrap();
            let keys: Vec<String> = listed
                .iter()
                .map(|e| String::from_utf8(e.key.clone()).unwrap())
                .collect();
            let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
            assert_eq!(unique.len(), keys.len(), "a key listed twice");
            for i in 0..300 {
                let stay = format!("stay/{i}");
                assert!(unique.contains(&stay), "seed {seed}: {stay} missed");
            }
            for made in 1..=made {
                take(&format!("churn/new/{seed}/{made}"));
            }
            heap.check().unwrap();
        }
    }

    /// The key hash is part of the store format, shared by processes of
    /// any architecture: these values must never change without a new
    /// format word.
    #[test]
    fn the_key_hash_is_the_same_everywhere() {
        assert_eq!(hash(b"k"), HASH_K);
        assert_eq!(hash(b"key/99999"), HASH_KEY_99999);
        assert_eq!(hash(b"a-key-of-exactly-16b"), HASH_20);
        assert_ne!(hash(b"key/1"), hash(b"key/2"));
        assert_ne!(hash(b"ab"), hash(b"ab\0"));
    }

    /// A key's last 1 to 7 bytes read without a copy are the bytes
    /// zero-padded and read little-endian, whatever the bytes.
    #[test]
    fn a_key_tail_reads_as_its_bytes_zero_padded() {
        let bytes = [0x01, 0xff, 0x80, 0x7f, 0x00, 0x5a, 0xa5];
        for n in 1..8 {
            for start in 0..bytes.len() {
                let rest: Vec<u8> = (0..n).map(|i| bytes[(start + i) % bytes.len()]).collect();
                let mut w = [0u8; 8];
                w[..n].copy_from_slice(&rest);
                assert_eq!(tail_le(&rest), u64::from_le_bytes(w), "{rest:x?}");
            }
        }
    }

    /// A probe finds a key only by its whole bytes and length: a key that
    /// is a prefix of a stored one, or has it as a prefix, is a miss.
    #[test]
    fn a_probe_tells_keys_that_share_a_prefix_apart() {
        let (map, geo) = test_heap(1 << 16);
        let heap_views = heap_of(&map, geo);
        let heap = heap_views.heap();
        let keys = ["a", "ab", "abc", "abcdefg", "abcdefgh", "abcdefghi", "abcdefgh/abcdefgh"];
        let value = [1u8; 8];
        for key in keys.iter().step_by(2) {
            let new = NewEntry {
                key: key.as_bytes(),
                ..entry_of(&value, 1)
            };
            let at = bare_reserve(&heap, &new).unwrap();
            heap.fill(at, &new).unwrap();
        }
        for (n, key) in keys.iter().enumerate() {
            let found = matches!(heap.probe(key.as_bytes()), Probe::Found { .. });
            assert_eq!(found, n % 2 == 0, "{key}");
        }
    }

    /// A bucket's tag decides whether a probe reads the block: a forged
    /// tag makes its key a miss (never another entry), `check` reports it,
    /// and recovery rebuilds the bucket from the entry.
    #[test]
    fn a_forged_bucket_tag_is_a_miss_that_check_reports_and_recovery_repairs() {
        let (map, geo) = test_heap(4096);
        let heap_views = heap_of(&map, geo);
        let heap = heap_views.heap();
        let at = put_k(&heap);
        let (i, _) = heap.lookup(b"k").unwrap().unwrap();
        let t = heap.table().unwrap();
        let word = heap.bucket(t, i);
        assert_eq!(bucket_index(word), heap.index_of(at));
        heap.set_bucket(t, i, word ^ 1 << 40);
        assert!(heap.lookup(b"k").unwrap().is_none());
        assert!(matches!(heap.check(), Err(Error::Corrupt { .. })));
        // A tag with no block is damage too, and an empty bucket to a probe.
        heap.set_bucket(t, i, bucket_word(0, u64::MAX));
        assert!(heap.lookup(b"k").unwrap().is_none());
        assert!(matches!(heap.check(), Err(Error::Corrupt { .. })));
        heap.recover().unwrap();
        heap.check().unwrap();
        assert_eq!(heap.lookup(b"k").unwrap().unwrap().1.at, at);
    }

    /// Entries `k0`.. made in `heap`, each held by `slot`: their blocks
    /// and their places in the slot's hold list.
    fn made_and_held(heap: &Heap<'_>, slot: usize, n: usize) -> (Vec<usize>, HashMap<usize, u32>) {
        let (mut made, mut held) = (Vec::new(), HashMap::new());
        for i in 0..n {
            let at = make_entry(heap, format!("k{i}").as_bytes());
            held.insert(at, heap.hold(at, slot, &|_, _| false).unwrap());
            made.push(at);
        }
        (made, held)
    }

    /// Makes the entry `key` (an 8-byte value) in `heap`, held by no one;
    /// returns its block.
    fn make_entry(heap: &Heap<'_>, key: &[u8]) -> usize {
        let value = [3u8; 8];
        let new = NewEntry {
            key,
            ..entry_of(&value, 1)
        };
        let at = bare_reserve(heap, &new).unwrap();
        heap.fill(at, &new).unwrap().at
    }

    /// One slot holding many entries: its list grows (moving to blocks
    /// twice the size) and lets go in any order, the lists checking at
    /// every step; removed entries are freed with their last hold, and an
    /// emptied list is freed by its own slot's `reclaim`.
    #[test]
    fn a_hold_list_grows_moves_and_lets_go_in_any_order() {
        let (map, geo) = test_heap(1 << 16);
        let heap_views = heap_of(&map, geo);
        let heap = heap_views.heap();
        let free = heap.space().unwrap().free;
        let slot = heap.register().unwrap();
        let (made, mut held) = made_and_held(&heap, slot, 100);
        heap.check().unwrap();
        let list = heap.hold_list(slot).unwrap().unwrap();
        assert_eq!(list.len, 100);
        assert!(heap.size_of(list.at).unwrap() >= 512, "moved to larger blocks");
        for i in (0..100).step_by(3) {
            let (b, e) = heap.find(format!("k{i}").as_bytes()).unwrap().unwrap();
            heap.remove(b, &e).unwrap();
        }
        heap.check().unwrap();
        let mut order = made.clone();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        for at in order {
            let pos = held.remove(&at).unwrap();
            if let Some(moved) = heap.unhold(at, slot, pos).unwrap() {
                *held.get_mut(&moved).unwrap() = pos;
            }
            heap.check().unwrap();
        }
        assert_eq!(heap.hold_list(slot).unwrap().unwrap().len, 0);
        heap.reclaim(&|_, _| false, usize::MAX).unwrap();
        assert!(
            heap.hold_list(slot).unwrap().is_some(),
            "another slot's empty list stays: its process may hold again without the lock"
        );
        heap.reclaim(&|_, _| false, slot).unwrap();
        assert!(heap.hold_list(slot).unwrap().is_none(), "an empty list is freed");
        for i in (0..100).filter(|i| i % 3 != 0) {
            let (b, e) = heap.find(format!("k{i}").as_bytes()).unwrap().unwrap();
            heap.remove(b, &e).unwrap();
        }
        assert_eq!(heap.space().unwrap().free, free);
        heap.unregister(slot, &|_, _| false).unwrap();
        heap.check().unwrap();
    }

    /// A move of a full hold list cut short (the larger block made, the
    /// slot not switched to it): `check` finds a list no slot names, and
    /// recovery frees it and keeps the slot's list; a removed entry that no
    /// slot names (left by a process killed as it let go) is freed too.
    #[test]
    fn recovery_frees_a_hold_list_whose_move_was_cut_short() {
        let (map, geo) = test_heap(1 << 16);
        let heap_views = heap_of(&map, geo);
        let heap = heap_views.heap();
        let slot = heap.register().unwrap();
        let (made, _) = made_and_held(&heap, slot, 22);
        let list = heap.hold_list(slot).unwrap().unwrap();
        assert_eq!((list.len, list.room), (22, 22), "a full first list");
        let free = heap.space().unwrap().free;
        // The first steps of `room_to_hold`'s move.
        let at = heap.take_room(256, &|_, _| false).unwrap();
        heap.set_u32(at + L_OWNER, slot as u32);
        heap.set_u32(at + L_LEN, 22);
        heap.set_u32(at + B_STATE, HOLDS);
        heap.set_u64(heap.meta(M_USED), heap.used() + 256);
        assert!(heap.check().is_err());
        heap.recover().unwrap();
        heap.check().unwrap();
        assert_eq!(heap.space().unwrap().free, free);
        assert_eq!(heap.hold_list(slot).unwrap().unwrap().at, list.at);

        // Entry 5 out of the list (its last entry in its place) and
        // removed, but not freed: as a process killed between letting go
        // and settling leaves it, its pending hold gone with its slot.
        let size = heap.size_of(made[5]).unwrap();
        heap.take_out(&list, made[5], 5).unwrap();
        let (b, e) = heap.find(b"k5").unwrap().unwrap();
        heap.delete_bucket(b).unwrap();
        heap.set_u64(heap.meta(M_ENTRIES), heap.entries() - 1);
        heap.set_u32(e.at + B_STATE, REMOVED);
        assert!(heap.check().is_err(), "a removed entry nobody names");
        heap.recover().unwrap();
        heap.check().unwrap();
        assert_eq!(heap.space().unwrap().free, free + size);
    }

    /// The hold list of a fresh slot holding entry `k0` (made here), and
    /// the entry `k1`, made and held by no one.
    fn slot_with_list(heap: &Heap<'_>) -> (usize, HoldList, usize) {
        let slot = heap.register().unwrap();
        let (made, _) = made_and_held(heap, slot, 1);
        let k1 = make_entry(heap, b"k1");
        assert_ne!(k1, made[0]);
        (slot, heap.hold_list(slot).unwrap().unwrap(), k1)
    }

    fn remove_key(heap: &Heap<'_>, key: &[u8]) {
        let (b, e) = heap.find(key).unwrap().unwrap();
        heap.remove(b, &e).unwrap();
    }

    /// A hold without the lock: the entry named as pending is not freed by
    /// a removal; given up, it is REMOVED, and settling frees it. A hold
    /// that completes puts it in the list.
    #[test]
    fn a_pending_hold_keeps_a_removed_entry_until_it_is_given_up() {
        let (map, geo) = test_heap(1 << 16);
        let heap_views = heap_of(&map, geo);
        let heap = heap_views.heap();
        let (slot, list, k1) = slot_with_list(&heap);
        let free = heap.space().unwrap().free;

        heap.begin_hold(&list, k1);
        remove_key(&heap, b"k1");
        assert_eq!(heap.state(k1), REMOVED, "a pending hold names it");
        assert_eq!(heap.space().unwrap().free, free);
        heap.check().unwrap();
        assert!(heap.abandon(&list, k1), "given up, it is found REMOVED");
        assert_eq!(heap.pending(&list), u64::from(heap.index_of(k1)) | DROPPING);
        heap.check().unwrap();
        heap.settle(k1).unwrap();
        heap.clear_pending(slot);
        assert!(heap.space().unwrap().free > free, "settled: freed");
        heap.check().unwrap();

        // A pending hold of a live entry, given up: nothing to settle.
        let (_, e0) = heap.find(b"k0").unwrap().unwrap();
        heap.begin_hold(&list, e0.at);
        assert!(!heap.abandon(&list, e0.at));
        assert_eq!(heap.pending(&list), 0);

        // One that completes.
        let k2 = make_entry(&heap, b"k2");
        let list = heap.hold_list(slot).unwrap().unwrap();
        heap.begin_hold(&list, k2);
        assert_eq!(heap.finish_hold(&list, k2), 1);
        assert_eq!(heap.pending(&list), 0);
        remove_key(&heap, b"k2");
        assert_eq!(heap.state(k2), REMOVED, "the list names it");
        heap.check().unwrap();
        heap.unhold(k2, slot, 1).unwrap();
        assert_eq!(heap.state(k2), FREE);
        heap.check().unwrap();
    }

    /// Letting go without the lock: a live entry is simply out of the
    /// list; a removed one is named by the DROPPING pending hold until
    /// settled. A dead slot's pending holds, of either kind, are freed
    /// when the slot is forgotten.
    #[test]
    fn letting_go_without_the_lock_and_dead_slots_pending_holds() {
        let (map, geo) = test_heap(1 << 16);
        let heap_views = heap_of(&map, geo);
        let heap = heap_views.heap();
        let (slot, list, k1) = slot_with_list(&heap);
        let (_, e0) = heap.find(b"k0").unwrap().unwrap();
        let k0 = e0.at;

        // k0 let go while live.
        assert_eq!(heap.let_go_quiet(&list, k0, 0).unwrap(), (false, None));
        assert_eq!(heap.pending(&list), 0);
        assert_eq!(heap.hold_list(slot).unwrap().unwrap().len, 0);
        assert!(
            heap.let_go_quiet(&heap.hold_list(slot).unwrap().unwrap(), k0, 0)
                .is_err(),
            "an entry the list does not have"
        );
        assert_eq!(heap.pending(&list), 0);

        // k1 held, removed, let go: REMOVED, named by DROPPING until settled.
        let pos = heap.hold(k1, slot, &|_, _| false).unwrap();
        remove_key(&heap, b"k1");
        let list = heap.hold_list(slot).unwrap().unwrap();
        assert_eq!(heap.let_go_quiet(&list, k1, pos).unwrap(), (true, None));
        assert_eq!(heap.state(k1), REMOVED);
        heap.check().unwrap();
        heap.settle(k1).unwrap();
        heap.clear_pending(slot);
        assert_eq!(heap.state(k1), FREE);
        heap.check().unwrap();

        // A dead slot's pending hold (a hold or a letting go) frees its
        // removed entry when the slot is forgotten.
        for dropping in [0, DROPPING] {
            let k3 = make_entry(&heap, b"k3");
            let list = heap.hold_list(slot).unwrap().unwrap();
            heap.begin_hold(&list, k3);
            remove_key(&heap, b"k3");
            assert_eq!(heap.state(k3), REMOVED);
            heap.set_pending(&list, u64::from(heap.index_of(k3)) | dropping, Relaxed);
            heap.forget(&[slot], &|_, _| false).unwrap();
            assert_eq!(heap.state(k3), FREE, "dropping: {}", dropping != 0);
            heap.check().unwrap();
            let slot2 = heap.register().unwrap();
            assert_eq!(slot2, slot);
            heap.room_to_hold(slot, &|_, _| false).unwrap();
        }
    }

    /// Makes the entry `key` in `heap` as a store does: a larger bucket
    /// table first if it is needed, and the heap grown whenever there is
    /// no room. Returns its block.
    fn put_growing(heap: &Heap<'_>, key: &str, value: &[u8]) -> usize {
        let no = |_: usize, _: usize| false;
        let new = NewEntry {
            key: key.as_bytes(),
            ..entry_of(value, 1)
        };
        loop {
            let r = if heap.needs_rehash().unwrap() {
                heap.rehash(&no).map(|()| None)
            } else {
                bare_reserve(heap, &new).map(Some)
            };
            match r {
                Ok(Some(at)) => return heap.fill(at, &new).unwrap().at,
                Ok(None) => {}
                Err(Error::StoreFull { needed, .. }) => {
                    assert!(heap.grow(needed).unwrap(), "{key}: the heap did not grow")
                }
                Err(e) => panic!("{key}: {e}"),
            }
        }
    }

    /// A heap of 4 KiB takes many times that, in place: entries made before
    /// a growth stay where they were with their values, lookups find every
    /// entry through the tables that replaced the one in place, and the
    /// heap checks; at its most, it is full as a fixed one is.
    #[test]
    fn a_heap_grows_in_place_and_its_buckets_move_to_larger_tables() {
        let (map, geo) = test_growing_heap(4096, 1 << 20);
        let heap_views = heap_of(&map, geo);
        let heap = heap_views.heap();
        assert_eq!(geo.buckets, 64);
        let mut made = Vec::new();
        for i in 0..3000u32 {
            let value = i.to_ne_bytes().repeat(2);
            let at = put_growing(&heap, &format!("key/{i}"), &value);
            made.push(at);
            if i % 500 == 0 {
                heap.check().unwrap();
            }
        }
        heap.check().unwrap();
        assert!(heap.heap_size() > 100 * 4096, "{}", heap.heap_size());
        assert_ne!(heap.u64(heap.meta(M_TABLE)), 0, "the table moved");
        assert!(heap.table().unwrap().count >= 6000);
        for (i, &at) in made.iter().enumerate() {
            let (_, e) = heap.find(format!("key/{i}").as_bytes()).unwrap().unwrap();
            assert_eq!(e.at, at, "entries never move");
            let mut v = [0u8; 8];
            map.copy_out(at + e.layout.value, &mut v);
            assert_eq!(v[..4], (i as u32).to_ne_bytes());
        }
        // A fresh view (another process's) sees the grown heap.
        assert_eq!(heap_of(&map, geo).heap().heap_size(), heap.heap_size());
        // Up to the most, then full.
        let value = [0u8; 8];
        let mut i = 0;
        loop {
            let key = format!("fill/{i}");
            let new = NewEntry {
                key: key.as_bytes(),
                ..entry_of(&value, 1)
            };
            if heap.needs_rehash().unwrap() {
                match heap.rehash(&|_, _| false) {
                    Err(Error::StoreFull { needed, .. }) if heap.grow(needed).unwrap() => continue,
                    Err(Error::StoreFull { .. }) => break,
                    r => r.unwrap(),
                }
            }
            match bare_reserve(&heap, &new) {
                Ok(at) => {
                    heap.fill(at, &new).unwrap();
                }
                Err(Error::StoreFull { needed, .. }) => {
                    if !heap.grow(needed).unwrap() {
                        break;
                    }
                }
                Err(e) => panic!("{e}"),
            }
            i += 1;
        }
        assert_eq!(heap.heap_size(), 1 << 20);
        assert!(!heap.can_grow());
        heap.check().unwrap();
        // A fixed heap never grows.
        let (map, geo) = test_heap(4096);
        let fixed_views = heap_of(&map, geo);
        let fixed = fixed_views.heap();
        assert!(!fixed.can_grow());
        assert!(!fixed.grow(4096).unwrap());
    }

    /// A growth cut short at each of its steps (see `Heap::grow`): before
    /// its commit nothing changed but the object's size; after it, the new
    /// block is found by recovery's rebuild (merged with a free last block
    /// if there was one). Either way the heap checks, and grows again.
    #[test]
    fn recovery_after_a_growth_cut_short_at_each_step() {
        for last_free in [false, true] {
            for step in 1..=3 {
                let (map, geo) = test_growing_heap(4096, 1 << 16);
                let heap_views = heap_of(&map, geo);
                let heap = heap_views.heap();
                if !last_free {
                    // Entries up to the end: the last block is in use.
                    let value = [5u8; 8];
                    let mut i = 0;
                    while bare_reserve(&heap, &entry_of(&value, 1)).is_ok_and(|at| {
                        let key = format!("e{i}");
                        i += 1;
                        let new = NewEntry {
                            key: key.as_bytes(),
                            ..entry_of(&value, 1)
                        };
                        heap.fill(at, &new).is_ok()
                    }) {}
                }
                let before = heap.space().unwrap().free;
                let old = heap.heap_size();
                let new = 2 * old;
                let last = heap.last_block().unwrap().unwrap();
                assert_eq!(heap.state(last.0) == FREE, last_free);
                // 1. The object (all there, in anonymous memory).
                assert!(map.grow_object((geo.heap_at as u64) + new).unwrap());
                if step >= 2 {
                    let region = heap.abs(old);
                    heap.set_u64(region + B_PREV, last.1);
                    heap.set_u32(region + B_STATE, FREE);
                    heap.set_size(region, new - old);
                }
                if step >= 3 {
                    heap.set_u64(heap.meta(M_HEAP), new);
                }
                let after_views = heap_of(&map, geo);
                let after = after_views.heap();
                after.recover().unwrap();
                after.check().unwrap();
                let grown = if step >= 3 { new } else { old };
                assert_eq!(after.heap_size(), grown, "step {step}");
                assert_eq!(after.space().unwrap().free, before + (grown - old));
                assert!(after.grow(64).unwrap());
                after.check().unwrap();
            }
        }
    }

    /// A move of the bucket table cut short: before its commit, the new
    /// TABLE block is named by nothing; after it, the old one. `check`
    /// reports the stray table and recovery frees it, keeping every entry.
    #[test]
    fn recovery_frees_a_bucket_table_left_by_a_move_cut_short() {
        let (map, geo) = test_growing_heap(1 << 16, 1 << 20);
        let heap_views = heap_of(&map, geo);
        let heap = heap_views.heap();
        for i in 0..(geo.buckets / 2) {
            put_growing(&heap, &format!("k{i}"), &[1u8; 8]);
        }
        // Move once, so that the table in use is a block.
        put_growing(&heap, "one-more", &[1u8; 8]);
        heap.check().unwrap();
        assert!(heap.table().unwrap().block.is_some());
        for committed in [false, true] {
            // The steps of `rehash` up to its commit (or past it, without
            // freeing the old table).
            let t = heap.table().unwrap();
            let bytes = (B_KEY as u64 + t.count * 8).div_ceil(64) * 64;
            let at = loop {
                match heap.take_room(bytes, &|_, _| false) {
                    Ok(at) => break at,
                    Err(Error::StoreFull { needed, .. }) => assert!(heap.grow(needed).unwrap()),
                    Err(e) => panic!("{e}"),
                }
            };
            let free = heap.space().unwrap().free + heap.size_of(at).unwrap();
            heap.set_u32(at + B_STATE, TABLE);
            heap.set_u64(heap.meta(M_USED), heap.used() + heap.size_of(at).unwrap());
            let word = u64::from(heap.index_of(at)) | u64::from(t.count.trailing_zeros()) << 32;
            if committed {
                for b in 0..t.count {
                    heap.set_u64(at + B_KEY + 8 * b as usize, 0);
                }
                heap.set_u64(heap.meta(M_TABLE), word);
            }
            assert!(matches!(heap.check(), Err(Error::Corrupt { .. })));
            heap.recover().unwrap();
            heap.check().unwrap();
            assert_eq!(heap.table().unwrap().block, Some(if committed { at } else { t.block.unwrap() }));
            for i in 0..(geo.buckets / 2) {
                assert!(heap.contains(format!("k{i}").as_bytes()).unwrap());
            }
            if !committed {
                assert_eq!(heap.space().unwrap().free, free, "the new table leaked");
            }
        }
    }

    /// Forged sizes and tables: a heap larger than the object, a table
    /// outside the heap, of another state, or with more buckets than its
    /// block holds, a most past [`MAX_HEAP`]: [`Error::Corrupt`] from the
    /// checked paths, a miss or a cut view from the lock-free ones, never
    /// a read outside the mapping.
    #[test]
    fn forged_heap_sizes_and_tables_are_corrupt_never_a_crash() {
        let (map, geo) = test_growing_heap(4096, 1 << 16);
        let heap_views = heap_of(&map, geo);
        let heap = heap_views.heap();
        let at = put_k(&heap);
        let room = Room::new(&map, &geo, geo.heap_at + 4096);
        // A heap past the object (the mapping reaches 64 KiB of heap; the
        // object, in this test, whatever the mapping holds).
        for forged in [map.len() as u64, u64::MAX, (1 << 16) + 64] {
            heap.set_u64(heap.meta(M_HEAP), forged);
            assert!(matches!(
                Heap::checked(&map, &geo, "test", &room),
                Err(Error::Corrupt { .. })
            ));
            let cut = Heap::bounded(&map, &geo, "test", &room);
            assert!(cut.heap_size() <= (map.len() - geo.heap_at) as u64);
            let _ = cut.probe(b"k");
            let _ = cut.check();
        }
        heap.set_u64(heap.meta(M_HEAP), 4096);
        // Tables that are not tables.
        let stray = bare_reserve(&heap, &entry_of(&[0u8; 8], 1)).unwrap();
        let index = |at: usize| u64::from(heap.index_of(at));
        heap.set_u32(stray + B_STATE, TABLE);
        for word in [
            u64::from(u32::MAX) | 10 << 32,
            index(at) | 4 << 32,
            index(stray) | 10 << 32,
            index(stray) | 63 << 32,
            index(stray) | 1 << 32,
        ] {
            heap.set_u64(heap.meta(M_TABLE), word);
            let view_views = heap_of(&map, geo);
            let view = view_views.heap();
            assert!(matches!(view.probe(b"k"), Probe::Damaged(_)), "{word:#x}");
            assert!(matches!(view.find(b"k"), Err(Error::Corrupt { .. })), "{word:#x}");
            assert!(matches!(view.check(), Err(Error::Corrupt { .. })), "{word:#x}");
            assert!(matches!(view.recover(), Err(Error::Corrupt { .. })), "{word:#x}");
            assert!(view.table_bytes().is_err());
        }
        heap.set_u64(heap.meta(M_TABLE), 0);
        heap.set_u32(stray + B_STATE, RESERVED);
        heap.recover().unwrap();
        heap.check().unwrap();
        // A most past the format's limit, or below the heap.
        let size = geo.heap_at - geo.content + 4096;
        for forged in [u64::MAX, MAX_HEAP + 64, 64, 4096 + 1] {
            heap.set_u64(heap.meta(M_MAX_HEAP), forged);
            assert!(matches!(
                Geometry::read(&map, "test", 0, size, &|| None),
                Err(Error::Corrupt { .. })
            ));
            // Views already open stay inside their mapping.
            assert!(heap.max_heap() <= (map.len() - geo.heap_at) as u64);
        }
    }

    #[test]
    fn size_classes_grow_with_size() {
        assert_eq!(Heap::class_of(64), 0);
        assert_eq!(Heap::class_of(128), 1);
        assert_eq!(Heap::class_of(191), 1);
        assert_eq!(Heap::class_of(256), 2);
        assert_eq!(Heap::class_of(u64::MAX), CLASSES - 1);
    }
}
