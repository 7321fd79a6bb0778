use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C)]
struct Node {
    next: *const u64,
    prev: *mut u64,
}

fn main() {}
