//! A shared, read-write mapping of a whole object, unmapped on drop.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use crate::lock::RawLock;

/// `len` bytes of a shared object, mapped `MAP_SHARED` and read-write.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; every access to
// it goes through atomics or through the segment lock, whichever thread
// makes it, so moving or sharing the handle between threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`: `&Mapping` only hands out raw pointers.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`.
    ///
    /// The caller has checked with `fstat` that the object is at least `len`
    /// bytes long: pages past its end would raise SIGBUS when touched.
    pub(crate) fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        let nz = NonZeroUsize::new(len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"))?;
        // SAFETY: a new mapping at an address the kernel chooses (addr None)
        // cannot overlap memory Rust already uses; `fd` is a valid open
        // descriptor for the duration of the call; offset 0 is page aligned.
        let ptr = unsafe {
            mmap(
                None,
                nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }?;
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The mapped length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A pointer to `offset` in the mapping, checked to leave room for a `U`
    /// and to be aligned for it.
    pub(crate) fn at<U>(&self, offset: usize) -> NonNull<U> {
        let end = offset.checked_add(std::mem::size_of::<U>());
        assert!(
            end.is_some_and(|e| e <= self.len),
            "offset {offset} out of a {}-byte mapping",
            self.len
        );
        // SAFETY: offset + size_of::<U>() <= len (checked above), so the
        // result stays inside the mapping and cannot be null.
        let p = unsafe { self.ptr.add(offset) }.cast::<U>();
        assert!(p.as_ptr().is_aligned(), "misaligned offset {offset}");
        p
    }
}

impl Mapping {
    /// Writes `value` at `offset` (bounds- and alignment-checked).
    ///
    /// # Safety
    ///
    /// - No reference to those bytes may exist, and no other thread or
    ///   process may access them during the write (only initialisation, under
    ///   the exclusive file lock of a segment that is not READY, qualifies).
    pub(crate) unsafe fn write<U>(&self, offset: usize, value: U) {
        let p = self.at::<U>(offset);
        // SAFETY: `at` checked that `p` is in bounds and aligned for U; the
        // caller guarantees exclusive access to those bytes.
        unsafe { p.as_ptr().write(value) };
    }

    /// The 32-bit atomic at `offset`.
    pub(crate) fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `at` checked bounds and alignment; the mapping lives as
        // long as the returned borrow of `self`; any bit pattern is a valid
        // u32, and every access to these bytes through the mapping is atomic.
        unsafe { AtomicU32::from_ptr(self.at::<u32>(offset).as_ptr()) }
    }

    /// The lock at `offset`.
    pub(crate) fn raw_lock(&self, offset: usize) -> &RawLock {
        // SAFETY: `at` checked bounds and alignment; the mapping lives as
        // long as the returned borrow of `self`; RawLock consists of atomics
        // only (every access is atomic) and every bit pattern is a valid
        // RawLock state (see lock.rs).
        unsafe { self.at::<RawLock>(offset).as_ref() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned and nothing else
        // unmaps them; every reference into the mapping borrows from a
        // handle that owns this Mapping, so none outlives this drop.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}
