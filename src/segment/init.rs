//! Initialising a new segment: the one body every backend writes once it
//! alone may write the segment, and the header written in atomic words for
//! segments whose openers may read it meanwhile (System V, which has no
//! descriptor to `flock`).

#![allow(unsafe_code)] // writing a new segment's body: see `write_body`

use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use zerocopy::IntoBytes;

use crate::segment::header::{
    Creator, Header, Spec, MAGIC, STATE_INITIALISING, STATE_OFFSET, STATE_READY, VERSIONS_OFFSET,
};
use crate::sys::mapping::Mapping;

/// What a new segment holds: the start of its content (zeros after it),
/// and the schema that follows the content.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Initial<'a> {
    pub content: &'a [u8],
    pub schema: &'a [u8],
}

/// How long an opener waits for another process that is initialising a
/// segment before it reports [`Error::Incomplete`](crate::Error::Incomplete).
pub(crate) const INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// An opener's wait for a segment's creator: the deadline, [`INIT_TIMEOUT`]
/// from its start, and naps of 100 µs doubling up to 20 ms meanwhile. Both
/// create/open protocols (descriptor backends, System V) wait with one.
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
/// descriptor backend under its `flock`) or held (System V).
///
/// # Safety
///
/// `map` is writable and at least as long as a segment of `spec`, and no
/// reference to its value or schema bytes exists in this process: no handle
/// has been made of the mapping (handles are made of READY segments only,
/// and only after this returns), nor of any other mapping of the object
/// that is not READY. Other processes following the protocol keep off the
/// bytes too (the `flock`, the segment's own lock, or a mapping nobody else
/// has); one that does not can only make the bytes it reads torn, which
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
