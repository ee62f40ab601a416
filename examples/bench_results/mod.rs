//! The bench results that `bench_summary` and `bench_chart` read: tab-separated files in
//! `target/bench-results/` (under `CARGO_TARGET_DIR` when it is set), one per bench.
//!
//! - `hot_path.tsv` (`scripts/hot_path_instructions.sh`) and `end_to_end.tsv`
//!   (`scripts/end_to_end_instructions.sh`): `stack instructions baseline_stack baseline_instructions`;
//! - `many_cores.tsv` (`cargo bench --bench many_cores`): `threads pattern set_rps vault_rps ratio`;
//! - `recovery.tsv` (`cargo bench --bench recovery`): `body valid_ms revoked_ms ratio`.
//!
//! Blank lines, lines starting with `#` and a first line naming the columns are skipped; any
//! other line that does not parse makes the whole file unreadable (with the line's number), so
//! that a figure is never taken from half a file.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

/// Instructions per request of one stack, and of the stack it is compared with.
pub struct Instructions {
    /// The stack's name in its bench.
    pub stack: String,
    /// Instructions per request.
    pub instructions: f64,
    /// The stack it is compared with (itself for a baseline).
    pub baseline_stack: String,
    /// The baseline's instructions per request, if it was measured in the same run.
    pub baseline: Option<f64>,
}

impl Instructions {
    /// `instructions / baseline`.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline.map(|base| self.instructions / base)
    }

    /// `instructions - baseline`.
    pub fn extra(&self) -> Option<f64> {
        self.baseline.map(|base| self.instructions - base)
    }
}

/// One configuration of the many-cores bench.
pub struct ManyCores {
    /// Worker threads of the runtime.
    pub threads: u32,
    /// How the stack is used (`oneshot` per request, or one clone per task).
    pub pattern: String,
    /// Requests per second through `SetRequestHeader` with a run-time value.
    pub set_rps: f64,
    /// Requests per second through `VaultAuth`.
    pub vault_rps: f64,
    /// `vault_rps / set_rps` as the bench computed it.
    pub ratio: f64,
}

/// One body kind of the revocation wave.
pub struct Recovery {
    /// The kind of body the requests carry.
    pub body: String,
    /// Milliseconds for the wave with a valid token.
    pub valid_ms: f64,
    /// Milliseconds for the wave right after the token was revoked.
    pub revoked_ms: f64,
    /// `revoked_ms / valid_ms` as the bench computed it.
    pub ratio: f64,
}

/// A file's rows, or why there are none.
pub enum Table<T> {
    /// The rows, and when the file was written.
    Read(Vec<T>, Option<SystemTime>),
    /// No such file: the bench has not been run.
    Missing,
    /// The file is there but could not be read or parsed.
    Unreadable(String),
}

/// All the results found in one directory.
pub struct Results {
    /// The directory read.
    pub dir: PathBuf,
    /// `hot_path.tsv`.
    pub hot_path: Table<Instructions>,
    /// `end_to_end.tsv`.
    pub end_to_end: Table<Instructions>,
    /// `many_cores.tsv`.
    pub many_cores: Table<ManyCores>,
    /// `recovery.tsv`.
    pub recovery: Table<Recovery>,
}

impl Results {
    /// Reads the directory named by the first argument, or `target/bench-results`.
    pub fn from_args() -> Results {
        let dir = std::env::args_os()
            .nth(1)
            .map(PathBuf::from)
            .unwrap_or_else(default_dir);
        Results::load(dir)
    }

    /// Reads every results file in `dir`.
    pub fn load(dir: PathBuf) -> Results {
        Results {
            hot_path: read(&dir, "hot_path.tsv", "stack", instructions),
            end_to_end: read(&dir, "end_to_end.tsv", "stack", instructions),
            many_cores: read(&dir, "many_cores.tsv", "threads", many_cores),
            recovery: read(&dir, "recovery.tsv", "body", recovery),
            dir,
        }
    }
}

/// Looks a stack up by name.
pub fn find<'a>(rows: &'a [Instructions], stack: &str) -> Option<&'a Instructions> {
    rows.iter().find(|row| row.stack == stack)
}

/// `target/bench-results`, under `CARGO_TARGET_DIR` when it is set.
pub fn default_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench-results")
}

/// Reads `dir/name`, each line split at tabs and given to `parse`; a first line whose first
/// field is `header` names the columns and is skipped.
fn read<T>(dir: &Path, name: &str, header: &str, parse: fn(&[&str]) -> Option<T>) -> Table<T> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Table::Missing,
        Err(err) => return Table::Unreadable(format!("{}: {err}", path.display())),
    };
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if index == 0 && fields[0] == header {
            continue;
        }
        match parse(&fields) {
            Some(row) => rows.push(row),
            None => {
                return Table::Unreadable(format!(
                    "{} line {}: not the expected columns",
                    path.display(),
                    index + 1
                ))
            }
        }
    }
    let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    Table::Read(rows, written)
}

/// A number of type `T`, or `None`.
fn number<T: FromStr>(field: &str) -> Option<T> {
    field.parse().ok()
}

/// A finite `f64`, or `None`.
fn finite(field: &str) -> Option<f64> {
    number::<f64>(field).filter(|v| v.is_finite())
}

fn instructions(fields: &[&str]) -> Option<Instructions> {
    let [stack, instructions, baseline_stack, baseline] = fields else {
        return None;
    };
    Some(Instructions {
        stack: (*stack).to_owned(),
        instructions: finite(instructions).filter(|v| *v > 0.0)?,
        baseline_stack: (*baseline_stack).to_owned(),
        // Empty when the baseline was not run with it; a baseline's own row may name no other.
        baseline: match *baseline {
            "" | "—" | "-" => None,
            value => Some(finite(value).filter(|v| *v > 0.0)?),
        },
    })
}

fn many_cores(fields: &[&str]) -> Option<ManyCores> {
    let [threads, pattern, set_rps, vault_rps, ratio] = fields else {
        return None;
    };
    Some(ManyCores {
        threads: number(threads)?,
        pattern: (*pattern).to_owned(),
        set_rps: finite(set_rps)?,
        vault_rps: finite(vault_rps)?,
        ratio: finite(ratio)?,
    })
}

fn recovery(fields: &[&str]) -> Option<Recovery> {
    let [body, valid_ms, revoked_ms, ratio] = fields else {
        return None;
    };
    Some(Recovery {
        body: (*body).to_owned(),
        valid_ms: finite(valid_ms)?,
        revoked_ms: finite(revoked_ms)?,
        ratio: finite(ratio)?,
    })
}
