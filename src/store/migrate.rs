//! Migrating an entry to a new type while other processes use it:
//! [`Store::get_or_migrate`].
//!
//! The protocol (the directory's side is `Heap::replace`, and its crash
//! recovery `Heap::finish_replacement`): under the old entry's lock the
//! old value is copied out and migrated; then, under the directory lock, a
//! block is reserved and filled with the new entry, the old entry is
//! marked superseded, and one store makes the new entry the key's in place
//! of the old one, which becomes REMOVED (kept while handles hold it).

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use super::heap::{EntryMeta, NewEntry};
use super::{Dir, Store};
use crate::error::{Error, Result};
use crate::lock::guard::Held;
use crate::lock::slot::Slot;
use crate::shared::Shared;
use crate::types::shareable::Shareable;

impl Store {
    /// The entry `key` as a `New`, migrating an `Old` found there.
    ///
    /// - No entry `key`: it is created from `init`, as by
    ///   [`get_or_create`](Store::get_or_create).
    /// - The entry holds a `New`: it is opened (`init` and `migrate` are
    ///   dropped unused).
    /// - The entry holds an `Old`: under the old entry's lock (taken over
    ///   if its holder died, whatever it left half written) `migrate` is
    ///   called with a copy of the old value, and a new entry holding what
    ///   it returns takes the key's place, atomically: at every moment,
    ///   also after a crash of the migrating process at any point, the key
    ///   names either the complete old entry or the complete new one. The
    ///   old entry is then *superseded*: its lock is poisoned and a write
    ///   committed, so that processes holding a `Shared<Old>` of it get
    ///   `Err` from their next [`lock`](Shared::lock) (and
    ///   [`snapshot`](Shared::snapshot)), and those asleep in
    ///   [`wait_for_change`](Shared::wait_for_change) wake: they should
    ///   drop the handle and get the key again, as a `New`. The old entry
    ///   is no longer in the store: writes to it, possible only after
    ///   clearing that poison with [`clear_poison`](Shared::clear_poison),
    ///   reach nobody who opens the key and are lost when its last handle
    ///   goes. Its space is freed once no live process holds it.
    /// - The entry holds anything else: [`Error::LayoutMismatch`], as
    ///   [`get`](Store::get) gives.
    ///
    /// When many processes call this at once for the same key, exactly one
    /// calls `migrate`; the others wait for it on the old entry's lock and
    /// then open the new entry. If `Old` and `New` have the same layout
    /// fingerprint, this is [`get_or_create`](Store::get_or_create).
    ///
    /// If `migrate` panics, nothing changes: the old entry stays the key's,
    /// its lock is released without being poisoned (by this call), no space
    /// is taken, and the panic goes on to the caller. If there is no room
    /// for the new entry: [`Error::StoreFull`], and nothing changes either.
    ///
    /// Other errors are those of [`get`](Store::get) and
    /// [`insert`](Store::insert); a store handle that may not write (no
    /// opening call makes one today) gets [`Error::PermissionDenied`].
    ///
    /// # Panics
    ///
    /// If this thread holds the old entry's lock (a guard of it, through
    /// any handle): it would wait for itself. Also if `migrate` panics.
    ///
    /// ```
    /// use shmstore::{Shareable, Store};
    ///
    /// #[derive(Shareable, Clone, Copy)]
    /// #[repr(C)]
    /// struct StatsV1 { requests: u64 }
    ///
    /// #[derive(Shareable, Clone, Copy)]
    /// #[repr(C)]
    /// struct StatsV2 { requests: u64, errors: u64 }
    ///
    /// # let name = format!("doc-migrate-{}", std::process::id());
    /// let store = Store::open_or_create(&name, 64 * 1024)?;
    /// // A process of the old build made the entry and uses it.
    /// let v1 = store.get_or_create("stats", StatsV1 { requests: 7 })?;
    ///
    /// // The new build migrates it (or opens it, if another process did).
    /// let v2 = store.get_or_migrate(
    ///     "stats",
    ///     StatsV2 { requests: 0, errors: 0 },
    ///     |old: StatsV1| StatsV2 { requests: old.requests, errors: 0 },
    /// )?;
    /// assert_eq!(v2.lock().unwrap().requests, 7);
    ///
    /// // The old build's handle learns it from its next lock.
    /// assert!(v1.lock().is_err());
    /// assert!(store.get::<StatsV1>("stats").is_err());
    /// # drop((v1, v2, store));
    /// # Store::unlink(&name)?;
    /// # Ok::<(), shmstore::Error>(())
    /// ```
    pub fn get_or_migrate<Old: Shareable, New: Shareable>(
        &self,
        key: &str,
        init: New,
        migrate: impl FnOnce(Old) -> New,
    ) -> Result<Shared<New>> {
        if Old::FINGERPRINT == New::FINGERPRINT {
            return self.get_or_create(key, init);
        }
        let got = self.migrate_unchecked(key, init, migrate);
        self.inner.intact(got)
    }

    fn migrate_unchecked<Old: Shareable, New: Shareable>(
        &self,
        key: &str,
        init: New,
        migrate: impl FnOnce(Old) -> New,
    ) -> Result<Shared<New>> {
        let key = super::check_key(key)?;
        if !self.inner.map.is_writable() {
            return Err(Error::PermissionDenied {
                name: self.entry_label(key),
            });
        }
        loop {
            // What the key holds now.
            let old = {
                let mut dir = self.inner.lock()?;
                let Some((_, s)) = dir.heap().lookup(key.as_bytes())? else {
                    return self.make_locked(&mut dir, key, init, true);
                };
                if s.fingerprint != Old::FINGERPRINT {
                    // A `New` (opened), or anything else (LayoutMismatch).
                    return self.handle::<New>(&mut dir, key, &s);
                }
                self.check_type::<Old>(&dir, key, &s)?;
                let e = s.meta(key.as_bytes());
                self.hold(&mut dir, &e)?;
                e
            };
            // Held until the end: the old entry's block stays as it is.
            let slot = Slot::<Old>::from_raw(self.entry_slot(&old));
            let me = slot.raw().acquire();
            let mut lock = Held::new(slot.raw(), slot.versions(), me);
            if lock.is_writing() {
                // Its holder died writing: commit what it left (the lock
                // stays poisoned, as the takeover left it) and look again.
                drop(lock);
                continue;
            }
            // Is it still the key's entry? Not if a migrator got its lock
            // first: then the key holds the new entry, opened above next time.
            if !self.names(key, &old)? {
                continue;
            }
            let value = slot.copy_locked(&lock);
            let new = match catch_unwind(AssertUnwindSafe(|| migrate(value))) {
                Ok(new) => new,
                Err(panic) => {
                    // Released unpoisoned: this thread is not panicking
                    // while the guard drops.
                    drop(lock);
                    drop(slot);
                    resume_unwind(panic);
                }
            };
            let mut dir = self.inner.lock()?;
            return self.put_in_place(&mut dir, key, &old, &slot, &mut lock, new);
        }
    }

    /// Whether the key names the entry `e` now.
    fn names(&self, key: &str, e: &EntryMeta) -> Result<bool> {
        let dir = self.inner.lock()?;
        let found = dir.heap().find(key.as_bytes())?;
        Ok(found.is_some_and(|(_, now)| now.at == e.at))
    }

    /// Makes `new` the key's entry in place of `old`, whose lock this
    /// thread holds (`lock`), and marks `old` superseded.
    fn put_in_place<Old: Shareable, New: Shareable>(
        &self,
        dir: &mut Dir<'_>,
        key: &str,
        old: &EntryMeta,
        slot: &Slot<Old>,
        lock: &mut Held<'_>,
        new: New,
    ) -> Result<Shared<New>> {
        const { assert!(std::mem::align_of::<New>() <= super::heap::MAX_ALIGN) };
        let i = match dir.heap().find(key.as_bytes())? {
            Some((i, now)) if now.at == old.at => i,
            // Removed while `migrate` ran (`remove` does not take the
            // entry's lock): the migrated value is what the key gets if it
            // is free; anything else there is opened as a `New`, or refused.
            _ => return self.make_locked(dir, key, new, true),
        };
        let bytes = crate::types::shareable::into_bytes(new);
        let schema = Self::schema_of::<New>(&self.entry_label(key))?;
        let entry = NewEntry {
            key: key.as_bytes(),
            type_name: New::TYPE_NAME,
            fingerprint: New::FINGERPRINT,
            value: &bytes,
            align: std::mem::align_of::<New>(),
            schema: &schema,
        };
        let at = self.reserve(dir, &entry)?;
        // Marked before the switch, while this thread holds the old entry's
        // lock: once the key names the new entry, no write of the old build
        // can land in the old one unnoticed, even if this process dies
        // between the two. A switch that fails puts the poison back as it was.
        let saved = slot.raw().raw_poison();
        slot.raw().supersede();
        dir.begin_change();
        let e = match dir.heap().replace(i, old, at, &entry) {
            Ok(e) => e,
            Err(err) => {
                match saved {
                    Some(saved) => slot.raw().restore_poison(saved),
                    None => slot.raw().clear_poison(),
                }
                return Err(err);
            }
        };
        // A write, committed when the lock is released, wakes the old
        // entry's waiters.
        lock.begin_write();
        self.hold(dir, &e)?;
        self.entry_handle(e)
    }
}
