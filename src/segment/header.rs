//! What is at the start of every segment, and how it is checked.
//!
//! ```text
//! offset 0    Header (240 bytes): magic, format version, init state, layout
//!             fingerprint, size/align/offset of T, total size, type name,
//!             creator, PID namespace
//! offset 256  RawLock (32 bytes): lock word (8), sleepers (4), poison
//!             cause (4), last holder / poisoner (8), poison time (8)
//! offset 288  Versions: write sequence counter (8), flags (4), change time (4)
//! offset 304  T (rounded up to T's alignment)
//! then         the schema of T (see `schema.rs`), 8-aligned, `schema_len`
//!              bytes: what tools decode the value with
//! ```
//!
//! The lock sits on the same cache line as the start of the value, so a small
//! value and its lock move between CPUs together.
//!
//! Headers are read with `pread` into a local buffer and parsed with zerocopy
//! (`FromBytes`), written from a local value with `IntoBytes`: no reference is
//! ever made to header bytes that another process may be writing.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{ByteOrder, Error, Result};
use crate::lock::seqlock::Versions;
use crate::lock::slot::Slot;
use crate::lock::RawLock;
use crate::schema::Schema;
use crate::sys::mapping::Mapping;
use crate::types::shareable::Shareable;

/// The first eight bytes of every segment.
pub(crate) const MAGIC: [u8; 8] = *b"SHMSTORE";
/// The format this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 5;
/// The longest schema a segment may carry.
pub(crate) const MAX_SCHEMA: usize = 64 * 1024;

/// `state`: the creator is writing the segment (or died doing so).
pub(crate) const STATE_INITIALISING: u32 = 1;
/// `state`: the segment is complete.
pub(crate) const STATE_READY: u32 = 2;

/// `kind`: one value of one type (a `Shared<T>`).
pub(crate) const KIND_VALUE: u32 = 1;
/// `kind`: a store of named entries (a [`Store`](crate::Store)).
pub(crate) const KIND_STORE: u32 = 2;

/// Where the lock starts.
pub(crate) const LOCK_OFFSET: usize = 256;
/// Where the write sequence counter and flags are ([`Versions`]).
pub(crate) const VERSIONS_OFFSET: usize = LOCK_OFFSET + crate::lock::LOCK_SIZE;
/// Bytes reserved for the lock and what later versions keep beside it.
const LOCK_AREA: usize = 48;
/// The longest type name kept in a header.
const TYPE_NAME_LEN: usize = 128;

/// The segment header, as stored, in the byte order of the build that made
/// it: a header of the other byte order is recognised by its format version
/// ([`identify`]) and refused, never read as other numbers. Every field has
/// a fixed width, so the pointer width of the build does not change it.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Debug)]
#[repr(C)]
pub(crate) struct Header {
    pub magic: [u8; 8],
    pub version: u32,
    pub state: u32,
    pub header_size: u32,
    pub kind: u32,
    pub total_size: u64,
    pub fingerprint: u64,
    pub value_size: u64,
    pub value_align: u64,
    pub value_offset: u64,
    pub lock_offset: u64,
    pub creator_pid: u32,
    pub creator_uid: u32,
    pub creator_start: u64,
    pub pid_ns: u64,
    pub created_unix_ns: u64,
    pub type_name_len: u32,
    pub schema_len: u32,
    pub type_name: [u8; TYPE_NAME_LEN],
}

/// The byte offset of `state` in the header, for the atomic "ready" store.
pub(crate) const STATE_OFFSET: usize = 12;
const _: () = assert!(std::mem::offset_of!(Header, state) == STATE_OFFSET);
const _: () = assert!(std::mem::size_of::<Header>() <= LOCK_OFFSET);
const _: () = assert!(std::mem::size_of::<RawLock>() <= VERSIONS_OFFSET - LOCK_OFFSET);
const _: () = assert!(VERSIONS_OFFSET + std::mem::size_of::<Versions>() <= LOCK_OFFSET + LOCK_AREA);
const _: () = assert!(LOCK_OFFSET % 64 == 0);

/// Where everything of a segment lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub value_offset: usize,
    /// Where the schema starts (its length is in the header).
    pub schema_offset: usize,
    pub total_size: usize,
}

impl Layout {
    /// Where the value of a segment holding one `T` starts (what follows
    /// it does not move it).
    pub(crate) const fn value_offset_of<T: Shareable>() -> usize {
        Layout::new(std::mem::size_of::<T>(), std::mem::align_of::<T>(), 0).value_offset
    }

    /// The layout of a segment whose content is `size` bytes aligned to
    /// `align` (a power of two), followed by a schema of `schema_len`
    /// bytes (none if 0).
    pub(crate) const fn new(size: usize, align: usize, schema_len: usize) -> Layout {
        let start = LOCK_OFFSET + LOCK_AREA;
        let value_offset = start.div_ceil(align) * align;
        let value_end = value_offset + size;
        let schema_offset = value_end.div_ceil(8) * 8;
        Layout {
            value_offset,
            schema_offset,
            total_size: if schema_len == 0 {
                value_end
            } else {
                schema_offset + schema_len
            },
        }
    }
}

/// What a segment holds, as its header records it: what a new segment is
/// made with, and what an existing one must say to be opened.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spec {
    pub kind: u32,
    pub type_name: &'static str,
    pub fingerprint: u64,
    /// The content's size in a new segment.
    pub size: usize,
    pub align: usize,
    /// The smallest content an existing segment may have; equal to `size`
    /// for a value, whose size the type fixes.
    pub min_size: usize,
    /// The largest (a store's size is chosen at creation).
    pub max_size: usize,
    /// The length of the schema a new segment carries after its content.
    pub schema_len: usize,
    /// The schema of what a segment of this spec holds, to say what differs
    /// from a segment of another layout ([`explain_mismatch`]); `None`
    /// where the header's content has no schema (a store).
    pub schema: Option<fn() -> Schema>,
}

impl Spec {
    /// One `T`, whose schema is `schema_len` bytes long.
    pub(crate) const fn of<T: Shareable>(schema_len: usize) -> Spec {
        let size = std::mem::size_of::<T>();
        Spec {
            kind: KIND_VALUE,
            type_name: T::TYPE_NAME,
            fingerprint: T::FINGERPRINT,
            size,
            align: std::mem::align_of::<T>(),
            min_size: size,
            max_size: size,
            schema_len,
            schema: Some(Schema::of::<T> as fn() -> Schema),
        }
    }

    /// Where a new segment of this spec puts its content.
    pub(crate) const fn layout(&self) -> Layout {
        Layout::new(self.size, self.align, self.schema_len)
    }

    /// Whether a segment of `len` bytes may hold this spec's content.
    pub(crate) fn fits(&self, len: usize) -> bool {
        if self.min_size == self.max_size {
            return len == self.layout().total_size;
        }
        let offset = self.layout().value_offset;
        len >= offset + self.min_size && len - offset <= self.max_size
    }

    /// This spec with its content sized so that the segment is `total`
    /// bytes long (for a segment whose size [fits](Spec::fits)).
    pub(crate) fn with_total(&self, total: usize) -> Spec {
        if self.min_size == self.max_size {
            // A value's size is its type's; `fits` checked the total.
            return *self;
        }
        Spec {
            size: total - self.layout().value_offset,
            ..*self
        }
    }

    /// What errors say a segment of this spec should hold.
    pub(crate) fn describe(&self) -> String {
        format!("a `{}`", self.type_name)
    }
}

/// What identifies this process as a creator.
pub(crate) struct Creator {
    pub pid: u32,
    pub uid: u32,
    pub start: u64,
    pub pid_ns: u64,
}

impl Creator {
    pub(crate) fn current() -> Creator {
        let pid = std::process::id();
        Creator {
            pid,
            uid: nix::unistd::geteuid().as_raw(),
            start: crate::lock::owner::start_time(pid).unwrap_or(0),
            pid_ns: pid_namespace(),
        }
    }
}

/// The inode of this process's PID namespace (0 where it cannot be read).
pub(crate) fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

impl Header {
    /// A header for a new segment of `spec`, in state INITIALISING.
    pub(crate) fn new(spec: &Spec, creator: &Creator) -> Header {
        let layout = spec.layout();
        let name = spec.type_name.as_bytes();
        let len = name.len().min(TYPE_NAME_LEN);
        let mut type_name = [0; TYPE_NAME_LEN];
        type_name[..len].copy_from_slice(&name[..len]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Header {
            magic: MAGIC,
            version: FORMAT_VERSION,
            state: STATE_INITIALISING,
            header_size: std::mem::size_of::<Header>() as u32,
            kind: spec.kind,
            total_size: layout.total_size as u64,
            fingerprint: spec.fingerprint,
            value_size: spec.size as u64,
            value_align: spec.align as u64,
            value_offset: layout.value_offset as u64,
            lock_offset: LOCK_OFFSET as u64,
            creator_pid: creator.pid,
            creator_uid: creator.uid,
            creator_start: creator.start,
            pid_ns: creator.pid_ns,
            created_unix_ns: now,
            type_name_len: len as u32,
            schema_len: spec.schema_len as u32,
            type_name,
        }
    }

    /// The type name recorded in the header, cleaned of anything a damaged
    /// or hostile header could put there.
    pub(crate) fn type_name(&self) -> String {
        let len = (self.type_name_len as usize).min(TYPE_NAME_LEN);
        String::from_utf8_lossy(&self.type_name[..len])
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    }
}

/// What the first bytes of an object say it is.
#[derive(Debug)]
pub(crate) enum Found {
    /// Our magic and a complete, ready header.
    Ready,
    /// Our magic, but the creator has not finished (or died while writing it).
    Initialising,
}

/// Why the first bytes of an object are not a usable shmstore header.
#[derive(Debug)]
pub(crate) enum Unusable {
    /// Not a shmstore segment at all: no magic.
    Foreign(String),
    /// Ours, but damaged, of another format version, or not consistent with
    /// itself or with the object's size.
    Damaged {
        /// Why, in words a user can act on.
        reason: String,
        /// The header, where it is whole and of this format version (it
        /// still says who made the segment).
        header: Option<Box<Header>>,
    },
    /// Ours, made by a build of the other byte order (whose order this is).
    OtherByteOrder(ByteOrder),
}

impl Unusable {
    /// The reason, in words a user can act on.
    pub(crate) fn reason(self) -> String {
        match self {
            Unusable::Foreign(reason) | Unusable::Damaged { reason, .. } => reason,
            Unusable::OtherByteOrder(found) => format!(
                "made by a {found} build, and this build is {}: its numbers would read as \
                 other numbers here",
                ByteOrder::NATIVE
            ),
        }
    }

    /// The error for the segment `name`: [`Error::OtherByteOrder`] for a
    /// segment of the other byte order, [`Error::Corrupt`] saying why for
    /// anything else.
    pub(crate) fn into_error(self, name: &str) -> Error {
        let name = name.to_owned();
        match self {
            Unusable::OtherByteOrder(found) => Error::OtherByteOrder { name, found },
            other => Error::Corrupt {
                name,
                reason: other.reason(),
            },
        }
    }
}

/// Whether a format version was written by a build of the other byte order:
/// versions are small numbers, so one that is large here and small with
/// its bytes reversed was.
fn byte_swapped(version: u32) -> bool {
    version > 0xffff && version.swap_bytes() <= 0xffff
}

/// The header in `bytes` (the first bytes of an object of `file_size`
/// bytes), as far as every reader checks it whatever it expects the
/// segment to hold: our magic, a format version not written in the other
/// byte order ([`Unusable::OtherByteOrder`]), a header not cut short, this
/// build's format version and header size, and a known state: READY, INITIALISING, or 0
/// (a System V creator between its magic and its state). A ready header is
/// then checked against itself and the object with [`consistent`].
pub(crate) fn identify(bytes: &[u8], file_size: u64) -> std::result::Result<Box<Header>, Unusable> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(Unusable::Foreign(format!(
            "no shmstore magic in its first bytes ({file_size} bytes long): not a shmstore segment"
        )));
    }
    // Before anything else of the header is read as numbers: the magic is
    // bytes, the same in either byte order, the version is not.
    if let Some(version) = bytes.get(8..12) {
        let version = u32::from_ne_bytes(version.try_into().unwrap_or_default());
        if version != FORMAT_VERSION && byte_swapped(version) {
            return Err(Unusable::OtherByteOrder(ByteOrder::NATIVE.other()));
        }
    }
    let damaged =
        |reason: String, header: Option<Box<Header>>| Unusable::Damaged { reason, header };
    let Ok(header) = Header::read_from_prefix(bytes).map(|(h, _)| Box::new(h)) else {
        return Err(damaged(
            format!("its header is cut short ({file_size} bytes long)"),
            None,
        ));
    };
    if header.version != FORMAT_VERSION {
        return Err(damaged(
            format!(
                "format version {} (this build reads version {FORMAT_VERSION})",
                header.version
            ),
            None,
        ));
    }
    if header.header_size as usize != std::mem::size_of::<Header>() {
        let reason = format!(
            "header size {} (expected {})",
            header.header_size,
            std::mem::size_of::<Header>()
        );
        return Err(damaged(reason, Some(header)));
    }
    match header.state {
        STATE_READY | STATE_INITIALISING | 0 => Ok(header),
        other => Err(damaged(format!("unknown state {other}"), Some(header))),
    }
}

/// Checks that a ready header agrees with itself and with the object of
/// `file_size` bytes it heads: a power-of-two alignment of at most a page,
/// a schema of at most [`MAX_SCHEMA`] bytes, and the value offset, lock
/// offset and total size that its own value size, alignment and schema
/// length give. Returns that layout.
pub(crate) fn consistent(header: &Header, file_size: u64) -> std::result::Result<Layout, String> {
    let align = header.value_align;
    let schema_len = header.schema_len as usize;
    if !align.is_power_of_two() || align > 4096 {
        return Err(format!("its header says value alignment {align}"));
    }
    if schema_len > MAX_SCHEMA {
        return Err(format!(
            "its header says its schema is {schema_len} bytes (at most {MAX_SCHEMA})"
        ));
    }
    let size = match usize::try_from(header.value_size) {
        Ok(size) if (size as u64) <= file_size => size,
        _ => {
            return Err(format!(
                "its header says the value is {} bytes, but the object is {file_size} bytes",
                header.value_size
            ))
        }
    };
    let layout = Layout::new(size, align as usize, schema_len);
    let expected = [
        ("value offset", header.value_offset, layout.value_offset),
        ("lock offset", header.lock_offset, LOCK_OFFSET),
        ("total size", header.total_size, layout.total_size),
    ];
    for (what, found, want) in expected {
        if found != want as u64 {
            return Err(format!(
                "its header says {what} {found}, but its own value size, alignment and \
                 schema give {want}"
            ));
        }
    }
    // A store grows in place past the size it was made with (its own meta
    // says how much of the object its heap uses, checked when it is
    // opened); it never shrinks.
    let grown = header.kind == KIND_STORE && file_size > header.total_size;
    if file_size != header.total_size && !grown {
        return Err(format!(
            "it is {file_size} bytes long but its header says {}: truncated or resized by someone",
            header.total_size
        ));
    }
    Ok(layout)
}

/// The header of a mapped segment, read without knowing its type (the
/// `shmstore` command, `inspect`, the mirror): [`identify`], and for a
/// ready one [`consistent`], whose layout comes with it. The bytes are
/// copied out first: another process may be writing them.
pub(crate) fn read_mapped(map: &Mapping) -> std::result::Result<Mapped, Unusable> {
    let mut buf = [0u8; std::mem::size_of::<Header>()];
    let n = map.len().min(buf.len());
    map.copy_out(0, &mut buf[..n]);
    // The copy read `state` with plain loads: order every later read (the
    // schema, the value, the counters) after it, so that a READY seen here
    // comes with what its creator wrote before its release store of READY.
    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
    let header = identify(&buf[..n], map.len() as u64)?;
    let layout = if header.state == STATE_READY {
        match consistent(&header, map.len() as u64) {
            Ok(layout) => Some(layout),
            Err(reason) => {
                return Err(Unusable::Damaged {
                    reason,
                    header: Some(header),
                })
            }
        }
    } else {
        None
    };
    Ok(Mapped { header, layout })
}

/// A mapped segment's header that [`read_mapped`] checked.
pub(crate) struct Mapped {
    pub header: Box<Header>,
    /// Where everything lies, for a ready segment (`None` while its creator
    /// is still writing it, or died doing so).
    pub layout: Option<Layout>,
}

/// Reads what `bytes` (the first bytes of an object of `file_size` bytes)
/// say, and checks that they describe a segment of `spec` this build can
/// use: [`identify`], then the spec, then [`consistent`].
///
/// The order of the checks decides which error wins: not ours at all
/// (`Corrupt`) or of the other byte order (`OtherByteOrder`), then another type or layout (`LayoutMismatch`, whatever the
/// sizes), then disagreement with the spec, with itself or with the object
/// (`Corrupt`).
pub(crate) fn check(name: &str, spec: &Spec, bytes: &[u8], file_size: u64) -> Result<Found> {
    let corrupt = |reason: String| Error::Corrupt {
        name: name.to_owned(),
        reason,
    };
    let header = identify(bytes, file_size).map_err(|u| u.into_error(name))?;
    match header.state {
        STATE_READY => {}
        STATE_INITIALISING => return Ok(Found::Initialising),
        // Checked against a spec, state 0 is no creator at work: a
        // descriptor backend writes its header whole (`pwrite`), and the
        // System V protocol tells a creator between its magic and its state
        // from its own atomic reads before it gets here.
        other => return Err(corrupt(format!("unknown state {other}"))),
    }
    if header.fingerprint != spec.fingerprint {
        return Err(Error::LayoutMismatch {
            name: name.to_owned(),
            expected_type: spec.type_name,
            expected_fingerprint: spec.fingerprint,
            found_type: header.type_name(),
            found_fingerprint: header.fingerprint,
            changes: Vec::new(),
        });
    }
    if header.kind != spec.kind {
        return Err(corrupt(format!(
            "kind {} (expected kind {} for {})",
            header.kind,
            spec.kind,
            spec.describe()
        )));
    }
    let content = usize::try_from(header.value_size).unwrap_or(usize::MAX);
    if content < spec.min_size || content > spec.max_size {
        return Err(corrupt(format!(
            "its header says value size {content}, but {} needs {}",
            spec.describe(),
            if spec.min_size == spec.max_size {
                spec.min_size.to_string()
            } else {
                format!("{} to {}", spec.min_size, spec.max_size)
            }
        )));
    }
    if header.value_align != spec.align as u64 {
        return Err(corrupt(format!(
            "its header says value alignment {}, but {} needs {}",
            header.value_align,
            spec.describe(),
            spec.align
        )));
    }
    consistent(&header, file_size).map_err(corrupt)?;
    Ok(Found::Ready)
}

/// `err` with the changes from the segment's recorded schema to this
/// build's filled in, if it is a [`LayoutMismatch`](Error::LayoutMismatch)
/// found for `spec` and the segment's schema can be read; `err` as it is
/// otherwise.
///
/// `header` is the segment's first bytes, as [`check`] read them, and
/// `object_len` the object's size. Nothing of the header is trusted: the
/// schema's place comes from its value size, alignment and schema length,
/// checked and bounded by `object_len`, and `read(offset, len)` copies the
/// `len` bytes at `offset` (`None` if it cannot). A schema that is absent,
/// cannot be read, does not decode or does not describe a value of the
/// header's size leaves the list empty.
pub(crate) fn explain_mismatch(
    mut err: Error,
    spec: &Spec,
    header: &[u8],
    object_len: u64,
    read: impl FnOnce(usize, usize) -> Option<Vec<u8>>,
) -> Error {
    if let (Error::LayoutMismatch { changes, .. }, Some(expected)) = (&mut err, spec.schema) {
        if let Some((offset, len, value_size)) = schema_region(header, object_len) {
            if let Some(bytes) = read(offset, len).filter(|b| b.len() == len) {
                *changes = crate::schema::recorded_changes(&bytes, value_size, &expected());
            }
        }
    }
    err
}

/// Where the schema of the segment headed by `header` lies, `len` bytes at
/// `offset`, and the value size it must describe, if the header's figures
/// give a place within an object of `object_len` bytes.
fn schema_region(header: &[u8], object_len: u64) -> Option<(usize, usize, u64)> {
    let (h, _) = Header::read_from_prefix(header).ok()?;
    let len = h.schema_len as usize;
    let align = usize::try_from(h.value_align).ok()?;
    if len == 0 || len > MAX_SCHEMA || !align.is_power_of_two() || align > 4096 {
        return None;
    }
    // A value no larger than the object keeps the layout's sums far from
    // overflowing.
    let size = usize::try_from(h.value_size)
        .ok()
        .filter(|&size| size as u64 <= object_len)?;
    let offset = Layout::new(size, align, len).schema_offset;
    let end = offset.checked_add(len)?;
    (end as u64 <= object_len).then_some((offset, len, h.value_size))
}

/// The slot of a single-value segment holding a `T` (a
/// [`Shared`](crate::Shared) or [`SharedReader`](crate::SharedReader)): the
/// lock, its versions and the value where the header's layout puts them.
/// The slot keeps `map` alive.
pub(crate) fn value_slot<T: Shareable>(map: Mapping) -> Slot<T> {
    Slot::new(
        Box::new(map),
        LOCK_OFFSET,
        VERSIONS_OFFSET,
        Layout::value_offset_of::<T>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready<T: Shareable>() -> Vec<u8> {
        let mut h = Header::new(&Spec::of::<T>(0), &Creator::current());
        h.state = STATE_READY;
        h.as_bytes().to_vec()
    }

    #[test]
    fn a_fresh_header_checks_out() {
        let bytes = ready::<u64>();
        let size = Spec::of::<u64>(0).layout().total_size as u64;
        assert!(matches!(
            check("t", &Spec::of::<u64>(0), &bytes, size),
            Ok(Found::Ready)
        ));
    }

    #[test]
    fn value_shares_the_lock_cache_line() {
        assert_eq!(Layout::value_offset_of::<u64>(), 304);
        assert_eq!(Layout::value_offset_of::<[u64; 2]>(), 304);
        assert!(Layout::value_offset_of::<u64>() < LOCK_OFFSET + 64);
        assert_eq!(Layout::new(3, 1, 0).total_size, 307);
        assert_eq!(Layout::new(3, 1, 10).schema_offset, 312);
        assert_eq!(Layout::new(3, 1, 10).total_size, 322);
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let size = Spec::of::<u64>(0).layout().total_size as u64;
        let ok = ready::<u64>();

        let err = check("t", &Spec::of::<u64>(0), b"hello world", 11).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");

        let err = check("t", &Spec::of::<u64>(0), &ok[..40], size).unwrap_err();
        assert!(err.to_string().contains("cut short"), "{err}");

        let mut v = ok.clone();
        v[8..12].copy_from_slice(&9u32.to_ne_bytes()); // version
        assert!(check("t", &Spec::of::<u64>(0), &v, size)
            .unwrap_err()
            .to_string()
            .contains("format version 9"));

        // Another type wins over a size that differs too.
        let err = check("t", &Spec::of::<u32>(0), &ok, 3).unwrap_err();
        assert!(
            matches!(&err, Error::LayoutMismatch { found_type, .. } if found_type == "u64"),
            "{err}"
        );

        let err = check("t", &Spec::of::<u64>(0), &ok, size - 1).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");

        let mut v = ok.clone();
        v[STATE_OFFSET..STATE_OFFSET + 4].copy_from_slice(&STATE_INITIALISING.to_ne_bytes());
        assert!(matches!(
            check("t", &Spec::of::<u64>(0), &v, size),
            Ok(Found::Initialising)
        ));
    }

    #[test]
    fn a_mismatch_is_explained_only_from_a_schema_where_the_header_says() {
        let spec = Spec::of::<u64>(Schema::of::<u64>().encode().len());
        let mut h = Header::new(&spec, &Creator::current());
        h.state = STATE_READY;
        let size = spec.layout().total_size as u64;
        let explain = |h: &Header, len: u64| {
            let ours = Spec::of::<u32>(0);
            let err = check("t", &ours, h.as_bytes(), len).unwrap_err();
            let mut asked = None;
            let err = explain_mismatch(err, &ours, h.as_bytes(), len, |offset, len| {
                asked = Some((offset, len));
                Some(Schema::of::<u64>().encode())
            });
            let Error::LayoutMismatch { changes, .. } = err else {
                panic!("{err:?}");
            };
            (asked, changes.len())
        };
        let at = spec.layout().schema_offset;
        assert_eq!(explain(&h, size), (Some((at, spec.schema_len)), 3));
        // Past the object's end: not read.
        assert_eq!(explain(&h, size - 1), (None, 0));
        let hostile: [fn(&mut Header); 6] = [
            |h| h.value_align = 0,
            |h| h.value_align = 3,
            |h| h.value_align = 1 << 40,
            |h| h.value_size = u64::MAX,
            |h| h.schema_len = u32::MAX,
            |h| h.schema_len = 0,
        ];
        for forge in hostile {
            let mut h = h.clone();
            forge(&mut h);
            assert_eq!(explain(&h, size), (None, 0), "{h:?}");
        }
        // Any other error is left alone.
        let err = Error::NotFound { name: "t".into() };
        let err = explain_mismatch(err, &spec, h.as_bytes(), size, |_, _| unreachable!());
        assert!(matches!(err, Error::NotFound { .. }));
    }

    /// `h` as a build of the other byte order writes it: every number's
    /// bytes reversed, the magic and type name as they are.
    fn byte_swapped_header(h: &Header) -> Header {
        Header {
            magic: h.magic,
            version: h.version.swap_bytes(),
            state: h.state.swap_bytes(),
            header_size: h.header_size.swap_bytes(),
            kind: h.kind.swap_bytes(),
            total_size: h.total_size.swap_bytes(),
            fingerprint: h.fingerprint.swap_bytes(),
            value_size: h.value_size.swap_bytes(),
            value_align: h.value_align.swap_bytes(),
            value_offset: h.value_offset.swap_bytes(),
            lock_offset: h.lock_offset.swap_bytes(),
            creator_pid: h.creator_pid.swap_bytes(),
            creator_uid: h.creator_uid.swap_bytes(),
            creator_start: h.creator_start.swap_bytes(),
            pid_ns: h.pid_ns.swap_bytes(),
            created_unix_ns: h.created_unix_ns.swap_bytes(),
            type_name_len: h.type_name_len.swap_bytes(),
            schema_len: h.schema_len.swap_bytes(),
            type_name: h.type_name,
        }
    }

    #[test]
    fn a_header_of_the_other_byte_order_is_refused_as_such() {
        let spec = Spec::of::<u64>(0);
        let size = spec.layout().total_size as u64;
        let mut h = Header::new(&spec, &Creator::current());
        h.state = STATE_READY;
        let other = byte_swapped_header(&h);
        let err = check("t", &spec, other.as_bytes(), size).unwrap_err();
        let Error::OtherByteOrder { name, found } = &err else {
            panic!("{err:?}");
        };
        assert_eq!((name.as_str(), *found), ("t", ByteOrder::NATIVE.other()));
        let message = err.to_string();
        let both = format!(
            "made by a {} build, and this build is {}",
            ByteOrder::NATIVE.other(),
            ByteOrder::NATIVE
        );
        assert!(message.contains(&both), "{message}");
        // Whatever the state, kind or size, and in a header cut short too:
        // the version says it before anything else is read.
        for len in [12, 40, other.as_bytes().len()] {
            assert!(matches!(
                identify(&other.as_bytes()[..len], 3),
                Err(Unusable::OtherByteOrder(found)) if found == ByteOrder::NATIVE.other()
            ));
        }
        let older = Header {
            version: 1u32.swap_bytes(),
            ..other.clone()
        };
        assert!(matches!(
            identify(older.as_bytes(), size),
            Err(Unusable::OtherByteOrder(_))
        ));
        // A damaged version that is large either way is no byte order's.
        for version in [0xdead_beef, 0x0102_0304, u32::MAX] {
            let v = Header {
                version,
                ..h.clone()
            };
            let err = check("t", &spec, v.as_bytes(), size).unwrap_err();
            assert!(
                matches!(&err, Error::Corrupt { reason, .. } if reason.contains("format version")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn hostile_type_names_are_cleaned() {
        let mut h = Header::new(&Spec::of::<u64>(0), &Creator::current());
        h.type_name_len = u32::MAX;
        h.type_name[0] = b'\x1b';
        h.type_name[1] = 0xff;
        let name = h.type_name();
        assert!(!name.contains('\x1b'));
        assert!(name.chars().count() <= TYPE_NAME_LEN);
    }
}
