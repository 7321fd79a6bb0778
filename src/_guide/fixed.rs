//! Text, lists and flags: fixed-capacity types that may live in shared
//! memory.
//!
//! `bool`, `String` and `Vec` cannot live in shared memory; these
//! fixed-capacity types can, inline and without padding. A peer may write
//! any bytes into them, so every read validates:
//!
//! | type | holds | validation rule on every read |
//! |---|---|---|
//! | [`ShmStr<N>`](crate::ShmStr) | UTF-8 text of at most `N` bytes | the stored length is clamped to `N`; `as_str()` returns `Err(Utf8Error)` for invalid UTF-8 (never undefined behaviour); `to_string_lossy()` and `Display` replace bad bytes |
//! | [`ShmVec<T, N>`](crate::ShmVec) | at most `N` items of a `Shareable + Copy` type | the stored length is clamped to `N` |
//! | [`ShmBool`](crate::ShmBool) | a flag | `0` is `false`, any other byte is `true` |
//!
//! Writing more than the capacity (`set`, `push`, `extend_from_slice`)
//! returns [`CapacityError`](crate::CapacityError) and changes nothing;
//! `set_truncated` cuts at a character boundary.
//!
//! ```
//! use shmstore::{Shareable, Shared, ShmBool, ShmStr, ShmVec};
//!
//! #[derive(Shareable, Clone, Copy, Default)]
//! #[repr(C)]
//! struct Config { name: ShmStr<28>, ports: ShmVec<u16, 4>, verbose: ShmBool, _pad: [u8; 7] }
//!
//! # let name = format!("doc-guide-fixed-{}", std::process::id());
//! let config = Shared::<Config>::create(&name, Config::default())?;
//! {
//!     let mut c = config.lock().unwrap();
//!     c.name.set("web").unwrap();
//!     c.ports.extend_from_slice(&[80, 443]).unwrap();
//!     c.verbose.set(true);
//!     assert!(c.name.set("a name of more than twenty-eight bytes").is_err());  // unchanged
//! }
//! let now = config.snapshot().unwrap();
//! assert_eq!(now.name.as_str(), Ok("web"));
//! assert_eq!(now.ports.as_slice(), &[80, 443]);
//! assert!(now.verbose.get());
//! # shmstore::unlink(&name)?;
//! # Ok::<(), shmstore::Error>(())
//! ```
//!
//! Methods that write keep the bytes past the length zeroed, so that stale
//! data does not linger in the segment.
