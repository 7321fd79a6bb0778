//! Inputs that `#[derive(Shareable)]` must refuse, with the error each gives.
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test --test
//! compiletest`, and read the diff: each message is part of the interface.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    // The messages there name bytemuck's `Pod`, as seen with the feature on.
    if cfg!(feature = "bytemuck") {
        t.compile_fail("tests/ui/bytemuck/*.rs");
    }
}
