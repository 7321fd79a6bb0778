use shmstore::Shareable;

// Not `bytemuck::Pod`: refused at the field, with or without the feature.
#[derive(Clone, Copy)]
#[repr(C)]
struct Handle {
    id: u64,
}

#[derive(Shareable)]
#[repr(C)]
struct Holder {
    #[shareable(opaque)]
    handle: Handle,
    other: u64,
}

fn main() {}
