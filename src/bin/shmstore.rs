//! `shmstore`: shows what is inside shared memory (type, decoded value, lock
//! state, liveness of creator and lock holder, staleness) and removes what
//! is stale.
//!
//! Built with the `cli` feature: `cargo install shmstore --features cli`.

#![deny(unsafe_code)]

#[path = "shmstore/cmd.rs"]
mod cmd;
#[cfg(feature = "mirror")]
#[path = "shmstore/mirror.rs"]
mod mirror;
#[path = "shmstore/out.rs"]
mod out;
#[path = "shmstore/show.rs"]
mod show;
#[path = "shmstore/value.rs"]
mod value;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// The examples `shmstore --help` ends with, then `$more` (the mirror's, in
/// builds that have it).
macro_rules! examples {
    ($($more:literal)?) => {
        concat!("\
Examples:
  shmstore ls                          list shmstore segments
  shmstore ls --all --json             every segment, foreign ones too, as JSON
  shmstore inspect my-counter          header, lock and value of /dev/shm/my-counter
  shmstore inspect --key 0x53484d01    a System V segment by key
  shmstore watch my-config             print the value now and on every change
  shmstore watch my-app --entry jobs/next --count 10
  shmstore rm my-counter               remove one segment
  shmstore unpoison my-counter         clear the poison a killed holder left, saying who
  shmstore gc --dry-run                what gc would remove, and why the others stay", $($more)?)
    };
}

/// The command line.
#[derive(Parser)]
#[command(
    name = "shmstore",
    version,
    about = "Show what is inside shared memory: type, value, lock, liveness, staleness",
    long_about = "Shows what is inside shared-memory segments: the type a shmstore segment \
holds, its value decoded field by field, who holds its lock and whether that process still \
runs, whether its creator runs, who has it mapped, and whether it is stale. Where ipcs, ipcrm \
and ls /dev/shm show names and sizes, this shows contents.\n\n\
It looks at POSIX shared memory (/dev/shm), System V segments and file-backed segments. \
ls and inspect map segments read-only and write nothing; watch, where it may write, sets the \
lock word's \"watched\" bit as any waiting handle does, so that writers wake it. A segment that \
is not a shmstore segment is never decoded.\n\n\
Output is an aligned table on a terminal and tab-separated columns in a pipe; --json gives \
machine-readable output. Errors are one line on standard error and exit status 1.",
    after_long_help = examples!()
)]
#[cfg_attr(
    feature = "mirror",
    command(after_long_help = examples!("
  shmstore mirror publish my-config --redis redis://10.0.0.5:6379/
                                       send my-config to Redis on every change"))
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
enum Command {
    /// List shmstore segments: type, creator, lock, generation
    #[command(
        visible_alias = "list",
        long_about = "Lists every shmstore segment this user can see, in /dev/shm and among \
System V segments, one per row:\n\n\
  NAME      the name in /dev/shm; for System V the key (0x53484d01), or private:ID for a \
segment without key\n\
  BACKEND   posix or sysv\n\
  SIZE      the segment's size: 4.1K (K = 1024 bytes) on a terminal, in bytes in a pipe\n\
  TYPE      the type it holds, `store (N entries)`, `damaged` (shmstore's magic, but it \
fails its checks) or `incomplete` (its creator has not finished creating it, or died doing \
so)\n\
  CREATOR   the process that created it, and whether it still runs (`in another PID \
namespace` when it ran in another container: that cannot be checked from here)\n\
  ATTACHED  how many processes of this PID namespace have it mapped (- when unknown: other \
users' processes cannot be seen)\n\
  PRESENT   the processes that show themselves in it, in any PID namespace (containers \
sharing /dev/shm or System V segments): `1 writer`, `2 writers, 1 reader`, `none`\n\
  LOCK      free, or held by a thread that is alive or dead (a holder in another PID \
namespace says so, with its pid there); poisoned after a holder died or panicked. For a \
store: its directory's lock, and how many entries are locked\n\
  GEN       the generation: how many writes were committed (for a store: how many times \
entries came or went)\n\
  CHANGED   when the last write was committed, if the segment records it\n\n\
Segments of other programs (foreign), and segments you may not read (unreadable: they may \
or may not be shmstore segments), are hidden; --all lists them too, undecoded. \
Files are not searched for: inspect a file-backed segment with `shmstore inspect --file`.",
        after_long_help = "\
Examples:
  shmstore ls
  shmstore ls --all
  shmstore ls --json | jq '.[] | select(.creator.alive == false) | .name'
  shmstore ls | cut -f1,4          (tab-separated when piped)"
    )]
    Ls(LsArgs),

    /// Show one segment: header, lock, generation and decoded value
    #[command(
        long_about = "Shows one segment: its backend, size, owner and mode, who has it \
mapped; the header (type, layout fingerprint, format version, creator and whether it runs, \
when it was created); its lock and generation; then its value decoded field by field with \
the schema its creator stored in it. For a store, every entry: key, type, size, \
generation, lock and value.\n\n\
A schema that fails its checks is reported with the error and not used; a segment without \
a schema is not decoded. A segment that is not a shmstore segment is described, never \
decoded.",
        after_long_help = "\
Examples:
  shmstore inspect my-counter
  shmstore inspect /dev/shm/my-counter
  shmstore inspect --key 0x53484d01
  shmstore inspect --id 32769               (a System V segment without key)
  shmstore inspect --file /var/lib/app/state
  shmstore inspect my-app --json | jq '.entries[].key'"
    )]
    Inspect(InspectArgs),

    /// Print a segment's value now and on every committed change
    #[command(
        long_about = "Prints the decoded value on one line with its generation and time, \
now and again on every committed change, until interrupted (Ctrl-C) or after --count \
changes. It sleeps on the segment's change notification, without polling, where it may \
(it can write to the segment, or the segment was created with wake_read_only); otherwise \
it looks every 100 ms.\n\n\
For a store, --entry KEY follows one entry's value; without it, the list of entries is \
printed whenever entries come or go. Several writes committed while a line is printed \
count as one change. Ends with an error when the segment or the entry is removed.",
        after_long_help = "\
Examples:
  shmstore watch my-config
  shmstore watch my-config --json | jq -c .value
  shmstore watch my-app                       (entries coming and going)
  shmstore watch my-app --entry jobs/next --count 5"
    )]
    Watch(WatchArgs),

    /// Remove one segment
    #[command(
        visible_alias = "remove",
        long_about = "Removes one segment: unlinks its name in /dev/shm or its file, or \
marks a System V segment for removal (it goes when its last process detaches). Processes \
that have it open keep working on it; the name is free at once.\n\n\
Refuses, unless --force: a segment of another user, a segment that is not a shmstore \
segment (or cannot be read), a segment whose lock is held by a running thread, and a \
segment that running processes have mapped.",
        after_long_help = "\
Examples:
  shmstore rm my-counter
  shmstore rm --key 0x53484d01
  shmstore rm --file /var/lib/app/state
  shmstore rm some-other-programs-shm --force"
    )]
    Rm(RmArgs),

    /// Clear the poison of a segment's lock (or of a store entry's), saying what it was
    #[command(
        long_about = "Clears the poison of a segment's lock, or with --entry KEY of one entry of a store, and prints what it cleared: which process and thread poisoned it, how (killed, panicked, superseded by a migration) and when; or that it was not poisoned. Needs write permission on the segment.\n\nIt takes the lock first, waiting for a running holder; a lock whose holder died is taken over, which commits the write that holder left unfinished. Check the value (`shmstore inspect`) before clearing: a holder that died or panicked may have left it half-written.",
        after_long_help = "\
Examples:
  shmstore unpoison my-counter
  shmstore unpoison my-app --entry jobs/next
  shmstore unpoison --file /var/lib/app/state --json"
    )]
    Unpoison(UnpoisonArgs),

    /// Remove every stale shmstore segment
    #[command(
        long_about = "Removes every stale shmstore segment: one whose creator no longer \
runs, that no process has mapped or is present in (in any PID namespace), and whose lock \
(and, for a store, every entry's) is not held by a running thread. A creator in another \
PID namespace cannot be checked from here: its segment is removed only once no process is \
present in it. Each segment is checked again just before it is removed.\n\n\
It also removes the stand-ins that System V segments of this IPC namespace left behind in \
/dev/shm (`.shmstore-sysv.*`) when they were removed by other means (ipcrm), once no \
process uses them; never those of other IPC namespaces.\n\n\
Segments of other users are left alone unless --force. Segments of other programs \
(foreign) are never removed by gc, and neither is a segment whose lock is held by a \
running thread, even with --force; `shmstore rm --force` removes one by name.\n\n\
Prints one row per shmstore segment: what was done (removed, kept, failed) and why.",
        after_long_help = "\
Examples:
  shmstore gc --dry-run
  shmstore gc
  shmstore gc myapp-              (only segments whose names start with myapp-)
  sudo shmstore gc --force     (other users' stale segments too)"
    )]
    Gc(GcArgs),

    /// Keep a segment in step with other hosts through Redis
    #[cfg(feature = "mirror")]
    #[command(
        long_about = "Keeps a segment (or an entry of a store, with --entry, or a whole store, \
with --store) in step with the same object on other hosts, through a Redis server. `publish` stores the local value in Redis \
and announces it, now and on every committed change; `subscribe` writes Redis's latest value \
into the local segment, now and on every announcement, under the segment's lock, so local \
readers see it as if a local process had written it; `both` does both (the last write to \
reach Redis wins).\n\n\
No type is needed: the value's bytes travel with its layout fingerprint, type name and size \
from the segment's header, and a segment of another layout refuses them (reported, never \
written). The local segment must exist already, created by the program that uses it. With \
--store, every entry of the store follows: a subscribing store gets the publisher's entries \
(created with their types), their values, and their removals.\n\n\
Runs until interrupted, printing one line per event (one JSON object per line with --json): \
connected, published, applied, created, removed, refused, disconnected (it reconnects by \
itself, with growing pauses, for as long as it takes), reconnected, failover (Sentinel named a \
new primary). Credentials that \
Redis refuses end it at once with status 1, as does a command its Redis user may not run. Run \
one mirror per object per host.\n\n\
The Redis URL comes from --redis, else from the file --redis-url-file names, else from the \
environment variable SHMSTORE_REDIS_URL, else redis://127.0.0.1:6379/. A password in --redis \
is visible to every user of the host (ps); the file and the variable are not. With Sentinel, \
SHMSTORE_SENTINEL_PASSWORD gives the sentinels' own password, if they require one. Passwords \
are never printed.",
        after_long_help = "\
Examples:
  shmstore mirror publish app-config --redis redis://10.0.0.5:6379/
  shmstore mirror subscribe app-config --redis redis://10.0.0.5:6379/
  shmstore mirror subscribe my-app --entry limits --object limits --redis redis://r:6379/
  shmstore mirror publish my-app --store --redis redis://r:6379/   (every entry of the store)
  shmstore mirror both --file /var/lib/app/state --object app-state --redis redis://r:6379/
  SHMSTORE_REDIS_URL=redis://mirror:PASSWORD@r:6379/ shmstore mirror publish app-config --json
  shmstore mirror subscribe app-config --redis-url-file /run/secrets/redis-url
      (the file holds redis+sentinel://mirror:PASSWORD@10.0.0.7:26379,10.0.0.8:26379/main)"
    )]
    Mirror(MirrorArgs),
}

/// Which way `shmstore mirror` goes.
#[cfg(feature = "mirror")]
#[derive(Clone, Copy, clap::ValueEnum)]
enum MirrorDirection {
    /// Local changes go to Redis
    Publish,
    /// Redis's value comes into the local segment
    Subscribe,
    /// Both ways; the last write to reach Redis wins
    Both,
}

/// `shmstore mirror`.
#[cfg(feature = "mirror")]
#[derive(Args)]
struct MirrorArgs {
    /// publish, subscribe or both
    #[arg(value_enum)]
    direction: MirrorDirection,
    #[command(flatten)]
    target: Target,
    /// Mirror this entry of a store
    #[arg(short, long, value_name = "KEY")]
    entry: Option<String>,
    /// Mirror the whole store: every entry, and entries created and removed
    #[arg(long, conflicts_with = "entry")]
    store: bool,
    /// The Redis server: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], or
    /// redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB] for the primary
    /// that Redis Sentinel names. A password here shows in `ps`: prefer --redis-url-file or
    /// SHMSTORE_REDIS_URL [default: the file, else SHMSTORE_REDIS_URL, else
    /// redis://127.0.0.1:6379/]
    #[arg(long, value_name = "URL", conflicts_with = "redis_url_file")]
    redis: Option<String>,
    /// Read the Redis URL (as for --redis) from this file's first line
    #[arg(long, value_name = "PATH")]
    redis_url_file: Option<PathBuf>,
    /// With rediss:// (TLS): trust this CA certificate (PEM) instead of the system's roots
    #[cfg(feature = "mirror-tls")]
    #[arg(long, value_name = "PATH")]
    tls_ca_file: Option<PathBuf>,
    /// With Sentinel: a host the primary may be on besides the sentinels' own (repeat for more)
    #[arg(long, value_name = "HOST")]
    allow_primary: Vec<String>,
    /// With Sentinel: follow a primary on any host the sentinels name
    #[arg(long)]
    allow_any_primary: bool,
    /// Print one JSON object per line per event (for supervisors and log collectors)
    #[arg(long)]
    json: bool,
    /// The object's name in Redis, the same on every host (default: the segment's name,
    /// with /KEY for an entry)
    #[arg(long, value_name = "NAME")]
    object: Option<String>,
    /// This mirror's name in what it publishes (default: host name, pid and start time)
    #[arg(long, value_name = "NAME")]
    origin: Option<String>,
}

/// `shmstore ls`.
#[derive(Args)]
struct LsArgs {
    /// List segments that are not shmstore segments too (undecoded)
    #[arg(short, long)]
    all: bool,
    /// Print a JSON array, one object per segment (null for what is unknown)
    #[arg(long)]
    json: bool,
}

/// Which segment a command works on: exactly one of these.
#[derive(Args, Clone)]
#[group(required = true, multiple = false)]
struct Target {
    /// The segment's name in /dev/shm (a leading / or /dev/shm/ is allowed), or its name as
    /// `shmstore ls` prints it: 0x53484d01 is then a System V key and private:ID a System V id
    #[arg(value_name = "NAME")]
    name: Option<String>,
    /// A System V key: hexadecimal (0x53484d01) or decimal
    #[arg(short, long, value_name = "KEY", value_parser = cmd::parse_key)]
    key: Option<i32>,
    /// A System V segment id (as ipcs -m shows it), for segments without key
    #[arg(long, value_name = "ID")]
    id: Option<i32>,
    /// A file-backed segment
    #[arg(short, long, value_name = "PATH")]
    file: Option<PathBuf>,
}

/// `shmstore inspect`.
#[derive(Args)]
struct InspectArgs {
    #[command(flatten)]
    target: Target,
    /// Print one JSON object (null for what is unknown)
    #[arg(long)]
    json: bool,
}

/// `shmstore watch`.
#[derive(Args)]
struct WatchArgs {
    #[command(flatten)]
    target: Target,
    /// Follow this entry of a store
    #[arg(short, long, value_name = "KEY")]
    entry: Option<String>,
    /// Print one JSON object per line
    #[arg(long)]
    json: bool,
    /// Stop after N changes (0: print the value once)
    #[arg(short = 'n', long, value_name = "N")]
    count: Option<u64>,
}

/// `shmstore unpoison`.
#[derive(Args)]
struct UnpoisonArgs {
    #[command(flatten)]
    target: Target,
    /// Clear the poison of this entry of a store
    #[arg(short, long, value_name = "KEY")]
    entry: Option<String>,
    /// Print one JSON object (`cleared`: null when nothing was poisoned)
    #[arg(long)]
    json: bool,
}

/// `shmstore rm`.
#[derive(Args)]
struct RmArgs {
    #[command(flatten)]
    target: Target,
    /// Remove it even if it belongs to another user, is not a shmstore segment, is locked
    /// or is mapped by running processes
    #[arg(long)]
    force: bool,
}

/// `shmstore gc`.
#[derive(Args)]
struct GcArgs {
    /// Only say what would be removed, and why each other segment stays
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Include stale segments of other users (never foreign or live-locked ones)
    #[arg(long)]
    force: bool,
    /// Print a JSON array, one object per segment
    #[arg(long)]
    json: bool,
    /// Only segments whose name (as `ls` prints it) starts with one of these
    #[arg(value_name = "PREFIX")]
    prefixes: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ls(a) => cmd::ls(a.all, a.json),
        Command::Inspect(a) => cmd::inspect(&a.target, a.json),
        Command::Watch(a) => cmd::watch(&a.target, a.entry.as_deref(), a.json, a.count),
        Command::Rm(a) => cmd::rm(&a.target, a.force),
        Command::Unpoison(a) => cmd::unpoison(&a.target, a.entry.as_deref(), a.json),
        Command::Gc(a) => cmd::gc(a.dry_run, a.force, a.json, &a.prefixes),
        #[cfg(feature = "mirror")]
        Command::Mirror(a) => mirror::mirror(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmstore: {}", e.0.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
