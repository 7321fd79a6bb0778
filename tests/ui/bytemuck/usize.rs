// The one deliberate difference: bytemuck's `Pod` takes `usize`, ours does
// not (its size differs between 32- and 64-bit processes sharing memory).

mod ours {
    #[derive(shmstore::Shareable, Clone, Copy)]
    #[repr(C)]
    struct Len {
        len: usize,
    }
}

mod theirs {
    #[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy)]
    #[repr(C)]
    struct Len {
        len: usize,
    }
}

fn main() {}
