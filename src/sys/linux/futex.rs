//! Shared (not `_PRIVATE`) futex wait and wake, so that sleepers and wakers in
//! different processes find each other through the physical page.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The 32-bit half of a 64-bit lock word that the kernel compares: the low
/// half, which holds the owner's thread id and the waiters bit.
fn low_half(word: *const AtomicU64) -> *const u32 {
    let p = word as *const u32;
    if cfg!(target_endian = "little") {
        p
    } else {
        p.wrapping_add(1)
    }
}

/// Sleeps while the low half of `word` equals `expected`, for at most `timeout`.
///
/// Returns early on a wake, a signal, or when the value differs already; the
/// caller re-reads the word in every case, so the reason does not matter.
pub(crate) fn wait(word: &AtomicU64, expected: u32, timeout: Duration) {
    wait_addr(word, expected, timeout)
}

/// Wakes at most `n` sleepers waiting on `word`, in any process.
pub(crate) fn wake(word: &AtomicU64, n: i32) {
    // SAFETY: `low_half` points inside the live AtomicU64; FUTEX_WAKE does not
    // access the memory, it only uses the address to find sleepers. The
    // unused arguments are ignored by FUTEX_WAKE.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            low_half(word),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// `FUTEX2_SIZE_U32`: each word of a `futex_waitv` is 32 bits.
const FUTEX2_SIZE_U32: u32 = 0x02;
/// The most words one `futex_waitv` call sleeps on (the kernel's limit).
pub(crate) const WAITV_MAX: usize = 128;

/// One word of a [`waitv`] call, as the kernel reads it (`struct futex_waitv`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitvEntry {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

impl WaitvEntry {
    /// Sleep while the low half of the shared `word` equals `expected`.
    pub(crate) fn shared(word: &AtomicU64, expected: u32) -> WaitvEntry {
        WaitvEntry {
            val: u64::from(expected),
            uaddr: low_half(word) as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        }
    }

    /// Sleep while this process's own `word` equals `expected`.
    pub(crate) fn private(word: &std::sync::atomic::AtomicU32, expected: u32) -> WaitvEntry {
        WaitvEntry {
            val: u64::from(expected),
            uaddr: word.as_ptr() as u64,
            // FUTEX2_PRIVATE
            flags: FUTEX2_SIZE_U32 | 128,
            reserved: 0,
        }
    }
}

/// What a [`waitv`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waitv {
    /// Woken, timed out, interrupted, or a word differed already: look.
    Returned,
    /// The kernel has no `futex_waitv` (before Linux 5.16, or a seccomp
    /// filter refuses it).
    Unsupported,
}

/// Sleeps until one of `words` (at most [`WAITV_MAX`]) is woken or differs
/// from its expected value, for at most `timeout`.
///
/// The words' addresses are only used while the call resolves them at its
/// start; a word whose mapping goes away during the sleep leaves the
/// sleeper waiting for the timeout, which is harmless. A word whose memory
/// is gone before the call makes it fail with `EFAULT`, also harmless:
/// callers look again. Callers keep the memory mapped while registered.
pub(crate) fn waitv(words: &[WaitvEntry], timeout: Duration) -> Waitv {
    assert!(words.len() <= WAITV_MAX, "too many words for futex_waitv");
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec into `now`, which is ours.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let nanos = now.tv_nsec as u64 + u64::from(timeout.subsec_nanos());
    let ts = libc::timespec {
        tv_sec: now.tv_sec
            + timeout.as_secs().min(1 << 32) as libc::time_t
            + (nanos / 1_000_000_000) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `words` is a live slice of `struct futex_waitv` (repr(C), the
    // kernel's layout, reserved fields zero) of at most 128 entries; the
    // kernel reads it and the 4-byte words it points at (each an aligned
    // atomic that the caller keeps mapped, or a fault the kernel reports as
    // EFAULT, not a crash). `ts` is an absolute CLOCK_MONOTONIC timespec
    // that outlives the call. Errors other than ENOSYS mean "look again".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            words.as_ptr(),
            words.len() as libc::c_uint,
            0u32,
            &ts as *const libc::timespec,
            libc::CLOCK_MONOTONIC,
        )
    };
    if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        return Waitv::Unsupported;
    }
    Waitv::Returned
}

/// Sleeps while this process's own `word` equals `expected`, for at most
/// `timeout` (a private futex).
pub(crate) fn wait_private(word: &std::sync::atomic::AtomicU32, expected: u32, timeout: Duration) {
    sleep_on(word.as_ptr(), libc::FUTEX_PRIVATE_FLAG, expected, timeout)
}

/// Wakes every sleeper on this process's own `word` (a private futex).
pub(crate) fn wake_private(word: &std::sync::atomic::AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address to find sleepers.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Sleeps while the low half of the 64-bit word at `word` equals `expected`,
/// for at most `timeout`, whether or not the word is still mapped: the
/// kernel reads the address (EFAULT if it is gone) and nothing else.
pub(crate) fn wait_addr(word: *const AtomicU64, expected: u32, timeout: Duration) {
    sleep_on(low_half(word), 0, expected, timeout)
}

/// FUTEX_WAIT (with `flags`) on the 4 bytes at `addr`.
fn sleep_on(addr: *const u32, flags: libc::c_int, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the kernel reads the 4 bytes at `addr` atomically, with fault
    // handling (EFAULT, not a signal, for an unmapped address), and writes
    // nothing. `ts` is a valid timespec that outlives the call; the
    // remaining arguments are unused by FUTEX_WAIT. Errors (EAGAIN, EINTR,
    // ETIMEDOUT, EFAULT) need no handling: callers look again in every case.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            addr,
            libc::FUTEX_WAIT | flags,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}
