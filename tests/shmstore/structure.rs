//! The crate's layout rules, checked on its sources: `unsafe` only where
//! the crate docs say, handles that never reach a backend, and a `sys`
//! layer that imports nothing above it.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, with its path relative to `src/`.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(src())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((rel, fs::read_to_string(&path).unwrap()));
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn library_sources() -> Vec<(String, String)> {
    let mut all = Vec::new();
    sources(&src(), &mut all);
    // The command is a crate of its own, with its own root.
    all.retain(|(rel, _)| !rel.starts_with("bin"));
    all.sort();
    all
}

/// The code of a file without its `#[cfg(test)]` module at the end.
fn code(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .or_else(|| text.find("#[cfg(test)]\n#[allow(unsafe_code)]"))
        .map_or(text, |i| &text[..i])
}

/// `code` without its comments (doc comments included), line by line.
fn without_comments(code: &str) -> String {
    code.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn unsafe_code_is_allowed_only_where_the_crate_docs_say() {
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    assert!(
        lib.contains("#![deny(unsafe_code)]"),
        "the crate root must deny unsafe_code"
    );
    // Modules that allow it as a whole (an inner attribute, or the
    // attribute on their `mod` line).
    let whole = ["sys/mod.rs", "types/mod.rs", "segment/init.rs"];
    let lock_modules = ["guard", "held", "notify", "seqlock", "slot"];
    // Functions that allow it for one call each.
    let functions = [
        ("segment/mod.rs", "fn anonymous_spec("),
        ("segment/sysv.rs", "fn settle("),
        ("store/heap.rs", "fn write_entry("),
    ];
    for (rel, text) in library_sources() {
        let text = code(&text);
        for (at, _) in text.match_indices("allow(unsafe_code)") {
            let line = text[..at].lines().count().max(1);
            let after = &text[at..];
            let next_item = after.lines().nth(1).unwrap_or("").trim();
            let allowed = (whole.contains(&rel.as_str()) && text[..at].trim_end().ends_with("#!["))
                || (rel == "lock/mod.rs"
                    && lock_modules
                        .iter()
                        .any(|m| next_item == format!("pub(crate) mod {m};")))
                || functions
                    .iter()
                    .any(|(file, f)| *file == rel && next_item.contains(f));
            assert!(
                allowed,
                "src/{rel}:{line}: `allow(unsafe_code)` where the crate docs do not list it \
                 (before: {next_item:?}); list it in src/lib.rs and here, or do without"
            );
        }
        let unsafe_anywhere =
            text.contains("unsafe {") || text.contains("unsafe impl") || text.contains("unsafe fn");
        if unsafe_anywhere && !text.contains("allow(unsafe_code)") {
            // Only files inside an allowing module may use it without an
            // attribute of their own.
            let inside = rel.starts_with("sys/")
                || rel.starts_with("types/")
                || lock_modules.iter().any(|m| rel == format!("lock/{m}.rs"));
            assert!(
                inside,
                "src/{rel} uses unsafe code outside the modules that allow it"
            );
        }
    }
}

/// The files of `src/` that a handle or the store is made of.
fn is_handle(rel: &str) -> bool {
    matches!(rel, "shared.rs" | "reader.rs" | "atomic.rs") || rel.starts_with("store/")
}

#[test]
fn handles_and_the_store_never_import_a_backend() {
    for (rel, text) in library_sources() {
        if is_handle(&rel) {
            assert!(
                !code(&text).contains("segment::backend"),
                "src/{rel} reaches a backend: go through `segment` (Remover, unlink, Handle)"
            );
        }
    }
}

#[test]
fn sys_imports_nothing_above_it() {
    for (rel, text) in library_sources() {
        if !rel.starts_with("sys/") {
            continue;
        }
        // Code only: doc links may name anything.
        let code = without_comments(code(&text));
        for (at, _) in code.match_indices("crate::") {
            let path = &code[at + "crate::".len()..];
            assert!(
                path.starts_with("sys::") || path.starts_with("error::"),
                "src/{rel} imports `crate::{}`: sys/ is the bottom layer",
                path.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
            );
        }
    }
}

#[test]
fn the_accepted_targets_are_listed_in_one_place() {
    for (rel, text) in library_sources() {
        if rel != "lib.rs" {
            assert!(
                !without_comments(code(&text)).contains("compile_error!"),
                "src/{rel} refuses targets of its own: the crate root lists them all, \
                 and says why (see _design::platforms)"
            );
        }
    }
}

#[test]
fn linux_only_calls_live_in_sys_linux() {
    // Left outside on purpose, each listed in _design::platforms: the
    // creator's PID namespace in the header, the publication of POSIX
    // segments in /dev/shm (renameat2), the mirror's host name.
    let left = ["segment/header.rs", "segment/publish.rs", "mirror/mod.rs"];
    let linux_only = [
        "\"/proc",
        "gettid(",
        "memfd_create(",
        "SYS_futex",
        "F_ADD_SEALS",
        "F_GET_SEALS",
        "IPC_INFO",
        "renameat2(",
    ];
    for (rel, text) in library_sources() {
        if rel.starts_with("sys/linux/") || left.contains(&rel.as_str()) {
            continue;
        }
        let code = without_comments(code(&text));
        for call in linux_only {
            assert!(
                !code.contains(call),
                "src/{rel} uses `{call}` itself: Linux's own calls go in src/sys/linux/, \
                 which a port replaces (see _design::platforms)"
            );
        }
    }
}
