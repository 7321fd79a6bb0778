use shmstore::Shareable;

#[derive(Shareable)]
#[repr(C)]
union Value {
    int: u64,
    float: f64,
}

fn main() {}
