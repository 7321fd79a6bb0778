use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C)]
struct Flags {
    ready: bool,
}

fn main() {}
