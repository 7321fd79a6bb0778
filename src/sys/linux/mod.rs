//! Linux's own calls and files, one module per mechanism; another system's
//! folder provides the same modules and functions (see `_design::platforms`).

pub(crate) mod futex;
pub(crate) mod maps;
pub(crate) mod memfd;
pub(crate) mod sysv;
pub(crate) mod presence;
pub(crate) mod thread;
