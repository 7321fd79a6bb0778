use shmstore::Shareable;

#[derive(Shareable)]
#[shareable(krate = "shmstore")]
#[repr(C)]
struct UnknownKey {
    a: u64,
}

#[derive(Shareable)]
#[shareable(crate = "not a path")]
#[repr(C)]
struct NotAPath {
    a: u64,
}

#[derive(Shareable)]
#[repr(C)]
struct UnknownFieldKey {
    #[shareable(transparent)]
    a: u64,
}

fn main() {}
