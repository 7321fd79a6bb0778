//! Where segments come from. A backend only produces an open object (a file
//! descriptor whose size can be set and which can be mapped) and removes
//! names; the header, the lock and the types above never know which backend
//! made their segment.

pub(crate) mod posix;

/// What to do when the name exists, or does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// Make a new object; fail if the name exists.
    Create,
    /// Open an existing object; fail if there is none.
    Open,
    /// Open the object, making it first if there is none.
    OpenOrCreate,
}
