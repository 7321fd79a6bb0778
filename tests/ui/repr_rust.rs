use shmstore::Shareable;

#[derive(Shareable)]
#[repr(Rust)]
struct Header {
    version: u32,
    len: u32,
}

fn main() {}
