use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C)]
struct Cursor {
    position: usize,
    delta: isize,
}

fn main() {}
