//! Whatever sits under a segment's name: a FIFO, a Unix socket, a
//! directory, a symbolic link (to a real segment, or dangling), a regular
//! file of another program's, an empty file, a character device (as root). Every opening call, on a POSIX
//! name and on a file path, answers at once with a typed error that says
//! what is there, never blocks, and never writes to it.
//!
//! Each call runs in a thread of its own under a watchdog: a call that
//! takes more than [`WATCHDOG`] fails the test (the thread is left behind,
//! blocked, but the suite goes on).

use crate::common;

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Counter, Segment};
use shmstore::inspect::{self, State};
use shmstore::{Error, Location, Shared, SharedOptions, SharedReader, Store};

/// The longest an opening call may take before the test calls it a hang.
const WATCHDOG: Duration = Duration::from_secs(2);

/// The kinds of object a name can hold that are not a segment.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Fifo,
    Socket,
    Directory,
    LinkToSegment,
    DanglingLink,
    Garbage,
    Empty,
    /// A character device (made only as root; skipped otherwise).
    Device,
}

const KINDS: [Kind; 8] = [
    Kind::Fifo,
    Kind::Socket,
    Kind::Directory,
    Kind::LinkToSegment,
    Kind::DanglingLink,
    Kind::Garbage,
    Kind::Empty,
    Kind::Device,
];

const GARBAGE: &[u8] = b"another program's bytes, not a shmstore segment\n";

impl Kind {
    /// The words the error must contain.
    fn words(self) -> &'static str {
        match self {
            Kind::Fifo => "FIFO",
            Kind::Socket => "socket",
            Kind::Directory => "directory",
            Kind::LinkToSegment | Kind::DanglingLink => "symbolic link",
            Kind::Garbage => "not a shmstore segment",
            Kind::Empty => "empty",
            Kind::Device => "character device",
        }
    }
}

/// An object of one kind at `path`, and what is needed to check that it is
/// unchanged afterwards.
struct Squatter {
    kind: Kind,
    path: PathBuf,
    /// The FIFO's read end, opened before the calls (so a call that opened
    /// the FIFO for writing would not block, and what it wrote would be
    /// here).
    fifo_reader: Option<std::fs::File>,
    /// The socket, kept bound.
    _socket: Option<UnixListener>,
    /// The segment a link points to, and its bytes.
    target: Option<(Segment, Vec<u8>)>,
}

impl Squatter {
    /// The object, or `None` if this kind cannot be made here.
    fn new(kind: Kind, path: &Path) -> Option<Squatter> {
        let mut s = Squatter {
            kind,
            path: path.to_owned(),
            fifo_reader: None,
            _socket: None,
            target: None,
        };
        match kind {
            Kind::Fifo => {
                nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
                s.fifo_reader = Some(
                    std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(path)
                        .unwrap(),
                );
            }
            Kind::Socket => s._socket = Some(UnixListener::bind(path).unwrap()),
            Kind::Directory => std::fs::create_dir(path).unwrap(),
            Kind::LinkToSegment => {
                let seg = Segment::new("squatters-target");
                drop(Shared::create(seg.name(), Counter::default()).unwrap());
                let bytes = std::fs::read(seg.path()).unwrap();
                std::os::unix::fs::symlink(seg.path(), path).unwrap();
                s.target = Some((seg, bytes));
            }
            Kind::DanglingLink => {
                std::os::unix::fs::symlink("/nonexistent/shmstore-squatter", path).unwrap()
            }
            Kind::Garbage => std::fs::write(path, GARBAGE).unwrap(),
            Kind::Empty => std::fs::write(path, b"").unwrap(),
            Kind::Device => {
                // The numbers of /dev/null: harmless even if opened.
                let made = nix::sys::stat::mknod(
                    path,
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::Mode::from_bits_truncate(0o600),
                    nix::sys::stat::makedev(1, 3),
                );
                if let Err(e) = made {
                    eprintln!("no character device under {path:?} ({e}): not tried");
                    return None;
                }
            }
        }
        Some(s)
    }

    /// Asserts that the object is as it was made.
    fn assert_unchanged(&mut self, what: &str) {
        let meta = std::fs::symlink_metadata(&self.path)
            .unwrap_or_else(|e| panic!("{what}: {:?} is gone: {e}", self.kind));
        let ft = meta.file_type();
        match self.kind {
            Kind::Fifo => {
                assert!(ft.is_fifo(), "{what}: no longer a FIFO");
                let mut buf = [0u8; 64];
                match self.fifo_reader.as_mut().unwrap().read(&mut buf) {
                    Ok(0) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Ok(n) => panic!("{what}: {n} bytes were written into the FIFO"),
                    Err(e) => panic!("{what}: reading the FIFO: {e}"),
                }
            }
            Kind::Socket => assert!(ft.is_socket(), "{what}: no longer a socket"),
            Kind::Directory => {
                assert!(ft.is_dir(), "{what}: no longer a directory");
                assert_eq!(
                    std::fs::read_dir(&self.path).unwrap().count(),
                    0,
                    "{what}: something was made in the directory"
                );
            }
            Kind::LinkToSegment => {
                assert!(ft.is_symlink(), "{what}: no longer a link");
                let (seg, bytes) = self.target.as_ref().unwrap();
                assert_eq!(std::fs::read_link(&self.path).unwrap(), seg.path());
                assert_eq!(
                    &std::fs::read(seg.path()).unwrap(),
                    bytes,
                    "{what}: the link's target was written"
                );
            }
            Kind::DanglingLink => {
                assert!(ft.is_symlink(), "{what}: no longer a link");
                assert!(
                    !Path::new("/nonexistent/shmstore-squatter").exists(),
                    "{what}: the link's target was made"
                );
            }
            Kind::Garbage => {
                assert!(ft.is_file());
                assert_eq!(
                    std::fs::read(&self.path).unwrap(),
                    GARBAGE,
                    "{what}: written"
                );
            }
            Kind::Empty => {
                assert!(ft.is_file());
                assert_eq!(meta.len(), 0, "{what}: written");
            }
            Kind::Device => assert!(ft.is_char_device(), "{what}: no longer a device"),
        }
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = match self.kind {
            Kind::Directory => std::fs::remove_dir(&self.path),
            _ => std::fs::remove_file(&self.path),
        };
    }
}

/// Runs `call` in a thread of its own; fails the test if it takes longer
/// than [`WATCHDOG`].
fn watched<R: Send + 'static>(what: &str, call: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(call());
    });
    let got = rx
        .recv_timeout(WATCHDOG)
        .unwrap_or_else(|_| panic!("{what}: still blocked after {WATCHDOG:?}"));
    assert!(t0.elapsed() < WATCHDOG, "{what}: took {:?}", t0.elapsed());
    got
}

/// The error of an opening call, as the outcome to check.
fn outcome<T>(r: Result<T, Error>) -> Result<(), Error> {
    r.map(drop)
}

type Call = fn(Location) -> Result<(), Error>;

/// Every opening call of the library, by name.
fn calls() -> Vec<(&'static str, Call)> {
    vec![
        ("Shared::open", |l| outcome(Shared::<Counter>::open(&l))),
        ("Shared::create", |l| {
            outcome(Shared::create(&l, Counter::default()))
        }),
        ("Shared::open_or_create", |l| {
            outcome(Shared::open_or_create(&l, Counter::default()))
        }),
        ("SharedOptions::open", |l| {
            outcome(
                SharedOptions::new()
                    .allow_foreign_owner(true)
                    .open::<Counter>(&l),
            )
        }),
        ("SharedOptions::open_or_create", |l| {
            outcome(
                SharedOptions::new()
                    .mode(0o666)
                    .open_or_create(&l, Counter::default()),
            )
        }),
        ("SharedReader::open", |l| {
            outcome(SharedReader::<Counter>::open(&l))
        }),
        ("Store::open", |l| outcome(Store::open(&l))),
        ("Store::create", |l| outcome(Store::create(&l, 64 * 1024))),
        ("Store::open_or_create", |l| {
            outcome(Store::open_or_create(&l, 64 * 1024))
        }),
    ]
}

/// Every call against every kind of object at `path_of(kind)`.
fn every_call_against_every_kind(backend: &str, at: impl Fn(&str) -> (PathBuf, Location)) {
    for kind in KINDS {
        let (path, loc) = at(&format!("{kind:?}").to_lowercase());
        let Some(mut squatter) = Squatter::new(kind, &path) else {
            continue;
        };
        for (name, call) in calls() {
            let what = format!("{backend} {kind:?}: {name}");
            let l = loc.clone();
            let e = match watched(&what, move || call(l)) {
                Ok(()) => panic!("{what}: succeeded"),
                Err(e) => e,
            };
            let creates_only = name.ends_with("::create");
            match &e {
                Error::AlreadyExists { .. } if creates_only => {}
                Error::Corrupt { reason, .. } => assert!(
                    reason.contains(kind.words()),
                    "{what}: {reason:?} does not say {:?}",
                    kind.words()
                ),
                other => panic!("{what}: {other:?}"),
            }
            assert!(
                !matches!(e, Error::InvalidName { .. }),
                "{what}: a valid name called invalid"
            );
            squatter.assert_unchanged(&what);
        }
        // inspect reports it, as foreign (or empty/garbage: foreign too).
        let what = format!("{backend} {kind:?}: inspect::report");
        let l = loc.clone();
        let report = watched(&what, move || inspect::report(&l));
        match report {
            Ok(r) => assert!(
                matches!(r.state, State::Foreign { .. }),
                "{what}: {:?}",
                r.state
            ),
            Err(e) => panic!("{what}: {e:?}"),
        }
        squatter.assert_unchanged(&what);
    }
}

#[test]
fn nothing_under_a_posix_name_blocks_or_is_written() {
    let segs: std::cell::RefCell<Vec<Segment>> = Default::default();
    every_call_against_every_kind("posix", |kind| {
        let seg = Segment::new(&format!("squatter-{kind}"));
        let out = (seg.path(), Location::posix(seg.name()).unwrap());
        segs.borrow_mut().push(seg);
        out
    });
}

#[test]
fn nothing_under_a_file_path_blocks_or_is_written() {
    let dir = std::env::temp_dir().join(format!("shmstore-it-squatters-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    every_call_against_every_kind("file", |kind| {
        let path = dir.join(kind);
        (path.clone(), Location::file(path))
    });
    let _ = std::fs::remove_dir_all(&dir);
}
