use shmstore::Shareable;

// Neither `bytemuck::Pod` nor zerocopy's traits: refused at the field, with
// a message that depends on the features on (this directory's name).
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
