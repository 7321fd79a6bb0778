//! What this process and others map, from `/proc/PID/maps`: whether two
//! addresses of this process reach the same memory (one segment mapped
//! twice, see `lock::RawLock`), and which files other processes map (the
//! `attached` count of `inspect`). Rare and slow by design.

use std::collections::HashMap;
use std::path::PathBuf;

/// Where a mapped address's bytes live: the backing object (device and
/// inode) and the offset in it. Shared anonymous and System V mappings have
/// an inode of their own too; `None` for memory no second mapping can reach
/// (inode 0: the heap, stacks, private anonymous pages).
fn backing(maps: &str, addr: usize) -> Option<Option<(String, u64, u64)>> {
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (range, _perms, offset, dev, inode) =
            (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        if !(start..end).contains(&addr) {
            continue;
        }
        let inode: u64 = inode.parse().ok()?;
        if inode == 0 {
            return Some(None);
        }
        let offset = u64::from_str_radix(offset, 16).ok()?;
        return Some(Some((
            dev.to_owned(),
            inode,
            offset + (addr - start) as u64,
        )));
    }
    None
}

/// Whether `a` and `b`, two addresses of this process, reach the same bytes:
/// `Some(true)` if so, `Some(false)` if not, `None` if it cannot be told
/// (`/proc` unreadable, or an address not mapped).
///
/// One segment can be mapped twice in a process (two handles on one name),
/// so one lock can sit at two addresses. When a lock word names the calling
/// thread but the thread recorded taking a lock at another address only,
/// this tells a relock through a second mapping (the thread does hold it)
/// from a word a peer wrote (it does not).
pub(crate) fn same_memory(a: usize, b: usize) -> Option<bool> {
    if a == b {
        return Some(true);
    }
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let (x, y) = (backing(&maps, a)?, backing(&maps, b)?);
    Some(matches!((x, y), (Some(x), Some(y)) if x == y))
}

/// How many processes other than this one map each file, among the
/// processes whose `/proc/PID/maps` this user may read (others, and
/// processes gone meanwhile, are not counted).
pub(crate) fn mapped_files() -> HashMap<PathBuf, u64> {
    let mut counts: HashMap<PathBuf, u64> = HashMap::new();
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return counts;
    };
    for e in dir.flatten() {
        let pid = e.file_name();
        let Some(pid) = pid.to_str() else { continue };
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        // Gone meanwhile, or not ours to read: not counted.
        let Ok(text) = std::fs::read_to_string(e.path().join("maps")) else {
            continue;
        };
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            // address perms offset dev inode path
            let Some(path) = line.split_whitespace().nth(5) else {
                continue;
            };
            let path = line[line.find(path).unwrap_or(0)..].trim_end();
            let path = path.strip_suffix(" (deleted)").unwrap_or(path);
            if path.starts_with('/') && seen.insert(path.to_owned()) {
                *counts.entry(PathBuf::from(path)).or_default() += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000002000 rw-s 00000000 00:1a 4242                       /dev/shm/a
7f0000010000-7f0000011000 rw-s 00001000 00:1a 4242                       /dev/shm/a
7f0000020000-7f0000021000 rw-s 00000000 00:01 99                         /dev/zero (deleted)
";

    #[test]
    fn two_mappings_of_one_object_alias_at_the_same_offset() {
        let at = |a| backing(MAPS, a).unwrap();
        assert_eq!(at(0x7f0000001010), at(0x7f0000010010));
        assert_ne!(at(0x7f0000000010), at(0x7f0000010010));
        assert_ne!(at(0x7f0000000010), at(0x7f0000020010));
        assert_eq!(at(0x55d0c0a00010), None);
        assert_eq!(backing(MAPS, 0x1000), None);
    }

    #[test]
    fn this_process_own_memory() {
        let x = Box::new(0u64);
        let y = Box::new(0u64);
        let (a, b) = (&*x as *const u64 as usize, &*y as *const u64 as usize);
        assert_eq!(same_memory(a, a), Some(true));
        assert_eq!(same_memory(a, b), Some(false));
    }
}
