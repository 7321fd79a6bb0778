use shmstore::Shareable;

// Another crate's `Pod` type, not `Shareable`: the message names
// `#[shareable(opaque)]`.
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy)]
#[repr(C)]
struct Vertex {
    pos: [f32; 3],
}

#[derive(Shareable)]
#[repr(transparent)]
struct Wrapper(Vertex);

fn main() {}
