//! Crashes and change: getting past a poisoned lock, knowing what
//! `open_or_create` did, and changing a shared type while the service runs.
//!
//! # A poisoned lock
//!
//! A process killed while it holds a lock (or a thread that panics with a
//! guard) leaves the lock *poisoned*: the next `lock()` returns
//! `Err(PoisonError)` with the guard inside, as `std::sync::Mutex` does.
//! The segment records what happened: [`poison_info`](crate::Shared::poison_info)
//! (also on [`SharedReader`](crate::SharedReader) and store entries) names
//! the segment, the process and thread, the [cause](crate::PoisonCause) and
//! the time, and prints as one line. Look, repair or accept the value, then
//! clear it:
//!
//! ```
//! use shmstore::{PoisonCause, Shared};
//!
//! # let name = format!("doc-guide-poison-{}", std::process::id());
//! let jobs = Shared::open_or_create(&name, 0u64)?;
//! let mut g = match jobs.lock() {
//!     Ok(g) => g,
//!     Err(poisoned) => {
//!         let info = jobs.poison_info().expect("a poisoned lock has a record");
//!         eprintln!("{info}"); // segment "...": process 4242 (thread 4243) was killed ...
//!         if info.cause() == PoisonCause::Superseded {
//!             return Ok(()); // migrated to a new type: reopen the name (see below)
//!         }
//!         let g = poisoned.into_inner(); // check or repair the value here
//!         jobs.clear_poison();
//!         g
//!     }
//! };
//! *g += 1;
//! # drop(g);
//! # shmstore::unlink(&name)?;
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! From the shell, `shmstore inspect NAME` shows the record and
//! `shmstore unpoison NAME [--entry KEY]` clears it. For values any partial
//! write of which is fine (counters, latest readings),
//! [`SharedOptions::poisoning(false)`](crate::SharedOptions::poisoning)
//! makes a handle clear the poison itself and never return `Err` for it.
//!
//! # What `open_or_create` did
//!
//! [`Shared::created`](crate::Shared::created) and
//! [`Store::created`](crate::Store::created) say whether this call made the
//! segment: when many processes race, exactly one sees `true`. A store found
//! existing keeps the capacity it has (the one it was made with, or more
//! once it grew) and the most it may grow to, as its creator chose them:
//! [`Store::capacity`](crate::Store::capacity) and
//! [`Store::max_capacity`](crate::Store::max_capacity) show them.
//!
//! # Changing a type while the service runs
//!
//! A segment holds one layout; a build with another layout of the type gets
//! [`Error::LayoutMismatch`](crate::Error::LayoutMismatch), which lists the
//! fields that differ. To move a running service to the new layout, the new
//! build opens with
//! [`SharedOptions::open_or_migrate`](crate::SharedOptions::open_or_migrate)
//! (store entries: [`Store::get_or_migrate`](crate::Store::get_or_migrate)):
//! the first process of the new build converts the old value with a closure
//! you give, under the old segment's lock, and puts the new segment in place
//! of the old one in one step; the others open its result. Processes of the
//! old build find their lock poisoned with
//! [`PoisonCause::Superseded`](crate::PoisonCause::Superseded) at their next
//! `lock()` (a `wait_for_change` wakes them) and should reopen the name,
//! which a process of the old build cannot do as the old type: it exits or
//! restarts as the new build. No update is lost on the way: the migration
//! copies the old value under its lock, and the old segment takes no write
//! after it unless someone clears that poison on purpose.
//! `examples/migrate.rs` runs it with processes of both builds.
//!
//! POSIX and file segments and store entries can be migrated; a System V
//! key cannot be moved to a new segment atomically:
//! [`Error::MigrationUnsupported`](crate::Error::MigrationUnsupported).
//!
//! During development, when the old value does not matter,
//! [`SharedOptions::replace_on_mismatch(true)`](crate::SharedOptions::replace_on_mismatch)
//! puts a fresh segment in place of one of another layout, and the handle's
//! [`replaced_mismatch`](crate::Shared::replaced_mismatch) says what it
//! replaced.
