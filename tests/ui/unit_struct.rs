use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C)]
struct Marker;

#[derive(Shareable)]
#[repr(C)]
struct Empty {}

#[derive(Shareable)]
#[repr(C)]
struct Nothing {
    bytes: [u64; 0],
}

fn main() {}
