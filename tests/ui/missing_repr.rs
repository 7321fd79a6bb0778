use shmstore::Shareable;

#[derive(Shareable)]
struct Header {
    version: u32,
    len: u32,
}

#[derive(Shareable)]
#[repr(align(8))]
struct OnlyAligned {
    a: u64,
}

fn main() {}
