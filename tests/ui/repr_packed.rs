use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C, packed)]
struct Packed {
    flag: u8,
    counter: u64,
}

#[derive(Shareable)]
#[repr(C)]
#[repr(packed(2))]
struct PackedTwo {
    flag: u16,
    counter: u64,
}

fn main() {}
