use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C)]
struct Id {
    value: u128,
    signed: i128,
}

fn main() {}
