//! Async waiting without a thread per waiter: futures register the counter
//! word they wait on here (futures on one counter share its word), and
//! background threads sleep on every registered word at once with
//! `futex_waitv` (Linux 5.16 and later), 127 words per thread (the kernel
//! takes 128; one is the thread's own wake-up word), and wake the futures'
//! `Waker`s when a generation moved.
//!
//! - A writable handle marks the lock word WATCHED before registering, as
//!   the blocking wait does, so the next committing unlock wakes the word.
//! - A read-only handle of a segment without WAKE_ALL cannot be woken
//!   through the futex: its registration is looked at on the thread's
//!   50 ms timeout, which every thread with registrations sleeps with (it
//!   also bounds the missed-wake window the blocking wait bounds the same
//!   way).
//! - Without `futex_waitv` (ENOSYS: kernels before 5.16, or a seccomp
//!   filter), each background thread serves one word and sleeps on it with
//!   a plain futex wait: a thread per awaited counter, with the same 50 ms
//!   recheck.
//!
//! A registration holds raw pointers into a mapping. The future removes it
//! when dropped; a future leaked instead (`mem::forget`) cannot, so every
//! mapping removes the registrations inside it before it is unmapped (the
//! `on_unmap` hook of `sys::mapping`).

use std::collections::{BTreeSet, HashMap};
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

/// The number of counter words the registrations wait on.
pub(crate) fn words() -> usize {
    REGISTRY.get().map_or(0, |r| r.lock().by_addr.len())
}

/// The number of background threads serving async waits in this process.
pub(crate) fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// Whether the registry serves with `futex_waitv` (`None`: not started).
pub(crate) fn uses_waitv() -> Option<bool> {
    REGISTRY.get().map(|r| r.chunk > 1)
}

/// A counter word that pending futures wait on: one per counter, however
/// many futures wait on it.
struct Word {
    versions: NonNull<Versions>,
    /// The lock word to mark watched before sleeping (writable handles).
    lock: Option<NonNull<RawLock>>,
    cut: &'static AtomicBool,
    /// Whether a commit wakes the word (writable, or WAKE_ALL).
    futex: bool,
    /// The futures waiting on it: indexes into `Inner::entries`.
    waiters: Vec<usize>,
}

// SAFETY: the pointers lead into a mapping that stays mapped while the word
// is registered: every future waiting on it borrows a handle owning the
// mapping and removes itself when dropped (the word goes with its last
// future), and the mapping removes every word inside it before it is
// unmapped (`on_unmap`). They are only read (atomics) and only under the
// registry's mutex, which both removals take.
unsafe impl Send for Word {}

impl Word {
    fn versions(&self) -> &Versions {
        // SAFETY: see `impl Send for Word`: called under the registry's
        // mutex, while the mapping is still mapped.
        unsafe { self.versions.as_ref() }
    }
}

/// One pending future.
struct Entry {
    /// Its word's slot in `Inner::words`.
    word: usize,
    /// Its place in that word's `waiters`.
    at: usize,
    seen: u64,
    waker: Waker,
    woken: bool,
}

struct Inner {
    words: Vec<Option<Word>>,
    free_words: BTreeSet<usize>,
    /// The slot of each registered word, by the address of its counter.
    by_addr: HashMap<usize, usize>,
    entries: Vec<Option<Entry>>,
    free_entries: Vec<usize>,
    live: usize,
    /// The wake-up word of each running background thread; thread `k`
    /// serves word slots `k * chunk ..`, and is `None` while not running.
    workers: Vec<Option<Arc<AtomicU32>>>,
}

impl Inner {
    /// Takes entry `id` out, and its word with it when it was the last
    /// waiter. Returns the entry, for the caller to drop after the mutex.
    fn take(&mut self, id: usize) -> Option<Entry> {
        let e = self.entries.get_mut(id)?.take()?;
        self.live -= 1;
        self.free_entries.push(id);
        if let Some(Some(w)) = self.words.get_mut(e.word) {
            if e.at >= w.waiters.len() {
                return Some(e);
            }
            w.waiters.swap_remove(e.at);
            if let Some(&moved) = w.waiters.get(e.at) {
                if let Some(Some(m)) = self.entries.get_mut(moved) {
                    m.at = e.at;
                }
            }
            if w.waiters.is_empty() {
                self.drop_word(e.word);
            }
        }
        Some(e)
    }

    fn drop_word(&mut self, slot: usize) {
        if let Some(w) = self.words.get_mut(slot).and_then(Option::take) {
            self.by_addr.remove(&(w.versions.as_ptr() as usize));
            self.free_words.insert(slot);
            while self.words.last().is_some_and(Option::is_none) {
                let last = self.words.len() - 1;
                self.words.pop();
                self.free_words.remove(&last);
            }
        }
    }
}

struct Registry {
    inner: Mutex<Inner>,
    /// Words per background thread.
    chunk: usize,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// What a future waits on, as it registers.
struct Wanted {
    versions: NonNull<Versions>,
    lock: Option<NonNull<RawLock>>,
    cut: &'static AtomicBool,
    futex: bool,
    seen: u64,
}

impl Registry {
    fn get() -> &'static Registry {
        REGISTRY.get_or_init(|| {
            crate::sys::mapping::on_unmap(forget_range);
            let waitv = !FORCE_FALLBACK.load(Ordering::Relaxed)
                && futex::waitv(&[], Duration::ZERO) != Waitv::Unsupported;
            Registry {
                inner: Mutex::new(Inner {
                    words: Vec::new(),
                    free_words: BTreeSet::new(),
                    by_addr: HashMap::new(),
                    entries: Vec::new(),
                    free_entries: Vec::new(),
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

    /// Wakes the thread serving word slot `slot`, to look at it again.
    fn poke(&self, inner: &Inner, slot: usize) {
        if let Some(Some(w)) = inner.workers.get(slot / self.chunk) {
            w.fetch_add(1, Ordering::Release);
            futex::wake_private(w);
        }
    }

    /// Registers a future waiting on `wanted`, on the word of its counter
    /// (registered with it if it is the first), starting the thread that
    /// serves the word if it is not running; `Err` when that thread cannot
    /// be started (nothing is registered then).
    fn insert(&'static self, wanted: Wanted, waker: Waker) -> std::io::Result<usize> {
        let mut inner = self.lock();
        let addr = wanted.versions.as_ptr() as usize;
        let slot = match inner.by_addr.get(&addr) {
            Some(&slot) => slot,
            None => {
                let word = Word {
                    versions: wanted.versions,
                    lock: None,
                    cut: wanted.cut,
                    futex: false,
                    waiters: Vec::new(),
                };
                let slot = match inner.free_words.pop_first() {
                    Some(slot) => {
                        inner.words[slot] = Some(word);
                        slot
                    }
                    None => {
                        inner.words.push(Some(word));
                        inner.words.len() - 1
                    }
                };
                inner.by_addr.insert(addr, slot);
                slot
            }
        };
        let id = inner.free_entries.pop().unwrap_or(inner.entries.len());
        if id == inner.entries.len() {
            inner.entries.push(None);
        }
        let word = inner.words[slot].as_mut().expect("registered word");
        // A writable handle's registration makes the word one the thread
        // marks and a commit wakes.
        word.lock = word.lock.or(wanted.lock);
        word.futex |= wanted.futex;
        word.waiters.push(id);
        let at = word.waiters.len() - 1;
        inner.entries[id] = Some(Entry {
            word: slot,
            at,
            seen: wanted.seen,
            waker,
            woken: false,
        });
        inner.live += 1;
        let k = slot / self.chunk;
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
                    let gone = inner.take(id);
                    drop(inner);
                    drop(gone);
                    return Err(e);
                }
            }
        }
        self.poke(&inner, slot);
        Ok(id)
    }

    /// A registered future polled again while its counter is unchanged:
    /// wait again, waking `waker`.
    fn renew(&self, id: usize, waker: &Waker) {
        let mut inner = self.lock();
        let mut old = None;
        let mut slot = None;
        if let Some(Some(e)) = inner.entries.get_mut(id) {
            e.woken = false;
            if !e.waker.will_wake(waker) {
                old = Some(std::mem::replace(&mut e.waker, waker.clone()));
            }
            slot = Some(e.word);
        }
        if let Some(slot) = slot {
            self.poke(&inner, slot);
        }
        drop(inner);
        // Dropped after the mutex, as in `remove`.
        drop(old);
    }

    fn remove(&self, id: usize) {
        let mut inner = self.lock();
        let gone = inner.take(id);
        // Dropped after the mutex: a waker's drop may run any code,
        // including a future's drop that comes back here.
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
                let Inner {
                    words: slots,
                    entries,
                    ..
                } = &mut *inner;
                let end = ((k + 1) * self.chunk).min(slots.len());
                let start = (k * self.chunk).min(end);
                for w in slots[start..end].iter().flatten() {
                    let cut = w.cut.load(Ordering::Acquire);
                    let g = w.versions().generation();
                    for &id in &w.waiters {
                        if let Some(Some(e)) = entries.get_mut(id) {
                            if !e.woken && (cut || g != e.seen) {
                                e.woken = true;
                                wake.push(e.waker.clone());
                            }
                        }
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
                let end = ((k + 1) * self.chunk).min(inner.words.len());
                let start = (k * self.chunk).min(end);
                if inner.words[start..end].iter().all(Option::is_none) {
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
                let Inner {
                    words: slots,
                    entries,
                    ..
                } = &*inner;
                for w in slots[start..end].iter().flatten() {
                    let waiting = || {
                        w.waiters
                            .iter()
                            .filter_map(|&id| entries.get(id).and_then(Option::as_ref))
                            .filter(|e| !e.woken)
                    };
                    if waiting().next().is_none() {
                        continue;
                    }
                    if let Some(lock) = w.lock {
                        // SAFETY: as for `Word::versions`.
                        unsafe { lock.as_ref() }.mark_watched();
                    }
                    // As in `Versions::wait`: marked before the committing
                    // unlock (which then wakes the word) or after it (and
                    // then this load sees the commit).
                    let s = w.versions().seq_now();
                    if w.cut.load(Ordering::Acquire) || waiting().any(|e| e.seen != s >> 1) {
                        // Moved since the first pass: wake it first.
                        again = true;
                        continue;
                    }
                    pending = true;
                    if w.futex {
                        let seq = w.versions().futex_word();
                        words.push(WaitvEntry::shared(seq, s as u32));
                        single = Some((seq as *const AtomicU64, s as u32));
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
                // A thread per word: sleep on it. The word may be removed
                // meanwhile; the kernel only reads the address (or reports
                // EFAULT), and the timeout bounds the sleep.
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
    let slots: Vec<usize> = inner
        .words
        .iter()
        .enumerate()
        .filter_map(|(slot, w)| {
            let a = w.as_ref()?.versions.as_ptr() as usize;
            (a >= start && a - start < len).then_some(slot)
        })
        .collect();
    let mut gone = Vec::new();
    for slot in slots {
        let ids = inner.words[slot]
            .as_ref()
            .map(|w| w.waiters.clone())
            .unwrap_or_default();
        // The last one takes the word with it.
        gone.extend(ids.into_iter().filter_map(|id| inner.take(id)));
    }
    // Dropped after the mutex, as in `remove`.
    drop(inner);
    drop(gone);
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
            Some(id) => reg.renew(id, cx.waker()),
            None => {
                let wanted = Wanted {
                    versions: NonNull::from(self.versions),
                    lock: self.lock.map(NonNull::from),
                    cut: self.cut,
                    futex: self.futex,
                    seen: self.seen,
                };
                match reg.insert(wanted, cx.waker().clone()) {
                    Ok(id) => self.registered = Some(id),
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
