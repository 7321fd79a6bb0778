//! [`SharedAtomic<T>`], the handle on a value made of atomics only, used
//! without any lock.

use std::fmt;
use std::ops::Deref;

use crate::error::Result;
use crate::lock::slot::AtomicSlot;
use crate::segment::location::IntoLocation;
use crate::segment::Handle;
use crate::shared::Shared;
use crate::types::lockfree::LockFree;
use crate::types::shareable::Shareable;

impl<T: Shareable> Shared<T> {
    /// Turns this handle into a [`SharedAtomic`], which hands out the value
    /// without the lock; for types made of atomics only ([`LockFree`]).
    ///
    /// The handle is consumed, so no guard of it can hand out `&mut T` while
    /// the lock-free `&T`s exist (that would be a data race in this
    /// process); [`SharedAtomic::into_shared`] turns it back.
    pub fn into_atomic(self) -> SharedAtomic<T>
    where
        // A bound here rather than on the impl block: an unmet bound then
        // gives `LockFree`'s message (E0277) rather than "method exists but
        // its trait bounds were not satisfied" (E0599), which shows none.
        T: LockFree,
    {
        let Shared { slot, handle } = self;
        SharedAtomic {
            slot: AtomicSlot::new(slot),
            handle,
        }
    }
}

/// A handle on a segment whose value is made of atomics only, used without
/// any lock: the fastest way to keep counters and statistics that many
/// processes bump at once. It dereferences to `&T`.
///
/// Each atomic operation is indivisible, in this process and in every
/// other that maps the segment; operations on different fields are not
/// ordered with each other beyond what their `Ordering`s say, so a reader
/// may see one field updated and the next not yet.
///
/// ```
/// use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use shmstore::{Shareable, SharedAtomic};
///
/// #[derive(Shareable, Default)]
/// #[repr(C)]
/// struct Stats { requests: AtomicU64, bytes: AtomicU64 }
///
/// # let name = format!("doc-atomic-{}", std::process::id());
/// let stats = SharedAtomic::<Stats>::open_or_create(&name, Stats::default())?;
/// stats.requests.fetch_add(1, Relaxed);
/// stats.bytes.fetch_add(512, Relaxed);
/// assert_eq!(stats.requests.load(Relaxed), 1);
/// # shmstore::unlink(&name)?;
/// # Ok::<(), shmstore::Error>(())
/// ```
///
/// # And the lock
///
/// This handle has no `lock()`: a guard hands out `&mut T`, and writing the
/// value as plain data through it (assigning it or a field, `get_mut`)
/// while another thread of this process uses the atomics would be a data
/// race. Other handles on the same segment (other processes, or another
/// `open` in this one: another mapping) may still lock it; updates made
/// here do not wait for them, do not count as a new generation and wake no
/// one waiting for a change, and a snapshot copies each field as it finds
/// it. Such peers should change the value through the atomics too.
pub struct SharedAtomic<T: LockFree> {
    /// The value, used without the lock; keeps it mapped.
    slot: AtomicSlot<T>,
    /// The name, its removal, a memfd's descriptor.
    handle: Handle,
}

impl<T: LockFree> SharedAtomic<T> {
    /// Creates a new segment at `at` holding `value` (see [`Shared::create`]).
    pub fn create(at: impl IntoLocation, value: T) -> Result<SharedAtomic<T>> {
        Ok(Shared::create(at, value)?.into_atomic())
    }

    /// Opens the existing segment at `at` (see [`Shared::open`]).
    pub fn open(at: impl IntoLocation) -> Result<SharedAtomic<T>> {
        Ok(Shared::open(at)?.into_atomic())
    }

    /// Opens the segment at `at`, creating it with `value` if there is none
    /// (see [`Shared::open_or_create`]).
    pub fn open_or_create(at: impl IntoLocation, value: T) -> Result<SharedAtomic<T>> {
        Ok(Shared::open_or_create(at, value)?.into_atomic())
    }

    /// The value, without any lock (what `Deref` gives too).
    #[inline]
    pub fn get(&self) -> &T {
        self.slot.get()
    }

    /// `Err(`[`Error::Truncated`](crate::Error::Truncated)`)` if another
    /// process shrank the segment under this handle and this process touched
    /// a missing page (see [`Shared::check`]): the atomics there are then
    /// zeroed private memory, and what was read from them since is not the
    /// segment's.
    pub fn check(&self) -> Result<()> {
        self.slot.check(&self.handle.label)
    }

    /// Turns this handle back into a [`Shared`], with `lock()`.
    pub fn into_shared(self) -> Shared<T> {
        Shared {
            slot: self.slot.into_slot(),
            handle: self.handle,
        }
    }

    /// The segment's name as errors give it (see [`Shared::name`]).
    pub fn name(&self) -> &str {
        &self.handle.label
    }
}

impl<T: LockFree> Deref for SharedAtomic<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.get()
    }
}

impl<T: LockFree> fmt::Debug for SharedAtomic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedAtomic")
            .field("name", &self.handle.label.as_str())
            .field("type", &T::TYPE_NAME)
            .finish_non_exhaustive()
    }
}
