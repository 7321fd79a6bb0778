//! What a benchmark leaves behind and how it writes numbers: the stores of
//! a run, removed at its end (also when it panics), the names it left in
//! /dev/shm, and counts with thousands separators. Included by the
//! benchmark examples with `#[path]`.

use shmstore::Store;

/// Every store of this run, removed when dropped: at the end, and while
/// unwinding from a panic.
pub struct Cleanup {
    prefix: String,
    names: Vec<String>,
}

impl Cleanup {
    /// No stores yet; this run's names start with `PROGRAM_PID`.
    pub fn new(program: &str) -> Cleanup {
        Cleanup {
            prefix: format!("{program}_{}", std::process::id()),
            names: Vec::new(),
        }
    }

    /// What every name of this run starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A new name for a store of this run, to be removed at the end.
    pub fn name(&mut self, what: &str) -> String {
        let name = format!("{}_{what}_{}", self.prefix, self.names.len());
        self.names.push(name.clone());
        name
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Store::unlink(name.as_str());
        }
    }
}

/// The names in /dev/shm that start with `prefix`.
pub fn leftovers(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// `n` with thousands separators: 100000 as "100,000".
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
