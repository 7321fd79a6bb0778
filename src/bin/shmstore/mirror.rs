//! `shmstore mirror`: keeps a segment (or a store entry) in step with the
//! same object on other hosts, through Redis. Without a type: the value's
//! bytes travel with the fingerprint, type name and size from the
//! segment's header, and only a segment of the same layout takes them.

use std::time::SystemTime;

use shmstore::mirror::{Direction, MirrorOptions, Target};

use crate::cmd::{resolve, CliError, CliResult, Resolved};
use crate::out;
use crate::MirrorArgs;

/// `shmstore mirror`.
pub fn mirror(a: &MirrorArgs) -> CliResult {
    let loc = match resolve(&a.target)? {
        Resolved::At(loc) => loc,
        Resolved::SysvId(id) => {
            return Err(CliError(format!(
                "System V id {id} has no key another host could share: mirror a segment by \
                 name, key or file"
            )))
        }
    };
    let target = match &a.entry {
        Some(key) => Target::open_entry(&loc, key),
        None => Target::open(&loc),
    }
    .map_err(|e| CliError(e.to_string()))?;
    let object = a.object.clone().unwrap_or_else(|| target.name().to_owned());
    let direction = match a.direction {
        crate::MirrorDirection::Publish => Direction::Publish,
        crate::MirrorDirection::Subscribe => Direction::Subscribe,
        crate::MirrorDirection::Both => Direction::Both,
    };
    let mut opts = MirrorOptions::new(a.redis.clone());
    if let Some(origin) = &a.origin {
        opts.origin(origin.clone());
    }
    opts.on_event(|e| println!("{} {e}", out::local_time(SystemTime::now())));
    let what = format!(
        "{} ({}, {} bytes, fingerprint {:#018x})",
        target.name(),
        target.type_name(),
        target.size(),
        target.fingerprint()
    );
    let m = opts
        .start(&object, target, direction)
        .map_err(|e| CliError(e.to_string()))?;
    println!(
        "{} mirroring {what} as `{object}` ({}) through {} as origin {}",
        out::local_time(SystemTime::now()),
        match direction {
            Direction::Publish => "publish",
            Direction::Subscribe => "subscribe",
            Direction::Both => "both",
        },
        a.redis,
        m.origin()
    );
    // Runs until interrupted; the mirror's threads do the work.
    loop {
        std::thread::park();
    }
}
