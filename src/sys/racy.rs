//! Copying a value out of memory that another process may be writing.

use std::mem::{size_of, MaybeUninit};
use std::ptr;

use crate::shareable::Shareable;

/// Copies the `T` at `src` with volatile loads, whatever other processes
/// write there meanwhile.
///
/// The copy may mix bytes from before and after a concurrent write (the
/// caller's sequence counter tells), but it is always a valid `T`: every
/// byte is read exactly once, the result is fully written, and any bit
/// pattern is a valid `Shareable` value. No reference to the shared bytes is
/// ever made, so the compiler assumes nothing about them; volatile loads
/// are neither elided, merged nor torn below their own width. Bulk bytes are
/// read 16 at a time (one SSE load each) on x86-64 and 8 at a time
/// elsewhere, so a snapshot costs about what a plain copy does.
///
/// # Safety
///
/// `src` is aligned for `T` and valid for reads of `size_of::<T>()` bytes
/// for the whole call (it points into a live mapping).
pub(crate) unsafe fn copy<T: Shareable>(src: *const T) -> T {
    let mut out = MaybeUninit::<T>::uninit();
    let dst = out.as_mut_ptr().cast::<u8>();
    let src = src.cast::<u8>();
    let len = size_of::<T>();
    let mut i = 0;

    #[cfg(target_arch = "x86_64")]
    const WIDE: usize = 16;
    #[cfg(not(target_arch = "x86_64"))]
    const WIDE: usize = 8;

    // For every block below: `src + i` and `dst + i` stay within the `len`
    // bytes of the source (valid for reads, by the caller's promise) and of
    // `out` (valid for writes); each load is aligned for its width (the head
    // loop runs until `src + i` is WIDE-aligned, and widths only shrink
    // after that); stores go to `out`, which nothing else references, with
    // unaligned writes.
    while i < len && (src as usize + i) % WIDE != 0 {
        // SAFETY: in bounds and aligned, see above; `out` is ours.
        unsafe { dst.add(i).write(ptr::read_volatile(src.add(i))) };
        i += 1;
    }
    #[cfg(target_arch = "x86_64")]
    while i + 16 <= len {
        use std::arch::x86_64::__m128i;
        // SAFETY: in bounds and aligned, see above; `out` is ours.
        unsafe {
            let v = ptr::read_volatile(src.add(i).cast::<__m128i>());
            ptr::write_unaligned(dst.add(i).cast::<__m128i>(), v);
        }
        i += 16;
    }
    while i + 8 <= len {
        // SAFETY: in bounds and aligned, see above; `out` is ours.
        unsafe {
            let v = ptr::read_volatile(src.add(i).cast::<u64>());
            ptr::write_unaligned(dst.add(i).cast::<u64>(), v);
        }
        i += 8;
    }
    while i < len {
        // SAFETY: in bounds and aligned, see above; `out` is ours.
        unsafe { dst.add(i).write(ptr::read_volatile(src.add(i))) };
        i += 1;
    }
    // SAFETY: all `len` bytes of `out` were written above, and any bytes
    // are a valid `T` (T: Shareable, which also rules out padding).
    unsafe { out.assume_init() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_byte_at_any_alignment_and_size() {
        let bytes: Vec<u8> = (0..200u8).collect();
        for start in 0..16 {
            // SAFETY: 100 bytes from `start` <= 16 are inside the vector,
            // and u8 arrays need no alignment.
            let got: [u8; 100] = unsafe { copy(bytes.as_ptr().add(start).cast()) };
            assert_eq!(&got[..], &bytes[start..start + 100]);
        }
        let words: Vec<u64> = (0..40).map(|i| i * 0x0101_0101_0101).collect();
        // SAFETY: 37 u64s from index 1 are inside the vector, aligned.
        let got: [u64; 37] = unsafe { copy(words.as_ptr().add(1).cast()) };
        assert_eq!(&got[..], &words[1..38]);
    }
}
