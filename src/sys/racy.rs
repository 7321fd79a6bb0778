//! Copying a value out of memory that another process may be writing.

use std::mem::size_of;
use std::ptr;

/// From this size on, x86-64 copies with one `rep movsb` (fast strings:
/// whole cache lines per step), below it with 16-byte loads.
#[cfg(target_arch = "x86_64")]
const REP_MOVSB_FROM: usize = 512;

/// Copies the `T` at `src` to `dst`, whatever other processes write at `src`
/// meanwhile.
///
/// The copy may mix bytes from before and after a concurrent write (the
/// caller's sequence counter tells), but it is always a valid `T`: every
/// byte of `dst` is written, and any bit pattern is a valid `Shareable`
/// value. No reference to the shared bytes is ever made, and they are only
/// read by volatile loads or by a `rep movsb` in inline assembly, which the
/// compiler treats as opaque: it neither elides, merges nor invents these
/// reads. Small values are read 16 bytes at a time (8 off x86-64), large
/// ones with `rep movsb`, so a snapshot costs about what a plain copy does.
///
/// # The seqlock gap
///
/// Rust has no atomic copy of arbitrary bytes (the proposed
/// `AtomicPerByte`, RFC 3301, would be one). A volatile load that races with
/// a write of another thread is, by the letter of Rust's memory model, a
/// data race, and so undefined behaviour; it is *not* an atomic load. Every
/// seqlock written in Rust today (crossbeam's `AtomicCell` fallback among
/// them) lives with this gap. What this crate relies on instead is what the
/// targets it builds for (64-bit Linux: x86-64, aarch64, riscv64,
/// powerpc64le, s390x) and LLVM do: a volatile load of an aligned 1-, 2-, 4-
/// or 8-byte chunk is one plain load instruction (a 16-byte chunk is one
/// load where the target has one, and two 8-byte loads where it has not),
/// which cannot fault on mapped memory and returns some bytes that were there; the compiler cannot assume anything about the value it
/// returns. The bytes are then never trusted: every `Shareable` bit pattern
/// is a valid value, and the caller's sequence counter decides whether the
/// copy is used or thrown away. The writers race with are in other
/// processes, or are threads of this one writing through a guard, which
/// reads them back only through these copies.
///
/// # Safety
///
/// - `src` is aligned for `T` and valid for reads of `size_of::<T>()` bytes
///   for the whole call (it points into a live mapping);
/// - `dst` is valid for writes of `size_of::<T>()` bytes and does not
///   overlap `src`;
/// - every bit pattern is a valid `T` (callers pass `Shareable` types).
#[inline(always)]
pub(crate) unsafe fn copy_into<T>(src: *const T, dst: *mut T) {
    // SAFETY: the caller's promise, for the `size_of::<T>()` bytes of a T;
    // every byte pattern is a valid T, so bytes make a T.
    unsafe { copy_bytes(src.cast::<u8>(), dst.cast::<u8>(), size_of::<T>()) }
}

/// Copies `len` bytes at `src` to `out`, whatever other processes write at
/// `src` meanwhile, as [`copy_into`] does for a typed value: for the bytes of
/// a value whose type this process does not know (the mirror, `inspect`) and
/// for headers not yet checked.
///
/// # Safety
///
/// `src` is valid for reads of `out.len()` bytes for the whole call (it
/// points into a live mapping).
#[inline]
pub(crate) unsafe fn copy_to_slice(src: *const u8, out: &mut [u8]) {
    // SAFETY: `src` as the caller promises; `out` is this process's own
    // memory, valid for writes of its length, and cannot overlap a mapping
    // other processes write (a `&mut [u8]` is never shared memory here).
    unsafe { copy_bytes(src, out.as_mut_ptr(), out.len()) }
}

/// The copy behind [`copy_into`] and [`copy_to_slice`].
///
/// # Safety
///
/// As for [`copy_into`], with `len` bytes for the size and no alignment
/// required of `src`.
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    if len >= REP_MOVSB_FROM {
        // SAFETY: `rep movsb` copies `rcx` bytes from `rsi` to `rdi`,
        // upwards (the ABI guarantees the direction flag is clear on entry
        // to Rust code); both ranges are valid and disjoint by the caller's
        // promise. It touches no other memory, no stack and no flags, and
        // the three registers it advances are declared clobbered.
        unsafe {
            std::arch::asm!(
                "rep movsb",
                inout("rcx") len => _,
                inout("rdi") dst => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags)
            );
        }
        return;
    }

    // The common case: a value at a 16-aligned address (a segment's value
    // is 32-aligned in its page-aligned mapping) whose size is a multiple
    // of 16. The trip count is then a constant and the loop unrolls.
    #[cfg(target_arch = "x86_64")]
    if len % 16 == 0 && (src as usize) % 16 == 0 {
        use std::arch::x86_64::__m128i;
        let mut i = 0;
        while i < len {
            // SAFETY: `src + i .. + 16` is inside the source (valid for
            // reads) and 16-aligned (checked above, i is a multiple of 16);
            // `dst + i .. + 16` is inside the destination, written
            // unaligned.
            unsafe {
                let v = ptr::read_volatile(src.add(i).cast::<__m128i>());
                ptr::write_unaligned(dst.add(i).cast::<__m128i>(), v);
            }
            i += 16;
        }
        return;
    }

    #[cfg(target_arch = "x86_64")]
    const WIDE: usize = 16;
    #[cfg(not(target_arch = "x86_64"))]
    const WIDE: usize = 8;

    // For every block below: `src + i` and `dst + i` stay within the `len`
    // bytes of the source (valid for reads) and of the destination (valid
    // for writes); each load is aligned for its width (the head loop runs
    // until `src + i` is WIDE-aligned, and widths only shrink after that);
    // stores go to `dst` with unaligned writes.
    let mut i = 0;
    while i < len && (src as usize + i) % WIDE != 0 {
        // SAFETY: in bounds and aligned, see above.
        unsafe { dst.add(i).write(ptr::read_volatile(src.add(i))) };
        i += 1;
    }
    #[cfg(target_arch = "x86_64")]
    while i + 16 <= len {
        use std::arch::x86_64::__m128i;
        // SAFETY: in bounds and aligned, see above.
        unsafe {
            let v = ptr::read_volatile(src.add(i).cast::<__m128i>());
            ptr::write_unaligned(dst.add(i).cast::<__m128i>(), v);
        }
        i += 16;
    }
    while i + 8 <= len {
        // SAFETY: in bounds and aligned, see above.
        unsafe {
            let v = ptr::read_volatile(src.add(i).cast::<u64>());
            ptr::write_unaligned(dst.add(i).cast::<u64>(), v);
        }
        i += 8;
    }
    while i < len {
        // SAFETY: in bounds, see above.
        unsafe { dst.add(i).write(ptr::read_volatile(src.add(i))) };
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::MaybeUninit;

    fn copy<T: Copy>(src: *const T) -> T {
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: the callers below pass pointers into live vectors with
        // room for a T; `out` is a separate local.
        unsafe {
            copy_into(src, out.as_mut_ptr());
            out.assume_init()
        }
    }

    #[test]
    fn copies_untyped_bytes_at_any_alignment_and_length() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
        for start in 0..16 {
            for len in [0, 1, 7, 8, 15, 16, 17, 100, 511, 512, 513, 1200] {
                let mut out = vec![0xAAu8; len];
                // SAFETY: `bytes` has at least start + len bytes.
                unsafe { copy_to_slice(bytes[start..].as_ptr(), &mut out) };
                assert_eq!(out, &bytes[start..start + len], "at {start}, {len} bytes");
            }
        }
    }

    #[test]
    fn copies_every_byte_at_any_alignment_and_size() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1200).collect();
        for start in 0..16 {
            let got: [u8; 100] = copy(bytes[start..].as_ptr().cast());
            assert_eq!(&got[..], &bytes[start..start + 100]);
            // Large enough for `rep movsb`.
            let got: [u8; 1000] = copy(bytes[start..].as_ptr().cast());
            assert_eq!(&got[..], &bytes[start..start + 1000]);
        }
        let words: Vec<u64> = (0..600).map(|i| i * 0x0101_0101_0101).collect();
        let got: [u64; 37] = copy(words[1..].as_ptr().cast());
        assert_eq!(&got[..], &words[1..38]);
        let got: [u64; 512] = copy(words[3..].as_ptr().cast());
        assert_eq!(&got[..], &words[3..515]);
    }
}
