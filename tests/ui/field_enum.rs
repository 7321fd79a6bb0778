use shmstore::Shareable;

#[repr(u8)]
enum State {
    Idle,
    Busy,
}

#[derive(Shareable)]
#[repr(C)]
struct Worker {
    state: State,
    _pad: [u8; 3],
    jobs: u32,
}

fn main() {}
