// The same as tests/ui/atomic_not_lock_free.rs, whose messages name
// `shmstore::Shared` in full where the zerocopy crate (which has a `Shared`
// of its own) is reachable as `shmstore::zerocopy`.

use core::sync::atomic::AtomicU64;
use shmstore::{Shareable, Shared};

/// Atomics and a plain field: `Shareable`, but not `LockFree`.
#[derive(Shareable, Default)]
#[repr(C)]
struct Stats {
    hits: AtomicU64,
    last_pid: u64,
}

/// A plain array among atomics.
#[derive(Shareable, Default)]
#[repr(C)]
struct History {
    hits: AtomicU64,
    recent: [[u32; 2]; 2],
}

/// Atomics only, but one of them is a struct with a plain field.
#[derive(Shareable, Default)]
#[repr(C)]
struct Outer {
    stats: Stats,
    more: AtomicU64,
}

fn main() -> Result<(), shmstore::Error> {
    let stats = Shared::<Stats>::anonymous(Stats::default())?;
    stats.into_atomic();
    let history = Shared::<History>::anonymous(History::default())?;
    history.into_atomic();
    let outer = Shared::<Outer>::anonymous(Outer::default())?;
    outer.into_atomic();
    let plain = Shared::<u64>::anonymous(0)?;
    plain.into_atomic();
    Ok(())
}
