use shmstore::Shareable;

// Every field that has a replacement is named in one compile.
#[derive(Shareable)]
#[repr(C)]
struct Profile {
    name: std::string::String,
    nick: &'static str,
    tags: std::vec::Vec<[u8; 8]>,
    admin: bool,
}

#[derive(Shareable)]
#[repr(C)]
struct Flag(bool, u8);

fn main() {}

// The other fields are still checked, in the same compile.
#[derive(Shareable)]
#[repr(C)]
struct Mixed {
    on: bool,
    owner: Box<u64>,
    count: u64,
}
