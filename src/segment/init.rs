//! Initialising a new segment: the one body every backend writes once it
//! alone may write the segment, and the header written in atomic words for
//! segments whose openers may read it meanwhile (System V, which cannot be
//! made under a temporary name and published whole).

#![allow(unsafe_code)] // writing a new segment's body: see `write_body`

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::posix_fallocate;
use nix::sys::uio::pwrite;
use nix::unistd::ftruncate;
use zerocopy::IntoBytes;

use crate::error::{Error, Result};

use crate::segment::header::{
    Creator, Header, Spec, LOCK_OFFSET, MAGIC, STATE_INITIALISING, STATE_OFFSET, STATE_READY,
    VERSIONS_OFFSET,
};
use crate::sys::mapping::Mapping;

/// What a new segment holds: the start of its content (zeros after it),
/// and the schema that follows the content.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Initial<'a> {
    pub content: &'a [u8],
    pub schema: &'a [u8],
}

/// How long an opener of a System V segment waits for another process that
/// is initialising it before it reports
/// [`Error::Incomplete`](crate::Error::Incomplete). POSIX and file segments
/// never wait: they are published whole.
pub(crate) const INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// An opener's wait for a segment's creator: the deadline, [`INIT_TIMEOUT`]
/// from its start, and naps of 100 µs doubling up to 20 ms meanwhile. Only
/// the System V protocol waits: its segments exist, zeroed, before their
/// creator writes them.
pub(crate) struct Patience {
    deadline: Instant,
    nap: Duration,
}

impl Patience {
    /// A wait that starts now.
    pub(crate) fn new() -> Patience {
        Patience {
            deadline: Instant::now() + INIT_TIMEOUT,
            nap: Duration::from_micros(100),
        }
    }

    /// When the wait ends.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub(crate) fn is_over(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Sleeps for the next nap; `false`, at once, if the deadline has
    /// passed (the caller reports the segment incomplete).
    pub(crate) fn nap(&mut self) -> bool {
        if self.is_over() {
            return false;
        }
        std::thread::sleep(self.nap);
        self.nap = (self.nap * 2).min(Duration::from_millis(20));
        true
    }
}

/// The header's length in bytes.
pub(crate) const HEADER_LEN: usize = std::mem::size_of::<Header>();

// The header is written and read in aligned 32-bit words.
const _: () = assert!(HEADER_LEN % 4 == 0 && STATE_OFFSET % 4 == 0 && MAGIC.len() == 8);

/// The magic as the two native-endian words it is stored as.
pub(crate) const MAGIC_WORDS: [u32; 2] = [
    u32::from_ne_bytes([MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3]]),
    u32::from_ne_bytes([MAGIC[4], MAGIC[5], MAGIC[6], MAGIC[7]]),
];

/// Writes the header of a new segment of `spec` in atomic 32-bit words,
/// ending in state INITIALISING: the magic first, then a release fence, then
/// the rest, so that an opener reading without a lock that sees any byte of
/// ours sees the magic too, and never takes the segment for a foreign one.
pub(crate) fn write_header(map: &Mapping, spec: &Spec) {
    let header = Header::new(spec, &Creator::current());
    let bytes = header.as_bytes();
    let word =
        |at: usize| u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    map.atomic_u32(0).store(MAGIC_WORDS[0], Ordering::Relaxed);
    map.atomic_u32(4).store(MAGIC_WORDS[1], Ordering::Relaxed);
    fence(Ordering::Release);
    for at in (MAGIC.len()..HEADER_LEN).step_by(4) {
        if at != STATE_OFFSET {
            map.atomic_u32(at).store(word(at), Ordering::Relaxed);
        }
    }
    map.atomic_u32(STATE_OFFSET)
        .store(STATE_INITIALISING, Ordering::Release);
}

/// Writes the body of a new segment of `spec` whose header is written and
/// says INITIALISING, then publishes it: the value (`initial`'s content,
/// then zeros up to the value's size: a creator that died may have left
/// anything there), the schema, the write counter at generation 0 with
/// `flags`, and last state READY with a release store, so that whoever sees
/// READY sees everything before it. The lock is the caller's: reset (a
/// new object nobody else has: memfd, or a POSIX or file segment under its
/// temporary name) or held (System V).
///
/// # Safety
///
/// `map` is writable and at least as long as a segment of `spec`, and no
/// reference to its value or schema bytes exists in this process: no handle
/// has been made of the mapping (handles are made of READY segments only,
/// and only after this returns), nor of any other mapping of the object
/// that is not READY. Other processes following the protocol keep off the
/// bytes too (a temporary name nobody else opens, the segment's own lock,
/// or a mapping nobody else has); one that does not can only make the bytes it reads torn, which
/// every reader of a segment treats as untrusted.
pub(crate) unsafe fn write_body(map: &Mapping, spec: &Spec, initial: Initial<'_>, flags: u32) {
    let layout = spec.layout();
    // SAFETY: the caller guarantees the length and that nothing in this
    // process references these bytes; `write_bytes` and `zero` check the
    // bounds again.
    unsafe {
        map.write_bytes(layout.value_offset, initial.content);
        map.zero(
            layout.value_offset + initial.content.len(),
            spec.size - initial.content.len(),
        );
        map.write_bytes(layout.schema_offset, initial.schema);
    }
    map.versions(VERSIONS_OFFSET).reset(flags);
    map.atomic_u32(STATE_OFFSET)
        .store(STATE_READY, Ordering::Release);
}

/// Writes a new segment of `spec` holding `initial` into `fd`, a new object
/// nobody else has (a memfd, or a POSIX or file segment under its temporary
/// name): the header (state INITIALISING), the size, every page allocated,
/// then the body and READY ([`write_body`]). Returns the mapping.
pub(crate) fn initialise(
    name: &str,
    fd: BorrowedFd<'_>,
    spec: &Spec,
    initial: Initial<'_>,
    flags: u32,
) -> Result<Mapping> {
    let layout = spec.layout();
    let total = layout.total_size;
    let no_space = || Error::NoSpace {
        name: name.to_owned(),
        size: total as u64,
    };
    let io = |op, e: Errno| match e {
        Errno::ENOSPC | Errno::EFBIG | Errno::ENOMEM => no_space(),
        e => Error::from_errno(name, op, e),
    };

    let header = Header::new(spec, &Creator::current());
    let bytes = header.as_bytes();
    let mut done = 0;
    while done < bytes.len() {
        match pwrite(fd, &bytes[done..], done as i64) {
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(io("writing the header of", e)),
        }
    }
    ftruncate(fd, total as i64).map_err(|e| io("sizing", e))?;
    posix_fallocate(fd, 0, total as i64).map_err(|e| io("allocating", e))?;

    let map = Mapping::map(fd.as_fd(), total, true).map_err(|e| Error::Io {
        op: "mapping",
        name: name.to_owned(),
        source: e,
    })?;
    // The object is new and sized just above, so all zeros; the lock is
    // reset all the same, and the body written in full.
    map.raw_lock(LOCK_OFFSET).reset();
    // SAFETY: the mapping was made just above, of exactly `total` bytes (the
    // spec's length), and no handle has been made of it. The object is
    // this process's alone: a new memfd, or a new file made with O_EXCL
    // under a temporary name that no process following the protocol opens
    // (openers open final names only, and only READY segments are put
    // there).
    unsafe { write_body(&map, spec, initial, flags) };
    Ok(map)
}
