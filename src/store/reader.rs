//! [`StoreReader`]: a store opened for reading only.
//!
//! A read-only mapping can take no lock and write no word, so the
//! directory is read as snapshots are: a read that a change of the
//! directory overlapped (its generation moved, or was odd) is thrown away
//! and made again. Every offset and length read from the directory is
//! checked by the heap's accessors before use, whatever a peer wrote.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::heap::{in_pieces, EntryLayout, Geometry, Heap, Probe, Room, Shape};
use super::{check_key, check_type, entry_info, map_store, EntryInfo};
use crate::error::{Error, Result};
#[cfg(feature = "stream")]
use crate::lock::notify::Changes;
use crate::lock::notify::{Changed, Waiting};
use crate::lock::seqlock::Versions;
use crate::lock::slot::Slot;
use crate::lock::RawLock;
use crate::reader::{Membership, SharedReader};
use crate::segment::header::{LOCK_OFFSET, VERSIONS_OFFSET};
use crate::segment::location::IntoLocation;
use crate::segment::options::{OpenMode, SharedOptions};
use crate::sys::mapping::{KeepsMapped, Mapping};
use crate::types::shareable::Shareable;

/// How long a read of the directory waits for a moment in which no change
/// is being made, at most, before it fails.
const PATIENCE: Duration = Duration::from_secs(1);

/// A [`Store`](crate::Store) opened for reading only: for processes that
/// must not, or cannot, write it, such as readers of a store with mode
/// `0o640` opened by the group. It is to `Store` what
/// [`SharedReader`] is to [`Shared`](crate::Shared).
///
/// The store is opened for reading only (`O_RDONLY`, or `SHM_RDONLY` for
/// System V) and mapped `PROT_READ`, so read permission is all it needs and
/// nothing this process does can change the store. It takes none of the
/// store's handle slots (any number of readers may be open), and takes no
/// lock: lookups and listings read the directory as snapshots read a
/// value, again whenever a change overlapped them, so writers never wait
/// for a reader. The same checks as [`Store::open`](crate::Store::open)
/// apply (owner, size, magic, version).
///
/// Entries come as [`SharedReader`]s: lock-free
/// [`snapshot`](SharedReader::snapshot)s,
/// [`wait_for_change`](SharedReader::wait_for_change) and
/// [`changed`](SharedReader::changed).
///
/// ```
/// use shmstore::{SharedOptions, StoreReader};
///
/// # let name = format!("doc-store-reader-{}", std::process::id());
/// let store = SharedOptions::new()
///     .mode(0o640)              // the group may read it
///     .wake_read_only(true)     // writes wake waiting readers
///     .create_store(&name, 64 * 1024)?;
/// let jobs = store.insert::<u64>("jobs", 1)?;
///
/// let reader = StoreReader::open(&name)?;
/// let seen = reader.generation();
/// let jobs_seen = reader.get::<u64>("jobs")?;
/// assert_eq!(jobs_seen.snapshot().unwrap(), 1);
/// *jobs.lock().unwrap() = 2;
/// assert_eq!(jobs_seen.snapshot().unwrap(), 2);
///
/// store.insert::<u32>("workers", 4)?;
/// assert!(reader.wait_for_change(seen, std::time::Duration::from_secs(1))?.is_some());
/// assert!(reader.contains("workers")?);
/// assert_eq!(reader.entries()?.len(), 2);
/// # drop((jobs, store));
/// # shmstore::unlink(&name)?;
/// # Ok::<(), shmstore::Error>(())
/// ```
///
/// # Concurrent changes
///
/// A lookup ([`get`](StoreReader::get), [`contains`](StoreReader::contains))
/// answers for one moment of the directory, as a `Store`'s would. A read
/// waits while a change is being made (changes are short); if the
/// directory keeps changing for a second without a quiet moment, or its
/// lock's holder died in the middle of a change (a handle that may write
/// repairs that when it next takes the lock), it fails with [`Error::Io`]
/// of kind [`TimedOut`](std::io::ErrorKind::TimedOut). A listing
/// ([`entries`](StoreReader::entries)) is read in pieces, each needing a
/// quiet moment of well under a millisecond, whatever the store's size.
///
/// # Removed entries
///
/// A reader cannot keep an entry from being freed (that takes a mark in
/// the store, which a read-only mapping cannot write): once the entry is
/// removed, its bytes may be freed and given to another entry. The
/// [`SharedReader`] of an entry keeps the store mapped, so it stays safe
/// to use, and it notices the removal: each snapshot checks the store's
/// directory generation (one load), and when the directory has changed,
/// looks the key up again. Once the entry is found removed (or replaced
/// by [`get_or_migrate`](crate::Store::get_or_migrate)),
/// [`snapshot`](SharedReader::snapshot) returns `Err(PoisonError)` holding
/// whatever the bytes hold then (not the entry's value),
/// [`is_poisoned`](SharedReader::is_poisoned) is `true`, and
/// [`check`](SharedReader::check) and
/// [`wait_for_change`](SharedReader::wait_for_change) return
/// [`Error::NotFound`]. A snapshot that returns `Ok` was copied while the
/// entry was in the store. The one case it cannot tell: the key removed
/// and created again, with the same type, in the same place; the handle
/// then reads the new entry. Get the key again to follow a key rather than
/// an entry.
#[derive(Clone)]
pub struct StoreReader {
    inner: Arc<Inner>,
}

/// What a store reader and the readers of its entries share.
struct Inner {
    map: Mapping,
    geo: Geometry,
    /// How much heap the object is known to hold.
    room: Room,
    label: String,
    /// Whether the entries it gives report poison
    /// (`SharedOptions::poisoning`).
    poisoning: bool,
}

impl StoreReader {
    /// Opens the existing store at `at` for reading only. Needs only read
    /// permission on it.
    pub fn open(at: impl IntoLocation) -> Result<StoreReader> {
        SharedOptions::new().open_store_read_only(at)
    }

    /// The entry `key` as a read-only handle on a `T`.
    ///
    /// Fails with [`Error::NotFound`] if there is no such key, and with
    /// [`Error::LayoutMismatch`] (naming both types) if the entry holds
    /// another type, or another layout of `T`, as
    /// [`Store::get`](crate::Store::get) does. See
    /// [Removed entries](StoreReader#removed-entries) for what the handle
    /// does once the entry is removed.
    pub fn get<T: Shareable>(&self, key: &str) -> Result<SharedReader<T>> {
        let key = check_key(key)?;
        let label = self.entry_label(key);
        let (found, generation) = self.inner.quiet(|heap| find(heap, key.as_bytes()))?;
        let Some(e) = found else {
            return Err(Error::NotFound { name: label });
        };
        check_type::<T>(&self.inner.heap(), &e, || label.clone())?;
        // Inside the entry's block, aligned: `Heap::entry` checked the
        // layout, `check_type` the value's alignment.
        let lock = e.at + e.layout.slot;
        let slot = Slot::<T>::new(
            Box::new(Keeps(Arc::clone(&self.inner))),
            lock,
            lock + crate::lock::LOCK_SIZE,
            e.at + e.layout.value,
        );
        let entry = Entry {
            store: Arc::clone(&self.inner),
            key: key.as_bytes().to_vec(),
            at: e.at,
            layout: e.layout,
            fingerprint: e.fingerprint,
            confirmed: AtomicU64::new(generation),
            gone: AtomicBool::new(false),
        };
        Ok(SharedReader::from_entry(
            slot,
            label,
            self.inner.poisoning,
            Box::new(entry),
        ))
    }

    /// Whether the key is in the store.
    pub fn contains(&self, key: &str) -> Result<bool> {
        let key = check_key(key)?;
        let (found, _) = self.inner.quiet(|heap| has(heap, key.as_bytes()))?;
        Ok(found)
    }

    /// Every entry, in no particular order, as [`Store::entries`](crate::Store::entries)
    /// lists them, in pieces, with the same promises: an entry present for
    /// the whole call is listed exactly once, one created or removed during
    /// the call may or may not be, no key twice. Each piece needs a short
    /// quiet moment of the directory (see
    /// [Concurrent changes](StoreReader#concurrent-changes)), not the
    /// whole listing.
    pub fn entries(&self) -> Result<Vec<EntryInfo>> {
        let list = in_pieces(|listed, bounded| {
            let (piece, _) = self.inner.quiet(|heap| heap.list_piece(listed, bounded))?;
            Ok::<_, Error>(piece)
        })?;
        let map = &self.inner.map;
        let infos = list.into_iter().map(|e| entry_info(map, e)).collect();
        self.inner.intact(Ok(infos))
    }

    /// How many entries there are.
    pub fn len(&self) -> Result<usize> {
        let (n, _) = self
            .inner
            .quiet(|heap| Ok(if heap.formatted() { heap.entries() } else { 0 }))?;
        Ok(n as usize)
    }

    /// Whether the store has no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The bytes entries can take in all now (see
    /// [`Store::capacity`](crate::Store::capacity)): more once the store
    /// grew.
    pub fn capacity(&self) -> usize {
        self.inner.heap().heap_size() as usize
    }

    /// The bytes entries may take once the store has grown as far as it
    /// may (see [`Store::max_capacity`](crate::Store::max_capacity)).
    pub fn max_capacity(&self) -> usize {
        self.inner.heap().max_heap() as usize
    }

    /// How many times entries have been created or removed (see
    /// [`Store::generation`](crate::Store::generation)).
    pub fn generation(&self) -> u64 {
        self.inner.versions().generation()
    }

    /// Sleeps until an entry is created or removed after generation `seen`;
    /// returns the new generation, or `Ok(None)` after `timeout` (see
    /// [`Store::wait_for_change`](crate::Store::wait_for_change)).
    ///
    /// As on [`SharedReader::wait_for_change`], this works only on stores
    /// created with [`SharedOptions::wake_read_only`], whose writers wake
    /// on every change; on others it fails at once with
    /// [`Error::NotWatchable`]. Also `Err` ([`Error::Truncated`]) once the
    /// store was shrunk under this handle.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> Result<Option<u64>> {
        self.watchable()?;
        let changed = self.inner.versions().wait(seen, timeout, None);
        self.inner.intact(Ok(changed))
    }

    /// Waits, as a future, until an entry is created or removed after
    /// generation `seen`: the async form of
    /// [`wait_for_change`](StoreReader::wait_for_change), with the same
    /// errors, served as [`Shared::changed`](crate::Shared::changed) is.
    // Not an `async fn`: the signature promises `Send`, as `Store`'s does.
    #[allow(clippy::manual_async_fn)]
    pub fn changed(&self, seen: u64) -> impl Future<Output = Result<u64>> + Send + '_ {
        async move {
            self.watchable()?;
            Changed::new(self.waiting(seen), &self.inner.label, move || {
                self.inner.intact(Ok(()))
            })
            .await
        }
    }

    /// [`changed`](StoreReader::changed) again and again, as a
    /// [`futures_core::Stream`] (feature `stream`); see
    /// [`Store::changes`](crate::Store::changes). On a store whose writers
    /// do not wake read-only handles, its one item is
    /// [`Error::NotWatchable`].
    #[cfg(feature = "stream")]
    pub fn changes(&self, seen: u64) -> impl futures_core::Stream<Item = Result<u64>> + Send + '_ {
        let wakes = self.wakes();
        Changes::new(self.waiting(seen), &self.inner.label, move || {
            self.watchable()?;
            self.inner.intact(Ok(()))
        })
        .refusing(!wakes)
    }

    /// A wait for the directory's generation to differ from `seen`, by a
    /// handle that cannot mark the lock word.
    fn waiting(&self, seen: u64) -> Waiting<'_> {
        Waiting::new(self.inner.versions(), None, self.inner.map.cut_flag(), seen)
    }

    /// Whether the store's writers wake read-only handles, so that
    /// [`wait_for_change`](StoreReader::wait_for_change) works.
    pub fn wakes(&self) -> bool {
        self.inner.versions().wakes_all()
    }

    fn watchable(&self) -> Result<()> {
        if self.wakes() {
            Ok(())
        } else {
            Err(Error::NotWatchable {
                name: self.inner.label.clone(),
            })
        }
    }

    /// Checks the store's directory and heap through and through, as
    /// [`Store::check`](crate::Store::check) does, in one quiet moment of
    /// the directory: `Ok` means consistent, [`Error::Corrupt`] says what
    /// is wrong. Only reads.
    pub fn check(&self) -> Result<()> {
        self.inner
            .quiet(|heap| {
                if heap.formatted() {
                    heap.check()
                } else {
                    Ok(())
                }
            })
            .map(|((), _)| ())
    }

    /// The store's name as errors give it.
    pub fn name(&self) -> &str {
        &self.inner.label
    }

    fn entry_label(&self, key: &str) -> String {
        format!("{}/{key}", self.inner.label)
    }
}

impl fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreReader")
            .field("name", &self.inner.label)
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

/// The entry of `key`, if the directory has it (none in a store never
/// formatted).
fn find(heap: &Heap<'_>, key: &[u8]) -> Result<Option<Shape>> {
    if !heap.formatted() {
        return Ok(None);
    }
    Ok(heap.lookup(key)?.map(|(_, e)| e))
}

/// Whether the directory has `key` (not a store never formatted).
pub(super) fn has(heap: &Heap<'_>, key: &[u8]) -> Result<bool> {
    Ok(heap.formatted() && heap.contains(key)?)
}

/// What a probe for `key` finds in the directory: [`has`] without building
/// an error (a store never formatted has no key).
#[inline]
pub(super) fn probe(heap: &Heap<'_>, key: &[u8]) -> Probe {
    if heap.formatted() {
        heap.probe(key)
    } else {
        Probe::Missing
    }
}

/// One read of the directory without its lock, as a snapshot reads a
/// value: `read` runs on the heap as `view` gives it at that moment (its
/// size read after the generation, so that a quiet read sees the heap of
/// its moment, grown or not) if no change is in progress (`versions`, the
/// directory's, says so), and what it found counts, with the generation of
/// that moment, only if no change began meanwhile; `None` if the read must
/// be made again. What `StoreReader` and [`Store::contains`](crate::Store::contains)
/// look up with.
///
/// `read` only loads, through the heap's checked accessors (every offset
/// checked against the heap before use, every probe and walk bounded), so
/// a read that a change tore, or that met bytes a peer forged, gives a
/// value or an error, never a panic or a load outside the mapping; a torn
/// one is thrown away here.
#[inline]
pub(super) fn read_quiet<'h, 'a: 'h, R>(
    view: impl FnOnce() -> &'h Heap<'a>,
    versions: &Versions,
    read: impl FnOnce(&Heap<'a>) -> R,
) -> Option<(R, u64)> {
    let mut got = None;
    let generation = versions.copy_quiet(|| got = Some(read(view())))?;
    got.map(|got| (got, generation))
}

impl Inner {
    fn heap(&self) -> Heap<'_> {
        Heap::bounded(&self.map, &self.geo, &self.label, &self.room)
    }

    fn versions(&self) -> &Versions {
        self.map.versions(VERSIONS_OFFSET)
    }

    fn raw(&self) -> &RawLock {
        self.map.raw_lock(LOCK_OFFSET)
    }

    /// `r`, unless the store was found shrunk under this process.
    fn intact<R>(&self, r: Result<R>) -> Result<R> {
        super::intact(&self.map, &self.label, r)
    }

    /// What `read` finds in the directory in a moment no change overlapped
    /// (it is made again until then), with the directory's generation of
    /// that moment. `read` only loads, through the heap's checked
    /// accessors, so a read that a change tore is harmless before it is
    /// thrown away; an error from a quiet read is the directory's own.
    fn quiet<R>(&self, mut read: impl FnMut(&Heap<'_>) -> Result<R>) -> Result<(R, u64)> {
        let versions = self.versions();
        let mut tries = 0u32;
        let mut since: Option<Instant> = None;
        loop {
            // A heap that says it is larger than the object is damage: an
            // error, as from a `Store`, not a read cut to the object.
            let mut got = None;
            let quiet = versions.copy_quiet(|| {
                got = Some(
                    Heap::checked(&self.map, &self.geo, &self.label, &self.room)
                        .and_then(|heap| read(&heap)),
                )
            });
            if let (Some(generation), Some(got)) = (quiet, got) {
                return self.intact(got).map(|r| (r, generation));
            }
            // A change is being made, or overlapped the read: changes are
            // short, so spin, then yield, then nap.
            tries += 1;
            if tries < 64 {
                std::hint::spin_loop();
                continue;
            }
            if tries < 256 {
                std::thread::yield_now();
                continue;
            }
            let first = *since.get_or_insert_with(Instant::now);
            if self.left_mid_change() || first.elapsed() >= PATIENCE {
                self.intact(Ok(()))?;
                return Err(Error::Io {
                    op: "reading the directory of",
                    name: self.label.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the directory did not stop changing, or a process died changing it \
                         (a handle that may write repairs it)",
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Inner {
    /// Whether the directory is in the middle of a change that nobody
    /// alive is making: its lock's holder died, or (damage) nobody holds
    /// it. The counter is loaded again after the lock word, past an
    /// acquire fence (`seq_after_reads`; the word is loaded relaxed, and
    /// weakly ordered CPUs could otherwise load the counter first): a writer
    /// that committed and unlocked in between was not interrupted.
    fn left_mid_change(&self) -> bool {
        let versions = self.versions();
        let lock = self.raw();
        let seq = versions.seq_now();
        seq & 1 == 1
            && (lock.holder_died() || !lock.is_locked())
            && versions.seq_after_reads() == seq
    }
}

/// Keeps a store reader's mapping alive for the handle of an entry.
struct Keeps(Arc<Inner>);

impl KeepsMapped for Keeps {
    fn map(&self) -> &Mapping {
        &self.0.map
    }
}

/// How the read-only handle of an entry tells that the entry is still in
/// the store: the directory generation at which it was last found in
/// place, and a look-up of its key whenever the directory has changed
/// since (see [Removed entries](StoreReader#removed-entries)).
struct Entry {
    store: Arc<Inner>,
    key: Vec<u8>,
    /// The block, layout and type it was found with.
    at: usize,
    layout: EntryLayout,
    fingerprint: u64,
    /// The directory generation at which it was last found in place.
    confirmed: AtomicU64,
    /// Set once it was found removed.
    gone: AtomicBool,
}

impl Entry {
    /// Whether the entry is still in the store: `Ok(true)` without a
    /// look-up if the directory has not changed since it was last found;
    /// `Ok(false)` once it was found removed (or its key found naming
    /// another entry).
    fn present(&self) -> Result<bool> {
        if self.gone.load(Relaxed) {
            return Ok(false);
        }
        let seq = self.store.versions().seq_after_reads();
        if seq == self.confirmed.load(Relaxed).wrapping_mul(2) {
            return Ok(true);
        }
        let (found, generation) = self.store.quiet(|heap| find(heap, &self.key))?;
        let here = found.is_some_and(|e| {
            e.at == self.at && e.layout == self.layout && e.fingerprint == self.fingerprint
        });
        if here {
            self.confirmed.store(generation, Relaxed);
        } else {
            self.gone.store(true, Relaxed);
        }
        Ok(here)
    }
}

impl Membership for Entry {
    fn confirm(&self) -> crate::reader::Presence {
        use crate::reader::Presence;
        let before = self.confirmed.load(Relaxed);
        match self.present() {
            Ok(true) if self.confirmed.load(Relaxed) == before => Presence::Unchanged,
            Ok(true) => Presence::Confirmed,
            Ok(false) | Err(_) => Presence::Gone,
        }
    }

    fn is_gone(&self) -> bool {
        self.gone.load(Relaxed)
    }

    fn check(&self) -> Result<()> {
        if self.present()? {
            Ok(())
        } else {
            Err(Error::NotFound {
                name: format!(
                    "{}/{}",
                    self.store.label,
                    String::from_utf8_lossy(&self.key)
                ),
            })
        }
    }
}

/// Opening with options: the [`SharedOptions`] builder's final calls for
/// this handle.
impl SharedOptions {
    /// Opens an existing [`Store`](crate::Store) for reading only, as a
    /// [`StoreReader`](crate::StoreReader) (see
    /// [`StoreReader::open`](crate::StoreReader::open)); honours
    /// [`allow_foreign_owner`](SharedOptions::allow_foreign_owner) and
    /// [`poisoning`](SharedOptions::poisoning) (for the entries it gives).
    pub fn open_store_read_only(&self, at: impl IntoLocation) -> Result<crate::StoreReader> {
        let (seg, geo, room, label) = map_store(self, at, OpenMode::ReadOnly, 0)?;
        Ok(StoreReader {
            inner: Arc::new(Inner {
                map: seg.map,
                geo,
                room,
                label,
                poisoning: self.poisoning,
            }),
        })
    }
}
