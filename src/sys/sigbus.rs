//! Survives another process shrinking a segment under our mapping.
//!
//! A POSIX shared-memory object or a file can be truncated by any process
//! that may write it, also while others have it mapped. Touching a page
//! that now lies past the end of the object raises SIGBUS, which kills the
//! process. POSIX objects and plain files cannot be sealed against this
//! (memfds are, see `backend::memfd`), so shmstore catches the fault
//! instead, as libwayland does for client buffers:
//!
//! - every mapping of a descriptor is entered in a registry that a signal
//!   handler can read without locks or allocation;
//! - on the first such mapping, a SIGBUS handler is installed; the handler
//!   that was there before (Rust's own, usually) is kept and called for every
//!   fault that is not in a registered mapping, and for SIGBUS sent by
//!   `kill`;
//! - a fault inside a registered mapping maps private zeroed memory over the
//!   pages from the faulting one to the end of the mapping, marks the
//!   mapping *cut*, and returns: the faulting instruction runs again and now
//!   reads zeros (or writes to memory nobody else sees). The pages before it
//!   stay shared.
//!
//! The handles check the mark where their answer could depend on those
//! pages, and report [`Error::Truncated`](crate::Error::Truncated) (or a
//! poisoned lock, for the `LockResult` methods) instead of a value.
//!
//! A program that installs its own SIGBUS handler *after* opening a segment,
//! without calling the previous one, turns this off for itself.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// Entries per registry chunk; more chunks are added as needed and never
/// freed (a chunk is 8 KiB).
const CHUNK: usize = 256;

/// One registered mapping. `start == 0` means the entry is free.
struct Entry {
    start: AtomicUsize,
    len: AtomicUsize,
    writable: AtomicBool,
    cut: AtomicBool,
}

struct Chunk {
    entries: [Entry; CHUNK],
    next: AtomicPtr<Chunk>,
}

impl Chunk {
    const fn new() -> Chunk {
        #[allow(clippy::declare_interior_mutable_const)]
        const FREE: Entry = Entry {
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            writable: AtomicBool::new(false),
            cut: AtomicBool::new(false),
        };
        Chunk {
            entries: [FREE; CHUNK],
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

static FIRST: Chunk = Chunk::new();
static INSTALL: Once = Once::new();
/// The SIGBUS disposition before ours, called for faults that are not ours.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// A mapping's place in the registry; removed on drop, which must come
/// before the mapping is unmapped.
#[derive(Debug)]
pub(crate) struct Registration {
    entry: &'static Entry,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("start", &self.start.load(Ordering::Relaxed))
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("cut", &self.cut.load(Ordering::Relaxed))
            .finish()
    }
}

impl Registration {
    /// Whether a page of the mapping was found missing (the object was
    /// shrunk under it) and replaced by private zeros.
    pub(crate) fn is_cut(&self) -> bool {
        self.entry.cut.load(Ordering::Acquire)
    }

    /// The mark itself, for handles that check it on every use. It lives
    /// for the whole program; it means this mapping only until the
    /// registration is dropped.
    pub(crate) fn flag(&self) -> &'static AtomicBool {
        &self.entry.cut
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.entry.len.store(0, Ordering::Release);
        self.entry.start.store(0, Ordering::Release);
    }
}

/// Enters `len` bytes at `start` in the registry, installing the handler on
/// first use. Fails only if the handler cannot be installed.
pub(crate) fn register(start: usize, len: usize, writable: bool) -> std::io::Result<Registration> {
    install()?;
    let mut chunk: &'static Chunk = &FIRST;
    loop {
        for entry in &chunk.entries {
            if entry
                .start
                .compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                entry.cut.store(false, Ordering::Relaxed);
                entry.writable.store(writable, Ordering::Relaxed);
                entry.len.store(len, Ordering::Release);
                return Ok(Registration { entry });
            }
        }
        let next = chunk.next.load(Ordering::Acquire);
        if !next.is_null() {
            // SAFETY: chunks are leaked boxes, never freed, so a non-null
            // `next` points to a live Chunk for the rest of the program.
            chunk = unsafe { &*next };
            continue;
        }
        let fresh = Box::into_raw(Box::new(Chunk::new()));
        match chunk.next.compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: `fresh` came from Box::into_raw and is now owned by the
            // registry for good.
            Ok(_) => chunk = unsafe { &*fresh },
            Err(other) => {
                // SAFETY: our box was never published; we still own it.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: as above, a published chunk lives forever.
                chunk = unsafe { &*other };
            }
        }
    }
}

fn install() -> std::io::Result<()> {
    let mut result = Ok(());
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, empty
        // mask, no flags); the fields we need are set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
        // SAFETY: sa_mask is a valid sigset_t owned by `action`.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: as for `action`.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // `PREVIOUS` must be set before the handler can run: read the old
        // disposition first, then install.
        // SAFETY: a null new action only reads the current one into
        // `previous`, a valid, writable sigaction.
        if unsafe { libc::sigaction(libc::SIGBUS, ptr::null(), &mut previous) } != 0 {
            result = Err(std::io::Error::last_os_error());
            return;
        }
        let _ = PREVIOUS.set(previous);
        // SAFETY: `action` names `on_sigbus`, an extern "C" function with
        // the SA_SIGINFO signature that only does async-signal-safe work.
        if unsafe { libc::sigaction(libc::SIGBUS, &action, ptr::null_mut()) } != 0 {
            result = Err(std::io::Error::last_os_error());
        }
    });
    result
}

/// The entry whose mapping contains `addr`, if any. Lock-free and
/// allocation-free: safe in a signal handler.
fn find(addr: usize) -> Option<&'static Entry> {
    let mut chunk: &'static Chunk = &FIRST;
    loop {
        for entry in &chunk.entries {
            let start = entry.start.load(Ordering::Acquire);
            let len = entry.len.load(Ordering::Acquire);
            if start != 0 && addr >= start && addr - start < len {
                return Some(entry);
            }
        }
        let next = chunk.next.load(Ordering::Acquire);
        if next.is_null() {
            return None;
        }
        // SAFETY: published chunks are never freed.
        chunk = unsafe { &*next };
    }
}

/// The SIGBUS handler. Only async-signal-safe work: atomics, `mmap`,
/// `sigaction`, `raise`, and errno saved and restored around them.
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: errno is thread-local; reading and restoring it keeps the
    // interrupted code's value intact.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO handlers.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // Only faults (si_code > 0) name an address; a SIGBUS sent by kill or
    // sigqueue (si_code <= 0) is not ours to absorb.
    if code > 0 && replace_missing_pages(addr) {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
        return;
    }
    previous(sig, info, context, code > 0);
}

/// If `addr` lies in a registered mapping, maps private zeroed pages over it
/// from `addr`'s page to the mapping's end and marks the mapping cut.
fn replace_missing_pages(addr: usize) -> bool {
    let Some(entry) = find(addr) else {
        return false;
    };
    let page = PAGE.load(Ordering::Relaxed);
    let start = entry.start.load(Ordering::Acquire);
    let len = entry.len.load(Ordering::Acquire);
    let from = addr & !(page - 1);
    let end = (start + len).div_ceil(page) * page;
    if start == 0 || from < start || from >= end {
        return false;
    }
    let prot = if entry.writable.load(Ordering::Relaxed) {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    // SAFETY: [from, end) lies inside a live mapping that this process made
    // and registered (registrations end before their munmap), so MAP_FIXED
    // replaces only pages of ours, and every address stays valid: no
    // reference into the mapping dangles.
    //
    // References may be live into those pages (a guard's `&mut T`, the
    // lock's atomics), and their bytes change under them: what they read
    // before the object was shrunk, then zeros. That is a change made from
    // outside this thread's accesses, as another process's write to the
    // segment is, and this crate admits such changes only where every
    // byte pattern is valid and every read is taken as it comes: the
    // atomics (any word is a lock or counter state), and values, which are
    // `Shareable` (any bits). The pages were unreadable (SIGBUS) from the
    // truncation on, so no access read anything from them in between; the
    // access that faulted is restarted and reads zeros. The handle is then
    // marked cut, so that no lock, snapshot or store call passes the zeros
    // off as the value (`Error::Truncated`, `PoisonError`). The kernel
    // treats a shrinking object's missing pages no differently: this
    // replaces a fault with zeros, it does not move or free memory.
    let p = unsafe {
        libc::mmap(
            from as *mut libc::c_void,
            end - from,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return false;
    }
    entry.cut.store(true, Ordering::Release);
    true
}

/// Passes a SIGBUS that is not ours on to the disposition that was there
/// before ours: its handler, nothing for a sent signal it ignored, or the
/// default action (the process dies of SIGBUS, as it would have without
/// shmstore; a fault cannot be ignored).
fn previous(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void, fault: bool) {
    let handler = PREVIOUS.get().map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    let flags = PREVIOUS.get().map_or(0, |p| p.sa_flags);
    if handler == libc::SIG_IGN && !fault {
        // The program ignores SIGBUS sent to it, as it did before us.
        return;
    }
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // SAFETY: an all-zero sigaction is SIG_DFL with no flags or mask.
        let dfl: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: `dfl` is a valid sigaction; the old one is not wanted.
        unsafe { libc::sigaction(sig, &dfl, ptr::null_mut()) };
        if !fault {
            // A sent signal does not recur by itself: send it again, now to
            // the default action (delivered when this handler returns).
            // SAFETY: raise has no preconditions.
            unsafe { libc::raise(sig) };
        }
        // A fault recurs when the instruction runs again, now fatal.
        return;
    }
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO, sa_sigaction is a three-argument handler
        // set by whoever installed it; we pass it what the kernel gave us.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, context);
    } else {
        // SAFETY: without SA_SIGINFO, sa_sigaction is a one-argument handler.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}
