//! Writing each new token to a file for a fleet: atomically, so a reader sees the old token or
//! the new one, never a mix.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

use super::error::{IssuerError, IssuerErrorKind};
use crate::AccessToken;

/// Writes `token` and a newline to `path`: a temporary file in the same directory (mode 0600 on
/// Unix, created new), flushed to disk, renamed over `path`, then the directory flushed. Runs on
/// Tokio's blocking pool.
pub(super) async fn write_token(path: &Path, token: &AccessToken) -> Result<(), IssuerError> {
    let path = path.to_owned();
    let mut text = Zeroizing::new(String::with_capacity(token.expose_secret().len() + 1));
    text.push_str(token.expose_secret());
    text.push('\n');
    let written = tokio::task::spawn_blocking(move || write_atomically(&path, text.as_bytes()))
        .await
        .map_err(|_| io::Error::other("the write was cancelled"))
        .and_then(|result| result);
    written.map_err(|err| {
        IssuerError::new(
            IssuerErrorKind::Transport,
            format!("could not write the fleet's token file: {err}"),
        )
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the fleet file's path has no file name"))?;
    let temp = dir.join(format!(
        ".{}.{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        // Make the rename itself durable (a directory can be opened and synced on Unix).
        #[cfg(unix)]
        fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
