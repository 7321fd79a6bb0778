use shmstore::Shareable;

// A zero-sized field still aligns what follows it.
#[derive(Shareable)]
#[repr(C)]
struct Header {
    tag: u8,
    _align: [u64; 0],
    body: [u8; 8],
}

fn main() {}
