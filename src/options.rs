//! [`SharedOptions`]: how to create or open a segment.

use std::os::fd::OwnedFd;

use crate::backend::OpenMode;
use crate::error::Result;
use crate::location::IntoLocation;
use crate::shareable::Shareable;
use crate::shared::Shared;

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

    /// The flags a new segment's [`Versions`](crate::seqlock::Versions) get.
    pub(crate) fn version_flags(&self) -> u32 {
        let mut flags = 0;
        if self.wake_read_only {
            flags |= crate::seqlock::WAKE_ALL;
        }
        if self.record_change_time {
            flags |= crate::seqlock::TIMED;
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

    /// Opens an existing segment that holds a `T` for reading only, as a
    /// [`SharedReader`](crate::SharedReader); honours
    /// [`allow_foreign_owner`](SharedOptions::allow_foreign_owner).
    pub fn open_read_only<T: Shareable>(
        &self,
        at: impl IntoLocation,
    ) -> Result<crate::SharedReader<T>> {
        let loc = at.into_location()?;
        let seg = crate::segment::establish::<T>(&loc, self, OpenMode::ReadOnly, None)?;
        Ok(crate::SharedReader::from_map(seg.map, loc.label()))
    }

    /// Maps a segment from a descriptor another process handed over (see
    /// [`Shared::from_fd`]); honours
    /// [`allow_foreign_owner`](SharedOptions::allow_foreign_owner).
    pub fn from_fd<T: Shareable>(&self, fd: OwnedFd) -> Result<Shared<T>> {
        let map = crate::segment::from_fd::<T>(&fd, self)?;
        Ok(Shared::from_memfd(map, fd))
    }

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

    fn establish<T: Shareable>(
        &self,
        at: impl IntoLocation,
        mode: OpenMode,
        value: Option<T>,
    ) -> Result<Shared<T>> {
        let loc = at.into_location()?;
        let seg = crate::segment::establish(&loc, self, mode, value)?;
        Ok(Shared::from_parts(
            seg.map,
            loc.label(),
            seg.remover,
            self.remove_on_drop,
            None,
        ))
    }
}
