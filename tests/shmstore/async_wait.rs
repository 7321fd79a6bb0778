//! `changed(seen).await` and `changes(seen)`: a writer in another process
//! wakes futures under tokio (both schedulers) and `block_on`; dropped
//! futures leave nothing registered; 10,000 pending futures on 10,000
//! segments share the process's background threads, which end once nothing
//! is pending, and 1,000 on one segment share one word; the thread-per-waiter
//! path of kernels without `futex_waitv`.
//!
//! The registry is per process, so the tests that count registrations or
//! threads run in a child process of their own.

use crate::common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Context;
use std::time::{Duration, Instant};

use common::{command, role, say, Kid, Segment, PATIENCE};
use shmstore::__private::async_wait;
use shmstore::{Shared, SharedOptions, Store};

/// Polls `fut` once with a waker that does nothing: whether it is pending.
fn pending<F: Future>(fut: std::pin::Pin<&mut F>) -> bool {
    let waker = futures::task::noop_waker();
    fut.poll(&mut Context::from_waker(&waker)).is_pending()
}

/// A child that opens `name`, says "ready", and commits one write per "go".
fn writer_kid(name: &str) -> Kid {
    let mut kid = Kid::spawn("writer", &[name]);
    kid.expect("ready");
    kid
}

#[test]
fn a_writer_in_another_process_wakes_a_future_under_tokio_current_thread() {
    let seg = Segment::new("async-ct");
    let s = Shared::create(seg.name(), 0u64).unwrap();
    let mut kid = writer_kid(seg.name());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let seen = s.generation();
        let mut fut = pin!(s.changed(seen));
        assert!(pending(fut.as_mut()), "nothing was written yet");
        kid.send("go");
        let got = tokio::time::timeout(PATIENCE, fut).await;
        assert_eq!(got.expect("woken in time").unwrap(), seen + 1);
    });
    assert_eq!(s.snapshot().unwrap(), 1);
    kid.send("quit");
    kid.wait_success();
}

#[test]
fn tasks_on_tokio_multi_thread_all_wake_on_one_commit() {
    let seg = Segment::new("async-mt");
    let s = Arc::new(Shared::create(seg.name(), 0u64).unwrap());
    let mut kid = writer_kid(seg.name());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let seen = s.generation();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            rt.spawn(async move { s.changed(seen).await })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "nothing was written yet"
    );
    kid.send("go");
    rt.block_on(async {
        for t in tasks {
            let got = tokio::time::timeout(PATIENCE, t).await;
            assert_eq!(got.expect("woken in time").unwrap().unwrap(), seen + 1);
        }
    });
    kid.send("quit");
    kid.wait_success();
}

#[test]
fn block_on_wakes_after_the_name_was_unlinked() {
    let seg = Segment::new("async-block-on");
    let s = Shared::create(seg.name(), 0u64).unwrap();
    let mut kid = writer_kid(seg.name());
    let seen = s.generation();
    let mut fut = pin!(s.changed(seen));
    assert!(pending(fut.as_mut()));
    shmstore::unlink(seg.name()).unwrap();
    kid.send("go");
    let t0 = Instant::now();
    let got = futures::executor::block_on(fut).unwrap();
    assert_eq!(got, seen + 1);
    assert!(t0.elapsed() < PATIENCE);
    kid.send("quit");
    kid.wait_success();
}

#[test]
fn a_store_directory_future_wakes_when_an_entry_is_created() {
    let seg = Segment::new("async-store");
    let store = Store::create(seg.name(), 64 << 10).unwrap();
    let other = Store::open(seg.name()).unwrap();
    let seen = store.generation();
    let mut fut = pin!(store.changed(seen));
    assert!(pending(fut.as_mut()));
    let entry = other.insert("key", 7u64).unwrap();
    let got = futures::executor::block_on(fut).unwrap();
    assert_eq!(got, seen + 1);
    // Entries are `Shared`: their own values are awaited the same way.
    let mine = store.get::<u64>("key").unwrap();
    let mut fut = pin!(mine.changed(mine.generation()));
    assert!(pending(fut.as_mut()));
    *entry.lock().unwrap() = 8;
    assert!(futures::executor::block_on(fut).is_ok());
}

#[test]
fn a_read_only_reader_gets_the_blocking_waits_answer() {
    let seg = Segment::new("async-reader");
    let quiet = Shared::create(seg.name(), 0u64).unwrap();
    let r = shmstore::SharedReader::<u64>::open(seg.name()).unwrap();
    let e = futures::executor::block_on(r.changed(0)).unwrap_err();
    assert!(matches!(e, shmstore::Error::NotWatchable { .. }), "{e}");
    drop((r, quiet));

    let seg = Segment::new("async-reader-wakes");
    let s = SharedOptions::new()
        .wake_read_only(true)
        .create(seg.name(), 0u64)
        .unwrap();
    let r = shmstore::SharedReader::<u64>::open(seg.name()).unwrap();
    let mut fut = pin!(r.changed(0));
    assert!(pending(fut.as_mut()));
    *s.lock().unwrap() = 1;
    assert_eq!(futures::executor::block_on(fut).unwrap(), 1);
}

#[test]
fn a_future_on_a_segment_shrunk_under_it_gives_the_blocking_waits_error() {
    let seg = Segment::new("async-shrunk");
    let s = Shared::create(seg.name(), 0u64).unwrap();
    *s.lock().unwrap() = 1;
    let mut kid = Kid::spawn("shrunk", &[seg.name()]);
    kid.expect("pending");
    std::fs::OpenOptions::new()
        .write(true)
        .open(seg.path())
        .unwrap()
        .set_len(0)
        .unwrap();
    kid.send("go");
    let v = kid.expect("async=");
    let m = kid.expect("message=");
    assert_eq!(v, "Truncated", "{m}");
    assert_eq!(kid.expect("blocking="), "Truncated");
    kid.wait_success();
}

#[test]
fn dropped_and_leaked_futures_leave_nothing_registered() {
    let mut kid = Kid::spawn("cancel", &[]);
    kid.expect("ok");
    kid.wait_success();
}

#[test]
fn ten_thousand_futures_on_ten_thousand_segments_share_few_threads() {
    let _heavy = common::heavy();
    let mut kid = Kid::spawn("many", &["10000"]);
    let line = kid.expect("ok");
    eprintln!("10,000 awaits: {line}");
    kid.wait_success();
}

#[test]
fn a_thousand_futures_on_one_segment_share_one_word_and_one_thread() {
    awaited_in_a_child(
        "async-crowd",
        "crowd",
        &["1000"],
        "pending words=1 threads=1",
    );
}

#[test]
fn without_futex_waitv_a_thread_per_awaited_counter_serves_the_futures() {
    awaited_in_a_child("async-fallback", "fallback", &[], "pending");
}

/// A child in `role` (given a new segment's name, then `args`) awaits it
/// until it says `pending`; a writer process commits once; the child says
/// "ok".
fn awaited_in_a_child(prefix: &str, role: &str, args: &[&str], pending: &str) {
    let seg = Segment::new(prefix);
    let _s = Shared::create(seg.name(), 0u64).unwrap();
    let mut w = writer_kid(seg.name());
    let mut all = vec![seg.name()];
    all.extend_from_slice(args);
    let mut kid = Kid::spawn(role, &all);
    kid.expect(pending);
    w.send("go");
    kid.expect("ok");
    kid.wait_success();
    w.send("quit");
    w.wait_success();
}

#[test]
fn this_kernel_has_futex_waitv() {
    let mut kid = Kid::spawn("waitv", &[]);
    let line = kid.expect("waitv");
    // Linux 5.16 and later; the fallback is tested above either way.
    eprintln!("futex_waitv in use: {line}");
    kid.wait_success();
}

#[cfg(feature = "stream")]
#[test]
fn changes_is_a_stream_of_generations() {
    use futures::StreamExt;
    let seg = Segment::new("async-stream");
    let s = Shared::create(seg.name(), 0u64).unwrap();
    let mut kid = writer_kid(seg.name());
    futures::executor::block_on(async {
        let mut changes = pin!(s.changes(0));
        for want in 1..=3 {
            kid.send("go");
            assert_eq!(changes.next().await.unwrap().unwrap(), want);
        }
    });
    kid.send("quit");
    kid.wait_success();
}

#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    match args[0].as_str() {
        "writer" => {
            let s = Shared::<u64>::open(&args[1]).expect("open");
            say("ready");
            while command().as_deref() == Some("go") {
                *s.lock().unwrap() += 1;
            }
        }
        "cancel" => cancel(),
        "shrunk" => {
            let s = Shared::<u64>::open(&args[1]).expect("open");
            let seen = s.generation();
            let mut fut = pin!(s.changed(seen));
            assert!(pending(fut.as_mut()));
            say("pending");
            assert_eq!(command().as_deref(), Some("go"));
            let e = futures::executor::block_on(fut).unwrap_err();
            say(format!("async={}", truncated(&e)));
            say(format!("message={e}"));
            let e = s.wait_for_change(seen, Duration::ZERO).unwrap_err();
            say(format!("blocking={}", truncated(&e)));
        }
        "many" => many(args[1].parse().unwrap()),
        "crowd" => crowd(&args[1], args[2].parse().unwrap()),
        "fallback" => fallback(&args[1]),
        "waitv" => {
            let s = Shared::memfd(0u64).unwrap();
            let mut fut = pin!(s.changed(0));
            assert!(pending(fut.as_mut()));
            say(format!("waitv {:?}", async_wait::uses_waitv()));
        }
        other => panic!("unknown role {other}"),
    }
}

/// "Truncated" for that error, its message otherwise.
fn truncated(e: &shmstore::Error) -> String {
    match e {
        shmstore::Error::Truncated { .. } => "Truncated".to_owned(),
        other => other.to_string(),
    }
}

fn cancel() {
    let s = Shared::memfd(0u64).unwrap();
    {
        let mut fut = pin!(s.changed(0));
        assert!(pending(fut.as_mut()));
        assert_eq!(async_wait::registrations(), 1);
    }
    assert_eq!(
        async_wait::registrations(),
        0,
        "a dropped future unregisters"
    );
    *s.lock().unwrap() = 1;
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(async_wait::registrations(), 0);
    // A leaked future cannot unregister: the handle's mapping does when it goes.
    let mut fut = Box::pin(s.changed(1));
    assert!(pending(fut.as_mut()));
    assert_eq!(async_wait::registrations(), 1);
    std::mem::forget(fut);
    drop(s);
    assert_eq!(
        async_wait::registrations(),
        0,
        "the unmapped mapping unregisters"
    );
    std::thread::sleep(Duration::from_millis(120));
    say("ok");
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn os_threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Raises this process's limit on open descriptors to at least `want`
/// (as root, past the hard limit too); says what it is now.
fn allow_descriptors(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit that outlives the calls.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < want {
            let more = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max.max(want),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &more) != 0 {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

fn many(n: usize) {
    // A memfd handle keeps one descriptor (its presence in the segment,
    // which it also lends for sharing).
    let limit = allow_descriptors(n as u64 + 1024);
    assert!(
        limit >= n as u64 + 64,
        "{n} memfd segments need {n} descriptors; the limit is {limit}"
    );
    let segments: Vec<Arc<Shared<u64>>> = (0..n)
        .map(|_| Arc::new(Shared::memfd(0u64).unwrap()))
        .collect();
    let threads_before = os_threads();
    let rss_before = rss_kib();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for s in &segments {
            let s = s.clone();
            set.spawn(async move { s.changed(0).await });
        }
        while async_wait::registrations() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let threads = async_wait::threads();
        let waiting_threads = os_threads() - threads_before;
        let rss = rss_kib().saturating_sub(rss_before);
        assert!(threads <= n.div_ceil(127), "{threads} background threads");
        for s in &segments {
            *s.lock().unwrap() += 1;
        }
        let t0 = Instant::now();
        while let Some(r) = tokio::time::timeout(PATIENCE, set.join_next())
            .await
            .expect("every future resolves")
        {
            assert_eq!(r.unwrap().unwrap(), 1);
        }
        assert_eq!(async_wait::registrations(), 0);
        let resolved = t0.elapsed();
        // Nothing pending: the background threads end within about ten
        // seconds (the documented idle time), and the process's threads
        // are the ones it had before.
        let t1 = Instant::now();
        while async_wait::threads() > 0 || os_threads() > threads_before {
            assert!(
                t1.elapsed() < Duration::from_secs(10) + PATIENCE,
                "{} background threads, {} threads (were {threads_before}), {:?} after the last future",
                async_wait::threads(),
                os_threads(),
                t1.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        say(format!(
            "ok background_threads={threads} new_os_threads={waiting_threads} \
             rss_growth_kib={rss} all_resolved_ms={} threads_gone_after_s={}",
            resolved.as_millis(),
            t1.elapsed().as_secs()
        ));
    });
}

/// `n` tasks await one segment written by another process: one word, one
/// background thread, and one commit wakes them all.
fn crowd(name: &str, n: usize) {
    let s = Arc::new(Shared::<u64>::open(name).unwrap());
    let seen = s.generation();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let s = s.clone();
            set.spawn(async move { s.changed(seen).await });
        }
        while async_wait::registrations() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        say(format!(
            "pending words={} threads={}",
            async_wait::words(),
            async_wait::threads()
        ));
        while let Some(r) = tokio::time::timeout(PATIENCE, set.join_next())
            .await
            .expect("one commit wakes every task")
        {
            assert_eq!(r.unwrap().unwrap(), seen + 1);
        }
        assert_eq!(async_wait::registrations(), 0);
        assert_eq!(async_wait::words(), 0);
        say("ok");
    });
}

fn fallback(name: &str) {
    async_wait::force_thread_per_waiter();
    let s = Shared::<u64>::open(name).unwrap();
    let other = Shared::memfd(0u64).unwrap();
    let seen = s.generation();
    let mut fut = pin!(s.changed(seen));
    let mut fut2 = pin!(other.changed(0));
    assert!(pending(fut.as_mut()));
    assert!(pending(fut2.as_mut()));
    assert_eq!(async_wait::uses_waitv(), Some(false));
    assert_eq!(async_wait::threads(), 2, "a thread per awaited counter");
    say("pending");
    assert_eq!(futures::executor::block_on(fut).unwrap(), seen + 1);
    *other.lock().unwrap() = 1;
    assert_eq!(futures::executor::block_on(fut2).unwrap(), 1);
    assert_eq!(async_wait::registrations(), 0);
    say("ok");
}
