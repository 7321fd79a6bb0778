//! Inputs that `#[derive(Shareable)]` must refuse, with the error each gives;
//! and, with the features `bytemuck` and `zerocopy`, the same structs under
//! those crates' derives, to show which types each accepts and refuses.
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test --test
//! compiletest` (with each set of features below), and read the diff: each
//! message is part of the interface.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    let bytemuck = cfg!(feature = "bytemuck");
    let zerocopy = cfg!(feature = "zerocopy");
    for entry in std::fs::read_dir("tests/ui").unwrap() {
        let path = entry.unwrap().path();
        // With `shmstore::zerocopy`, rustc names `Shared` in full; that case
        // has its copy in tests/ui/zerocopy.
        if path.extension().is_some_and(|e| e == "rs")
            && !(zerocopy && path.ends_with("atomic_not_lock_free.rs"))
        {
            t.compile_fail(path);
        }
    }
    if bytemuck {
        t.compile_fail("tests/ui/bytemuck/*.rs");
        t.pass("tests/ui/bytemuck/pass/*.rs");
    }
    if zerocopy {
        t.compile_fail("tests/ui/zerocopy/*.rs");
        t.pass("tests/ui/zerocopy/pass/*.rs");
    }
    // An opaque field of a type that is neither (or has padding): the
    // message says what the features on accept, so there is one directory
    // per set of features.
    t.compile_fail(match (bytemuck, zerocopy) {
        (false, false) => "tests/ui/opaque/none/*.rs",
        (true, false) => "tests/ui/opaque/bytemuck/*.rs",
        (false, true) => "tests/ui/opaque/zerocopy/*.rs",
        (true, true) => "tests/ui/opaque/both/*.rs",
    });
}
