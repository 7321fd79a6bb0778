use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C)]
struct Pair(u16, u32, u8);

fn main() {}
