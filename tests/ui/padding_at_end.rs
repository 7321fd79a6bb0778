use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C, align(16))]
struct Line {
    value: u64,
}

#[derive(Shareable)]
#[repr(C)]
struct Tail {
    counter: u64,
    flag: u8,
}

fn main() {}
