//! [`FileToken`]: a token read from a file, reloaded when the file changes.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{BoxFuture, SourceError, SourceErrorKind, TokenSource};
use crate::token::{AccessToken, MAX_TOKEN_LEN};

const DEFAULT_POLL: Duration = Duration::from_secs(5);

/// The largest file [`FileToken`] reads unless told otherwise: 64 KiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 * 1024;

/// A token read from a file, such as a mounted Kubernetes secret.
///
/// - The file is read on Tokio's blocking pool, never on the async runtime's threads.
/// - Surrounding whitespace is trimmed (a trailing newline is normal).
/// - Files over the size cap (64 KiB by default) are refused without being read whole.
/// - The file is read again every [`poll_interval`](FileToken::with_poll_interval) (5 s by default)
///   and whenever Vault rejects the token. An atomic rename, an in-place rewrite and the Kubernetes
///   secret-volume symlink swap are all seen, since the path is opened anew each time.
/// - A file that is missing, empty, not UTF-8, not a token, or that changes while it is being read
///   is an error, and an error never replaces the last good token: the layer keeps serving it.
/// - At most one read is outstanding per source (clones share it): a read whose `open` blocks (a
///   FIFO without a writer, a hung network mount) is not started again by every later fetch; they
///   wait for it instead, each within its own fetch timeout.
///
/// Writers should replace the file atomically (write a temporary file, then rename it). A rewrite
/// in place is caught when it overlaps a read (the file's size, inode or modification time moved);
/// a half-written token that happens to look valid is replaced as soon as Vault rejects it.
///
/// ```no_run
/// use veeva_vault_auth::source::FileToken;
///
/// let source = FileToken::new("/var/run/secrets/vault/token");
/// # let _ = source;
/// ```
#[derive(Clone)]
pub struct FileToken {
    path: Arc<Path>,
    max_size: u64,
    poll: Option<Duration>,
    /// The blocking read under way, if a fetch gave up waiting for it.
    reading: Arc<tokio::sync::Mutex<Option<Reading>>>,
    /// Blocking reads started, for the tests.
    #[cfg(test)]
    started: Arc<std::sync::atomic::AtomicUsize>,
}

type Reading = tokio::task::JoinHandle<Result<AccessToken, SourceError>>;

impl std::fmt::Debug for FileToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileToken")
            .field("path", &self.path)
            .field("max_size", &self.max_size)
            .field("poll", &self.poll)
            .finish()
    }
}

impl FileToken {
    /// Reads the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Arc::from(path.into()),
            max_size: DEFAULT_MAX_FILE_SIZE,
            poll: Some(DEFAULT_POLL),
            reading: Arc::default(),
            #[cfg(test)]
            started: Arc::default(),
        }
    }

    /// Refuses files larger than `bytes`. At least [`MAX_TOKEN_LEN`] plus room for whitespace
    /// is always allowed.
    #[must_use]
    pub fn with_max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes.max(MAX_TOKEN_LEN as u64 + 2);
        self
    }

    /// How often to read the file again; `Duration::ZERO` turns polling off.
    #[must_use]
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll = (!every.is_zero()).then_some(every);
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and validates the file now, on Tokio's blocking pool.
    ///
    /// If an earlier call gave up on a read that has not finished yet, this one waits for that
    /// read instead of starting another.
    pub async fn read(&self) -> Result<AccessToken, SourceError> {
        let mut reading = self.reading.lock().await;
        let read = match reading.take() {
            // A read an earlier call gave up on, still under way (its `open` may be blocked).
            Some(read) if !read.is_finished() => reading.insert(read),
            // None under way, or one that finished after its caller left: read afresh.
            _ => {
                let path = Arc::clone(&self.path);
                let max = self.max_size;
                #[cfg(test)]
                self.started
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                reading.insert(tokio::task::spawn_blocking(move || {
                    read_token_file(&path, max, || {})
                }))
            }
        };
        // Dropped while waiting (a fetch timeout), the read stays in place for the next call.
        let joined = read.await;
        *reading = None;
        match joined {
            Ok(result) => result,
            Err(join) => Err(SourceError::retryable(format!(
                "reading {} did not finish: {join}",
                self.path.display()
            ))),
        }
    }
}

impl TokenSource for FileToken {
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, SourceError>> {
        Box::pin(self.read())
    }

    fn poll_interval(&self) -> Option<Duration> {
        self.poll
    }
}

/// What identifies one version of a file: if any of it moves during a read, the read is void.
#[derive(PartialEq, Eq, Debug)]
struct Fingerprint {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

impl Fingerprint {
    fn of(meta: &fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: (meta.dev(), meta.ino()),
        }
    }
}

/// Reads one token file. `between` runs after the content is read and before the file is
/// checked again (tests use it to change the file mid-read).
fn read_token_file(
    path: &Path,
    max: u64,
    between: impl FnOnce(),
) -> Result<AccessToken, SourceError> {
    let shown = path.display();
    let io_error = |err: io::Error| {
        let kind = if err.kind() == io::ErrorKind::NotFound {
            SourceErrorKind::NotFound
        } else {
            SourceErrorKind::Io
        };
        SourceError::new(kind, true, format!("token file {shown}: {err}")).with_cause(err)
    };
    let too_large = || {
        SourceError::new(
            SourceErrorKind::TooLarge,
            true,
            format!("token file {shown} is larger than {max} bytes"),
        )
    };

    let mut file = fs::File::open(path).map_err(io_error)?;
    let opened = file.metadata().map_err(io_error)?;
    if !opened.is_file() {
        return Err(SourceError::new(
            SourceErrorKind::Io,
            true,
            format!("token file {shown} is not a regular file"),
        ));
    }
    if opened.len() > max {
        return Err(too_large());
    }
    let mut content = Zeroizing::new(Vec::with_capacity(opened.len() as usize));
    (&mut file)
        .take(max + 1)
        .read_to_end(&mut content)
        .map_err(io_error)?;
    if content.len() as u64 > max {
        return Err(too_large());
    }
    between();
    let now = fs::metadata(path).map_err(io_error)?;
    if Fingerprint::of(&now) != Fingerprint::of(&opened) || content.len() as u64 != opened.len() {
        return Err(SourceError::new(
            SourceErrorKind::ChangedWhileReading,
            true,
            format!("token file {shown} changed while it was being read"),
        ));
    }
    let text = std::str::from_utf8(&content).map_err(|_| {
        SourceError::new(
            SourceErrorKind::NotUnicode,
            true,
            format!("token file {shown} is not valid UTF-8"),
        )
    })?;
    if text.trim().is_empty() {
        return Err(SourceError::new(
            SourceErrorKind::Empty,
            true,
            format!("token file {shown} is empty"),
        ));
    }
    AccessToken::new_trimmed(text).map_err(|err| {
        SourceError::new(
            SourceErrorKind::InvalidToken,
            true,
            format!("token file {shown}: {err}"),
        )
        .with_cause(err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vva-file-unit-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A FIFO with no writer (whose `open` blocks) in a fresh directory, a source reading it, and
    /// a runtime to drive the source in steps.
    #[cfg(target_os = "linux")]
    fn fifo_source(name: &str) -> (PathBuf, FileToken, tokio::runtime::Runtime) {
        let path = temp_dir(name).join("token");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let source = FileToken::new(&path);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (path, source, runtime)
    }

    #[test]
    fn a_file_replaced_during_the_read_is_refused() {
        let dir = temp_dir("replaced");
        let path = dir.join("token");
        fs::write(&path, "veeva-vault-first\n").unwrap();
        let err = read_token_file(&path, DEFAULT_MAX_FILE_SIZE, || {
            let next = dir.join("next");
            fs::write(&next, "veeva-vault-second\n").unwrap();
            fs::rename(&next, &path).unwrap();
        })
        .unwrap_err();
        assert_eq!(err.kind(), SourceErrorKind::ChangedWhileReading);
        assert!(!err.to_string().contains("veeva-vault-"));
        let token = read_token_file(&path, DEFAULT_MAX_FILE_SIZE, || {}).unwrap();
        assert_eq!(token.expose_secret(), "veeva-vault-second");
    }

    /// Bug 7: a token file whose `open` blocks (here a FIFO without a writer) must not pile up
    /// one stuck blocking thread per fetch.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_read_blocked_in_open_is_not_started_again_by_later_fetches() {
        use std::os::unix::fs::OpenOptionsExt;
        use std::sync::atomic::{AtomicBool, Ordering};

        let (path, source, runtime) = fifo_source("fifo");
        let (started, last) = runtime.block_on(async {
            // Five fetches, each given up by its caller (a fetch timeout) while the read blocks.
            for _ in 0..5 {
                let mut fetch = tokio_test::task::spawn(source.fetch());
                assert!(fetch.poll().is_pending());
            }
            let started = source.started.load(Ordering::SeqCst);
            // A sixth waits for the same read, which ends once a writer comes.
            let mut fetch = tokio_test::task::spawn(source.fetch());
            assert!(fetch.poll().is_pending());
            (started, fetch)
        });
        // Writers that open and close at once, until no reader is left blocked in `open`: the
        // blocked reads end (with an error: a FIFO is not a regular file), however many there are.
        let stop = Arc::new(AtomicBool::new(false));
        let unblock = std::thread::spawn({
            let (stop, path) = (Arc::clone(&stop), path.clone());
            move || {
                while !stop.load(Ordering::SeqCst) {
                    let _ = fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(0o4000) // O_NONBLOCK: fails at once while no reader waits
                        .open(&path);
                    std::thread::yield_now();
                }
            }
        });
        let result = runtime.block_on(last);
        drop(runtime);
        stop.store(true, Ordering::SeqCst);
        unblock.join().unwrap();
        assert_eq!(
            started, 1,
            "one blocking read outstanding, not one per fetch"
        );
        assert_eq!(source.started.load(Ordering::SeqCst), 1);
        let err = result.unwrap_err();
        assert_eq!(err.kind(), SourceErrorKind::Io, "{err}");
    }

    /// A read that its caller gave up on, and that has finished since, is not handed to the
    /// next caller as if it were still under way: that one reads the file afresh.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_read_given_up_on_that_finished_since_is_not_reused() {
        use std::sync::atomic::Ordering;

        let (path, source, runtime) = fifo_source("finished");
        runtime.block_on(async {
            let mut fetch = tokio_test::task::spawn(source.fetch());
            assert!(fetch.poll().is_pending(), "the read blocks in `open`");
        });
        // A writer that comes and goes lets the read end (with an error: no regular file).
        drop(fs::OpenOptions::new().write(true).open(&path).unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !source
            .reading
            .try_lock()
            .is_ok_and(|read| read.as_ref().is_some_and(|read| read.is_finished()))
        {
            assert!(std::time::Instant::now() < deadline, "the read never ended");
            std::thread::yield_now();
        }
        fs::remove_file(&path).unwrap();
        fs::write(&path, "veeva-vault-fresh\n").unwrap();
        let token = runtime.block_on(source.read()).expect("read afresh");
        assert_eq!(token.expose_secret(), "veeva-vault-fresh");
        assert_eq!(source.started.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_file_appended_to_during_the_read_is_refused() {
        let dir = temp_dir("appended");
        let path = dir.join("token");
        fs::write(&path, "veeva-vault-half").unwrap();
        let err = read_token_file(&path, DEFAULT_MAX_FILE_SIZE, || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(b"-written\n").unwrap();
        })
        .unwrap_err();
        assert_eq!(err.kind(), SourceErrorKind::ChangedWhileReading);
    }
}
