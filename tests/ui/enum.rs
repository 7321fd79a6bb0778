use shmstore::Shareable;

#[derive(Shareable)]
#[repr(u8)]
enum State {
    Idle,
    Busy,
}

fn main() {}
