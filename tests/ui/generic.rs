use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C)]
struct Slot<T> {
    value: T,
}

#[derive(Shareable)]
#[repr(C)]
struct Ring<T, const N: usize> {
    items: [T; N],
}

#[derive(Shareable)]
#[repr(C)]
struct Borrowed<'a> {
    data: &'a [u8; 4],
}

fn main() {}
