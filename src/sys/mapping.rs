//! A shared mapping of a whole segment, released on drop: an
//! `mmap` of a file descriptor (POSIX shm, memfd, regular file), an anonymous
//! shared `mmap` (inherited by forked children), or a System V attachment.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64};

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use super::{memfd, presence, sigbus};

/// `len` bytes of a shared object, mapped shared, read-write or (for
/// read-only handles) read-only.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    release: Release,
    writable: bool,
    /// For mappings of descriptors, which another process can shrink under
    /// us: the entry that lets a SIGBUS there be caught (see `sigbus`).
    watch: Option<sigbus::Registration>,
    /// This process's presence in the segment's object, which tells other
    /// processes, in any PID namespace, that lock words naming this
    /// process name a live one (see `presence`).
    presence: Option<presence::Registration>,
}

/// How a mapping is given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Release {
    /// `munmap(ptr, len)`.
    Munmap,
    /// `shmdt(ptr)` (a System V attachment).
    Shmdt,
}

// SAFETY: the mapping is plain memory owned by this value; every access to
// it goes through atomics or through the segment lock, whichever thread
// makes it, so moving or sharing the handle between threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`: `&Mapping` only hands out raw pointers.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, read-write or, if `writable` is
    /// false, read-only (`PROT_READ`; then `fd` may be open read-only).
    ///
    /// The caller has checked with `fstat` that the object is at least `len`
    /// bytes long: pages past its end would raise SIGBUS when touched (a
    /// store's reservation, [`reserve`](Mapping::reserve), maps past the end
    /// on purpose and never touches those pages until the object grows).
    pub(crate) fn map(fd: BorrowedFd<'_>, len: usize, writable: bool) -> io::Result<Mapping> {
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        let nz = NonZeroUsize::new(len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"))?;
        // SAFETY: a new mapping at an address the kernel chooses (addr None)
        // cannot overlap memory Rust already uses; `fd` is a valid open
        // descriptor for the duration of the call; offset 0 is page aligned.
        let ptr = unsafe { mmap(None, nz, prot, MapFlags::MAP_SHARED, fd, 0) }?;
        let mut map = Mapping {
            ptr: ptr.cast(),
            len,
            release: Release::Munmap,
            writable,
            watch: None,
            presence: None,
        };
        map.watch = Some(sigbus::register(ptr.as_ptr() as usize, len, writable)?);
        match presence::register(fd, ptr.as_ptr() as usize, len, writable) {
            Ok(r) => map.presence = Some(r),
            // Anyone who may read the object can lock the bytes where
            // processes show themselves: say so rather than a bare EAGAIN.
            Err(e) if writable && e.raw_os_error() == Some(libc::EAGAIN) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another process holds a lock on the bytes of the object \
                     where this process would show itself",
                ))
            }
            // A process that cannot show itself must not take locks.
            Err(e) if writable => return Err(e),
            // A reader only asks about others; without the registration
            // every holder counts as alive to it.
            Err(_) => {}
        }
        Ok(map)
    }

    /// Maps `len` bytes of new, zeroed anonymous memory, shared with the
    /// children this process forks from now on (and with nobody else).
    pub(crate) fn anonymous(len: usize) -> io::Result<Mapping> {
        let nz = NonZeroUsize::new(len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"))?;
        // SAFETY: a new anonymous mapping at an address the kernel chooses
        // cannot overlap memory Rust already uses.
        let ptr = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        let mut map = Mapping {
            ptr: ptr.cast(),
            len,
            release: Release::Munmap,
            writable: true,
            watch: None,
            presence: None,
        };
        // No object stands behind anonymous memory: an empty memfd stands
        // for it, inherited by forked children with the mapping.
        let stand_in = memfd::create("shmstore-anonymous")?;
        map.presence = Some(presence::register(
            stand_in.as_fd(),
            ptr.as_ptr() as usize,
            len,
            true,
        )?);
        Ok(map)
    }

    /// Maps `len` bytes of the object this mapping maps, as this one is
    /// mapped (read-write or read-only), for a store that grows in place:
    /// `len` may exceed the object, whose pages past its end are never
    /// touched until it grows over them (Linux maps a shared object past
    /// its end; only a touch of such a page faults). The new mapping is
    /// entered in the SIGBUS registry whole, so a peer that shrinks the
    /// object still makes it *cut*, not a crash. `Ok(None)` for a mapping
    /// whose object cannot grow under it (anonymous memory, System V) or
    /// that has no description of its object to map it through.
    pub(crate) fn reserve(&self, len: usize) -> io::Result<Option<Mapping>> {
        if self.watch.is_none() {
            return Ok(None);
        }
        match self.descriptor() {
            Some(fd) => Mapping::map(fd, len, self.writable).map(Some),
            None => Ok(None),
        }
    }

    /// How many bytes the mapped object holds now: `fstat` of its
    /// description for a mapping of a descriptor, the mapping's length
    /// for anonymous memory and System V (whose size never changes);
    /// `None` if it cannot be told.
    pub(crate) fn object_len(&self) -> Option<u64> {
        if self.watch.is_none() {
            return Some(self.len as u64);
        }
        let fd = self.descriptor()?;
        nix::sys::stat::fstat(fd).ok().map(|st| st.st_size as u64)
    }

    /// Makes the mapped object at least `len` bytes long, its pages
    /// allocated (`posix_fallocate`), for a mapping at least that long (see
    /// [`reserve`](Mapping::reserve)): `Ok(true)` once it is, `Ok(false)`
    /// for an object that cannot grow (anonymous memory and System V, unless
    /// the mapping already covers `len`; a read-only mapping; a mapping
    /// shorter than `len`). A full filesystem is an error that
    /// [`is_no_space`] recognises.
    pub(crate) fn grow_object(&self, len: u64) -> io::Result<bool> {
        if len > self.len as u64 {
            return Ok(false);
        }
        if self.watch.is_none() {
            // All of it is there already.
            return Ok(true);
        }
        let Some(fd) = self.descriptor().filter(|_| self.writable) else {
            return Ok(false);
        };
        let len = i64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        loop {
            match nix::fcntl::posix_fallocate(fd, 0, len) {
                Ok(()) => return Ok(true),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Takes ownership of a System V attachment: `shmdt` on drop.
    ///
    /// # Safety
    ///
    /// - `ptr` is what a successful `shmat` returned and nothing else will
    ///   detach it;
    /// - the segment is at least `len` bytes long (`shm_segsz` from
    ///   `IPC_STAT`), so every byte of `ptr..ptr + len` is mapped;
    /// - `writable` is false if it was attached with `SHM_RDONLY`.
    pub(crate) unsafe fn from_sysv(ptr: NonNull<u8>, len: usize, writable: bool) -> Mapping {
        Mapping {
            ptr,
            len,
            release: Release::Shmdt,
            writable,
            watch: None,
            presence: None,
        }
    }

    /// This process's description of the mapped object (see
    /// `presence::Registration::descriptor`); `None` for anonymous memory
    /// and System V.
    pub(crate) fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        match self.release {
            Release::Munmap => self.presence.as_ref()?.descriptor(),
            Release::Shmdt => None,
        }
    }

    /// Registers this mapping's presence through `fd`, an object that
    /// stands for the mapped memory (a System V segment's stand-in).
    pub(crate) fn show_presence(
        &mut self,
        fd: BorrowedFd<'_>,
        writable: bool,
    ) -> Result<(), nix::errno::Errno> {
        let r = presence::register(fd, self.ptr.as_ptr() as usize, self.len, writable)
            .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        self.presence = Some(r);
        Ok(())
    }

    /// Copies `out.len()` bytes from `offset`, for bytes another process
    /// may be writing (a header not yet checked, a value of unknown type):
    /// see [`racy::copy_to_slice`](crate::sys::racy::copy_to_slice).
    pub(crate) fn copy_out(&self, offset: usize, out: &mut [u8]) {
        let end = offset.checked_add(out.len());
        assert!(
            end.is_some_and(|e| e <= self.len),
            "read past a {}-byte mapping",
            self.len
        );
        // SAFETY: offset + out.len() <= len (checked above), so the bytes
        // lie inside this mapping, which lives while `self` is borrowed.
        unsafe { crate::sys::racy::copy_to_slice(self.ptr.as_ptr().add(offset).cast_const(), out) };
    }

    /// Writes the mapping back to its file and waits for the disk
    /// (`msync(MS_SYNC)`); meaningful for file-backed segments.
    pub(crate) fn flush(&self) -> io::Result<()> {
        // SAFETY: ptr/len describe exactly this live mapping; msync does not
        // change the memory.
        unsafe {
            nix::sys::mman::msync(self.ptr.cast(), self.len, nix::sys::mman::MsFlags::MS_SYNC)
        }?;
        Ok(())
    }

    /// Whether another process shrank the object under this mapping and a
    /// page past its new end was touched here: those pages now read as
    /// zeros in this process only (see `sigbus`). Once true, stays true.
    pub(crate) fn is_cut(&self) -> bool {
        self.watch.as_ref().is_some_and(|w| w.is_cut())
    }

    /// The flag behind [`is_cut`](Mapping::is_cut), for handles that check
    /// it on every use; `None` for mappings nobody can shrink (anonymous,
    /// System V). Meaningful only while this mapping lives.
    pub(crate) fn cut_flag(&self) -> Option<&'static AtomicBool> {
        self.watch.as_ref().map(|w| w.flag())
    }

    /// Whether the mapping may be written (it was mapped read-write).
    pub(crate) fn is_writable(&self) -> bool {
        self.writable
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
    /// Copies `bytes` to `offset` (bounds-checked).
    ///
    /// # Safety
    ///
    /// No reference to those bytes may exist in this process during the
    /// write, and no other process following the protocol may access them:
    /// the body of a segment that is not READY (`segment::init`), or a store
    /// block no directory link reaches yet (`store::heap`).
    pub(crate) unsafe fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        assert!(self.writable, "write to a read-only mapping");
        let p = self.range(offset, bytes.len());
        // SAFETY: `range` checked that the bytes lie inside the mapping,
        // which cannot overlap `bytes` (Rust-owned memory); the caller
        // guarantees exclusive access to them.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    }

    /// Sets `len` bytes from `offset` to zero (bounds-checked).
    ///
    /// # Safety
    ///
    /// As for [`write_bytes`](Mapping::write_bytes).
    pub(crate) unsafe fn zero(&self, offset: usize, len: usize) {
        assert!(self.writable, "write to a read-only mapping");
        let p = self.range(offset, len);
        // SAFETY: as in `write_bytes`.
        unsafe { std::ptr::write_bytes(p, 0, len) };
    }

    /// A pointer to `len` bytes at `offset`, checked to lie in the mapping.
    fn range(&self, offset: usize, len: usize) -> *mut u8 {
        let end = offset.checked_add(len);
        assert!(
            end.is_some_and(|e| e <= self.len),
            "bytes {offset}+{len} out of a {}-byte mapping",
            self.len
        );
        // SAFETY: offset <= len, so the result is inside the mapping or one
        // past its end.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// The 32-bit atomic at `offset`.
    ///
    /// # Read-only mappings
    ///
    /// `AtomicU32::from_ptr` asks for memory valid for writes, which a
    /// read-only mapping (`PROT_READ`: read-only handles, `inspect`) is not.
    /// The standard library's "Atomic accesses to read-only memory" rule
    /// (`core::sync::atomic`) says which accesses are defined there anyway:
    /// relaxed loads of at most 8 bytes on x86-64 and aarch64 (and the other
    /// 64-bit targets of its table), nothing else. So through a read-only
    /// mapping this crate makes only relaxed loads of these 4-, 8- and
    /// 16-bit words (an acquire load is a relaxed load and an acquire fence),
    /// never a store or read-modify-write: handles made of read-only
    /// mappings take no lock and mark no word (`RawSlot::wait_for_change`
    /// checks `is_writable`), and `FUTEX_WAIT` only reads. Building for a
    /// target outside that table is refused (the `compile_error!`s of the
    /// crate root).
    pub(crate) fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `at` checked bounds and alignment; the mapping lives as
        // long as the returned borrow of `self`; any bit pattern is a valid
        // u32. Other accesses to these bytes are atomic too, or volatile
        // byte reads (`copy_out`) whose copies are checked before use; no
        // plain reference to them is ever made. On a read-only mapping only
        // relaxed loads are made through it (see above), which the standard
        // library defines on read-only memory.
        unsafe { AtomicU32::from_ptr(self.at::<u32>(offset).as_ptr()) }
    }

    /// The 16-bit atomic at `offset`.
    pub(crate) fn atomic_u16(&self, offset: usize) -> &AtomicU16 {
        // SAFETY: as for `atomic_u32`.
        unsafe { AtomicU16::from_ptr(self.at::<u16>(offset).as_ptr()) }
    }

    /// The 64-bit atomic at `offset`.
    pub(crate) fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: as for `atomic_u32`.
        unsafe { AtomicU64::from_ptr(self.at::<u64>(offset).as_ptr()) }
    }

    /// The `count` 64-bit atomics from `offset`: one check of bounds and
    /// alignment for them all (a lookup reads a block's fields through one
    /// such slice instead of checking each).
    pub(crate) fn atomic_u64s(&self, offset: usize, count: usize) -> &[AtomicU64] {
        let p = self.words::<u64>(offset, count);
        // SAFETY: as for `atomic_u32`, for each of the `count` words, which
        // `words` checked to lie inside the mapping, aligned.
        unsafe { std::slice::from_raw_parts(p.cast::<AtomicU64>(), count) }
    }

    /// The 64-bit atomics `words` (of this mapping) as twice as many 32-bit
    /// ones: a block's 32-bit fields read through the check already made
    /// for its 64-bit words. The caller keeps to one size per field (the
    /// bytes a 64-bit load reads are never read or written as halves).
    pub(crate) fn halves(words: &[AtomicU64]) -> &[AtomicU32] {
        // SAFETY: the same bytes, valid for the same borrow; `AtomicU32`
        // has half the size of `AtomicU64` and a smaller alignment, and any
        // bit pattern is a valid u32. Only atomic accesses are made to
        // them, as for `atomic_u32`.
        unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<AtomicU32>(), words.len() * 2) }
    }

    /// A pointer to `count` words of type `U` at `offset`, checked to lie
    /// in the mapping and to be aligned.
    fn words<U>(&self, offset: usize, count: usize) -> *mut U {
        let len = count
            .checked_mul(std::mem::size_of::<U>())
            .expect("a word count that overflows");
        let p = self.range(offset, len).cast::<U>();
        assert!(p.is_aligned(), "misaligned offset {offset}");
        p
    }
}

/// Whether `e` (from [`Mapping::grow_object`]) says the filesystem or the
/// memory behind it is full: `ENOSPC`, `EFBIG` or `ENOMEM`.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC | libc::EFBIG | libc::ENOMEM)
    )
}

/// Keeps a mapping alive for a handle: the mapping itself, or a hold on
/// another object's (a store entry's on its store's mapping).
pub(crate) trait KeepsMapped: Send + Sync {
    /// The mapping the handle's memory lies in.
    fn map(&self) -> &Mapping;
}

impl KeepsMapped for Mapping {
    fn map(&self) -> &Mapping {
        self
    }
}

/// Called with a mapping's address range just before it is unmapped, once
/// something above registered it: the async waiters' registry forgets every
/// word inside (a future that was leaked instead of dropped leaves one).
static ON_UNMAP: std::sync::OnceLock<fn(usize, usize)> = std::sync::OnceLock::new();

/// Registers the function every [`Mapping`] calls with its address range
/// before it is unmapped (the first registration stays).
pub(crate) fn on_unmap(f: fn(usize, usize)) {
    let _ = ON_UNMAP.set(f);
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Some(f) = ON_UNMAP.get() {
            f(self.ptr.as_ptr() as usize, self.len);
        }
        // Out of the SIGBUS registry before the addresses can be reused.
        drop(self.watch.take());
        match self.release {
            Release::Munmap => {
                // SAFETY: ptr/len are exactly what mmap returned and nothing
                // else unmaps them; every reference into the mapping borrows
                // from a handle that owns this Mapping, so none outlives
                // this drop.
                let _ = unsafe { munmap(self.ptr.cast(), self.len) };
            }
            Release::Shmdt => {
                // SAFETY: ptr is what shmat returned (from_sysv's contract)
                // and nothing else detaches it; no reference into it
                // outlives this drop, as above.
                let _ = unsafe { libc::shmdt(self.ptr.as_ptr().cast()) };
            }
        }
    }
}
