//! Lock-free access: `SharedAtomic` on structs made of atomics only, from
//! real processes (this test binary run again, see `common`) and threads,
//! and which derived structs are `LockFree`.
//!
//! That a struct with a plain field cannot become a `SharedAtomic` is a
//! compile error, pinned in `tests/ui/get_not_lock_free.rs`.

use crate::common;

use std::sync::atomic::{AtomicI16, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::TryLockError;
use std::time::Duration;

use common::{command, race_to_the_end, role, say, Kid, Segment};
use shmstore::{LockFree, Shareable, Shared, SharedAtomic};

/// Compiles only for `LockFree` types.
fn is_lock_free<T: LockFree>() {}

/// Whether `$t` is `LockFree`, as a value: a method found through the
/// `LockFree` impl when there is one, through an autoref otherwise. Lets a
/// test assert that a type is *not* `LockFree` without a compile failure.
macro_rules! lock_free {
    ($t:ty) => {{
        use core::marker::PhantomData;
        struct Probe<T>(PhantomData<T>);
        // One of the two is never used: which one is the answer.
        #[allow(dead_code)]
        trait Yes {
            fn lock_free(&self) -> bool {
                true
            }
        }
        impl<T: LockFree> Yes for Probe<T> {}
        #[allow(dead_code)]
        trait No {
            fn lock_free(&self) -> bool {
                false
            }
        }
        impl<T> No for &Probe<T> {}
        (&Probe::<$t>(PhantomData)).lock_free()
    }};
}

/// Request counters, made of atomics only.
#[derive(Shareable, Default, Debug)]
#[repr(C)]
struct Requests {
    count: AtomicU64,
    bytes: AtomicU64,
}

/// What the processes below update: a nested struct of atomics, an array
/// of atomics (one slot per process) and a running maximum.
#[derive(Shareable, Default, Debug)]
#[repr(C)]
struct Stats {
    requests: Requests,
    per_process: [AtomicU32; PROCS],
    largest: AtomicU64,
}

const PROCS: usize = 4;
const ADDS: u64 = 200_000;

/// The liveness bound for noticing a dead lock holder (documented: about
/// 50 ms).
const RECOVERY: Duration = Duration::from_secs(1);

// ===========================================================================
// Roles played by child processes

/// The entry point of child processes (does nothing in a normal test run).
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    let code = match args[0].as_str() {
        "add" => add(&args[1], args[2].parse().unwrap(), args[3].parse().unwrap()),
        "hold" => hold(&args[1]),
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

/// Waits for "go", then makes `count` updates through a `SharedAtomic`, as process
/// number `index`.
fn add(name: &str, index: usize, count: u64) -> i32 {
    let stats = SharedAtomic::<Stats>::open(name).expect("child opens the segment");
    say("ready");
    assert_eq!(command().as_deref(), Some("go"));
    let s = stats.get();
    for i in 0..count {
        s.requests.count.fetch_add(1, Ordering::Relaxed);
        s.requests.bytes.fetch_add(i % 7, Ordering::Relaxed);
        s.per_process[index].fetch_add(1, Ordering::Relaxed);
        s.largest
            .fetch_max(i * PROCS as u64 + index as u64, Ordering::Relaxed);
    }
    0
}

/// Takes the lock, says so, and holds it until told "release" or killed.
fn hold(name: &str) -> i32 {
    let stats = Shared::<Stats>::open(name).expect("child opens the segment");
    let g = stats.lock().expect("a fresh lock is not poisoned");
    say("locked");
    if command().as_deref() == Some("release") {
        drop(g);
        0
    } else {
        std::process::exit(3)
    }
}

// ===========================================================================
// Across processes

#[test]
fn four_processes_add_through_get_and_no_update_is_lost() {
    let seg = Segment::new("lockfree-add");
    let stats = Shared::create(seg.name(), Stats::default()).unwrap();
    let atomic = SharedAtomic::<Stats>::open(seg.name()).unwrap();
    let adds = ADDS.to_string();
    let mut kids: Vec<Kid> = (0..PROCS)
        .map(|i| Kid::spawn("add", &[seg.name(), &i.to_string(), &adds]))
        .collect();
    race_to_the_end(&mut kids);

    let s = atomic.get();
    let n = PROCS as u64 * ADDS;
    assert_eq!(
        s.requests.count.load(Ordering::SeqCst),
        n,
        "updates were lost"
    );
    let bytes_per_process: u64 = (0..ADDS).map(|i| i % 7).sum();
    assert_eq!(
        s.requests.bytes.load(Ordering::SeqCst),
        PROCS as u64 * bytes_per_process
    );
    for (i, slot) in s.per_process.iter().enumerate() {
        assert_eq!(slot.load(Ordering::SeqCst) as u64, ADDS, "process {i}");
    }
    assert_eq!(s.largest.load(Ordering::SeqCst), n - 1);
    // Nobody took the lock.
    assert!(!stats.is_locked());
    assert!(!stats.is_poisoned());
}

#[test]
fn get_works_while_another_process_holds_the_lock_and_after_it_died() {
    let seg = Segment::new("lockfree-held");
    let stats = Shared::create(seg.name(), Stats::default()).unwrap();
    let atomic = SharedAtomic::<Stats>::open(seg.name()).unwrap();
    let mut holder = Kid::spawn("hold", &[seg.name()]);
    holder.expect("locked");
    assert!(stats.is_locked());

    // The atomics neither take nor wait for the lock.
    atomic.requests.count.fetch_add(1, Ordering::Relaxed);
    assert_eq!(atomic.requests.count.load(Ordering::Relaxed), 1);

    // The holder dies: the lock is poisoned for lock(), the atomics go on.
    holder.kill();
    holder.wait();
    match stats.try_lock_for(RECOVERY) {
        Err(TryLockError::Poisoned(p)) => {
            let g = p.into_inner();
            assert_eq!(g.requests.count.load(Ordering::Relaxed), 1);
        }
        Ok(_) => panic!("the lock of a dead holder was not poisoned"),
        Err(TryLockError::WouldBlock) => panic!("the dead holder was not noticed"),
    }
    assert!(stats.is_poisoned());
    atomic.requests.count.fetch_add(1, Ordering::Relaxed);
    assert_eq!(atomic.requests.count.load(Ordering::Relaxed), 2);
    assert!(stats.is_poisoned(), "atomics must not clear the poison");
}

// ===========================================================================
// Within one process

#[test]
fn threads_share_one_handle_and_a_second_mapping() {
    const THREADS: u64 = 4;
    const M: u64 = 50_000;
    let seg = Segment::new("lockfree-threads");
    let one = SharedAtomic::create(seg.name(), Stats::default()).unwrap();
    let two = SharedAtomic::<Stats>::open(seg.name()).unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            // Half of the threads on each handle (two mappings of the
            // same pages at different addresses).
            let h = if t % 2 == 0 { &one } else { &two };
            s.spawn(move || {
                for _ in 0..M {
                    h.get().requests.count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(one.get().requests.count.load(Ordering::SeqCst), THREADS * M);
    assert_eq!(two.get().requests.count.load(Ordering::SeqCst), THREADS * M);
}

#[test]
fn atomics_do_not_take_the_lock() {
    let seg = Segment::new("lockfree-nolock");
    let stats = Shared::create(seg.name(), Stats::default()).unwrap();
    let atomic = SharedAtomic::<Stats>::open(seg.name()).unwrap();
    // Locking again from this thread would panic; the atomics do not lock.
    let g = stats.lock().unwrap();
    atomic.largest.store(7, Ordering::Relaxed);
    assert_eq!(g.largest.load(Ordering::Relaxed), 7);
    drop(g);
    assert!(!stats.is_locked());
}

#[test]
fn a_handle_turns_lock_free_and_back() {
    let seg = Segment::new("lockfree-back");
    let atomic = Shared::create(seg.name(), Stats::default())
        .unwrap()
        .into_atomic();
    atomic.largest.store(3, Ordering::Relaxed);
    let shared = atomic.into_shared();
    assert_eq!(shared.lock().unwrap().largest.load(Ordering::Relaxed), 3);
    assert!(shared.name().contains("lockfree-back"));
}

#[test]
fn anonymous_memory_works_too() {
    let counter = Shared::<AtomicU64>::anonymous(AtomicU64::new(5))
        .unwrap()
        .into_atomic();
    assert_eq!(counter.get().fetch_add(1, Ordering::Relaxed), 5);
    let arr = Shared::<[AtomicU8; 3]>::anonymous(Default::default())
        .unwrap()
        .into_atomic();
    arr.get()[2].fetch_add(9, Ordering::Relaxed);
    assert_eq!(arr.get()[2].load(Ordering::Relaxed), 9);
}

/// Generic code that asks for `LockFree` reaches any such value.
fn sum_over<T: LockFree, const N: usize>(s: &SharedAtomic<[T; N]>, f: impl Fn(&T) -> u64) -> u64 {
    s.get().iter().map(f).sum()
}

#[test]
fn generic_code_can_ask_for_lock_free() {
    let all = Shared::<[Requests; 3]>::anonymous(Default::default())
        .unwrap()
        .into_atomic();
    for (i, r) in all.get().iter().enumerate() {
        r.count.fetch_add(i as u64 + 1, Ordering::Relaxed);
    }
    assert_eq!(sum_over(&all, |r| r.count.load(Ordering::Relaxed)), 6);
}

// ===========================================================================
// Which derived structs are LockFree

#[derive(Shareable)]
#[repr(C)]
struct Leaf {
    a: AtomicI64,
    b: AtomicI16,
    c: [AtomicU8; 6],
}

#[derive(Shareable)]
#[repr(C)]
struct Branch {
    leaves: [Leaf; 3],
    grid: [[AtomicU32; 2]; 2],
    one: Leaf,
}

#[derive(Shareable)]
#[repr(C)]
struct Tree {
    branches: [Branch; 2],
    total: AtomicU64,
}

#[derive(Shareable)]
#[repr(transparent)]
struct Wrapped(AtomicU64);

#[derive(Shareable)]
#[repr(C)]
struct AtomicTuple(AtomicU32, [AtomicU8; 4]);

/// Atomics and plain data: still `Shareable`, not `LockFree`.
#[derive(Shareable, Default)]
#[repr(C)]
struct Mixed {
    hits: AtomicU64,
    last_pid: u32,
    flags: AtomicU32,
}

/// A lock-free struct next to a plain array.
#[derive(Shareable)]
#[repr(C)]
struct MixedByArray {
    requests: Requests,
    history: [u64; 4],
}

/// A plain field deep down: nothing above it is `LockFree`.
#[derive(Shareable)]
#[repr(C)]
struct HoldsMixed {
    inner: [Mixed; 2],
    count: AtomicU64,
}

#[derive(Shareable)]
#[repr(C)]
struct Plain {
    value: u64,
}

#[test]
fn structs_of_atomics_are_lock_free_at_any_depth() {
    is_lock_free::<AtomicU8>();
    is_lock_free::<[AtomicI64; 8]>();
    is_lock_free::<Requests>();
    is_lock_free::<Stats>();
    is_lock_free::<Leaf>();
    is_lock_free::<Branch>();
    is_lock_free::<Tree>();
    is_lock_free::<[Tree; 2]>();
    is_lock_free::<[[Leaf; 2]; 2]>();
    is_lock_free::<Wrapped>();
    is_lock_free::<AtomicTuple>();
    assert!(lock_free!(Tree));
    assert!(lock_free!([Wrapped; 3]));
}

#[test]
fn structs_with_a_plain_field_are_shareable_but_not_lock_free() {
    assert!(!lock_free!(Mixed));
    assert!(!lock_free!(MixedByArray));
    assert!(!lock_free!(HoldsMixed));
    assert!(!lock_free!([Mixed; 2]));
    assert!(!lock_free!(Plain));
    assert!(!lock_free!(u64));
    assert!(!lock_free!([u8; 4]));
    // Still fine through the lock.
    let all = [
        Mixed::FINGERPRINT,
        MixedByArray::FINGERPRINT,
        HoldsMixed::FINGERPRINT,
        Plain::FINGERPRINT,
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
        }
    }
    let seg = Segment::new("lockfree-mixed");
    let m = Shared::create(seg.name(), Mixed::default()).unwrap();
    {
        let mut g = m.lock().unwrap();
        g.last_pid = std::process::id();
        g.hits.fetch_add(1, Ordering::Relaxed);
    }
    let g = m.lock().unwrap();
    assert_eq!(g.last_pid, std::process::id());
    assert_eq!(g.hits.load(Ordering::Relaxed), 1);
}
