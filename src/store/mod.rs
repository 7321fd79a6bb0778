//! [`Store`]: many named, typed entries in one segment.

mod heap;
mod migrate;
mod reader;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::lock::guard::Held;
#[cfg(feature = "stream")]
use crate::lock::notify::Changes;
use crate::lock::notify::{Changed, Waiting};
use crate::lock::seqlock::Versions;
use crate::lock::slot::{RawSlot, Slot};
use crate::lock::RawLock;
use crate::segment::header::{Spec, KIND_STORE, LOCK_OFFSET, VERSIONS_OFFSET};
use crate::segment::location::IntoLocation;
use crate::segment::options::{OpenMode, SharedOptions};
use crate::segment::Remover;
use crate::shared::Shared;
use crate::sys::mapping::{KeepsMapped, Mapping};
use crate::types::shareable::{Fingerprint, Shareable};
use std::future::Future;

pub(crate) use heap::EntryMeta;
pub use heap::MAX_KEY_LEN;
use heap::{Geometry, Heap, NewEntry, Probe, Room, Shape};
pub use reader::StoreReader;

/// How long [`Store::entries`] lets the directory lock go between pieces,
/// at least.
const PIECE_PAUSE: Duration = Duration::from_micros(20);

/// How many times [`Store::contains`] and [`Store::get`] read the directory
/// without its lock before they take the lock: changes are short, so a read
/// overlapped by this many is rare, and one left unfinished by a process
/// that died needs the lock to be repaired.
const QUIET_TRIES: u32 = 8;

/// The type name a store's header records.
const STORE_TYPE: &str = "shmstore::Store";

/// What a store segment's header says it holds.
const fn spec(content: usize) -> Spec {
    Spec {
        kind: KIND_STORE,
        type_name: STORE_TYPE,
        fingerprint: Fingerprint::new()
            .str(STORE_TYPE)
            .u64(heap::FORMATTED as u64)
            .finish(),
        size: content,
        align: heap::BLOCK_ALIGN as usize,
        min_size: heap::MIN_CONTENT,
        max_size: usize::MAX / 2,
        schema_len: 0,
        schema: None,
    }
}

/// Many named, typed entries in one shared segment, each with its own
/// crash-robust lock.
///
/// An entry is a [`Shared<T>`]: the same handle as a single-value segment
/// has, with [`lock`](Shared::lock), poisoning,
/// [`snapshot`](Shared::snapshot) and
/// [`wait_for_change`](Shared::wait_for_change). Entries never contend with
/// each other; the store's directory (keys to entries) has a lock of its
/// own, taken only to find, create and remove entries.
///
/// ```
/// use shmstore::{Shareable, Store};
///
/// #[derive(Shareable, Clone, Copy, Default)]
/// #[repr(C)]
/// struct Stats { requests: u64, errors: u64 }
///
/// # let name = format!("doc-store-{}", std::process::id());
/// let store = Store::open_or_create(&name, 1 << 20)?;
/// let jobs = store.get_or_create::<u64>("jobs", 0)?;
/// let mine = store.get_or_create::<Stats>("worker/1", Stats::default())?;
/// *jobs.lock().unwrap() += 1;
/// mine.lock().unwrap().requests += 1;
///
/// // Another process (or this one) finds them by key and type.
/// assert_eq!(*store.get::<u64>("jobs")?.lock().unwrap(), 1);
/// assert!(store.get::<u32>("jobs").is_err()); // the wrong type: LayoutMismatch
/// for e in store.entries()? {
///     println!("{} : {} ({} bytes, generation {})", e.key, e.type_name, e.size, e.generation);
/// }
/// store.remove("worker/1")?;
/// # Store::unlink(&name)?;
/// # Ok::<(), shmstore::Error>(())
/// ```
///
/// # Keys
///
/// 1 to [`MAX_KEY_LEN`] bytes of ASCII letters, digits and `_ - . / : @ +`;
/// anything else is [`Error::InvalidName`].
///
/// # Space
///
/// A store starts with the capacity chosen at creation, and grows in place
/// when an entry does not fit, up to its
/// [`max_capacity`](SharedOptions::max_capacity) (by default 64 times its
/// capacity, at most 1 GiB, or the capacity if larger): entries never move, so every handle stays
/// valid, and other processes use the new room without reopening the
/// store. System V stores do not grow. Each entry takes one
/// block of its key, type name, lock and value, rounded up to 64 bytes
/// (at least 128). Removing an entry frees its block, merged with free
/// neighbours, for entries of any size; free space can still be in pieces
/// too small for a large entry, which [`Error::StoreFull`] then reports
/// (how much was asked, how much is free, and the largest free piece) once
/// the store has grown as far as it may.
///
/// Each `Store` handle that holds entries (through the [`Shared`] handles
/// it gave out) keeps a list of them in the store's space: 4 bytes per
/// held entry, in a block of 128 bytes at first (24 entries) that doubles
/// when full. A list left empty is kept for the handle's next `get`, and
/// freed by [`free_bytes`](Store::free_bytes) or when the store runs out
/// of room, so it is never what makes an insert fail. An insert makes room
/// for it before it makes the entry, and a `get` can fail with
/// [`Error::StoreFull`] only if even that does not fit (a handle that
/// already holds entries rarely needs more).
///
/// # Removal and handles
///
/// [`remove`](Store::remove) takes the key out at once: later `get`s find
/// nothing, and the key can be created again as a new entry. Handles that
/// are open keep working on the removed entry, as with
/// [`unlink`](crate::unlink); its space is freed when the last of them is
/// dropped, or when the processes holding them are found dead.
///
/// # Handles and processes
///
/// A `Store` handle takes one of 4,096 slots in the store, so up to 4,096
/// can be open at once over all processes ([`Error::HandleLimit`] past
/// that, when every slot belongs to a live process). The table takes
/// 64 KiB of the segment, but shared memory is given pages only as they
/// are touched, and only the slots ever used are: a store that has seen
/// 10 handles costs one page of it. Clone a handle to share it between
/// threads (clones share the slot). A forked child must open the store
/// itself, not use its parent's handle. A [`StoreReader`] (the store
/// opened for reading only) takes no slot.
///
/// What a handle holds is recorded in the store (see [Space](Store#space)),
/// so a removed entry that a killed process held is freed once that
/// process is found dead: by [`free_bytes`](Store::free_bytes), by an
/// insert that finds no room, by an open that finds every slot used, and
/// by the rebuild after a crash. Neither a `get` nor that recovery looks
/// at more than the slots in use and the dead handles' own entries.
///
/// # Crashes
///
/// A process killed while creating or removing an entry leaves the
/// directory lock to be taken over by the next caller, which rebuilds the
/// directory from the entries themselves: an entry whose creation was cut
/// short is gone, one whose removal was cut short is still there, a key
/// whose migration ([`get_or_migrate`](Store::get_or_migrate)) was cut
/// short holds the complete old entry or the complete new one. Entries'
/// own locks recover as a [`Shared`]'s does.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// What a store handle and the handles of its entries share.
struct Inner {
    map: Mapping,
    geo: Geometry,
    /// How much heap the object is known to hold.
    room: Room,
    /// The store's name in errors, shared with its entries' handles.
    label: Arc<str>,
    remover: Remover,
    remove_on_drop: bool,
    /// Whether the call that opened this handle created the store.
    created: bool,
    /// This handle's slot in the store's handle table.
    slot: usize,
    /// Whether the entries it gives report poison
    /// (`SharedOptions::poisoning`).
    poisoning: bool,
    /// How many entry handles of this store handle hold each entry (by
    /// block offset). A thread changes it, and this handle's hold list in
    /// the store, only while it holds this mutex (and, to move the list,
    /// the directory lock).
    held: Mutex<BTreeMap<usize, Holds>>,
    /// Set (under `held`) while a thread of this handle settles an entry it
    /// let go of or gave up (`Heap::settle`, under the directory lock), its
    /// hold list's pending hold naming it: holds and letting go without
    /// the lock wait for it to end by taking the lock themselves.
    settling: AtomicBool,
}

/// One entry, as [`Store::entries`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// The key.
    pub key: String,
    /// The type name the entry was created with.
    pub type_name: String,
    /// The value's size in bytes.
    pub size: usize,
    /// The layout fingerprint of its type (see [`Shareable::FINGERPRINT`]).
    pub fingerprint: u64,
    /// How many writes to it have been committed (see
    /// [`Shared::generation`]).
    pub generation: u64,
    /// Whether its lock is held now (a momentary answer).
    pub locked: bool,
    /// Whether its lock is poisoned.
    pub poisoned: bool,
}

impl Store {
    /// Creates a new store at `at` with room for `capacity` bytes of
    /// entries, with the default [`SharedOptions`] (so growing up to 64
    /// times `capacity`, at most 1 GiB, or `capacity` if larger: see
    /// [`SharedOptions::max_capacity`]); fails with
    /// [`Error::AlreadyExists`] if the name exists.
    pub fn create(at: impl IntoLocation, capacity: usize) -> Result<Store> {
        SharedOptions::new().create_store(at, capacity)
    }

    /// Opens the existing store at `at`, whatever its capacity.
    pub fn open(at: impl IntoLocation) -> Result<Store> {
        SharedOptions::new().open_store(at)
    }

    /// Opens the store at `at`, creating it with room for `capacity` bytes
    /// of entries if there is none. Race-free, as
    /// [`Shared::open_or_create`]: of many processes racing, exactly one
    /// creates the store, and [`created`](Store::created) says which.
    ///
    /// An existing store is opened as it is, whatever its capacity:
    /// `capacity` is only the new store's. [`capacity`](Store::capacity)
    /// shows what the store has, so a program can tell that it found a
    /// smaller (or larger) store than it asked for:
    ///
    /// ```
    /// # let name = format!("doc-store-capacity-{}", std::process::id());
    /// use shmstore::Store;
    ///
    /// let small = Store::open_or_create(&name, 64 * 1024)?;
    /// let asked = Store::open_or_create(&name, 1 << 20)?;
    /// assert!(small.created() && !asked.created());
    /// assert_eq!(asked.capacity(), small.capacity()); // 64 KiB, not 1 MiB
    /// # Store::unlink(&name)?;
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn open_or_create(at: impl IntoLocation, capacity: usize) -> Result<Store> {
        SharedOptions::new().open_or_create_store(at, capacity)
    }

    /// Removes the store's name: the same as [`shmstore::unlink`](crate::unlink),
    /// which removes any segment's name.
    pub fn unlink(at: impl IntoLocation) -> Result<()> {
        crate::segment::unlink(at)
    }

    pub(crate) fn establish(
        opts: &SharedOptions,
        at: impl IntoLocation,
        mode: OpenMode,
        capacity: usize,
    ) -> Result<Store> {
        let (seg, geo, room, label) = map_store(opts, at, mode, capacity)?;
        let mut inner = Inner {
            map: seg.map,
            geo,
            room,
            label: Arc::from(label),
            remover: seg.remover,
            // Set once the handle is complete: a failed open removes nothing.
            remove_on_drop: false,
            created: seg.created,
            slot: usize::MAX,
            poisoning: opts.poisoning,
            held: Mutex::new(BTreeMap::new()),
            settling: AtomicBool::new(false),
        };
        let slot = {
            let dir = inner.lock()?;
            dir.heap().register()?
        };
        inner.slot = slot;
        inner.remove_on_drop = opts.remove_on_drop;
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// The entry `key` as a `T`.
    ///
    /// Fails with [`Error::NotFound`] if there is no such key, and with
    /// [`Error::LayoutMismatch`] (naming both types) if the entry holds
    /// another type, or another layout of `T`.
    ///
    /// Takes no lock in the usual case: the directory is read as
    /// [`contains`](Store::contains) reads it, and the entry is held through
    /// this handle's own list in the store, so a `get` does not wait for
    /// other processes' inserts, removals or listings unless one overlaps
    /// it (see [the design](crate::_design::store#holds-without-the-lock)).
    pub fn get<T: Shareable>(&self, key: &str) -> Result<Shared<T>> {
        let key = check_key(key)?;
        for _ in 0..QUIET_TRIES {
            match self.get_quiet::<T>(key) {
                Quiet::Done(got) => return self.inner.intact(got),
                Quiet::Again => std::hint::spin_loop(),
                Quiet::Lock => break,
            }
        }
        self.get_locked(key)
    }

    /// [`get`](Store::get) under the directory lock: when the read without
    /// it did not answer.
    #[cold]
    fn get_locked<T: Shareable>(&self, key: &str) -> Result<Shared<T>> {
        let mut dir = self.inner.lock()?;
        let got = match dir.heap().lookup(key.as_bytes())? {
            Some((_, e)) => self.handle(&mut dir, key, &e),
            None => Err(Error::NotFound {
                name: self.entry_label(key),
            }),
        };
        self.inner.intact(got)
    }

    /// [`get`](Store::get) without the directory lock, in the usual case:
    /// the entry found in a read of the directory that no change overlapped,
    /// checked to be a `T`, then held through this handle's hold list (see
    /// `_design::store`, "Holds without the lock"). [`Quiet::Again`] when
    /// a change overlapped; [`Quiet::Lock`] when the lock must answer (the
    /// entry is not a `T`, the hold list is full or absent, anything that
    /// does not check: the lock says what is wrong).
    #[inline]
    fn get_quiet<T: Shareable>(&self, key: &str) -> Quiet<Result<Shared<T>>> {
        let inner = &*self.inner;
        let heap = Heap::for_probe(&inner.map, &inner.geo, &inner.label, &inner.room);
        let versions = inner.versions();
        let Some((found, generation)) =
            reader::read_quiet(|| &heap, versions, |h| h.lookup_shape(key.as_bytes()))
        else {
            return Quiet::Again;
        };
        let e = match found {
            Some(Some(e)) => e,
            Some(None) => {
                return Quiet::Done(Err(Error::NotFound {
                    name: self.entry_label(key),
                }))
            }
            None => return Quiet::Lock,
        };
        if e.fingerprint != T::FINGERPRINT
            || e.value_size != std::mem::size_of::<T>()
            || e.value_align != std::mem::align_of::<T>()
        {
            return Quiet::Lock;
        }
        let end = e.at + e.layout.value + e.value_size;
        let mut held = inner.held();
        if overlaps_held(&held, e.at, end) {
            return Quiet::Lock;
        }
        if let Some(h) = held.get_mut(&e.at) {
            // This handle holds the block: nothing to write in the store,
            // once the directory is seen unchanged since the look-up (the
            // block is then still the entry found, not one made in its
            // place after the look-up and held since by another thread).
            if versions.seq_now() != generation << 1 {
                return Quiet::Again;
            }
            h.count += 1;
            drop(held);
            return Quiet::Done(self.entry_handle(e.meta(key.as_bytes())));
        }
        if inner.settling.load(Ordering::Relaxed) {
            return Quiet::Lock;
        }
        let heap = inner.heap();
        let Some(list) = heap.list_with_room(inner.slot) else {
            return Quiet::Lock;
        };
        heap.begin_hold(&list, e.at);
        if versions.seq_now() != generation << 1 {
            // A change began since the read: the entry may be gone.
            if heap.abandon(&list, e.at) {
                inner.settle(held, e.at);
            }
            return Quiet::Again;
        }
        let pos = heap.finish_hold(&list, e.at);
        held.insert(e.at, Holds::first(e.at + e.layout.value, end, pos));
        drop(held);
        Quiet::Done(self.entry_handle(e.meta(key.as_bytes())))
    }

    /// The entry `key` as a `T`, created with `value` if there is none.
    /// When many processes call this at once for the same key, exactly one
    /// creates the entry and all get it.
    pub fn get_or_create<T: Shareable>(&self, key: &str, value: T) -> Result<Shared<T>> {
        self.make(key, value, true)
    }

    /// Creates the entry `key` holding `value`; fails with
    /// [`Error::AlreadyExists`] if the key is taken, and with
    /// [`Error::StoreFull`] if there is no room for it.
    pub fn insert<T: Shareable>(&self, key: &str, value: T) -> Result<Shared<T>> {
        self.make(key, value, false)
    }

    fn make<T: Shareable>(&self, key: &str, value: T, or_get: bool) -> Result<Shared<T>> {
        let made = self.make_unchecked(key, value, or_get);
        self.inner.intact(made)
    }

    fn make_unchecked<T: Shareable>(&self, key: &str, value: T, or_get: bool) -> Result<Shared<T>> {
        let key = check_key(key)?;
        let mut dir = self.inner.lock()?;
        self.make_locked(&mut dir, key, value, or_get)
    }

    /// [`make`](Store::make) under the directory lock, for a checked key.
    fn make_locked<T: Shareable>(
        &self,
        dir: &mut Dir<'_>,
        key: &str,
        value: T,
        or_get: bool,
    ) -> Result<Shared<T>> {
        const { assert!(std::mem::align_of::<T>() <= heap::MAX_ALIGN) };
        let bytes = crate::types::shareable::into_bytes(value);
        if let Some((_, e)) = dir.heap().lookup(key.as_bytes())? {
            return if or_get {
                self.handle(dir, key, &e)
            } else {
                Err(Error::AlreadyExists {
                    name: self.entry_label(key),
                })
            };
        }
        let schema = Self::schema_of::<T>(&self.entry_label(key))?;
        let new = NewEntry {
            key: key.as_bytes(),
            type_name: T::TYPE_NAME,
            fingerprint: T::FINGERPRINT,
            value: &bytes,
            align: std::mem::align_of::<T>(),
            schema: &schema,
        };
        let e = self.fill_locked(dir, &new)?;
        self.entry_handle(e)
    }

    /// Makes the entry `new`, whose key is not in the directory, held by
    /// this handle; [`Error::StoreFull`] if there is no room.
    fn fill_locked(&self, dir: &mut Dir<'_>, new: &NewEntry<'_>) -> Result<EntryMeta> {
        self.make_bucket_room(dir)?;
        let at = self.reserve(dir, new)?;
        dir.begin_change();
        let e = dir.heap().fill(at, new)?;
        self.hold(dir, &e)?;
        Ok(e)
    }



    /// The encoded schema of `T`, for the entry called `label`.
    fn schema_of<T: Shareable>(label: &str) -> Result<Vec<u8>> {
        let schema = crate::schema::Schema::of::<T>().encode();
        if schema.len() > usize::from(u16::MAX) {
            return Err(Error::SchemaTooLarge {
                name: label.to_owned(),
                type_name: T::TYPE_NAME,
                len: schema.len(),
                max: usize::from(u16::MAX),
            });
        }
        Ok(schema)
    }

    /// A block for `new`, RESERVED; [`Error::StoreFull`] if there is none.
    ///
    /// Reserved before the change begins: a full store changes nothing a
    /// watcher would see. A forged free list can lead into an entry this
    /// process holds, to which a guard may be giving out `&mut` right now:
    /// such a block is refused before anything is written.
    /// Room for one more entry in this handle's hold list is made too (see
    /// `Heap::reserve`).
    ///
    /// A store that has no room grows first, if it may (see
    /// [`growing`](Store::growing)).
    fn reserve(&self, dir: &mut Dir<'_>, new: &NewEntry<'_>) -> Result<usize> {
        let held = self.inner.held();
        self.growing(dir, |heap| {
            heap.reserve(new, self.inner.slot, &|start, end| {
                meets_held(&held, start, end)
            })
        })
    }

    /// Moves the directory to a larger bucket table if one more entry
    /// would fill the one in use past half (`Heap::rehash`), growing the
    /// store for it if need be: a change of the directory.
    fn make_bucket_room(&self, dir: &mut Dir<'_>) -> Result<()> {
        if !dir.heap().needs_rehash()? {
            return Ok(());
        }
        dir.begin_change();
        let held = self.inner.held();
        self.growing(dir, |heap| {
            heap.rehash(&|start, end| meets_held(&held, start, end))
        })
    }

    /// What `f` gives, run again after growing the store each time it
    /// finds the store full ([`Error::StoreFull`]) while the store may
    /// grow (`Heap::grow`; a change of the directory, whose generation
    /// moves). Each growth at least doubles the heap or reaches its most,
    /// so this ends; at the most, `f`'s `StoreFull` is the answer.
    fn growing<R>(&self, dir: &mut Dir<'_>, mut f: impl FnMut(&Heap<'_>) -> Result<R>) -> Result<R> {
        loop {
            let r = f(&dir.heap());
            let needed = match &r {
                Err(Error::StoreFull { needed, .. }) => *needed,
                _ => return r,
            };
            if !dir.heap().can_grow() || !dir.grow(needed)? {
                return r;
            }
        }
    }

    /// Removes the entry `key` (see [Removal and handles](Store#removal-and-handles));
    /// [`Error::NotFound`] if there is none.
    pub fn remove(&self, key: &str) -> Result<()> {
        let key = check_key(key)?;
        let mut dir = self.inner.lock()?;
        let removed = match dir.heap().find(key.as_bytes())? {
            Some((i, e)) => {
                dir.begin_change();
                dir.heap().remove(i, &e)
            }
            None => Err(Error::NotFound {
                name: self.entry_label(key),
            }),
        };
        self.inner.intact(removed)
    }

    /// Whether the key is in the store.
    ///
    /// Takes no lock: the directory is read as a [`StoreReader`] reads it,
    /// and the answer is that of a moment no change overlapped (a read a
    /// change overlapped is made again; after a few, the lookup takes the
    /// directory lock, as it does when a process died changing the
    /// directory, to repair it, or when a bucket points outside the heap,
    /// to report it as [`Error::Corrupt`]).
    pub fn contains(&self, key: &str) -> Result<bool> {
        let key = check_key(key)?;
        match self.contains_quiet(key) {
            Some(found) => self.inner.intact(Ok(found)),
            None => self.contains_contended(key),
        }
    }

    /// [`contains`](Store::contains) in one read without the lock: `None`
    /// if a change overlapped it, or if it met a damaged bucket.
    #[inline]
    fn contains_quiet(&self, key: &str) -> Option<bool> {
        let read = |heap: &Heap<'_>| reader::probe(heap, key.as_bytes());
        let inner = &self.inner;
        // Bounded by what this process knows of its object, not `M_HEAP`:
        // the view can be made before the read.
        let heap = Heap::for_probe(&inner.map, &inner.geo, &inner.label, &inner.room);
        match reader::read_quiet(|| &heap, inner.versions(), read)? {
            (Probe::Found { .. }, _) => Some(true),
            (Probe::Missing, _) => Some(false),
            (Probe::Damaged(_), _) => None,
        }
    }

    /// [`contains`](Store::contains) when its first read was not quiet:
    /// a few more tries, then the directory lock (which repairs what a
    /// dead process left, and says what is damaged).
    #[cold]
    fn contains_contended(&self, key: &str) -> Result<bool> {
        // A bucket past the heap this process knew: another process may
        // have grown the store (the view learns its size now).
        let _ = Heap::checked(&self.inner.map, &self.inner.geo, &self.inner.label, &self.inner.room);
        for _ in 1..QUIET_TRIES {
            std::hint::spin_loop();
            if let Some(found) = self.contains_quiet(key) {
                return self.inner.intact(Ok(found));
            }
        }
        let dir = self.inner.lock()?;
        let found = dir.heap().contains(key.as_bytes());
        self.inner.intact(found)
    }

    /// Every entry, in no particular order: key, type name, size,
    /// fingerprint, generation, lock state.
    ///
    /// The list is read in pieces, each under the directory lock for well
    /// under a millisecond, whatever the store's size, so that other
    /// processes' `get`, `insert` and `remove` never wait long for a
    /// listing. What it says while other processes change the store:
    ///
    /// - an entry present for the whole call is listed exactly once;
    /// - an entry created or removed during the call may or may not be
    ///   listed;
    /// - no key is listed twice (a key removed and created again during
    ///   the call is listed at most once, as either entry).
    ///
    /// For a list of one moment, compare [`generation`](Store::generation)
    /// before and after the call: if it did not move, nothing was created
    /// or removed meanwhile, and the list is the whole directory.
    pub fn entries(&self) -> Result<Vec<EntryInfo>> {
        let list = self.list()?;
        let infos: Vec<EntryInfo> = list
            .into_iter()
            .map(|e| entry_info(&self.inner.map, e))
            .collect();
        self.inner.intact(Ok(infos))
    }

    /// Every entry's metadata, read in pieces (see [`entries`](Store::entries)).
    fn list(&self) -> Result<Vec<EntryMeta>> {
        heap::in_pieces(|listed, bounded| {
            if !listed.is_empty() {
                // Let the processes that waited for the last piece in: a
                // waiter woken by its unlock needs a moment to run, and
                // taking the lock again at once would keep it out.
                std::thread::sleep(PIECE_PAUSE);
            }
            let dir = self.inner.lock()?;
            self.inner.intact(dir.heap().list_piece(listed, bounded))
        })
    }

    /// How many entries there are.
    pub fn len(&self) -> Result<usize> {
        let dir = self.inner.lock()?;
        let n = dir.heap().entries() as usize;
        self.inner.intact(Ok(n))
    }

    /// Whether the store has no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The bytes entries can take in all now: the capacity the store was
    /// created with (rounded up to 64), and more once it grew (see
    /// [Space](Store#space)); at most [`max_capacity`](Store::max_capacity).
    pub fn capacity(&self) -> usize {
        self.inner.heap().heap_size() as usize
    }

    /// The bytes entries may take in all once the store has grown as far
    /// as it may: [`SharedOptions::max_capacity`] as its creator set it
    /// (the same in every process), or the capacity for a store that does
    /// not grow (System V). Past it, inserts fail with
    /// [`Error::StoreFull`].
    pub fn max_capacity(&self) -> usize {
        self.inner.heap().max_heap() as usize
    }

    /// The bytes free for new entries now, in all (see
    /// [Space](Store#space) for why one entry may not get all of them).
    pub fn free_bytes(&self) -> Result<usize> {
        let dir = self.inner.lock()?;
        // Removed entries whose holders have died since count as free.
        let held = self.inner.held();
        let free = dir
            .heap()
            .reclaim(&|start, end| meets_held(&held, start, end), self.inner.slot)
            .and_then(|()| dir.heap().space())
            .map(|s| s.free as usize);
        self.inner.intact(free)
    }

    /// How many times entries have been created or removed; see
    /// [`wait_for_change`](Store::wait_for_change).
    pub fn generation(&self) -> u64 {
        self.inner.versions().generation()
    }

    /// Sleeps until an entry is created or removed (by any process) after
    /// generation `seen`; returns the new generation, or `Ok(None)` after
    /// `timeout`. Changes to entries' values are watched on the entries.
    /// `Err` ([`Error::Truncated`]) once the store was shrunk under this
    /// handle, as on [`Shared::wait_for_change`].
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> Result<Option<u64>> {
        let changed = self
            .inner
            .versions()
            .wait(seen, timeout, Some(self.inner.raw()));
        self.inner.intact(Ok(changed))
    }

    /// Waits, as a future, until an entry is created or removed after
    /// generation `seen`; the async form of
    /// [`wait_for_change`](Store::wait_for_change), served as
    /// [`Shared::changed`] is (entries are `Shared` handles: await their
    /// own `changed` for their values).
    pub fn changed(&self, seen: u64) -> impl Future<Output = Result<u64>> + Send + '_ {
        Changed::new(self.waiting(seen), &self.inner.label, move || {
            self.inner.intact(Ok(()))
        })
    }

    /// [`changed`](Store::changed) again and again, as a
    /// [`futures_core::Stream`] (feature `stream`); see
    /// [`Shared::changes`].
    #[cfg(feature = "stream")]
    pub fn changes(&self, seen: u64) -> impl futures_core::Stream<Item = Result<u64>> + Send + '_ {
        Changes::new(self.waiting(seen), &self.inner.label, move || {
            self.inner.intact(Ok(()))
        })
    }

    fn waiting(&self, seen: u64) -> Waiting<'_> {
        Waiting::new(
            self.inner.versions(),
            Some(self.inner.raw()),
            self.inner.map.cut_flag(),
            seen,
        )
    }

    /// Checks the store's directory and heap through and through: every
    /// block, free list, bucket and counter, the handle table, and each
    /// handle's hold list (every entry it names is one, every removed entry
    /// is named by a handle). `Ok` means consistent;
    /// [`Error::Corrupt`] says what is wrong. Takes the directory lock for
    /// a time proportional to the number of entries; meant for tests,
    /// tools and diagnostics, not for every operation.
    pub fn check(&self) -> Result<()> {
        let dir = self.inner.lock()?;
        let checked = dir.heap().check();
        self.inner.intact(checked)
    }

    /// Whether the call that opened this handle created the store: `true`
    /// from [`create`](Store::create), and from
    /// [`open_or_create`](Store::open_or_create) when this call created it;
    /// `false` from [`open`](Store::open) and when `open_or_create` found
    /// it. Clones answer as the handle they were cloned from.
    pub fn created(&self) -> bool {
        self.inner.created
    }

    /// The store's name as errors give it (see [`Shared::name`]).
    pub fn name(&self) -> &str {
        &self.inner.label
    }

    fn entry_label(&self, key: &str) -> String {
        format!("{}/{key}", self.inner.label)
    }

    /// A handle on the entry `e` of key `key`, found under `dir`, checked
    /// to be a `T`.
    fn handle<T: Shareable>(&self, dir: &mut Dir<'_>, key: &str, e: &Shape) -> Result<Shared<T>> {
        self.check_type::<T>(dir, key, e)?;
        let e = e.meta(key.as_bytes());
        self.hold(dir, &e)?;
        self.entry_handle(e)
    }

    /// `Ok` if the entry `e`, of key `key`, holds a `T` (see [`check_type`]).
    fn check_type<T: Shareable>(&self, dir: &Dir<'_>, key: &str, e: &Shape) -> Result<()> {
        check_type::<T>(&dir.heap(), e, || self.entry_label(key))
    }

    /// Records that one more handle of this store handle holds the entry
    /// `e`, under the directory lock: the first puts the entry in this
    /// handle's hold list in the store and notes where; later ones only
    /// count here, and the last to drop takes it out again ([`EntryRef`]'s
    /// drop).
    ///
    /// Refuses an entry whose bytes overlap those of another entry this
    /// process holds: a directory forged by a peer can place an entry
    /// inside another's value, and two handles here must never hand out
    /// `&mut` to the same bytes.
    fn hold(&self, dir: &mut Dir<'_>, e: &EntryMeta) -> Result<()> {
        let end = e.at + e.layout.value + e.value_size;
        let mut held = self.inner.held();
        if overlaps_held(&held, e.at, end) {
            return Err(Error::Corrupt {
                name: self.inner.label.to_string(),
                reason: format!(
                    "its entry `{}` would share bytes with another entry this process holds: \
                     its directory is damaged (check() says where)",
                    String::from_utf8_lossy(&e.key)
                ),
            });
        }
        if let Some(h) = held.get_mut(&e.at) {
            h.count += 1;
            return Ok(());
        }
        let pos = self.growing(dir, |heap| {
            heap.hold(e.at, self.inner.slot, &|start, end| {
                meets_held(&held, start, end)
            })
        })?;
        held.insert(e.at, Holds::first(e.at + e.layout.value, end, pos));
        Ok(())
    }

    /// The handle of entry `e`, whose hold is already counted. Its name
    /// in errors is made of the store's name and `e`'s key only if an
    /// error needs it.
    fn entry_handle<T: Shareable>(&self, e: EntryMeta) -> Result<Shared<T>> {
        let slot = Slot::from_raw(self.entry_slot(&e));
        // A checked key (ASCII) as the caller gave it, or as it wrote it.
        let key = String::from_utf8(e.key)
            .unwrap_or_else(|bad| String::from_utf8_lossy(bad.as_bytes()).into_owned());
        Ok(Shared::from_entry(
            slot,
            Arc::clone(&self.inner.label),
            key,
            self.inner.poisoning,
        ))
    }

    /// The lock, versions and value of entry `e`, whose hold is already
    /// counted. The offsets lie inside the entry's block (checked by
    /// `Heap::entry`), aligned (the block is 64-aligned, the value offset a
    /// multiple of the entry's alignment); the `EntryRef` keeps the mapping
    /// alive, and the entry's memory held, as long as the slot.
    fn entry_slot(&self, e: &EntryMeta) -> RawSlot {
        let entry = EntryRef {
            store: Arc::clone(&self.inner),
            at: e.at,
        };
        let base = e.at + e.layout.slot;
        RawSlot::new(
            Box::new(entry),
            base,
            base + crate::lock::LOCK_SIZE,
            e.at + e.layout.value,
            e.value_size,
        )
    }
}

impl Store {
    /// Holds the entry `key`, whatever its type: its lock, versions and
    /// value stay where they are while the result lives.
    pub(crate) fn raw_entry(&self, key: &str) -> Result<HeldEntry> {
        let key = check_key(key)?;
        let mut dir = self.inner.lock()?;
        let e = self.found(&dir, key)?;
        self.hold(&mut dir, &e)?;
        Ok(self.held_entry(key, &e))
    }

    /// The entry `key` (a checked key), found under `dir`;
    /// [`Error::NotFound`] if there is none.
    fn found(&self, dir: &Dir<'_>, key: &str) -> Result<EntryMeta> {
        match dir.heap().find(key.as_bytes())? {
            Some((_, e)) => Ok(e),
            None => Err(Error::NotFound {
                name: self.entry_label(key),
            }),
        }
    }

    /// The untyped handle of entry `e`, whose hold is already counted.
    fn held_entry(&self, key: &str, e: &EntryMeta) -> HeldEntry {
        HeldEntry {
            slot: self.entry_slot(e),
            fingerprint: e.fingerprint,
            type_name: e.type_name.clone(),
            label: self.entry_label(key),
        }
    }
}

/// What a whole-store mirror needs of the store: entries' places and
/// shapes, and entries made from their parts.
#[cfg_attr(not(feature = "mirror"), allow(dead_code))]
impl Store {
    /// Every entry's key and place (its block's offset: while an entry is
    /// held, no other entry takes its place, so a key found at another
    /// place is another entry), as [`entries`](Store::entries) lists them.
    pub(crate) fn entry_places(&self) -> Result<Vec<(String, usize)>> {
        let list = self.list()?;
        let places = list
            .into_iter()
            .map(|e| (String::from_utf8_lossy(&e.key).into_owned(), e.at))
            .collect();
        self.inner.intact(Ok(places))
    }

    /// The place, alignment and encoded schema of the entry `key` now.
    pub(crate) fn entry_shape(&self, key: &str) -> Result<EntryShape> {
        let key = check_key(key)?;
        let dir = self.inner.lock()?;
        let e = self.found(&dir, key)?;
        drop(dir);
        let (offset, len) = (e.at.saturating_add(e.layout.schema), e.layout.schema_len);
        let mut schema = vec![0u8; len];
        if len > 0 && offset.checked_add(len).is_some_and(|end| end <= self.inner.map.len()) {
            self.inner.map.copy_out(offset, &mut schema);
        } else {
            schema.clear();
        }
        self.inner.intact(Ok(EntryShape {
            at: e.at,
            align: e.value_align,
            schema,
        }))
    }

    /// Creates the entry `new.key` from its parts, held by this handle as
    /// [`raw_entry`](Store::raw_entry) holds one; the parts are checked as
    /// a typed [`insert`](Store::insert) would have them:
    /// [`Error::AlreadyExists`] if the key is taken, [`Error::StoreFull`]
    /// if there is no room, [`Error::InvalidName`] for a bad key, and
    /// [`Error::Corrupt`] for parts no type could have (an alignment that
    /// is not a power of two up to 64, a type name longer than 128 bytes,
    /// a value larger than the store, a schema over 64 KiB).
    ///
    /// Also returns the entry's generation as created, read before any
    /// other handle could find the entry: once this returns, another
    /// process may have written it already.
    pub(crate) fn create_raw(&self, new: &RawEntry<'_>) -> Result<(HeldEntry, u64)> {
        let key = check_key(new.key)?;
        let label = self.entry_label(key);
        let bad = |reason: String| Error::Corrupt {
            name: label.clone(),
            reason,
        };
        if !new.align.is_power_of_two() || new.align > heap::MAX_ALIGN {
            return Err(bad(format!("an alignment of {}", new.align)));
        }
        if new.type_name.is_empty() || new.type_name.len() > heap::MAX_TYPE_LEN {
            return Err(bad(format!("a type name of {} bytes", new.type_name.len())));
        }
        if new.value.len() > self.max_capacity() || new.schema.len() > usize::from(u16::MAX) {
            return Err(bad(format!(
                "a value of {} bytes and a schema of {}, in a store of at most {}",
                new.value.len(),
                new.schema.len(),
                self.max_capacity()
            )));
        }
        let made = self.create_raw_locked(key, new);
        self.inner.intact(made)
    }

    fn create_raw_locked(&self, key: &str, new: &RawEntry<'_>) -> Result<(HeldEntry, u64)> {
        let mut dir = self.inner.lock()?;
        if dir.heap().find(key.as_bytes())?.is_some() {
            return Err(Error::AlreadyExists {
                name: self.entry_label(key),
            });
        }
        let entry = NewEntry {
            key: key.as_bytes(),
            type_name: new.type_name,
            fingerprint: new.fingerprint,
            value: new.value,
            align: new.align,
            schema: new.schema,
        };
        let e = self.fill_locked(&mut dir, &entry)?;
        let held = self.held_entry(key, &e);
        // Under the directory lock, under which every handle of the new
        // entry is taken: nobody else can have written it yet.
        let generation = held.slot.generation();
        drop(dir);
        Ok((held, generation))
    }
}

/// Where an entry is, and what only its block records of its type.
#[cfg_attr(not(feature = "mirror"), allow(dead_code))]
pub(crate) struct EntryShape {
    /// Its block's offset (see [`Store::entry_places`]).
    pub(crate) at: usize,
    pub(crate) align: usize,
    /// Its encoded schema (empty if it has none).
    pub(crate) schema: Vec<u8>,
}

/// An entry's parts, for [`Store::create_raw`].
#[cfg_attr(not(feature = "mirror"), allow(dead_code))]
pub(crate) struct RawEntry<'a> {
    pub(crate) key: &'a str,
    pub(crate) type_name: &'a str,
    pub(crate) fingerprint: u64,
    pub(crate) align: usize,
    pub(crate) schema: &'a [u8],
    pub(crate) value: &'a [u8],
}

/// An entry held without its type.
#[cfg_attr(not(feature = "mirror"), allow(dead_code))]
pub(crate) struct HeldEntry {
    /// Its lock, versions and value; keeps the entry held.
    pub(crate) slot: RawSlot,
    pub(crate) fingerprint: u64,
    pub(crate) type_name: String,
    /// Its name in errors (`store/key`).
    pub(crate) label: String,
}

/// `Ok` if the entry `e` of `heap` (called `label()` in errors) holds a
/// `T`: [`Error::LayoutMismatch`] if it holds another type,
/// [`Error::Corrupt`] if it says it does but its size or alignment differ.
/// Only an error reads the entry's type name and schema.
fn check_type<T: Shareable>(
    heap: &Heap<'_>,
    e: &Shape,
    label: impl FnOnce() -> String,
) -> Result<()> {
    if e.fingerprint != T::FINGERPRINT {
        return Err(Error::LayoutMismatch {
            name: label(),
            expected_type: T::TYPE_NAME,
            expected_fingerprint: T::FINGERPRINT,
            found_type: heap.type_name(e),
            found_fingerprint: e.fingerprint,
            changes: entry_changes::<T>(heap.map, e),
        });
    }
    if e.value_size != std::mem::size_of::<T>() || e.value_align != std::mem::align_of::<T>() {
        return Err(Error::Corrupt {
            name: label(),
            reason: format!(
                "the entry says its `{}` is {} bytes aligned to {}, but it is {} aligned to {}",
                T::TYPE_NAME,
                e.value_size,
                e.value_align,
                std::mem::size_of::<T>(),
                std::mem::align_of::<T>()
            ),
        });
    }
    Ok(())
}

/// What differs from the layout the entry `e` records to `T`'s: empty
/// if its schema is absent, runs past the mapping or does not decode.
fn entry_changes<T: Shareable>(map: &Mapping, e: &Shape) -> Vec<crate::schema::LayoutChange> {
    let (offset, len) = (e.at.saturating_add(e.layout.schema), e.layout.schema_len);
    if len == 0 || offset.checked_add(len).is_none_or(|end| end > map.len()) {
        return Vec::new();
    }
    let mut recorded = vec![0u8; len];
    map.copy_out(offset, &mut recorded);
    crate::schema::recorded_changes(&recorded, e.value_size as u64, &crate::Schema::of::<T>())
}

/// `r`, unless the store `label` in `map` was found shrunk under this
/// process (then what `r` was computed from was partly zeros):
/// [`Error::Truncated`].
#[inline]
fn intact<R>(map: &Mapping, label: &str, r: Result<R>) -> Result<R> {
    if map.is_cut() {
        return Err(truncated(map, label));
    }
    r
}

#[cold]
fn truncated(map: &Mapping, label: &str) -> Error {
    Error::Truncated {
        name: label.to_owned(),
        mapped: map.len() as u64,
    }
}

/// What [`Store::entries`] says of the entry `e` of the store in `map`.
fn entry_info(map: &Mapping, e: EntryMeta) -> EntryInfo {
    let lock = map.raw_lock(e.at + e.layout.slot);
    let versions = map.versions(e.at + e.layout.slot + crate::lock::LOCK_SIZE);
    EntryInfo {
        key: String::from_utf8_lossy(&e.key).into_owned(),
        type_name: e.type_name,
        size: e.value_size,
        fingerprint: e.fingerprint,
        generation: versions.generation(),
        locked: lock.is_locked(),
        poisoned: lock.is_poisoned(),
    }
}

/// The bytes a key may hold: ASCII letters, digits and `_ - . / : @ +`.
static KEY_BYTES: [bool; 256] = {
    let mut allowed = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        allowed[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'_' | b'-' | b'.' | b'/' | b':' | b'@' | b'+');
        b += 1;
    }
    allowed
};

/// `key` if it is a valid entry key (see [Keys](Store#keys)), else
/// [`Error::InvalidName`].
#[inline]
pub(crate) fn check_key(key: &str) -> Result<&str> {
    let bad = |reason| Error::InvalidName {
        name: key.to_owned(),
        reason,
    };
    if key.is_empty() {
        return Err(bad("an entry key cannot be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(bad("an entry key is at most 128 bytes"));
    }
    // Every byte looked up, without a branch per byte (keys are short).
    if !key.bytes().fold(true, |ok, b| ok & KEY_BYTES[usize::from(b)]) {
        return Err(bad(
            "an entry key holds only ASCII letters, digits and `_ - . / : @ +`",
        ));
    }
    Ok(key)
}

/// What a try without the directory lock came to.
enum Quiet<R> {
    /// The answer.
    Done(R),
    /// A change of the directory overlapped it: try again.
    Again,
    /// Take the lock (it says what is wrong, or does what needs it).
    Lock,
}

/// Whether an entry whose block starts at `at` and whose value ends at
/// `end` would share bytes with an entry this process holds (other than
/// itself, held with the same extent).
fn overlaps_held(held: &BTreeMap<usize, Holds>, at: usize, end: usize) -> bool {
    let before = held.range(..=at).next_back().map(|(&s, h)| (s, h.end));
    let after = held.range(at + 1..).next().map(|(&s, _)| s);
    (match before {
        Some((s, hi)) if s == at => hi != end,
        Some((_, hi)) => hi > at,
        None => false,
    }) || after.is_some_and(|s| s < end)
}

/// Whether bytes `start..end` of the store's mapping meet the value of an
/// entry this process holds, which a guard may be handing out as `&mut`
/// (held entries never overlap each other: going back from the last that
/// starts before `end`, the first that ends before `start` ends the search).
fn meets_held(held: &BTreeMap<usize, Holds>, start: usize, end: usize) -> bool {
    for (_, h) in held.range(..end).rev() {
        if h.end <= start {
            return false;
        }
        if h.value < end {
            return true;
        }
    }
    false
}

/// The entries of the store whose content is at `content` (`size` bytes)
/// of a read-only mapping, read without the directory lock, in pieces (see
/// [`Store::entries`]): a piece that overlapped a change is read again.
pub(crate) fn list_entries(
    map: &Mapping,
    content: usize,
    size: usize,
) -> std::result::Result<Vec<EntryMeta>, String> {
    let geo =
        Geometry::read(map, "store", content, size, &|| None).map_err(|e| e.to_string())?;
    let room = Room::new(map, &geo, content + size);
    if !Heap::bounded(map, &geo, "store", &room).formatted() {
        return Ok(Vec::new());
    }
    let versions = map.versions(VERSIONS_OFFSET);
    heap::in_pieces(|listed, bounded| {
        for _ in 0..50 {
            let mut piece = None;
            let quiet = versions.copy_quiet(|| {
                piece = Some(
                    Heap::checked(map, &geo, "store", &room)
                        .and_then(|heap| heap.list_piece(listed, bounded)),
                )
            });
            if let (Some(_), Some(piece)) = (quiet, piece) {
                return piece.map_err(|e| match e {
                    Error::Corrupt { reason, .. } => reason,
                    e => e.to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err("the directory kept changing".to_owned())
    })
}

/// The heap's size now and the most it may grow to, of the store whose
/// content is at `content` (`size` bytes of the object) of a read-only
/// mapping; `None` if its meta does not check.
pub(crate) fn capacity_of(map: &Mapping, content: usize, size: usize) -> Option<(u64, u64)> {
    let geo = Geometry::read(map, "store", content, size, &|| None).ok()?;
    let room = Room::new(map, &geo, content + size);
    let heap = Heap::checked(map, &geo, "store", &room).ok()?;
    Some((heap.heap_size(), geo.max_heap))
}

/// Creates or opens (as `mode` says) the store segment at `at`, of
/// `capacity` bytes of entries if it is made; returns it with its checked
/// geometry, what its object holds and its name as errors give it.
///
/// The object is mapped as it is first, its meta checked (the heap inside
/// the object, its most at most [`heap::MAX_HEAP`]), then, for a backend
/// that grows (POSIX and file), mapped again as long as the heap may grow
/// (see `_design::store`, "Growth"): that mapping never moves, so entries'
/// handles stay valid while the store grows.
fn map_store(
    opts: &SharedOptions,
    at: impl IntoLocation,
    mode: OpenMode,
    capacity: usize,
) -> Result<(crate::segment::Established, Geometry, Room, String)> {
    let loc = at.into_location()?;
    let label = loc.label();
    let capacity = capacity as u64;
    if capacity > heap::MAX_HEAP {
        return Err(Error::NoSpace {
            name: label,
            size: capacity,
        });
    }
    // A System V segment's size is fixed by `shmget`: it cannot grow.
    let max = if loc.grows() {
        opts.max_capacity
            .map_or_else(|| default_max_capacity(capacity), |m| m as u64)
    } else {
        capacity
    };
    let plan = heap::plan(capacity, max);
    let spec = spec(plan.content);
    let meta = heap::initial_meta(&plan, opts.version_flags());
    let initial = mode.creates().then_some(crate::segment::Initial {
        content: &meta,
        schema: &[],
    });
    let mut seg = crate::segment::establish_spec(&loc, opts, mode, &spec, initial)?;
    let value_offset = spec.layout().value_offset;
    let object = seg.map.len();
    let now = || seg.map.object_len();
    let geo = Geometry::read(&seg.map, &label, value_offset, object - value_offset, &now)?;
    if geo.reservation() > object {
        let reserved = seg.map.reserve(geo.reservation()).map_err(|e| Error::Io {
            op: "reserving address space for",
            name: label.clone(),
            source: e,
        })?;
        if let Some(map) = reserved {
            seg.map = map;
        }
    }
    let room = Room::new(&seg.map, &geo, object);
    Ok((seg, geo, room, label))
}

/// How many times its capacity a store grows to unless
/// [`SharedOptions::max_capacity`] says otherwise.
pub(crate) const DEFAULT_GROWTH: u64 = 64;

/// The most a store grows to unless [`SharedOptions::max_capacity`] says
/// otherwise (or its capacity is larger): 1 GiB.
pub(crate) const DEFAULT_MAX_CAPACITY: u64 = 1 << 30;

/// The most a store created with `capacity` grows to by default:
/// [`DEFAULT_GROWTH`] times its capacity, at most [`DEFAULT_MAX_CAPACITY`],
/// and never less than the capacity. Every process that opens the store
/// reserves address space for its most, so the default stays in
/// proportion to what the creator asked for: a process that opens many
/// small stores does not reserve a gigabyte for each.
fn default_max_capacity(capacity: u64) -> u64 {
    capacity
        .saturating_mul(DEFAULT_GROWTH)
        .min(DEFAULT_MAX_CAPACITY)
        .max(capacity)
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.inner.label)
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// The directory and heap: to be changed only under the directory lock
    /// ([`Dir::heap`]), and read without it only as [`reader::read_quiet`]
    /// reads them.
    #[inline]
    fn heap(&self) -> Heap<'_> {
        Heap::bounded(&self.map, &self.geo, &self.label, &self.room)
    }

    fn raw(&self) -> &RawLock {
        self.map.raw_lock(LOCK_OFFSET)
    }

    fn versions(&self) -> &Versions {
        self.map.versions(VERSIONS_OFFSET)
    }

    /// `r`, unless the store was found shrunk under this process: see
    /// [`intact`].
    #[inline]
    fn intact<R>(&self, r: Result<R>) -> Result<R> {
        intact(&self.map, &self.label, r)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, Holds>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// For a thread that let go of (or gave up) the entry at `at` without
    /// the lock and found it REMOVED, this handle's pending hold naming it,
    /// `held` its map of held entries: sets `settling`, lets `held` go (the
    /// directory lock comes first), frees the entry under the directory
    /// lock if nobody else names it, then clears the pending hold and
    /// `settling`.
    #[cold]
    fn settle(&self, held: std::sync::MutexGuard<'_, BTreeMap<usize, Holds>>, at: usize) {
        self.settling.store(true, Ordering::Relaxed);
        drop(held);
        if let Ok(dir) = self.lock() {
            let _ = dir.heap().settle(at);
        }
        let _held = self.held();
        self.heap().clear_pending(self.slot);
        self.settling.store(false, Ordering::Relaxed);
    }

    /// Takes the directory lock, rebuilding the directory if its last
    /// holder died (or panicked) holding it.
    fn lock(&self) -> Result<Dir<'_>> {
        let lock = self.raw();
        let me = lock.acquire();
        // A change a dead holder left unfinished becomes ours.
        let mut dir = Dir {
            inner: self,
            held: Held::new(lock, self.versions(), me),
            size: 0,
        };
        // A store shrunk under us: no rebuilding from zeros.
        self.intact(Ok(()))?;
        dir.size = match self.room.plain(&self.map, &self.geo) {
            Some(size) => size,
            None => self.check_heap()?,
        };
        let formatted = dir.heap().formatted();
        if lock.is_poisoned() || dir.held.is_writing() || !formatted {
            // Rebuilding a directory in use is a change: readers without
            // the lock (`StoreReader`) must not trust a look-up it overlaps.
            // (Formatting a new one is not: there is nothing to find yet.)
            if formatted {
                dir.begin_change();
            }
            dir.heap().recover()?;
            lock.clear_poison();
        }
        Ok(dir)
    }
}

impl Inner {
    /// For a holder of the directory lock whose heap grew past what this
    /// process knew, or whose bucket table moved into the heap: a heap
    /// larger than the object, or a bucket table that is not a table, or
    /// lies over an entry this process holds, is damage, which no rebuild
    /// repairs ([`Error::Corrupt`]).
    /// Returns the heap's size.
    #[cold]
    fn check_heap(&self) -> Result<u64> {
        let heap = Heap::checked(&self.map, &self.geo, &self.label, &self.room)?;
        if let Some((start, end)) = heap.table_bytes()? {
            if meets_held(&self.held(), start, end) {
                return Err(Error::Corrupt {
                    name: self.label.to_string(),
                    reason: "its bucket table lies over an entry this process holds".into(),
                });
            }
        }
        Ok(heap.heap_size())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.slot != usize::MAX {
            if let Ok(dir) = self.lock() {
                let held = self.held();
                let _ = dir
                    .heap()
                    .unregister(self.slot, &|start, end| meets_held(&held, start, end));
            }
        }
        if self.remove_on_drop {
            let _ = self.remover.remove();
        }
    }
}

/// What this process holds of one entry: how many handles, and where the
/// bytes they reach end (from the block's start).
struct Holds {
    count: usize,
    /// Where the entry's value starts (what a guard hands out).
    value: usize,
    end: usize,
    /// The entry's position in this handle's hold list in the store.
    pos: u32,
}

impl Holds {
    /// The first handle's hold of an entry whose value spans `value..end`,
    /// at position `pos` of the hold list.
    fn first(value: usize, end: usize, pos: u32) -> Holds {
        Holds {
            count: 1,
            value,
            end,
            pos,
        }
    }
}

/// The directory lock, held.
struct Dir<'a> {
    inner: &'a Inner,
    /// The directory lock; a change (its generation odd until the lock is
    /// released) is a write.
    held: Held<'a>,
    /// The heap's size, checked when the lock was taken: only this holder
    /// changes it while it holds the lock ([`Dir::grow`]).
    size: u64,
}

impl Dir<'_> {
    #[inline]
    fn heap(&self) -> Heap<'_> {
        let inner = self.inner;
        Heap::of_size(&inner.map, &inner.geo, &inner.label, &inner.room, self.size)
    }

    /// Grows the heap (`Heap::grow`) as a change of the directory.
    fn grow(&mut self, needed: u64) -> Result<bool> {
        self.begin_change();
        let heap = self.heap();
        let grown = heap.grow(needed)?;
        self.size = heap.heap_size();
        Ok(grown)
    }

    /// Marks the directory as changing: its generation counts one more when
    /// the lock is released.
    fn begin_change(&mut self) {
        self.held.begin_write();
    }
}

/// An entry handle's hold on its entry: keeps the store mapped and the
/// entry's memory from being freed; lets go on drop.
pub(crate) struct EntryRef {
    store: Arc<Inner>,
    at: usize,
}

impl KeepsMapped for EntryRef {
    fn map(&self) -> &Mapping {
        &self.store.map
    }
}

impl Drop for EntryRef {
    fn drop(&mut self) {
        let store = &*self.store;
        let mut held = store.held();
        let Some(h) = held.get_mut(&self.at) else {
            return;
        };
        if h.count > 1 {
            h.count -= 1;
            return;
        }
        // The last handle of this store handle on the entry: out of the
        // hold list, without the lock unless someone is settling.
        let pos = h.pos;
        let heap = store.heap();
        if !store.settling.load(Ordering::Relaxed) {
            if let Some(list) = heap.list_of(store.slot) {
                let let_go = heap.let_go_quiet(&list, self.at, pos);
                held.remove(&self.at);
                // A list that does not say what this process wrote (a peer
                // changed it) is left as it is, as under the lock.
                let Ok((removed, moved)) = let_go else {
                    return;
                };
                if let Some(m) = moved.and_then(|moved| held.get_mut(&moved)) {
                    m.pos = pos;
                }
                if removed {
                    store.settle(held, self.at);
                }
                return;
            }
        }
        drop(held);
        self.drop_locked();
    }
}

impl EntryRef {
    /// [`drop`](Drop::drop) under the directory lock.
    #[cold]
    fn drop_locked(&mut self) {
        let Ok(dir) = self.store.lock() else {
            return;
        };
        let mut held = self.store.held();
        let Some(h) = held.get_mut(&self.at) else {
            return;
        };
        h.count -= 1;
        if h.count == 0 {
            let pos = h.pos;
            held.remove(&self.at);
            // The last entry of the list took this one's place.
            if let Ok(Some(moved)) = dir.heap().unhold(self.at, self.store.slot, pos) {
                if let Some(m) = held.get_mut(&moved) {
                    m.pos = pos;
                }
            }
        }
    }
}

/// Opening with options: the [`SharedOptions`] builder's final calls for
/// this handle.
impl SharedOptions {
    /// Creates a new [`Store`](crate::Store) with room for `capacity`
    /// bytes of entries (see [`Store::create`](crate::Store::create)).
    pub fn create_store(&self, at: impl IntoLocation, capacity: usize) -> Result<crate::Store> {
        crate::Store::establish(self, at, OpenMode::Create, capacity)
    }

    /// Opens an existing [`Store`](crate::Store) (see
    /// [`Store::open`](crate::Store::open)).
    pub fn open_store(&self, at: impl IntoLocation) -> Result<crate::Store> {
        crate::Store::establish(self, at, OpenMode::Open, 0)
    }

    /// Opens a [`Store`](crate::Store), creating it with room for
    /// `capacity` bytes of entries if there is none (see
    /// [`Store::open_or_create`](crate::Store::open_or_create)).
    pub fn open_or_create_store(
        &self,
        at: impl IntoLocation,
        capacity: usize,
    ) -> Result<crate::Store> {
        crate::Store::establish(self, at, OpenMode::OpenOrCreate, capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory rebuilt after a holder died (here: panicked) holding its
    /// lock, without a change of its own, counts as a change: a reader
    /// without the lock must not trust a look-up the rebuild overlapped.
    #[test]
    fn rebuilding_the_directory_moves_its_generation() {
        let name = format!("shmstore-unit-rebuild-{}", std::process::id());
        let store = Store::create(&name, 16 * 1024).unwrap();
        store.insert::<u64>("k", 1).unwrap();
        let reader = StoreReader::open(&name).unwrap();
        let entry = reader.get::<u64>("k").unwrap();
        let g = store.generation();
        let lock = store.inner.raw();
        let me = lock.acquire();
        lock.poison();
        lock.release(me, false);
        assert_eq!(store.generation(), g, "poisoning is no change");
        assert_eq!(store.len().unwrap(), 1);
        assert_eq!(store.generation(), g + 1, "the rebuild is a change");
        assert_eq!(reader.generation(), g + 1);
        assert_eq!(entry.snapshot().unwrap(), 1, "the entry is found again");
        store.check().unwrap();
        drop((entry, reader, store));
        Store::unlink(&name).unwrap();
    }
}
