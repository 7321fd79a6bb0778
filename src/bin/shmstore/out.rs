//! Output helpers: tables (aligned on a terminal, tab-separated in a pipe),
//! JSON written by hand, human sizes, times and user names.

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whether standard output is a terminal: tables are aligned and JSON is
/// indented there; in a pipe, columns are tab-separated and JSON is one line.
pub fn stdout_is_terminal() -> bool {
    io::stdout().is_terminal()
}

/// How a table column is aligned on a terminal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table with a heading row.
pub struct Table {
    heads: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub fn new(heads: &[(&'static str, Align)]) -> Table {
        Table {
            heads: heads.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row: one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.heads.len());
        self.rows.push(cells);
    }

    /// The table as text: aligned columns two spaces apart when `aligned`,
    /// else tab-separated cells (tabs and newlines inside cells become spaces).
    pub fn render(&self, aligned: bool) -> String {
        let mut out = String::new();
        let heads: Vec<String> = self.heads.iter().map(|(h, _)| (*h).to_owned()).collect();
        if !aligned {
            for row in std::iter::once(&heads).chain(&self.rows) {
                let cells: Vec<String> = row.iter().map(|c| c.replace(['\t', '\n'], " ")).collect();
                out += &cells.join("\t");
                out.push('\n');
            }
            return out;
        }
        let mut widths: Vec<usize> = heads.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let last = self.heads.len() - 1;
        for row in std::iter::once(&heads).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                if i > 0 {
                    line += "  ";
                }
                match self.heads[i].1 {
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line += cell;
                    }
                    Align::Left => {
                        line += cell;
                        if i != last {
                            line.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                }
            }
            out += line.trim_end();
            out.push('\n');
        }
        out
    }
}

/// Writes `text` to standard output. A closed pipe (`shmstore ls | head`)
/// ends the program quietly, as it does for other command-line tools.
pub fn print(text: &str) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("shmstore: writing to standard output failed: {e}: check where the output goes");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------
// JSON

/// A JSON value, written by hand (the value decoders give their own JSON
/// text, embedded as [`Json::Raw`]).
pub enum Json {
    /// `null`: unknown or not applicable.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A string.
    Str(String),
    /// JSON text made elsewhere, written as it is.
    Raw(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object; keys keep their order.
    Obj(Vec<(&'static str, Json)>),
}

impl Json {
    /// A string.
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    /// An integer.
    pub fn int(n: impl Into<i128>) -> Json {
        Json::Int(n.into())
    }

    /// `Some(x)` as `f(x)`, `None` as `null`.
    pub fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Json) -> Json {
        v.map_or(Json::Null, f)
    }

    /// A time as an RFC 3339 string in UTC (`2026-11-27T05:41:02.123Z`).
    pub fn time(t: SystemTime) -> Json {
        Json::Str(rfc3339(t))
    }

    /// The JSON text: indented when `pretty`, else on one line.
    pub fn render(&self, pretty: bool) -> String {
        let mut out = String::new();
        self.write(&mut out, pretty, 0);
        out
    }

    fn write(&self, out: &mut String, pretty: bool, depth: usize) {
        let newline = |out: &mut String, depth: usize| {
            if pretty {
                out.push('\n');
                out.extend(std::iter::repeat_n(' ', depth * 2));
            }
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Json::Str(s) => quote(out, s),
            Json::Raw(s) => out.push_str(s),
            Json::Arr(items) => {
                if items.is_empty() {
                    out.push_str("[]");
                    return;
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, depth + 1);
                    item.write(out, pretty, depth + 1);
                }
                newline(out, depth);
                out.push(']');
            }
            Json::Obj(fields) => {
                if fields.is_empty() {
                    out.push_str("{}");
                    return;
                }
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, depth + 1);
                    quote(out, key);
                    out.push(':');
                    if pretty {
                        out.push(' ');
                    }
                    value.write(out, pretty, depth + 1);
                }
                newline(out, depth);
                out.push('}');
            }
        }
    }
}

/// `s` as a JSON string literal (escaped as the library escapes values).
fn quote(out: &mut String, s: &str) {
    out.push_str(&shmstore::Value::Str(s.to_owned()).to_json());
}

// ---------------------------------------------------------------------------
// Sizes, times, users

/// A size as `ls -h` writes it: `512`, `4.1K`, `12K`, `1.0M`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1023.95 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v < 9.95 {
        format!("{v:.1}{}", UNITS[unit])
    } else {
        format!("{:.0}{}", v.round(), UNITS[unit])
    }
}

/// Seconds and nanoseconds since the epoch (negative before it).
fn unix(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
            if n == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - n)
            }
        }
    }
}

/// `t` in UTC, RFC 3339 with milliseconds: `2026-11-27T05:41:02.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let (s, n) = unix(t);
    let (y, mo, d) = shmstore::__private::civil(s.div_euclid(86_400));
    let sod = s.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        n / 1_000_000
    )
}

/// `t` in local time: `2026-11-27 05:41:02`.
pub fn local_time(t: SystemTime) -> String {
    let (s, _) = unix(t);
    let offset = utc_offset(s);
    let s = s + offset;
    let (y, mo, d) = shmstore::__private::civil(s.div_euclid(86_400));
    let sod = s.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// The local time zone's offset from UTC at `unix_secs`, in seconds.
#[allow(unsafe_code)] // localtime_r: the command's one call into libc
fn utc_offset(unix_secs: i64) -> i64 {
    let t = unix_secs as libc::time_t;
    // SAFETY: all-zero bytes are a valid `libc::tm` (integers and a null
    // zone pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the
    // thread-safe variant and writes only into `tm`.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        tm.tm_gmtoff
    } else {
        0
    }
}

/// How long ago `t` was: `now`, `42s`, `12m`, `5h`, `3d` (with ` ago`).
pub fn age(t: SystemTime) -> String {
    let d = match SystemTime::now().duration_since(t) {
        Ok(d) => d,
        Err(e) if e.duration() < Duration::from_secs(1) => Duration::ZERO,
        // A clock set back, or another host's clock.
        Err(e) => return format!("in {}", short_duration(e.duration())),
    };
    if d < Duration::from_secs(1) {
        "now".to_owned()
    } else {
        format!("{} ago", short_duration(d))
    }
}

/// `42s`, `12m`, `5h`, `3d`.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `2026-11-27 05:41:02 (3s ago)`.
pub fn time_and_age(t: SystemTime) -> String {
    format!("{} ({})", local_time(t), age(t))
}

/// The name of user `uid`, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// `alice (uid 1000)`, or `uid 1000` for a user without a name.
pub fn user(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// Our effective user id.
pub fn our_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0");
        assert_eq!(human_size(1023), "1023");
        assert_eq!(human_size(1024), "1.0K");
        assert_eq!(human_size(4224), "4.1K");
        assert_eq!(human_size(12 * 1024), "12K");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0M");
        assert_eq!(human_size(5 << 30), "5.0G");
    }

    #[test]
    fn times() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_758_062_123);
        assert_eq!(rfc3339(t), "2026-11-27T05:41:02.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_millis(500)),
            "1969-12-31T23:59:59.500Z"
        );
    }

    #[test]
    fn json() {
        let j = Json::Obj(vec![
            ("a", Json::int(1)),
            ("b", Json::str("x\"\n\u{1}")),
            ("c", Json::Arr(vec![Json::Null, Json::Bool(true)])),
            ("d", Json::Obj(vec![])),
        ]);
        assert_eq!(
            j.render(false),
            r#"{"a":1,"b":"x\"\n\u0001","c":[null,true],"d":{}}"#
        );
        assert!(j.render(true).contains("\n  \"a\": 1,"));
    }

    #[test]
    fn tables() {
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("N", Align::Right),
            ("X", Align::Left),
        ]);
        t.row(vec!["a".into(), "100".into(), "x y".into()]);
        t.row(vec!["long-name".into(), "2".into(), "".into()]);
        assert_eq!(
            t.render(true),
            "NAME         N  X\na          100  x y\nlong-name    2\n"
        );
        assert_eq!(t.render(false), "NAME\tN\tX\na\t100\tx y\nlong-name\t2\t\n");
    }
}
