//! Shared (not `_PRIVATE`) futex wait and wake, so that sleepers and wakers in
//! different processes find each other through the physical page.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The 32-bit half of a 64-bit lock word that the kernel compares: the low
/// half, which holds the owner's thread id and the waiters bit.
fn low_half(word: &AtomicU64) -> *const u32 {
    let p = word.as_ptr() as *const u32;
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
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `low_half` points at 4 aligned bytes inside the live AtomicU64
    // borrowed for this call; FUTEX_WAIT only reads them atomically in the
    // kernel. `ts` is a valid timespec that outlives the call. The remaining
    // arguments are unused by FUTEX_WAIT. Errors (EAGAIN, EINTR, ETIMEDOUT)
    // need no handling, see above.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            low_half(word),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
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
