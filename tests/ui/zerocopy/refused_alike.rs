// The same structs under our derive and under zerocopy's: padding is
// refused by both (zerocopy's `IntoBytes`), `bool` too (zerocopy's
// `FromBytes`).

mod ours {
    #[derive(shmstore::Shareable)]
    #[repr(C)]
    struct Padded {
        small: u8,
        big: u32,
    }

    #[derive(shmstore::Shareable)]
    #[repr(C)]
    struct Flag {
        on: bool,
    }
}

mod theirs {
    use shmstore::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    #[derive(IntoBytes, Immutable, KnownLayout)]
    #[zerocopy(crate = "shmstore::zerocopy")]
    #[repr(C)]
    struct Padded {
        small: u8,
        big: u32,
    }

    #[derive(FromBytes, Immutable, KnownLayout)]
    #[zerocopy(crate = "shmstore::zerocopy")]
    #[repr(C)]
    struct Flag {
        on: bool,
    }
}

fn main() {}
