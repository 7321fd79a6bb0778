//! Segments and other users, on the POSIX, System V and file backends, for
//! `Store` and `SharedReader` as well as `Shared<T>`: this test binary, run
//! as root, starts children that drop to uid and gid 65534 (see `common`).
//!
//! Already covered elsewhere, and not repeated here: `Shared<T>` on POSIX
//! (shared.rs: a 0600 segment is `PermissionDenied` to another user,
//! a 0666 one `ForeignOwner` unless allowed, a segment chowned to another
//! user `ForeignOwner` to root) and on System V (backends/sysv.rs, the same,
//! and `unlink` by another user); `SharedReader` on all three backends for
//! a 0640 segment readable by the group (readers.rs); `rm` of another
//! user's segment by the command (tests/cli.rs).
//!
//! Covered here:
//!
//! 1. A private (0600) segment of root's: `SharedReader` and `Store` (and,
//!    for files, `Shared`) get `PermissionDenied` as another user, with or
//!    without `allow_foreign_owner`.
//! 2. A store of root's that everyone may write (0666) is `ForeignOwner` to
//!    another user unless allowed, and then works; the same for files as a
//!    `Shared` and a `SharedReader`; root refuses a store (and a file
//!    segment) given to another user.
//! 3. A name squatted by another user, who created it first with data of
//!    their choosing: root's `open`, `open_or_create` (as a `Shared`, a
//!    `SharedReader` or a `Store`) all refuse it with `ForeignOwner` and
//!    write nothing; `create` says `AlreadyExists`; `allow_foreign_owner`
//!    reads the squatter's data; root can remove the name and create its
//!    own.
//! 4. Read permission alone (0644 for others, 0640 for the group): a
//!    `SharedReader` with `allow_foreign_owner` reads the value; anything
//!    that writes (a `Shared`, a `Store`, which has no read-only handle, and
//!    removing the name) is `PermissionDenied`.
//! 5. Files: another user cannot create a segment in a directory they may
//!    not write.
//!
//! Which error comes first differs by backend, as their protocols say
//! (src/segment/mod.rs, src/segment/backend/sysv.rs): POSIX and file segments are
//! opened with the access asked for before anything else, so a missing
//! permission is `PermissionDenied` whoever owns the segment; System V
//! looks at a segment (`IPC_STAT`, which needs read permission) and checks
//! its owner before attaching, so a segment one may read but not write is
//! `ForeignOwner` there unless allowed, and `PermissionDenied` when allowed.
//!
//! When the tests do not run as root they print "skip: needs root" and
//! pass.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{is_root, role, say, Counter, Key, Kid, Segment, TempDir};
use shmstore::{Error, Location, Shared, SharedOptions, SharedReader, Store, SysvKey};

/// This file's range of System V keys (see `common::Key`).
const KEY_BASE: u32 = 0x7000_0000;
/// The other user (and group).
const NOBODY: u32 = 65534;
/// The key of the `u64` entry in every store of these tests.
const COUNT: &str = "count";
/// What root's segments hold, and what a squatter's hold.
const ROOTS: u64 = 42;
const SQUATTERS: u64 = 666;

// ===========================================================================
// Roles played by child processes

/// The entry point of child processes (does nothing in a normal test run).
///
/// It returns rather than calling `std::process::exit`, unlike the other
/// test files' children: called from this thread, which is not the main
/// one, `exit` unmaps the main thread's signal stack (Rust issue 161018),
/// where glibc may still be finishing the handler that `setuid` makes
/// every thread run, and the child then dies of SIGSEGV (in about one run
/// of this file in 40 on a busy machine; none in 400 since it returns).
#[test]
fn child_entry() {
    let Some(args) = role() else { return };
    assert_eq!(args[0], "nobody", "unknown role {}", args[0]);
    as_nobody(&location(&args[1], &args[2]), &args[3..]);
}

/// Where a child finds a segment: a backend and a target, as two arguments.
fn location(kind: &str, target: &str) -> Location {
    match kind {
        "posix" => Location::posix(target).expect("a valid name"),
        "sysv" => Location::sysv(SysvKey::new(target.parse().expect("a key"))),
        "file" => Location::file(target),
        other => panic!("unknown backend {other}"),
    }
}

/// "ok", or the error's variant, with the two user ids for `ForeignOwner`.
fn outcome<T>(r: &Result<T, Error>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(Error::ForeignOwner {
            owner_uid, our_uid, ..
        }) => format!("ForeignOwner({owner_uid},{our_uid})"),
        Err(e) => common::variant(e).to_owned(),
    }
}

fn allowed() -> SharedOptions {
    let mut o = SharedOptions::new();
    o.allow_foreign_owner(true);
    o
}

fn everyone() -> SharedOptions {
    let mut o = SharedOptions::new();
    o.mode(0o666);
    o
}

/// Drops to uid and gid 65534, then does each of `ops` on `at` and says
/// `OP=OUTCOME` for each. A handle that opens is used: a `Shared` or a
/// store's `count` entry gets one added (`ok value=N` says the new value),
/// a `SharedReader` takes a snapshot (`ok value=N`).
fn as_nobody(at: &Location, ops: &[String]) {
    use nix::unistd::{geteuid, setgid, setgroups, setuid, Gid, Uid};
    setgroups(&[]).unwrap();
    setgid(Gid::from_raw(NOBODY)).unwrap();
    setuid(Uid::from_raw(NOBODY)).unwrap();
    say(format!("euid={}", geteuid()));
    for op in ops {
        let result = match op.as_str() {
            "shared" => add_one(Shared::<Counter>::open(at)),
            "shared-allowed" => add_one(allowed().open::<Counter>(at)),
            "reader" => read(SharedReader::<Counter>::open(at)),
            "reader-allowed" => read(allowed().open_read_only::<Counter>(at)),
            "store" => add_one_in_store(Store::open(at)),
            "store-allowed" => add_one_in_store(allowed().open_store(at)),
            "unlink" => outcome(&shmstore::unlink(at)),
            "make-shared" => outcome(&everyone().create(
                at,
                Counter {
                    value: SQUATTERS,
                    ..Counter::default()
                },
            )),
            "make-store" => outcome(
                &everyone()
                    .create_store(at, 16 * 1024)
                    .and_then(|s| s.insert::<u64>(COUNT, SQUATTERS)),
            ),
            other => panic!("unknown operation {other}"),
        };
        say(format!("{op}={result}"));
    }
}

fn add_one(r: Result<Shared<Counter>, Error>) -> String {
    match r {
        Ok(c) => {
            let mut g = c.lock().expect("not poisoned");
            g.value += 1;
            format!("ok value={}", g.value)
        }
        Err(_) => outcome(&r),
    }
}

fn read(r: Result<SharedReader<Counter>, Error>) -> String {
    match r {
        Ok(c) => format!("ok value={}", c.snapshot().expect("not poisoned").value),
        Err(_) => outcome(&r),
    }
}

fn add_one_in_store(r: Result<Store, Error>) -> String {
    match r {
        Ok(s) => {
            let count = s.get::<u64>(COUNT).expect("the count entry");
            let mut g = count.lock().expect("not poisoned");
            *g += 1;
            format!("ok value={}", *g)
        }
        Err(_) => outcome(&r),
    }
}

// ===========================================================================
// The parent's side

/// Skips a test (with a message) unless it runs as root.
macro_rules! needs_root {
    () => {
        if !is_root() {
            eprintln!("skip: needs root");
            return;
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Posix,
    Sysv,
    File,
}

const KINDS: [Kind; 3] = [Kind::Posix, Kind::Sysv, Kind::File];

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A place for one segment on one backend, emptied when dropped (the
/// segment guards of `common`, or the test's directory for files).
struct Place {
    kind: Kind,
    loc: Location,
    target: String,
    _segment: Option<Segment>,
    _key: Option<Key>,
}

impl Place {
    fn new(kind: Kind, test: &str, dir: &TempDir) -> Place {
        match kind {
            Kind::Posix => {
                let seg = Segment::new(test);
                Place {
                    kind,
                    loc: Location::posix(seg.name()).unwrap(),
                    target: seg.name().to_owned(),
                    _segment: Some(seg),
                    _key: None,
                }
            }
            Kind::Sysv => {
                let key = Key::in_range(KEY_BASE);
                Place {
                    kind,
                    loc: Location::sysv(key.key()),
                    target: key.arg(),
                    _segment: None,
                    _key: Some(key),
                }
            }
            Kind::File => {
                let n = SEQ.fetch_add(1, Ordering::Relaxed);
                let path = dir.path().join(format!("{test}-{n}"));
                Place {
                    kind,
                    loc: Location::file(&path),
                    target: path.to_str().unwrap().to_owned(),
                    _segment: None,
                    _key: None,
                }
            }
        }
    }

    fn kind_arg(&self) -> &'static str {
        match self.kind {
            Kind::Posix => "posix",
            Kind::Sysv => "sysv",
            Kind::File => "file",
        }
    }

    fn path(&self) -> PathBuf {
        match self.kind {
            Kind::Posix => PathBuf::from(format!("/dev/shm/{}", self.target)),
            Kind::File => PathBuf::from(&self.target),
            Kind::Sysv => panic!("a System V segment has no path"),
        }
    }

    /// The segment's owner, group and permission bits, as the system has
    /// them; `None` if there is no segment.
    fn stat(&self) -> Option<(u32, u32, u32)> {
        match self.kind {
            Kind::Sysv => sysv_stat(self.key()).map(|(_, ds)| {
                let p = ds.shm_perm;
                // `mode` is 16 bits on x86_64, 32 on aarch64.
                #[allow(clippy::useless_conversion)]
                let mode = u32::from(p.mode);
                (p.uid, p.gid, mode & 0o777)
            }),
            _ => self
                .path()
                .symlink_metadata()
                .ok()
                .map(|m| (m.uid(), m.gid(), m.mode() & 0o777)),
        }
    }

    /// Gives the segment to `uid` and `gid`.
    fn chown(&self, uid: u32, gid: u32) {
        match self.kind {
            Kind::Sysv => sysv_set(self.key(), |ds| {
                ds.shm_perm.uid = uid;
                ds.shm_perm.gid = gid;
            }),
            _ => std::os::unix::fs::chown(self.path(), Some(uid), Some(gid)).unwrap(),
        }
    }

    /// Changes the segment's group only.
    fn chgrp(&self, gid: u32) {
        let (uid, _, _) = self.stat().expect("a segment");
        self.chown(uid, gid);
    }

    /// What the bytes of a POSIX or file segment are now (`None` for System
    /// V, whose bytes are read through a handle instead).
    fn contents(&self) -> Option<Vec<u8>> {
        (self.kind != Kind::Sysv).then(|| std::fs::read(self.path()).unwrap())
    }

    fn key(&self) -> libc::key_t {
        self.target.parse().unwrap()
    }

    /// Runs a child as the other user doing `ops` here; returns what it
    /// said for each, after checking that it runs as 65534.
    fn as_nobody(&self, ops: &[&str]) -> Vec<String> {
        let mut args = vec![self.kind_arg(), self.target.as_str()];
        args.extend_from_slice(ops);
        let mut kid = Kid::spawn("nobody", &args);
        assert_eq!(kid.expect("euid="), NOBODY.to_string());
        let said = ops.iter().map(|op| kid.expect(&format!("{op}="))).collect();
        kid.wait_success();
        said
    }
}

/// The id and `IPC_STAT` of System V key `key`, if it has a segment.
fn sysv_stat(key: libc::key_t) -> Option<(i32, libc::shmid_ds)> {
    // SAFETY: shmget takes integers only; size 0 and no flags look up an
    // existing segment without creating one.
    let id = unsafe { libc::shmget(key, 0, 0) };
    if id < 0 {
        return None;
    }
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: IPC_STAT writes one shmid_ds to a buffer of that type.
    let rc = unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) };
    assert_eq!(rc, 0, "IPC_STAT: {}", std::io::Error::last_os_error());
    // SAFETY: integers only; zeroed, then filled in by IPC_STAT.
    Some((id, unsafe { ds.assume_init() }))
}

/// Changes what `change` changes in the `IPC_STAT` of key `key`'s segment
/// (owner, group, mode), with `IPC_SET`.
fn sysv_set(key: libc::key_t, change: impl FnOnce(&mut libc::shmid_ds)) {
    let (id, mut ds) = sysv_stat(key).expect("a System V segment");
    change(&mut ds);
    // SAFETY: IPC_SET reads one initialised shmid_ds.
    let rc = unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) };
    assert_eq!(rc, 0, "IPC_SET: {}", std::io::Error::last_os_error());
}

/// Root's `Counter` holding [`ROOTS`] at `at`, with `mode`.
fn roots_counter(at: &Place, mode: u32) -> Shared<Counter> {
    SharedOptions::new()
        .mode(mode)
        .create(
            &at.loc,
            Counter {
                value: ROOTS,
                ..Counter::default()
            },
        )
        .unwrap()
}

/// Root's store at `at`, with `mode`, whose `count` holds [`ROOTS`].
fn roots_store(at: &Place, mode: u32) -> Store {
    let s = SharedOptions::new()
        .mode(mode)
        .create_store(&at.loc, 16 * 1024)
        .unwrap();
    drop(s.insert::<u64>(COUNT, ROOTS).unwrap());
    s
}

fn count(s: &Store) -> u64 {
    *s.get::<u64>(COUNT).unwrap().lock().unwrap()
}

// ===========================================================================
// 1. Private segments

/// Root's 0600 segments: another user gets `PermissionDenied` for a
/// `SharedReader` and a `Store` (and a `Shared` file segment), allowed
/// foreign owners or not, and changes nothing.
#[test]
fn another_users_private_segments_are_permission_denied() {
    needs_root!();
    let dir = TempDir::with_mode("private", 0o1777);
    for kind in KINDS {
        let a = Place::new(kind, "private", &dir);
        let c = roots_counter(&a, 0o600);
        let mut ops = vec!["reader", "reader-allowed"];
        if kind == Kind::File {
            ops.extend(["shared", "shared-allowed", "unlink"]);
        }
        for (op, said) in ops.iter().zip(a.as_nobody(&ops)) {
            assert_eq!(said, "PermissionDenied", "{kind:?}: {op}");
        }

        let b = Place::new(kind, "private-store", &dir);
        let s = roots_store(&b, 0o600);
        let said = b.as_nobody(&["store", "store-allowed"]);
        assert_eq!(said, ["PermissionDenied"; 2], "{kind:?}: store");

        assert_eq!(c.lock().unwrap().value, ROOTS, "{kind:?}");
        assert_eq!(count(&s), ROOTS, "{kind:?}");
        assert_eq!(a.stat(), Some((0, 0, 0o600)), "{kind:?}");
        assert_eq!(b.stat(), Some((0, 0, 0o600)), "{kind:?}");
    }
}

// ===========================================================================
// 2. Segments everyone may write, of another owner

/// Root's 0666 store is `ForeignOwner` to another user unless allowed;
/// allowed, its entries work both ways. The same for a file segment as a
/// `Shared` and a `SharedReader`.
#[test]
fn another_users_store_is_foreign_unless_allowed() {
    needs_root!();
    let dir = TempDir::with_mode("public", 0o1777);
    for kind in KINDS {
        let b = Place::new(kind, "public-store", &dir);
        let s = roots_store(&b, 0o666);
        assert_eq!(
            b.as_nobody(&["store", "store-allowed"]),
            [
                "ForeignOwner(0,65534)".to_owned(),
                format!("ok value={}", ROOTS + 1)
            ],
            "{kind:?}"
        );
        assert_eq!(count(&s), ROOTS + 1, "{kind:?}: the other user's update");
        s.check().unwrap();
    }

    let a = Place::new(Kind::File, "public", &dir);
    let c = roots_counter(&a, 0o666);
    assert_eq!(
        a.as_nobody(&["shared", "shared-allowed", "reader", "reader-allowed"]),
        [
            "ForeignOwner(0,65534)".to_owned(),
            format!("ok value={}", ROOTS + 1),
            "ForeignOwner(0,65534)".to_owned(),
            format!("ok value={}", ROOTS + 1),
        ]
    );
    assert_eq!(c.lock().unwrap().value, ROOTS + 1);
}

/// A store (on every backend) or a file segment of root's given to another
/// user is `ForeignOwner` to root, by every way of opening it, unless
/// allowed; opening it changes no owner.
#[test]
fn root_refuses_a_store_given_to_another_user() {
    needs_root!();
    let dir = TempDir::with_mode("given", 0o1777);
    for kind in KINDS {
        let b = Place::new(kind, "given-store", &dir);
        drop(roots_store(&b, 0o600));
        b.chown(NOBODY, NOBODY);
        let refused = "ForeignOwner(65534,0)";
        assert_eq!(outcome(&Store::open(&b.loc)), refused, "{kind:?}");
        assert_eq!(
            outcome(&Store::open_or_create(&b.loc, 16 * 1024)),
            refused,
            "{kind:?}"
        );
        let s = allowed().open_store(&b.loc).unwrap();
        assert_eq!(count(&s), ROOTS, "{kind:?}");
        assert_eq!(b.stat(), Some((NOBODY, NOBODY, 0o600)), "{kind:?}");
    }

    let a = Place::new(Kind::File, "given", &dir);
    drop(roots_counter(&a, 0o600));
    a.chown(NOBODY, NOBODY);
    let before = a.contents();
    for r in [
        outcome(&Shared::<Counter>::open(&a.loc)),
        outcome(&Shared::open_or_create(&a.loc, Counter::default())),
        outcome(&SharedReader::<Counter>::open(&a.loc)),
    ] {
        assert_eq!(r, "ForeignOwner(65534,0)");
    }
    assert_eq!(a.contents(), before, "a refused open wrote to the file");
    let c = allowed().open::<Counter>(&a.loc).unwrap();
    assert_eq!(c.lock().unwrap().value, ROOTS);
}

// ===========================================================================
// 3. Squatting

/// Another user creates the name first, with data of their choosing, as a
/// `Shared` at one place and a `Store` at another. Root refuses both, as
/// whatever it tries to open them as, without writing anything; `create`
/// finds the name taken; `allow_foreign_owner` sees the squatter's data;
/// root may remove the name and make its own.
#[test]
fn a_name_squatted_by_another_user_is_refused_unless_allowed() {
    needs_root!();
    let dir = TempDir::with_mode("squat", 0o1777);
    let refused = "ForeignOwner(65534,0)";
    for kind in KINDS {
        let a = Place::new(kind, "squat", &dir);
        assert_eq!(a.as_nobody(&["make-shared"]), ["ok"], "{kind:?}");
        assert_eq!(a.stat(), Some((NOBODY, NOBODY, 0o666)), "{kind:?}");
        let before = a.contents();
        for (what, r) in [
            ("open", outcome(&Shared::<Counter>::open(&a.loc))),
            (
                "open_or_create",
                outcome(&Shared::open_or_create(&a.loc, Counter::default())),
            ),
            ("reader", outcome(&SharedReader::<Counter>::open(&a.loc))),
            ("store", outcome(&Store::open(&a.loc))),
            (
                "store open_or_create",
                outcome(&Store::open_or_create(&a.loc, 16 * 1024)),
            ),
        ] {
            assert_eq!(r, refused, "{kind:?}: {what}");
        }
        assert_eq!(
            outcome(&Shared::create(&a.loc, Counter::default())),
            "AlreadyExists",
            "{kind:?}"
        );
        assert_eq!(a.contents(), before, "{kind:?}: a refused open wrote");
        let squatted = allowed().open_read_only::<Counter>(&a.loc).unwrap();
        assert_eq!(squatted.snapshot().unwrap().value, SQUATTERS, "{kind:?}");
        let c = allowed().open::<Counter>(&a.loc).unwrap();
        assert_eq!(c.lock().unwrap().value, SQUATTERS, "{kind:?}");
        assert_eq!(a.stat(), Some((NOBODY, NOBODY, 0o666)), "{kind:?}");

        // What root can do about it: remove the name, and create its own.
        shmstore::unlink(&a.loc).unwrap();
        drop(roots_counter(&a, 0o600));
        assert_eq!(a.stat(), Some((0, 0, 0o600)), "{kind:?}");
        assert_eq!(
            Shared::<Counter>::open(&a.loc)
                .unwrap()
                .lock()
                .unwrap()
                .value,
            ROOTS,
            "{kind:?}"
        );

        let b = Place::new(kind, "squat-store", &dir);
        assert_eq!(b.as_nobody(&["make-store"]), ["ok"], "{kind:?}");
        let before = b.contents();
        for (what, r) in [
            ("open", outcome(&Store::open(&b.loc))),
            (
                "open_or_create",
                outcome(&Store::open_or_create(&b.loc, 16 * 1024)),
            ),
            (
                "as a Shared",
                outcome(&Shared::open_or_create(&b.loc, Counter::default())),
            ),
        ] {
            assert_eq!(r, refused, "{kind:?}: store {what}");
        }
        assert_eq!(
            outcome(&Store::create(&b.loc, 16 * 1024)),
            "AlreadyExists",
            "{kind:?}"
        );
        assert_eq!(b.contents(), before, "{kind:?}: a refused open wrote");
        let s = allowed().open_store(&b.loc).unwrap();
        assert_eq!(count(&s), SQUATTERS, "{kind:?}");
        s.check().unwrap();
    }
}

// ===========================================================================
// 4. Read permission alone

/// Root's 0644 segment: another user reads it through a `SharedReader`
/// (with `allow_foreign_owner`), and every way of writing (a `Shared`, a
/// `Store`, removing the name) is `PermissionDenied`. For a store, 0640
/// with the other user's group as well. Nothing changes.
#[test]
fn read_permission_alone_reads_and_refuses_every_write() {
    needs_root!();
    let dir = TempDir::with_mode("readable", 0o1777);
    for kind in KINDS {
        let a = Place::new(kind, "readable", &dir);
        let c = roots_counter(&a, 0o644);
        let said = a.as_nobody(&["reader-allowed", "shared-allowed", "unlink"]);
        assert_eq!(
            said,
            [
                format!("ok value={ROOTS}"),
                "PermissionDenied".to_owned(),
                "PermissionDenied".to_owned()
            ],
            "{kind:?}"
        );
        assert_eq!(c.lock().unwrap().value, ROOTS, "{kind:?}");
        assert_eq!(a.stat(), Some((0, 0, 0o644)), "{kind:?}");

        for (mode, group) in [(0o644, None), (0o640, Some(NOBODY))] {
            let b = Place::new(kind, "readable-store", &dir);
            let s = roots_store(&b, mode);
            if let Some(gid) = group {
                b.chgrp(gid);
            }
            // Opening a store always writes (it takes a handle slot), and
            // System V checks the owner before it tries.
            let plain = if kind == Kind::Sysv {
                "ForeignOwner(0,65534)"
            } else {
                "PermissionDenied"
            };
            assert_eq!(
                b.as_nobody(&["store", "store-allowed", "unlink"]),
                [plain, "PermissionDenied", "PermissionDenied"],
                "{kind:?}, mode {mode:o}"
            );
            assert_eq!(count(&s), ROOTS, "{kind:?}, mode {mode:o}");
            assert_eq!(
                b.stat(),
                Some((0, group.unwrap_or(0), mode)),
                "{kind:?}, mode {mode:o}"
            );
            s.check().unwrap();
        }
    }
}

// ===========================================================================
// 5. Creating where one may not

/// Another user cannot create a file segment or store in a directory of
/// root's (0755): `PermissionDenied`, and no file appears.
#[test]
fn another_user_cannot_create_a_file_segment_in_a_directory_they_may_not_write() {
    needs_root!();
    let dir = TempDir::with_mode("closed", 0o755);
    let a = Place::new(Kind::File, "closed", &dir);
    assert_eq!(
        a.as_nobody(&["make-shared", "make-store"]),
        ["PermissionDenied"; 2]
    );
    assert_eq!(a.stat(), None, "a file appeared");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
