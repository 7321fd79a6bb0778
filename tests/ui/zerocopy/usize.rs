// The one deliberate difference: zerocopy takes `usize`, ours does not (its
// size differs between 32- and 64-bit processes sharing memory).

mod ours {
    #[derive(shmstore::Shareable)]
    #[repr(C)]
    struct Len {
        len: usize,
    }
}

mod theirs {
    use shmstore::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[zerocopy(crate = "shmstore::zerocopy")]
    #[repr(C)]
    struct Len {
        len: usize,
    }
}

fn main() {}
