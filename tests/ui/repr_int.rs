use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C, u32)]
struct Header {
    version: u32,
}

fn main() {}
