// A struct of atomics: ours and zerocopy's `FromBytes`, `IntoBytes` and
// `KnownLayout` take it; zerocopy's `Immutable` refuses it (atomics are
// interior mutability), so it is no opaque field.

use shmstore::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
use std::sync::atomic::AtomicU64;

#[derive(shmstore::Shareable, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[zerocopy(crate = "shmstore::zerocopy")]
#[repr(C)]
struct Counters {
    hits: AtomicU64,
}

fn main() {}
