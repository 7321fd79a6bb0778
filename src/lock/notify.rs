//! Async waiting without a thread per waiter: futures register the counter
//! word they wait on here, and background threads sleep on every registered
//! word at once with `futex_waitv` (Linux 5.16 and later), 127 words per
//! thread (the kernel takes 128; one is the thread's own wake-up word), and
//! wake the futures' `Waker`s when a generation moved.
//!
//! - A writable handle marks the lock word WATCHED before registering, as
//!   the blocking wait does, so the next committing unlock wakes the word.
//! - A read-only handle of a segment without WAKE_ALL cannot be woken
//!   through the futex: its registration is looked at on the thread's
//!   50 ms timeout, which every thread with registrations sleeps with (it
//!   also bounds the missed-wake window the blocking wait bounds the same
//!   way).
//! - Without `futex_waitv` (ENOSYS: kernels before 5.16, or a seccomp
//!   filter), each background thread serves one registration and sleeps on
//!   its word with a plain futex wait: a thread per waiter, with the same
//!   50 ms recheck.
//!
//! A registration holds raw pointers into a mapping. The future removes it
//! when dropped; a future leaked instead (`mem::forget`) cannot, so every
//! mapping removes the registrations inside it before it is unmapped (the
//! `on_unmap` hook of `sys::mapping`).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::lock::seqlock::Versions;
use crate::lock::{RawLock, CHECK_INTERVAL};
use crate::sys::futex::{self, Waitv, WaitvEntry, WAITV_MAX};

/// Set before the first registration of the process: serve as if the
/// kernel had no `futex_waitv` (tests of the fallback).
static FORCE_FALLBACK: AtomicBool = AtomicBool::new(false);
/// Background threads running.
static THREADS: AtomicUsize = AtomicUsize::new(0);
/// How long a background thread with nothing to serve stays for the next
/// registration before it ends.
const IDLE: Duration = Duration::from_secs(10);

/// Serve every later registration as on a kernel without `futex_waitv`;
/// only before the process's first async wait.
pub(crate) fn force_fallback() {
    FORCE_FALLBACK.store(true, Ordering::Relaxed);
}

/// The number of live registrations (pending futures) in this process.
pub(crate) fn registrations() -> usize {
    REGISTRY.get().map_or(0, |r| r.lock().live)
}

/// The number of background threads serving async waits in this process.
pub(crate) fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// Whether the registry serves with `futex_waitv` (`None`: not started).
pub(crate) fn uses_waitv() -> Option<bool> {
    REGISTRY.get().map(|r| r.chunk > 1)
}

/// One pending future's word.
struct Entry {
    versions: NonNull<Versions>,
    /// The lock word to mark watched again after a wake-up (writable handles).
    lock: Option<NonNull<RawLock>>,
    cut: &'static AtomicBool,
    /// Whether a commit wakes the word (writable, or WAKE_ALL).
    futex: bool,
    seen: u64,
    expected: u32,
    waker: Waker,
    woken: bool,
}

// SAFETY: the pointers lead into a mapping that stays mapped while the entry
// exists: the future that registered it borrows the handle owning the
// mapping and removes the entry when dropped, and the mapping removes every
// entry inside it before it is unmapped (`on_unmap`). They are only read
// (atomics) and only under the registry's mutex, which both removals take.
unsafe impl Send for Entry {}

impl Entry {
    fn versions(&self) -> &Versions {
        // SAFETY: see `impl Send for Entry`: called under the registry's
        // mutex, while the mapping is still mapped.
        unsafe { self.versions.as_ref() }
    }

    fn changed(&self) -> bool {
        self.cut.load(Ordering::Acquire) || self.versions().generation() != self.seen
    }
}

struct Inner {
    slots: Vec<Option<Entry>>,
    free: BTreeSet<usize>,
    live: usize,
    /// The wake-up word of each running background thread; thread `k`
    /// serves slots `k * chunk ..`, and is `None` while not running.
    workers: Vec<Option<Arc<AtomicU32>>>,
}

struct Registry {
    inner: Mutex<Inner>,
    /// Registrations per background thread.
    chunk: usize,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

impl Registry {
    fn get() -> &'static Registry {
        REGISTRY.get_or_init(|| {
            crate::sys::mapping::on_unmap(forget_range);
            let waitv = !FORCE_FALLBACK.load(Ordering::Relaxed)
                && futex::waitv(&[], Duration::ZERO) != Waitv::Unsupported;
            Registry {
                inner: Mutex::new(Inner {
                    slots: Vec::new(),
                    free: BTreeSet::new(),
                    live: 0,
                    workers: Vec::new(),
                }),
                chunk: if waitv { WAITV_MAX - 1 } else { 1 },
            }
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn poke(&self, inner: &Inner, slot: usize) {
        if let Some(Some(w)) = inner.workers.get(slot / self.chunk) {
            w.fetch_add(1, Ordering::Release);
            futex::wake_private(w);
        }
    }

    /// Registers `entry`, starting the thread that serves its slot if it is
    /// not running; `Err` when that thread cannot be started (the entry is
    /// not registered then).
    fn insert(&'static self, entry: Entry) -> std::io::Result<usize> {
        let mut inner = self.lock();
        let i = match inner.free.pop_first() {
            Some(i) => {
                inner.slots[i] = Some(entry);
                i
            }
            None => {
                inner.slots.push(Some(entry));
                inner.slots.len() - 1
            }
        };
        inner.live += 1;
        let k = i / self.chunk;
        if inner.workers.len() <= k {
            inner.workers.resize(k + 1, None);
        }
        if inner.workers[k].is_none() {
            let word = Arc::new(AtomicU32::new(0));
            let serving = word.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("shmstore-wait-{k}"))
                .stack_size(64 << 10)
                .spawn(move || self.serve(k, &serving));
            match spawned {
                Ok(_) => {
                    THREADS.fetch_add(1, Ordering::Relaxed);
                    inner.workers[k] = Some(word);
                }
                Err(e) => {
                    drop(inner);
                    self.remove(i);
                    return Err(e);
                }
            }
        }
        self.poke(&inner, i);
        Ok(i)
    }

    fn remove(&self, i: usize) {
        let mut inner = self.lock();
        // Dropped after the mutex: a waker's drop may run any code,
        // including a future's drop that comes back here.
        let gone = inner.slots.get_mut(i).and_then(Option::take);
        if gone.is_some() {
            inner.live -= 1;
            inner.free.insert(i);
            while inner.slots.last().is_some_and(Option::is_none) {
                let last = inner.slots.len() - 1;
                inner.slots.pop();
                inner.free.remove(&last);
            }
        }
        drop(inner);
        drop(gone);
    }

    /// Thread `k`: sleeps on its slots' words, wakes the futures whose
    /// generation moved; ends after [`IDLE`] without a registration.
    fn serve(&self, k: usize, word: &AtomicU32) {
        let mut words: Vec<WaitvEntry> = Vec::with_capacity(self.chunk + 1);
        let mut wake: Vec<Waker> = Vec::new();
        let mut idle_since: Option<std::time::Instant> = None;
        loop {
            let poked = word.load(Ordering::Acquire);
            // First the futures whose generation moved, before anything
            // else this thread does: their tasks are what waits.
            {
                let mut inner = self.lock();
                let end = ((k + 1) * self.chunk).min(inner.slots.len());
                let start = (k * self.chunk).min(end);
                for e in inner.slots[start..end].iter_mut().flatten() {
                    if !e.woken && e.changed() {
                        e.woken = true;
                        wake.push(e.waker.clone());
                    }
                }
            }
            for w in wake.drain(..) {
                w.wake();
            }
            // Then the words to sleep on.
            words.clear();
            words.push(WaitvEntry::private(word, poked));
            let mut pending = false;
            let mut again = false;
            let mut single: Option<(*const AtomicU64, u32)> = None;
            {
                let mut inner = self.lock();
                let end = ((k + 1) * self.chunk).min(inner.slots.len());
                let start = (k * self.chunk).min(end);
                if inner.slots[start..end].iter().all(Option::is_none) {
                    let since = *idle_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= IDLE {
                        // Under the mutex: a registration for this slot
                        // range now starts a new thread.
                        inner.workers[k] = None;
                        while inner.workers.last().is_some_and(Option::is_none) {
                            inner.workers.pop();
                        }
                        THREADS.fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                } else {
                    idle_since = None;
                }
                for e in inner.slots[start..end].iter_mut().flatten() {
                    if e.woken {
                        continue;
                    }
                    if e.changed() {
                        // Moved since the first pass: wake it first.
                        again = true;
                        continue;
                    }
                    pending = true;
                    if e.futex {
                        if let Some(lock) = e.lock {
                            // SAFETY: as for `Entry::versions`.
                            unsafe { lock.as_ref() }.mark_watched();
                        }
                        let seq = e.versions().futex_word();
                        words.push(WaitvEntry::shared(seq, e.expected));
                        single = Some((seq as *const AtomicU64, e.expected));
                    }
                }
            }
            if again {
                continue;
            }
            // Woken futures that were neither polled nor dropped yet are
            // looked at again after a second, so that an idle thread's ten
            // seconds start soon after its last future went.
            let timeout = match (pending, idle_since) {
                (true, _) => CHECK_INTERVAL,
                (false, None) => IDLE / 10,
                (false, Some(_)) => IDLE,
            };
            if self.chunk > 1 {
                futex::waitv(&words, timeout);
            } else if let Some((seq, expected)) = single {
                // A thread per waiter: sleep on its word. The entry may be
                // removed meanwhile; the kernel only reads the address (or
                // reports EFAULT), and the timeout bounds the sleep.
                futex::wait_addr(seq, expected, timeout);
            } else {
                futex::wait_private(word, poked, timeout);
            }
        }
    }
}

/// Removes every registration whose word lies in `[start, start + len)`:
/// the mapping there is about to go.
fn forget_range(start: usize, len: usize) {
    let Some(reg) = REGISTRY.get() else { return };
    let mut inner = reg.lock();
    let mut gone = Vec::new();
    let mut entries = Vec::new();
    for (i, s) in inner.slots.iter_mut().enumerate() {
        if s.as_ref().is_some_and(|e| {
            let a = e.versions.as_ptr() as usize;
            a >= start && a - start < len
        }) {
            // Dropped after the mutex, as in `remove`.
            entries.extend(s.take());
            gone.push(i);
        }
    }
    inner.live -= gone.len();
    inner.free.extend(gone);
    drop(inner);
    drop(entries);
}

/// A wait for the generation of `versions` to differ from `seen`, as a
/// future: the new generation (or any value once the mapping is cut, which
/// the handle then reports).
pub(crate) struct Waiting<'a> {
    versions: &'a Versions,
    lock: Option<&'a RawLock>,
    cut: &'static AtomicBool,
    /// Whether a commit wakes the word (writable handles and WAKE_ALL).
    futex: bool,
    pub(crate) seen: u64,
    registered: Option<usize>,
}

impl<'a> Waiting<'a> {
    /// `lock` is `Some` for a handle that may write (it marks the word).
    pub(crate) fn new(
        versions: &'a Versions,
        lock: Option<&'a RawLock>,
        cut: Option<&'static AtomicBool>,
        seen: u64,
    ) -> Waiting<'a> {
        /// The cut flag of mappings nobody can shrink.
        static NEVER_CUT: AtomicBool = AtomicBool::new(false);
        let cut = cut.unwrap_or(&NEVER_CUT);
        let futex = lock.is_some() || versions.wakes_all();
        Waiting {
            versions,
            lock,
            cut,
            futex,
            seen,
            registered: None,
        }
    }

    fn unregister(&mut self) {
        if let Some(i) = self.registered.take() {
            Registry::get().remove(i);
        }
    }

    /// Polls for a change; once `Ready`, the registration is gone and the
    /// wait may be polled again after setting a new `seen`. `Err` when no
    /// thread could be started to serve the wait.
    pub(crate) fn poll_change(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        let g = self.versions.generation();
        if g != self.seen || self.cut.load(Ordering::Acquire) {
            self.unregister();
            return Poll::Ready(Ok(g));
        }
        if let Some(lock) = self.lock {
            lock.mark_watched();
        }
        // As in `Versions::wait`: the mark was made before the committing
        // unlock (which then wakes the word) or after it (seen here).
        let s = self.versions.seq_now();
        if s >> 1 != self.seen {
            self.unregister();
            return Poll::Ready(Ok(s >> 1));
        }
        let reg = Registry::get();
        match self.registered {
            Some(i) => {
                let mut inner = reg.lock();
                let mut old = None;
                if let Some(Some(e)) = inner.slots.get_mut(i) {
                    e.expected = s as u32;
                    e.woken = false;
                    if !e.waker.will_wake(cx.waker()) {
                        old = Some(std::mem::replace(&mut e.waker, cx.waker().clone()));
                    }
                }
                reg.poke(&inner, i);
                drop(inner);
                // Dropped after the mutex, as in `remove`.
                drop(old);
            }
            None => {
                let entry = Entry {
                    versions: NonNull::from(self.versions),
                    lock: self.lock.map(NonNull::from),
                    cut: self.cut,
                    futex: self.futex,
                    seen: self.seen,
                    expected: s as u32,
                    waker: cx.waker().clone(),
                    woken: false,
                };
                match reg.insert(entry) {
                    Ok(i) => self.registered = Some(i),
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
        Poll::Pending
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// [`Waiting`] for a handle named `name`: after the change, `check` says
/// whether the handle can still trust the answer (a cut mapping's is not).
pub(crate) struct Changed<'a, F> {
    waiting: Waiting<'a>,
    name: &'a str,
    check: F,
}

impl<'a, F: Fn() -> crate::Result<()> + Unpin> Changed<'a, F> {
    pub(crate) fn new(waiting: Waiting<'a>, name: &'a str, check: F) -> Changed<'a, F> {
        Changed {
            waiting,
            name,
            check,
        }
    }
}

impl<F: Fn() -> crate::Result<()> + Unpin> Future for Changed<'_, F> {
    type Output = crate::Result<u64>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<crate::Result<u64>> {
        let this = self.get_mut();
        match this.waiting.poll_change(cx) {
            Poll::Ready(Ok(g)) => Poll::Ready((this.check)().map(|()| g)),
            Poll::Ready(Err(source)) => Poll::Ready(Err(crate::Error::Io {
                op: "starting the thread that serves async waits",
                name: this.name.to_owned(),
                source,
            })),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The generations a handle's value goes through, from `seen` on, as a
/// `futures_core::Stream`: each item is the generation after one or more
/// commits; the first error ends it.
#[cfg(feature = "stream")]
pub(crate) struct Changes<'a, F> {
    changed: Changed<'a, F>,
    done: bool,
    refuse: bool,
}

#[cfg(feature = "stream")]
impl<'a, F: Fn() -> crate::Result<()> + Unpin> Changes<'a, F> {
    pub(crate) fn new(waiting: Waiting<'a>, name: &'a str, check: F) -> Changes<'a, F> {
        Changes {
            changed: Changed::new(waiting, name, check),
            done: false,
            refuse: false,
        }
    }

    /// A stream whose one item is `check`'s error, without waiting.
    pub(crate) fn refusing(mut self, refuse: bool) -> Changes<'a, F> {
        self.refuse = refuse;
        self
    }
}

#[cfg(feature = "stream")]
impl<F: Fn() -> crate::Result<()> + Unpin> futures_core::Stream for Changes<'_, F> {
    type Item = crate::Result<u64>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<crate::Result<u64>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.refuse {
            this.done = true;
            let seen = this.changed.waiting.seen;
            return Poll::Ready(Some((this.changed.check)().map(|()| seen)));
        }
        match Pin::new(&mut this.changed).poll(cx) {
            Poll::Ready(Ok(g)) => {
                this.changed.waiting.seen = g;
                Poll::Ready(Some(Ok(g)))
            }
            Poll::Ready(Err(e)) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
