// An opaque field of a type with padding: zerocopy's `IntoBytes` refuses
// the type, so it is no opaque field either.

use shmstore::zerocopy::{FromBytes, Immutable, KnownLayout};

#[derive(FromBytes, Immutable, KnownLayout, Clone, Copy)]
#[zerocopy(crate = "shmstore::zerocopy")]
#[repr(C)]
struct Padded {
    small: u8,
    big: u32,
}

#[derive(shmstore::Shareable)]
#[repr(transparent)]
struct Holder(#[shareable(opaque)] Padded);

fn main() {}
