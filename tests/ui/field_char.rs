use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C)]
struct Key {
    letter: char,
}

fn main() {}
