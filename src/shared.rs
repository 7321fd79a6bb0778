//! [`Shared<T>`], the typed handle, and its lock guard.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{LockResult, PoisonError, TryLockError, TryLockResult};
use std::time::{Duration, Instant};

use std::os::fd::{BorrowedFd, OwnedFd};

use crate::error::Result;
use crate::lock::guard::Guard;
use crate::lock::notify::Changed;
#[cfg(feature = "stream")]
use crate::lock::notify::Changes;
use crate::lock::slot::Slot;
use crate::lock::RawLock;
use crate::segment::location::{IntoLocation, Location};
use crate::segment::options::{OpenMode, SharedOptions};
use crate::segment::{Established, Handle, Label};
use crate::sys::mapping::Mapping;
use crate::types::shareable::Shareable;
use std::future::Future;

/// A `T` in shared memory, guarded by a lock that works across processes and
/// recovers from holders that die.
///
/// Use it as you would an `Arc<Mutex<T>>` that other processes can open by
/// name: [`lock`](Shared::lock) returns a guard that dereferences to `T`.
/// The handle is `Send + Sync`; the lock excludes other threads of this
/// process as well as other processes.
///
/// Dropping the handle unmaps the segment; the segment itself lives on until
/// [`unlink`](crate::unlink) removes its name (or
/// [`SharedOptions::remove_on_drop`] is set) and the last handle is gone.
///
/// ```
/// use shmstore::{Shareable, Shared};
///
/// #[derive(Shareable, Clone, Copy, Default)]
/// #[repr(C)]
/// struct Counter { value: u64, last_pid: u32, _pad: u32 }
///
/// # let name = format!("doc-shared-{}", std::process::id());
/// let c = Shared::<Counter>::open_or_create(&name, Counter::default())?;
/// {
///     let mut g = c.lock().unwrap();
///     g.value += 1;
///     g.last_pid = std::process::id();
/// }
/// assert_eq!(c.lock().unwrap().value, 1);
/// shmstore::unlink(&name)?;
/// # Ok::<(), shmstore::Error>(())
/// ```
pub struct Shared<T: Shareable> {
    /// The lock, versions and value, and what keeps them mapped.
    pub(crate) slot: Slot<T>,
    /// The name, its removal, a memfd's descriptor.
    pub(crate) handle: Handle,
}

impl<T: Shareable> Shared<T> {
    /// Creates a new segment at `at` holding `value`, with the default
    /// [`SharedOptions`]. Fails with [`Error::AlreadyExists`](crate::Error::AlreadyExists)
    /// if the name exists.
    ///
    /// `at` is a POSIX shm name (`&str`), a [`SysvKey`](crate::SysvKey) or a
    /// file path (`&Path`); see [`Location`](crate::Location).
    pub fn create(at: impl IntoLocation, value: T) -> Result<Shared<T>> {
        SharedOptions::new().create(at, value)
    }

    /// Opens the existing segment at `at`, checking that it holds a `T` of
    /// this build's layout. Fails with [`Error::NotFound`](crate::Error::NotFound)
    /// if there is none.
    pub fn open(at: impl IntoLocation) -> Result<Shared<T>> {
        SharedOptions::new().open(at)
    }

    /// Opens the segment at `at`, creating it with `value` if there is none.
    /// Race-free: when many processes call it at once, exactly one of them
    /// initialises the segment, and all end up on the same object.
    pub fn open_or_create(at: impl IntoLocation, value: T) -> Result<Shared<T>> {
        SharedOptions::new().open_or_create(at, value)
    }

    /// A new segment with no name, holding `value`: a `memfd` sealed
    /// against shrinking and growing, so no process can truncate it under
    /// a mapping. Share it by handing on its descriptor
    /// ([`as_fd`](Shared::as_fd)): to children that inherit it, or over a
    /// Unix socket with [`send_fd`](crate::send_fd). The segment lives while
    /// any process keeps the descriptor or a mapping.
    pub fn memfd(value: T) -> Result<Shared<T>> {
        let (map, fd) = crate::segment::memfd(value)?;
        let mut shared = Shared::from_memfd(map, fd);
        shared.handle.created = true;
        Ok(shared)
    }

    /// The handle of a memfd segment. The descriptor it was made from is
    /// closed: the handle lends its mapping's own description of the
    /// memfd for sharing instead ([`as_fd`](Shared::as_fd)), one
    /// descriptor in all.
    pub(crate) fn from_memfd(map: Mapping, fd: OwnedFd) -> Shared<T> {
        drop(fd);
        let label = format!("memfd:{}", T::TYPE_NAME);
        Shared::from_parts(map, Handle::nameless(Label::whole(label), true))
    }

    /// Maps a segment from a descriptor handed over by another process
    /// (for example with [`recv_fd`](crate::recv_fd)). Only sealed memfd
    /// segments are accepted; the header is checked as for a named segment.
    pub fn from_fd(fd: OwnedFd) -> Result<Shared<T>> {
        SharedOptions::new().from_fd(fd)
    }

    /// A new segment in anonymous shared memory holding `value`: it has no
    /// name and no descriptor, and is shared with the children this process
    /// `fork`s afterwards (each child inherits the mapping), as in the
    /// classic fork-workers pattern.
    pub fn anonymous(value: T) -> Result<Shared<T>> {
        let map = crate::segment::anonymous(value)?;
        let label = format!("anonymous:{}", T::TYPE_NAME);
        let mut handle = Handle::nameless(Label::whole(label), false);
        handle.created = true;
        Ok(Shared::from_parts(map, handle))
    }

    /// The handle of the single-value segment `map`.
    pub(crate) fn from_parts(map: Mapping, handle: Handle) -> Shared<T> {
        Shared {
            slot: crate::segment::header::value_slot(map),
            handle,
        }
    }

    /// The handle of an entry of a store: `slot` keeps the store mapped,
    /// and the entry from being freed, for as long as the handle lives.
    /// It is called `store/key` in errors (put together only when asked
    /// for); `store` and `key` are also what the
    /// `shmstore` command needs to reach it.
    pub(crate) fn from_entry(
        mut slot: Slot<T>,
        store: std::sync::Arc<str>,
        key: String,
        poisoning: bool,
    ) -> Shared<T> {
        slot.set_poisoning(poisoning);
        Shared {
            slot,
            handle: Handle::nameless(Label::entry(store, key), false),
        }
    }

    fn map(&self) -> &Mapping {
        self.slot.map()
    }

    #[inline]
    fn raw(&self) -> &RawLock {
        self.slot.raw()
    }

    /// A copy of the value, taken without the lock and without waiting for
    /// lock holders that are not writing.
    ///
    /// The copy is consistent: it never mixes bytes from before and after a
    /// write. While a holder is writing (between the first `DerefMut` of
    /// its guard and the guard's drop) the snapshot waits for it; writers
    /// never wait for snapshots. Under a writer that writes without pause, a
    /// snapshot of a large value may retry many times.
    ///
    /// Returns `Err(PoisonError)` while the lock is poisoned (a holder
    /// panicked, or died and a locker has since taken the lock over; until
    /// [`clear_poison`](Shared::clear_poison)), and when a holder died in the
    /// middle of a write that no locker has taken over yet (noticed within
    /// a few ms of waiting when it is dead already, about 50 ms when it dies
    /// while the snapshot waits): the copy is then what it left, possibly
    /// half written. A handle opened with
    /// [`SharedOptions::poisoning(false)`](SharedOptions::poisoning) never
    /// returns `Err` for poison: see there.
    /// `into_inner()` gives the copy. A holder that died without writing
    /// changed nothing, so until someone locks, snapshots of its value are
    /// `Ok`.
    ///
    /// # Panics
    ///
    /// If this thread holds a guard through which it has written (the
    /// snapshot would wait for its own write); read through the guard
    /// instead.
    ///
    /// ```
    /// use shmstore::{Shareable, Shared};
    ///
    /// #[derive(Shareable, Clone, Copy, Default, Debug, PartialEq)]
    /// #[repr(C)]
    /// struct Position { x: f64, y: f64 }
    ///
    /// # let name = format!("doc-snapshot-{}", std::process::id());
    /// let p = Shared::<Position>::create(&name, Position::default())?;
    /// *p.lock().unwrap() = Position { x: 1.0, y: 2.0 };
    /// assert_eq!(p.snapshot().unwrap(), Position { x: 1.0, y: 2.0 });
    /// # shmstore::unlink(&name)?;
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    #[inline]
    pub fn snapshot(&self) -> LockResult<T> {
        self.slot.snapshot()
    }

    /// [`snapshot`](Shared::snapshot), with the generation the copy belongs
    /// to (see [`generation`](Shared::generation)).
    pub fn snapshot_with_generation(&self) -> LockResult<(T, u64)> {
        self.slot.snapshot_with_generation()
    }

    /// [`snapshot`](Shared::snapshot) into a value the caller already has,
    /// for large values read often: the copy is written straight into
    /// `out`, with no move afterwards. Returns the copy's generation;
    /// `Err(PoisonError)` (holding the generation) in the cases where
    /// `snapshot` returns it. `out` holds the copy either way.
    #[inline]
    pub fn snapshot_into(&self, out: &mut T) -> LockResult<u64> {
        self.slot.snapshot_into(out)
    }

    /// How many writes to the value have been committed since the segment
    /// was created: a guard that was dereferenced mutably counts one when it
    /// is dropped. Equal generations mean an unchanged value.
    pub fn generation(&self) -> u64 {
        self.slot.generation()
    }

    /// Sleeps until a write is committed, in any process, that makes the
    /// generation differ from `seen`; returns the new generation, or
    /// `Ok(None)` when `timeout` passes first. Returns at once if the
    /// generation differs already.
    ///
    /// `Result<Option<u64>>`, as on [`SharedReader`](crate::SharedReader)
    /// and [`Store`](crate::Store): `Err` means this handle cannot watch
    /// the segment any more, here only
    /// [`Error::Truncated`](crate::Error::Truncated) (the segment was shrunk
    /// under it, see [`check`](Shared::check)); `None` only that nothing
    /// changed in time.
    ///
    /// The sleep is in the kernel (a futex on the shared counter), not a
    /// poll; the writer that commits wakes every waiter. Writes are not
    /// queued: several commits during one sleep are seen as one change, so
    /// read the value after waking (with [`snapshot`](Shared::snapshot)).
    ///
    /// ```no_run
    /// # use shmstore::Shared;
    /// # fn follow(config: &Shared<u64>) -> shmstore::Result<()> {
    /// use std::time::Duration;
    /// let mut seen = config.generation();
    /// loop {
    ///     if let Some(now) = config.wait_for_change(seen, Duration::from_secs(60))? {
    ///         seen = now;
    ///         println!("config changed: {:?}", config.snapshot());
    ///     }
    /// }
    /// # }
    /// ```
    ///
    /// In async code, await [`changed`](Shared::changed) instead.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> Result<Option<u64>> {
        // Checked after the wait: a segment shrunk before or during it reads
        // as zeros, a changed generation that must not pass for a commit.
        let changed = self.slot.wait_for_change(seen, timeout);
        self.check().map(|()| changed)
    }

    /// Waits, as a future, until the generation differs from `seen`; the
    /// new generation. The async form of
    /// [`wait_for_change`](Shared::wait_for_change), without a timeout (put
    /// one around it with your runtime, e.g. `tokio::time::timeout`).
    ///
    /// It works on any executor (only `std::future::Future` and `Waker`):
    /// no task or thread waits per future. One background thread per 127
    /// awaited counters (values, entries, directories) of the process sleeps
    /// on all of them at once (`futex_waitv`, Linux 5.16 and later) and
    /// wakes the tasks whose generation moved; futures awaiting one counter
    /// share it. On older kernels, one thread per awaited counter sleeps on
    /// it. Threads start on first use and end after 10
    /// seconds with nothing to serve.
    ///
    /// Cancel-safe: dropping the future removes its registration, and a
    /// commit afterwards wakes nobody. `Err` as for `wait_for_change`
    /// ([`Error::Truncated`](crate::Error::Truncated) once the segment was
    /// shrunk under this handle); an unlinked name does not matter, the
    /// handle keeps its mapping.
    ///
    /// ```no_run
    /// # use shmstore::Shared;
    /// # async fn follow(config: &Shared<u64>) -> shmstore::Result<()> {
    /// let mut seen = config.generation();
    /// loop {
    ///     seen = config.changed(seen).await?;
    ///     println!("config changed: {:?}", config.snapshot());
    /// }
    /// # }
    /// ```
    pub fn changed(&self, seen: u64) -> impl Future<Output = Result<u64>> + Send + '_ {
        Changed::new(self.slot.waiting(seen), self.name(), move || self.check())
    }

    /// The generations the value goes through after `seen`, as a
    /// [`futures_core::Stream`] (feature `stream`): each item is the
    /// generation after one or more commits (commits made while nobody
    /// polls are seen as one change), as [`changed`](Shared::changed)
    /// returns them one after the other. The first error ends it.
    #[cfg(feature = "stream")]
    pub fn changes(&self, seen: u64) -> impl futures_core::Stream<Item = Result<u64>> + Send + '_ {
        Changes::new(self.slot.waiting(seen), self.name(), move || self.check())
    }

    /// The segment's name as errors give it: a POSIX name (without the
    /// leading `/`), a path, a System V key, or `memfd:TYPE` /
    /// `anonymous:TYPE` for nameless segments.
    pub fn name(&self) -> &str {
        &self.handle.label
    }

    /// Whether the call that made this handle made its segment: `true` from
    /// [`create`](Shared::create), [`memfd`](Shared::memfd) and
    /// [`anonymous`](Shared::anonymous), and from
    /// [`open_or_create`](Shared::open_or_create) when this call created the
    /// segment (of many processes racing, exactly one); `false` when
    /// `open_or_create` found the segment, and from [`open`](Shared::open),
    /// [`from_fd`](Shared::from_fd) and for a store entry's handle.
    ///
    /// ```
    /// # let name = format!("doc-created-{}", std::process::id());
    /// use shmstore::Shared;
    ///
    /// let first = Shared::open_or_create(&name, 1u64)?;
    /// let second = Shared::open_or_create(&name, 2u64)?;
    /// assert!(first.created());
    /// assert!(!second.created()); // found it: the value is the first one's
    /// assert_eq!(*second.lock().unwrap(), 1);
    /// # shmstore::unlink(&name)?;
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn created(&self) -> bool {
        self.handle.created
    }

    /// Whether the call that made this handle migrated the segment from
    /// another type ([`SharedOptions::open_or_migrate`]); `false` for every
    /// other call, and for an `open_or_migrate` that found the new type or
    /// nothing, or opened what another process had migrated.
    pub fn migrated(&self) -> bool {
        self.handle.migrated
    }

    /// What the call that made this handle replaced: with
    /// [`SharedOptions::replace_on_mismatch`], the
    /// [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) that the
    /// segment found under the name gave (it says what differed), before a
    /// fresh segment took its place. `None` when nothing was replaced.
    ///
    /// ```
    /// use shmstore::SharedOptions;
    ///
    /// # let name = format!("doc-replaced-{}", std::process::id());
    /// shmstore::Shared::create(&name, 7u32)?; // an older build's type
    /// let fresh = SharedOptions::new()
    ///     .replace_on_mismatch(true)
    ///     .open_or_create(&name, 0u64)?;
    /// if let Some(mismatch) = fresh.replaced_mismatch() {
    ///     eprintln!("replaced: {mismatch}"); // never silent
    /// }
    /// assert!(fresh.replaced_mismatch().is_some());
    /// # shmstore::unlink(&name)?;
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn replaced_mismatch(&self) -> Option<&crate::Error> {
        self.handle.replaced.as_deref()
    }

    /// The descriptor of a memfd segment, to hand to another process
    /// ([`send_fd`](crate::send_fd), or inheritance); `None` for other
    /// backends.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        if self.handle.shares_fd {
            self.map().descriptor()
        } else {
            None
        }
    }

    /// For a System V segment, what the kernel says of it now: key, id,
    /// owner, attach count, whether it is marked for removal. `None` for
    /// other backends.
    pub fn sysv_info(&self) -> Option<Result<crate::SysvInfo>> {
        self.handle.remover.sysv_info()
    }

    /// Writes the segment to its storage and waits until it is there
    /// (`msync(MS_SYNC)`). Only file-backed segments have storage that
    /// outlives the machine; for them, what was written before `flush`
    /// returns survives a crash or power loss. Without it, the kernel writes
    /// changes back on its own schedule (typically within 30 seconds).
    pub fn flush(&self) -> Result<()> {
        self.map().flush().map_err(|e| crate::Error::Io {
            op: "flushing",
            name: self.handle.label.as_str().to_owned(),
            source: e,
        })
    }

    /// Locks the value, waiting as long as it takes.
    ///
    /// Returns `Err(PoisonError)` when a holder panicked or died (was killed
    /// by any signal, or exited) while holding the lock, and until
    /// [`clear_poison`](Shared::clear_poison) is called; `into_inner()` on the
    /// error gives a working guard over what the holder left. A holder that
    /// died is noticed within about 50 ms. Also `Err` for good once the
    /// segment was shrunk under this handle (see [`check`](Shared::check)).
    /// A handle opened with
    /// [`SharedOptions::poisoning(false)`](SharedOptions::poisoning) clears
    /// the poison itself and returns `Ok` (unless the segment was
    /// superseded by a migration).
    ///
    /// `PoisonError` (std's type) cannot say what happened: call
    /// [`poison_info`](Shared::poison_info), which names the segment, the
    /// process and thread, the cause and the time. The recovery idiom:
    ///
    /// ```
    /// # use shmstore::Shared;
    /// # let name = format!("doc-lock-{}", std::process::id());
    /// # let c = Shared::<u64>::create(&name, 0)?;
    /// let mut g = match c.lock() {
    ///     Ok(g) => g,
    ///     Err(poisoned) => {
    ///         // who died, and how: "segment ... process 4242 ... was killed ..."
    ///         if let Some(info) = c.poison_info() { eprintln!("{info}"); }
    ///         let g = poisoned.into_inner();   // repair or accept the value here
    ///         c.clear_poison();
    ///         g
    ///     }
    /// };
    /// *g += 1;
    /// # drop(g);
    /// # shmstore::unlink(&name)?;
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If this thread holds the lock already (it would deadlock), also
    /// through another handle on the same segment. A lock word that names
    /// this thread without this thread holding the lock (another process
    /// wrote it) is no relock: it names no holder, and the lock is taken
    /// over, poisoned.
    #[inline]
    pub fn lock(&self) -> LockResult<SharedGuard<'_, T>> {
        let (me, poisoned) = self.raw().acquire_checked();
        self.guard(me, poisoned)
    }

    /// Locks the value if that is possible without waiting: it is free, or
    /// its holder is dead.
    ///
    /// When the lock is held, this checks whether the holder is alive, which
    /// takes a few microseconds: do not spin on it, use
    /// [`try_lock_for`](Shared::try_lock_for).
    pub fn try_lock(&self) -> TryLockResult<SharedGuard<'_, T>> {
        match self.raw().try_acquire() {
            Some(me) => self
                .guard(me, self.raw().is_poisoned())
                .map_err(TryLockError::Poisoned),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// Locks the value, waiting at most `timeout`; `Err(WouldBlock)` when
    /// the time is up.
    ///
    /// # Panics
    ///
    /// As [`lock`](Shared::lock), if this thread holds the lock already.
    pub fn try_lock_for(&self, timeout: Duration) -> TryLockResult<SharedGuard<'_, T>> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.try_lock_until(deadline),
            None => self.lock().map_err(TryLockError::Poisoned),
        }
    }

    /// Locks the value, waiting until `deadline` at the latest.
    ///
    /// # Panics
    ///
    /// As [`lock`](Shared::lock), if this thread holds the lock already.
    pub fn try_lock_until(&self, deadline: Instant) -> TryLockResult<SharedGuard<'_, T>> {
        match self.raw().acquire_until(deadline) {
            Some(me) => self
                .guard(me, self.raw().is_poisoned())
                .map_err(TryLockError::Poisoned),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// Whether a holder panicked or died while holding the lock (since the
    /// poison was last cleared), or the segment was shrunk under this
    /// handle (see [`check`](Shared::check); that cannot be cleared).
    pub fn is_poisoned(&self) -> bool {
        self.raw().is_poisoned() || self.slot.is_cut()
    }

    /// Whether this handle still sees the whole segment: `Ok` unless
    /// another process shrank it (`ftruncate`) while it was mapped here and
    /// this process touched a page past the new end, which gives
    /// [`Error::Truncated`](crate::Error::Truncated).
    ///
    /// Such a page would kill the process with SIGBUS. shmstore catches the
    /// fault instead and puts zeroed private pages there, so the process
    /// lives on; from then on [`lock`](Shared::lock) and
    /// [`snapshot`](Shared::snapshot) return `Err(PoisonError)` whatever
    /// the poison flag says, and this returns the error. memfd and System V
    /// segments cannot be shrunk.
    pub fn check(&self) -> Result<()> {
        self.slot.check(&self.handle.label)
    }

    /// Clears the poison, for every process: call it once the value has been
    /// checked or repaired. Needs no lock, like `std::sync::Mutex::clear_poison`.
    pub fn clear_poison(&self) {
        self.raw().clear_poison();
    }

    /// What poisoned the lock, if it is poisoned: the segment (or store
    /// entry), the process and thread, the cause and the time, as the
    /// segment records them; its `Display` is a message a user can act on.
    /// `None` when the lock is not poisoned (a segment shrunk under this
    /// handle is reported by [`check`](Shared::check) instead).
    ///
    /// ```
    /// # use shmstore::Shared;
    /// # let name = format!("doc-poison-{}", std::process::id());
    /// let c = Shared::<u64>::create(&name, 0)?;
    /// assert_eq!(c.poison_info(), None);
    /// # shmstore::unlink(&name)?;
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn poison_info(&self) -> Option<crate::PoisonInfo> {
        let raw = self.raw().raw_poison()?;
        Some(crate::PoisonInfo::from_raw(
            self.handle.label.as_str().to_owned(),
            self.handle.label.entry_names(),
            raw,
        ))
    }

    /// Whether some thread (of any process) holds the lock now. The answer
    /// may be stale by the time it is read.
    pub fn is_locked(&self) -> bool {
        self.raw().is_locked()
    }

    /// The thread id of the current holder, if any (a momentary answer; the
    /// holder may be dead and not yet noticed).
    pub fn holder_tid(&self) -> Option<u32> {
        self.raw().holder_tid()
    }

    /// Makes the guard for a lock this thread (identity `me`) has just
    /// acquired, whose poison cause (read after acquiring) was `poisoned`.
    #[inline(always)]
    fn guard(&self, me: u64, poisoned: bool) -> LockResult<SharedGuard<'_, T>> {
        // Checked after acquiring: a segment shrunk under us meanwhile has
        // zeros where the value was, which must not pass for it. Decided
        // before the guard is made, so that no call comes between making
        // it and returning it (it then stays out of memory).
        let poisoned = (poisoned || self.slot.is_cut()) && !self.slot.recovers();
        let guard = SharedGuard {
            guard: self.slot.guard(me),
        };
        if poisoned {
            Err(PoisonError::new(guard))
        } else {
            Ok(guard)
        }
    }
}

impl<T: Shareable> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.handle.label.as_str())
            .field("type", &T::TYPE_NAME)
            .field("size", &std::mem::size_of::<T>())
            .field("locked", &self.is_locked())
            .field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

/// Access to the value while the lock is held; unlocks when dropped.
///
/// A guard dropped while its thread panics poisons the lock, as with
/// `std::sync::MutexGuard`. Not `Send`: the lock belongs to the thread that
/// took it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SharedGuard<'a, T: Shareable> {
    guard: Guard<'a, T>,
}

impl<T: Shareable> Deref for SharedGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: Shareable> DerefMut for SharedGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: Shareable + fmt::Debug> fmt::Debug for SharedGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Opening with options: the [`SharedOptions`] builder's final calls for
/// this handle.
impl SharedOptions {
    /// Creates a new segment holding `value`; fails with
    /// [`AlreadyExists`](crate::Error::AlreadyExists) if the name exists.
    pub fn create<T: Shareable>(&self, at: impl IntoLocation, value: T) -> Result<Shared<T>> {
        self.establish(at, OpenMode::Create, Some(value))
    }

    /// Opens an existing segment that holds a `T`; fails with
    /// [`NotFound`](crate::Error::NotFound) if there is none.
    pub fn open<T: Shareable>(&self, at: impl IntoLocation) -> Result<Shared<T>> {
        self.establish(at, OpenMode::Open, None)
    }

    /// Opens the segment, creating it with `value` if there is none. When
    /// many processes call this at once, exactly one initialises the segment
    /// and all of them end up on the same object.
    pub fn open_or_create<T: Shareable>(
        &self,
        at: impl IntoLocation,
        value: T,
    ) -> Result<Shared<T>> {
        self.establish(at, OpenMode::OpenOrCreate, Some(value))
    }

    /// Maps a segment from a descriptor another process handed over (see
    /// [`Shared::from_fd`]); honours
    /// [`allow_foreign_owner`](SharedOptions::allow_foreign_owner).
    pub fn from_fd<T: Shareable>(&self, fd: OwnedFd) -> Result<Shared<T>> {
        let map = crate::segment::from_fd::<T>(&fd, self)?;
        let mut shared = Shared::from_memfd(map, fd);
        shared.slot.set_poisoning(self.poisoning);
        Ok(shared)
    }

    /// Opens the segment at `at` as a `New`, migrating it from an `Old` if
    /// that is what it holds: the way to change a segment's type while
    /// processes of the old build still use it.
    ///
    /// - Nothing under the name: a segment holding `init` is created (as
    ///   [`open_or_create`](SharedOptions::open_or_create)).
    /// - A `New`: it is opened.
    /// - An `Old`: under the old segment's lock (taken over if its holder
    ///   died), a new segment holding `migrate(old value)` is made whole
    ///   under a temporary name and put in place of the old one atomically:
    ///   there is no moment when the name is missing or shows a half-made
    ///   segment. The old segment is then marked superseded: its lock is
    ///   poisoned with [`PoisonCause::Superseded`](crate::PoisonCause::Superseded)
    ///   and a write is committed, so processes of the old build get `Err`
    ///   from their next `lock()` (their
    ///   [`wait_for_change`](Shared::wait_for_change) wakes), see the cause
    ///   in [`poison_info`](Shared::poison_info), and reopen the name.
    ///   Exactly one of many processes racing to migrate calls `migrate`;
    ///   the others open its result. [`Shared::migrated`] says whether this
    ///   call migrated.
    /// - Anything else: [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) (for `New`).
    ///
    /// Writes to the old segment after the migration would be lost: its
    /// poison makes them impossible unless a process of the old build
    /// clears it ([`Shared::clear_poison`]) on purpose; a handle opened
    /// with [`poisoning(false)`](SharedOptions::poisoning) does not clear a
    /// `Superseded` poison either.
    ///
    /// If `migrate` panics, the old segment stays under the name, its lock
    /// is released without poisoning, and the panic goes on to the caller.
    /// A migrating process killed at any point leaves the old segment or
    /// the new one under the name (an old one marked superseded but still
    /// under the name is migrated again by the next caller).
    ///
    /// POSIX and file segments only: a System V key cannot be moved to
    /// another segment atomically, so a [`SysvKey`](crate::SysvKey) gives
    /// [`Error::MigrationUnsupported`](crate::Error::MigrationUnsupported). For an entry of a store, see
    /// [`Store::get_or_migrate`](crate::Store::get_or_migrate).
    ///
    /// ```
    /// use shmstore::SharedOptions;
    ///
    /// mod v1 {
    ///     #[derive(shmstore::Shareable, Clone, Copy, Default)]
    ///     #[repr(C)]
    ///     pub struct Config { pub workers: u32, pub _pad: u32 }
    /// }
    /// mod v2 {
    ///     #[derive(shmstore::Shareable, Clone, Copy, Default)]
    ///     #[repr(C)]
    ///     pub struct Config { pub workers: u32, pub queue_len: u32 }
    /// }
    ///
    /// # let name = format!("doc-migrate-{}", std::process::id());
    /// let old = shmstore::Shared::create(&name, v1::Config { workers: 4, _pad: 0 })?;
    ///
    /// // A process of the next build:
    /// let new = SharedOptions::new().open_or_migrate(&name, v2::Config::default(), |old: v1::Config| {
    ///     v2::Config { workers: old.workers, queue_len: 64 }
    /// })?;
    /// assert!(new.migrated());
    /// assert_eq!(new.lock().unwrap().workers, 4);
    ///
    /// // The old build's handle learns it at its next lock():
    /// assert!(old.lock().is_err());
    /// assert_eq!(old.poison_info().unwrap().cause(), shmstore::PoisonCause::Superseded);
    /// # shmstore::unlink(&name)?;
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn open_or_migrate<Old: Shareable, New: Shareable>(
        &self,
        at: impl IntoLocation,
        init: New,
        migrate: impl FnOnce(Old) -> New,
    ) -> Result<Shared<New>> {
        let loc = at.into_location()?;
        let (seg, migrated) = crate::segment::migrate::open_or_migrate(&loc, self, init, migrate)?;
        Ok(self.handle(&loc, seg, migrated, None))
    }

    fn establish<T: Shareable>(
        &self,
        at: impl IntoLocation,
        mode: OpenMode,
        value: Option<T>,
    ) -> Result<Shared<T>> {
        let loc = at.into_location()?;
        if mode == OpenMode::OpenOrCreate && self.replace_on_mismatch {
            let value = value.expect("open_or_create passes a value");
            let (seg, replaced) = crate::segment::migrate::open_or_replace(&loc, self, value)?;
            return Ok(self.handle(&loc, seg, false, replaced));
        }
        let seg = crate::segment::establish(&loc, self, mode, value)?;
        Ok(self.handle(&loc, seg, false, None))
    }

    /// The handle of the segment `seg` that a call of these options
    /// established at `loc`: `migrated` says whether it migrated it,
    /// `replaced` what mismatch it replaced.
    pub(crate) fn handle<T: Shareable>(
        &self,
        loc: &Location,
        seg: Established,
        migrated: bool,
        replaced: Option<Box<crate::Error>>,
    ) -> Shared<T> {
        let mut shared = Shared::from_parts(
            seg.map,
            Handle {
                label: Label::whole(loc.label()),
                remover: seg.remover,
                remove_on_drop: self.remove_on_drop,
                shares_fd: false,
                created: seg.created,
                migrated,
                replaced,
            },
        );
        shared.slot.set_poisoning(self.poisoning);
        shared
    }
}
