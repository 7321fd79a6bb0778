//! [`SharedOptions`]: how to create or open a segment.

/// Options for creating and opening segments, in the style of
/// [`std::fs::OpenOptions`]: set what differs from the defaults, then call
/// [`create`](SharedOptions::create), [`open`](SharedOptions::open) or
/// [`open_or_create`](SharedOptions::open_or_create).
///
/// ```
/// use shmstore::{Shareable, SharedOptions};
///
/// #[derive(Shareable, Default)]
/// #[repr(C)]
/// struct Stats { requests: u64, errors: u64 }
///
/// # let name = format!("doc-options-{}", std::process::id());
/// let stats = SharedOptions::new()
///     .mode(0o640)            // the group may open it too
///     .remove_on_drop(true)   // unlink the name when this handle goes
///     .open_or_create(&name, Stats::default())?;
/// stats.lock().unwrap().requests += 1;
/// # Ok::<(), shmstore::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SharedOptions {
    pub(crate) mode: u32,
    pub(crate) remove_on_drop: bool,
    pub(crate) allow_foreign_owner: bool,
    pub(crate) wake_read_only: bool,
    pub(crate) record_change_time: bool,
    pub(crate) poisoning: bool,
    pub(crate) replace_on_mismatch: bool,
    pub(crate) max_capacity: Option<usize>,
}

impl Default for SharedOptions {
    fn default() -> Self {
        SharedOptions::new()
    }
}

impl SharedOptions {
    /// The defaults: mode 0600, the name outlives the handle, segments of
    /// other users are refused.
    pub fn new() -> SharedOptions {
        SharedOptions {
            mode: 0o600,
            remove_on_drop: false,
            allow_foreign_owner: false,
            wake_read_only: false,
            record_change_time: false,
            poisoning: true,
            replace_on_mismatch: false,
            max_capacity: None,
        }
    }

    /// For a segment this call creates: make every committed write wake
    /// read-only handles waiting in
    /// [`SharedReader::wait_for_change`](crate::SharedReader::wait_for_change)
    /// (default `false`).
    ///
    /// A handle that may write tells writers that it waits by marking the
    /// lock word, so unwatched writes cost nothing extra. A read-only handle
    /// cannot write that mark; with this option, every write that changes
    /// the value makes one `FUTEX_WAKE` system call instead, watched or not.
    /// Set it for configuration and other state that read-only processes
    /// follow; leave it off for hot counters.
    pub fn wake_read_only(&mut self, yes: bool) -> &mut Self {
        self.wake_read_only = yes;
        self
    }

    /// Record the time of every committed write in the segment (default
    /// `false`), for tools such as `shmstore ls` to show when a value last
    /// changed. It costs reading the clock on every write that changes the
    /// value; leave it off for hot counters.
    pub fn record_change_time(&mut self, yes: bool) -> &mut Self {
        self.record_change_time = yes;
        self
    }

    /// A development shortcut: when [`open_or_create`](SharedOptions::open_or_create)
    /// finds a segment of another layout under the name, put a fresh
    /// segment holding the given value in its place instead of failing with
    /// [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) (default
    /// `false`). The old value is dropped: use it while the type changes
    /// from one build to the next in development, never for data that must
    /// survive (see [`open_or_migrate`](SharedOptions::open_or_migrate)).
    ///
    /// It is never silent: the handle's
    /// [`replaced_mismatch`](crate::Shared::replaced_mismatch) gives the
    /// mismatch that was replaced. The replacement is one atomic step (the
    /// name never misses a segment); handles that are open keep the old
    /// segment. Only a segment of ours of another layout is replaced:
    /// anything else under the name keeps its error. System V keys cannot
    /// be replaced atomically: [`Error::MigrationUnsupported`](crate::Error::MigrationUnsupported).
    pub fn replace_on_mismatch(&mut self, yes: bool) -> &mut Self {
        self.replace_on_mismatch = yes;
        self
    }

    /// Whether handles opened with these options report poison (default
    /// `true`, as `std::sync::Mutex` does).
    ///
    /// With `false`, [`lock`](crate::Shared::lock) and the `try_lock*`
    /// calls of the handle take a lock over from a holder that died or
    /// panicked, clear the poison (for every process) and return `Ok`; its
    /// snapshots never return `Err` for poison: when they would, they take
    /// the lock, which commits the unfinished write a dead holder left,
    /// clear the poison and copy under the lock (a read-only
    /// [`SharedReader`](crate::SharedReader), which cannot take the lock,
    /// returns `Ok` with what the dead holder left, and leaves the poison
    /// to others). [`Store`](crate::Store) handles opened with these
    /// options pass it on to the entries they give.
    ///
    /// What this means for half-done writes: the next holder sees whatever
    /// the dead or panicking holder left, possibly a value it was halfway
    /// through changing, and nothing tells it so. Use it only for values
    /// any partial write of which is acceptable, such as counters or
    /// "latest" readings that the next write replaces.
    ///
    /// A segment superseded by a migration
    /// ([`PoisonCause::Superseded`](crate::PoisonCause::Superseded)) stays
    /// poisoned for these handles too: writes to a migrated segment need an
    /// explicit [`clear_poison`](crate::Shared::clear_poison).
    ///
    /// ```
    /// use shmstore::SharedOptions;
    ///
    /// # let name = format!("doc-poisoning-{}", std::process::id());
    /// let hits = SharedOptions::new()
    ///     .poisoning(false) // a counter: a lost increment is fine
    ///     .open_or_create(&name, 0u64)?;
    /// *hits.lock().expect("never Err for poison") += 1;
    /// # shmstore::unlink(&name)?;
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn poisoning(&mut self, on: bool) -> &mut Self {
        self.poisoning = on;
        self
    }

    /// The flags a new segment's [`Versions`](crate::lock::seqlock::Versions) get.
    pub(crate) fn version_flags(&self) -> u32 {
        let mut flags = 0;
        if self.wake_read_only {
            flags |= crate::lock::seqlock::WAKE_ALL;
        }
        if self.record_change_time {
            flags |= crate::lock::seqlock::TIMED;
        }
        flags
    }

    /// Permission bits of a segment this call creates (default `0o600`),
    /// applied exactly, whatever the process umask. Only the low nine bits
    /// count.
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode & 0o777;
        self
    }

    /// Remove the name when the handle is dropped (default `false`). Other
    /// handles that are open keep working; new opens get `NotFound`.
    pub fn remove_on_drop(&mut self, yes: bool) -> &mut Self {
        self.remove_on_drop = yes;
        self
    }

    /// For a [`Store`](crate::Store) this call creates: the most bytes of
    /// entries it may grow to. A store whose entries do not fit grows in
    /// place, up to this; [`Error::StoreFull`](crate::Error::StoreFull)
    /// comes only past it. `max_capacity(capacity)` (or less) makes a
    /// store that never grows.
    ///
    /// The default is 64 times the store's capacity, at most 1 GiB (or the
    /// capacity, if that is larger): a bound on a runaway writer. Each
    /// process that opens the store reserves address space for the store
    /// at its most (not memory: pages come only as the store grows); the
    /// default keeps that in proportion to the capacity asked for, so a
    /// process that opens many small stores stays far from an address-space
    /// limit (`ulimit -v`), and under emulators that spend memory on
    /// reserved address space (qemu's user mode does, per page). Set a
    /// larger maximum for a store expected to grow further. A growth that
    /// finds the filesystem full (`/dev/shm`, or a file store's) fails
    /// with [`Error::NoSpace`](crate::Error::NoSpace) before `max_capacity`
    /// is reached. A value above the most a store can hold (256 GiB, its
    /// 32-bit block indexes of 64 bytes) is taken as that most.
    ///
    /// The value is kept in the store, so every process agrees on it: the
    /// creator's wins, and opening ignores this option. System V stores
    /// never grow (`shmget` fixes a segment's size): their most is their
    /// capacity.
    ///
    /// ```
    /// use shmstore::{SharedOptions, Store};
    ///
    /// # let name = format!("doc-max-capacity-{}", std::process::id());
    /// let store = SharedOptions::new()
    ///     .max_capacity(1 << 20)
    ///     .create_store(&name, 64 * 1024)?;
    /// assert_eq!((store.capacity(), store.max_capacity()), (64 * 1024, 1 << 20));
    /// for i in 0..2_000 {
    ///     store.insert::<u64>(&format!("n/{i}"), i)?; // grows past 64 KiB
    /// }
    /// assert!(store.capacity() > 64 * 1024);
    /// # Store::unlink(&name)?;
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn max_capacity(&mut self, bytes: usize) -> &mut Self {
        self.max_capacity = Some(bytes);
        self
    }

    /// Accept a segment owned by another user (default `false`: such a
    /// segment gives [`Error::ForeignOwner`](crate::Error::ForeignOwner)).
    ///
    /// /dev/shm is writable by everyone: whoever creates a name first owns
    /// it and chooses what the opener reads. Allow this only when the other
    /// user is trusted, e.g. a service account of the same application.
    pub fn allow_foreign_owner(&mut self, yes: bool) -> &mut Self {
        self.allow_foreign_owner = yes;
        self
    }
}

/// What an open call may do: make a new segment, use an existing one, either, or
/// only read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// Make a new object; fail if the name exists.
    Create,
    /// Open an existing object; fail if there is none.
    Open,
    /// Open the object, making it first if there is none.
    OpenOrCreate,
    /// Open an existing object for reading only, mapped read-only.
    ReadOnly,
}

impl OpenMode {
    /// Whether this mode makes the object when there is none.
    pub(crate) fn creates(self) -> bool {
        matches!(self, OpenMode::Create | OpenMode::OpenOrCreate)
    }

    /// Whether the object is opened and mapped for writing.
    pub(crate) fn writable(self) -> bool {
        self != OpenMode::ReadOnly
    }
}
