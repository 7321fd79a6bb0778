// Fixed-width integers and byte arrays without padding: accepted by both
// derives on one type; an opaque field of a zerocopy type behind
// `repr(transparent)`; and a struct of atomics under ours and zerocopy's
// derives but `Immutable`.

use shmstore::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
use std::sync::atomic::AtomicU32;

#[derive(shmstore::Shareable, FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy)]
#[zerocopy(crate = "shmstore::zerocopy")]
#[repr(C)]
struct Clean {
    a: u32,
    b: u32,
    c: u64,
    d: [u8; 8],
}

/// Zerocopy's only.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy)]
#[zerocopy(crate = "shmstore::zerocopy")]
#[repr(C)]
struct Foreign {
    a: u64,
    b: [u16; 4],
}

#[derive(shmstore::Shareable)]
#[repr(transparent)]
struct Wrapped(#[shareable(opaque)] Foreign);

#[derive(shmstore::Shareable, FromBytes, IntoBytes, KnownLayout)]
#[zerocopy(crate = "shmstore::zerocopy")]
#[repr(C)]
struct Counters {
    hits: AtomicU32,
    misses: AtomicU32,
}

fn zerocopy<T: FromBytes + IntoBytes + Immutable + KnownLayout>() {}
fn shareable<T: shmstore::Shareable>() {}
fn lock_free<T: shmstore::LockFree>() {}

fn main() {
    zerocopy::<Clean>();
    shareable::<Clean>();
    shareable::<Wrapped>();
    lock_free::<Counters>();
}
