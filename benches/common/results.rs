//! Where the benches write their results for scripts to read: `target/bench-results/<name>`
//! (under `CARGO_TARGET_DIR` when it is set), as tab-separated lines.

use std::path::PathBuf;

/// The directory the results go to.
pub fn dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("bench-results")
}

/// Writes `rows` (each a list of fields) to `dir()/name`, one tab-separated line per row, and
/// says where on standard output; a failure to write is reported, not fatal.
pub fn write_tsv(name: &str, rows: &[Vec<String>]) {
    let path = dir().join(name);
    let text: String = rows.iter().map(|row| row.join("\t") + "\n").collect();
    let written = std::fs::create_dir_all(dir()).and_then(|()| std::fs::write(&path, text));
    match written {
        Ok(()) => println!("Written: {}", path.display()),
        Err(err) => eprintln!("could not write {}: {err}", path.display()),
    }
}

/// A positive number from the environment variable `name`, or `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("{name}={value:?} is not a positive number; using {default}");
                default
            }
        },
        Err(_) => default,
    }
}
