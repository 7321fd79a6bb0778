// Fixed-width integers and byte arrays without padding: accepted by both
// derives; and an opaque field of a `Pod` type behind `repr(transparent)`.

mod ours {
    #[derive(shmstore::Shareable, Clone, Copy)]
    #[repr(C)]
    pub struct Clean {
        a: u32,
        b: u32,
        c: u64,
        d: [u8; 8],
    }
}

mod theirs {
    #[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy)]
    #[repr(C)]
    pub struct Clean {
        a: u32,
        b: u32,
        c: u64,
        d: [u8; 8],
    }

    #[derive(shmstore::Shareable, Clone, Copy)]
    #[repr(transparent)]
    pub struct Wrapped(#[shareable(opaque)] Clean);
}

fn pod<T: bytemuck::Pod>() {}
fn shareable<T: shmstore::Shareable>() {}

fn main() {
    pod::<ours::Clean>();
    pod::<theirs::Clean>();
    shareable::<ours::Clean>();
    shareable::<theirs::Wrapped>();
}
