//! Changing the type a named segment holds while processes use it: what
//! [`SharedOptions::open_or_migrate`] and the development shortcut
//! [`SharedOptions::replace_on_mismatch`] do below the handle.
//!
//! Both build the new segment whole under a temporary name and put it in
//! place of the old one in one step (`renameat2(RENAME_EXCHANGE)`), so the
//! name always holds a complete segment: the old one or the new one.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::error::{Error, Result};
use crate::lock::guard::Held;
use crate::lock::slot::Slot;
use crate::segment::location::{Location, Place};
use crate::segment::options::{OpenMode, SharedOptions};
use crate::segment::{publish, Established, Initial};
use crate::types::shareable::{into_bytes, Shareable};

/// How often a migration looks again when the name changed under it
/// (another process migrated, removed or replaced it meanwhile) before it
/// gives up with the last error.
const ATTEMPTS: usize = 8;

/// What [`SharedOptions::open_or_migrate`] does, below the handle: the
/// segment established at `loc` as a `New`, and whether this call migrated
/// it from an `Old`.
pub(crate) fn open_or_migrate<Old: Shareable, New: Shareable>(
    loc: &Location,
    opts: &SharedOptions,
    init: New,
    migrate: impl FnOnce(Old) -> New,
) -> Result<(Established, bool)> {
    refuse_sysv(loc)?;
    let (spec, schema) = super::value_spec::<New>();
    let content = into_bytes(init);
    let initial = Initial {
        content: &content,
        schema: &schema,
    };
    let mut migrate = Some(migrate);
    let mut mismatch = None;
    for _ in 0..ATTEMPTS {
        // A `New` already, or nothing: open or create.
        let err =
            match super::establish_spec(loc, opts, OpenMode::OpenOrCreate, &spec, Some(initial)) {
                Ok(seg) => return Ok((seg, false)),
                Err(e @ Error::LayoutMismatch { .. }) => e,
                Err(e) => return Err(e),
            };
        // An `Old`?
        let old = match super::establish::<Old>(loc, opts, OpenMode::Open, None) {
            Ok(old) => old,
            // Gone, or replaced meanwhile: look again.
            Err(Error::NotFound { .. }) => continue,
            Err(Error::LayoutMismatch { .. }) => {
                mismatch = Some(err);
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(f) = migrate.take() else {
            // `migrate` was spent on an attempt that another process
            // overtook; what the name holds now is neither type.
            return Err(err);
        };
        match migrate_from(loc, opts, old, f)? {
            Step::Done(seg) => return Ok((seg, true)),
            // Migrated by another process first: open its result.
            Step::Overtaken(f) => migrate = Some(f),
        }
    }
    Err(mismatch.unwrap_or(Error::AlreadyExists { name: loc.label() }))
}

/// What a migration attempt came to.
enum Step<F> {
    /// This process migrated: the new segment, under the name.
    Done(Established),
    /// The name no longer holds the old segment (another process migrated
    /// it, or removed it): `migrate` back, not called.
    Overtaken(F),
}

/// Migrates the `Old` segment `old` (just opened from `loc`) to a `New`
/// made by `f`, under its lock: see [`SharedOptions::open_or_migrate`].
fn migrate_from<Old: Shareable, New: Shareable, F: FnOnce(Old) -> New>(
    loc: &Location,
    opts: &SharedOptions,
    old: Established,
    f: F,
) -> Result<Step<F>> {
    let old_id = old.id.expect("POSIX and file segments have an object id");
    let slot: Slot<Old> = super::header::value_slot(old.map);
    // Taken over if its holder died (then poisoned Killed, which a failed
    // migration leaves as it found it).
    let me = slot.raw().acquire();
    let mut guard = Held::new(slot.raw(), slot.versions(), me);
    if publish::id_under(loc)? != Some(old_id) {
        return Ok(Step::Overtaken(f));
    }
    let value = slot.copy_locked(&guard);
    // A panic in `f` must not poison the old segment: the guard is dropped
    // before the panic goes on, so it unlocks as after any clean use.
    let new_value = match catch_unwind(AssertUnwindSafe(|| f(value))) {
        Ok(v) => v,
        Err(panic) => {
            drop(guard);
            resume_unwind(panic)
        }
    };
    let (spec, schema) = super::value_spec::<New>();
    let content = into_bytes(new_value);
    let initial = Initial {
        content: &content,
        schema: &schema,
    };
    let prepared = publish::prepare(loc, opts, &spec, initial)?;
    let new_id = prepared.id();
    // Marked before the exchange, under the lock: no write of the old build
    // can land in the old segment once the new one is in place.
    let saved = slot.raw().raw_poison();
    slot.raw().supersede();
    match prepared.replace(old_id) {
        Ok(map) => {
            // A committed write wakes the old build's waiters.
            guard.begin_write();
            drop(guard);
            Ok(Step::Done(Established {
                map,
                remover: old.remover,
                created: true,
                id: Some(new_id),
            }))
        }
        Err(e) => {
            match saved {
                Some(saved) => slot.raw().restore_poison(saved),
                None => slot.raw().clear_poison(),
            }
            drop(guard);
            match e {
                // Replaced or removed by a process that does not migrate
                // under the lock (`replace_on_mismatch`, `unlink`): `f` is
                // spent, so say what happened.
                e @ (Error::AlreadyExists { .. } | Error::NotFound { .. }) => Err(e),
                e => Err(unsupported(loc, e)),
            }
        }
    }
}

/// [`SharedOptions::open_or_create`] with
/// [`replace_on_mismatch`](SharedOptions::replace_on_mismatch): a segment
/// of ours of another layout under the name is replaced by a fresh one
/// holding `value`, in one step; the handle keeps the mismatch it replaced.
pub(crate) fn open_or_replace<T: Shareable>(
    loc: &Location,
    opts: &SharedOptions,
    value: T,
) -> Result<(Established, Option<Box<Error>>)> {
    let (spec, schema) = super::value_spec::<T>();
    let content = into_bytes(value);
    let initial = Initial {
        content: &content,
        schema: &schema,
    };
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mismatch =
            match super::establish_spec(loc, opts, OpenMode::OpenOrCreate, &spec, Some(initial)) {
                Ok(seg) => return Ok((seg, None)),
                Err(e @ Error::LayoutMismatch { .. }) => e,
                Err(e) => return Err(e),
            };
        refuse_sysv(loc)?;
        let Some(old) = publish::id_under(loc)? else {
            continue; // removed meanwhile: create it
        };
        let prepared = publish::prepare(loc, opts, &spec, initial)?;
        let id = prepared.id();
        match prepared.replace(old) {
            Ok(map) => {
                let seg = Established {
                    map,
                    remover: super::remover_of(loc),
                    created: true,
                    id: Some(id),
                };
                return Ok((seg, Some(Box::new(mismatch))));
            }
            // Replaced or removed by someone else meanwhile: look again.
            Err(e @ (Error::AlreadyExists { .. } | Error::NotFound { .. })) => last = Some(e),
            Err(e) => return Err(unsupported(loc, e)),
        }
    }
    Err(last.unwrap_or(Error::AlreadyExists { name: loc.label() }))
}

/// A filesystem that cannot exchange two names atomically gives
/// [`Error::MigrationUnsupported`]; other errors stay as they are.
fn unsupported(loc: &Location, e: Error) -> Error {
    match e {
        Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::Unsupported => {
            Error::MigrationUnsupported {
                name: loc.label(),
                reason: "its filesystem cannot exchange two names atomically (RENAME_EXCHANGE)",
            }
        }
        e => e,
    }
}

/// System V keys cannot be moved from one segment to another atomically.
fn refuse_sysv(loc: &Location) -> Result<()> {
    match loc.0 {
        Place::SysV(_) => Err(Error::MigrationUnsupported {
            name: loc.label(),
            reason: "a System V key cannot be moved to a new segment atomically",
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::{PoisonCause, Shared, SharedOptions};

    /// A migrating process that dies after marking the old segment and
    /// before the exchange (a window of microseconds that random kills
    /// seldom hit): the old segment stays under the name, superseded, its
    /// lock held by the dead; the next caller takes it over and finishes.
    #[test]
    fn a_migration_that_died_after_marking_is_finished_by_the_next_caller() {
        let name = format!("shmstore-unit-migrate-{}", std::process::id());
        let old = Shared::create(name.as_str(), 5u32).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                // The lock stays held by this thread, which then ends.
                old.slot.raw().acquire();
                old.slot.raw().supersede();
            });
        });
        assert_eq!(
            old.poison_info().map(|i| i.cause()),
            Some(PoisonCause::Superseded)
        );
        let new = SharedOptions::new()
            .open_or_migrate(name.as_str(), 0u64, |v: u32| u64::from(v) + 1)
            .unwrap();
        assert!(new.migrated());
        assert_eq!(*new.lock().unwrap(), 6);
        assert!(
            Shared::<u32>::open(name.as_str()).is_err(),
            "the name holds the new one"
        );
        let info = old.poison_info().unwrap();
        assert_eq!(info.cause(), PoisonCause::Superseded);
        assert_eq!(info.pid(), Some(std::process::id()));
        crate::unlink(name.as_str()).unwrap();
    }
}
