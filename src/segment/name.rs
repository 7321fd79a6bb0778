//! Segment names: `"my-counter"` and `"/my-counter"` name the same object.

use crate::error::{Error, Result};

/// The longest POSIX segment name, in bytes, without the leading `/`: the
/// longest file name in /dev/shm. (A store's keys have their own limit,
/// [`MAX_KEY_LEN`](crate::MAX_KEY_LEN).)
///
/// ```
/// use shmstore::{Error, Shared, MAX_SEGMENT_NAME_LEN};
///
/// let name = "n".repeat(MAX_SEGMENT_NAME_LEN + 1);
/// let e = Shared::<u64>::open(name.as_str()).unwrap_err();
/// assert!(matches!(e, Error::InvalidName { .. }));
/// ```
pub const MAX_SEGMENT_NAME_LEN: usize = 255;

/// A validated segment name, stored without its leading `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Name(String);

impl Name {
    /// Checks `name` and strips one leading `/`.
    pub(crate) fn new(name: &str) -> Result<Name> {
        let bad = |reason| Error::InvalidName {
            name: name.to_owned(),
            reason,
        };
        let bare = name.strip_prefix('/').unwrap_or(name);
        if bare.is_empty() {
            return Err(bad("it is empty"));
        }
        if bare.contains('/') {
            return Err(bad("only one leading `/` is allowed"));
        }
        if bare == "." || bare == ".." {
            return Err(bad("`.` and `..` are directory entries"));
        }
        if bare.contains('\0') {
            return Err(bad("it contains a NUL byte"));
        }
        if bare.len() > MAX_SEGMENT_NAME_LEN {
            return Err(bad("it is longer than 255 bytes"));
        }
        Ok(Name(bare.to_owned()))
    }

    /// The name without the leading `/`, as users see it and as it appears in /dev/shm.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as `shm_open` wants it, with one leading `/`.
    pub(crate) fn os_name(&self) -> String {
        format!("/{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_slash_is_optional() {
        assert_eq!(Name::new("a").unwrap(), Name::new("/a").unwrap());
        assert_eq!(Name::new("/a").unwrap().os_name(), "/a");
    }

    #[test]
    fn refuses_what_shm_open_cannot_name() {
        for bad in ["", "/", "a/b", "/a/b", "//a", ".", "/..", "a\0b"] {
            assert!(
                matches!(Name::new(bad), Err(Error::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(Name::new(&"x".repeat(MAX_SEGMENT_NAME_LEN)).is_ok());
        assert!(matches!(
            Name::new(&"x".repeat(MAX_SEGMENT_NAME_LEN + 1)),
            Err(Error::InvalidName { .. })
        ));
        assert!(Name::new(&format!("/{}", "x".repeat(255))).is_ok());
    }
}
