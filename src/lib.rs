//! shmstore (crate docs are written below, in lib.rs's final form).

// Generated code names `::shmstore::...`; this makes those paths resolve
// inside the crate itself too.
extern crate self as shmstore;

mod shareable;

pub use shareable::Shareable;
pub use shmstore_derive::Shareable;

/// Helpers that `#[derive(Shareable)]` expands to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::shareable::Fingerprint;
    pub use crate::shareable::Shareable;
    pub use core;
}
