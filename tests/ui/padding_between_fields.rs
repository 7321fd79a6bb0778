use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C)]
struct Header {
    flag: u8,
    counter: u64,
}

fn main() {}
