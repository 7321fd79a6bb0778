//! `#[derive(Shareable)]` in a crate that depends on shmstore under another
//! name (`shm`), and in one that reaches it through a re-export (the module
//! [`facade`], as a crate that re-exports shmstore would): both compile with
//! `#[shareable(crate = "...")]`, since `::shmstore` names nothing here.

use shm::Shareable;

/// What a crate that re-exports shmstore looks like to its users.
pub mod facade {
    pub use shm as shmstore;
}

/// Through the renamed dependency.
#[derive(Shareable)]
#[shareable(crate = "shm")]
#[repr(C)]
pub struct Renamed {
    /// A plain field.
    pub count: u64,
    /// A nested derived struct.
    pub inner: Inner,
}

/// Through a re-export, by a path relative to this crate.
#[derive(Shareable)]
#[shareable(crate = "crate::facade::shmstore")]
#[repr(C)]
pub struct Inner {
    /// An array field.
    pub values: [u32; 4],
}

/// Made of atomics: the `LockFree` impls name the crate too.
#[derive(Shareable)]
#[shareable(crate = "::shm")]
#[repr(transparent)]
pub struct Counter(pub shm::__private::core::sync::atomic::AtomicU64);

#[cfg(test)]
mod tests {
    use super::*;
    use shm::schema::Kind;
    use shm::{LockFree, Shareable};

    fn lock_free<T: LockFree>() {}

    #[test]
    fn derived_through_another_path() {
        assert_eq!(Renamed::TYPE_NAME, "Renamed");
        let schema = Renamed::schema();
        let Kind::Struct { fields } = &schema.kind else {
            panic!("not a struct: {schema:?}");
        };
        assert_eq!(fields.len(), 2);
        assert_ne!(Renamed::FINGERPRINT, Inner::FINGERPRINT);
        lock_free::<Counter>();
    }
}
