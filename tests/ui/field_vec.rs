use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C)]
struct Queue {
    items: Vec<u64>,
    head: Box<u64>,
}

fn main() {}
