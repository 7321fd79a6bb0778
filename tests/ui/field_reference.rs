use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C)]
struct Config {
    name: &'static str,
    limit: &'static u64,
}

fn main() {}
