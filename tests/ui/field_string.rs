use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C)]
struct Message {
    text: String,
}

fn main() {}
