//! Tests that kill mutants of `src/source/` that the rest of the suite let live
//! (scripts/mutants.sh; mutants-report.md names each): the poll interval a wrapped source
//! reports, the environment and file sources' intervals, the token file's size caps, and what a
//! `FileToken` and a `RotatingToken` show in `Debug`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::temp_dir;

use veeva_vault_auth::source::{
    EnvToken, FileToken, RotatingToken, SourceError, SourceErrorKind, StaticToken, TokenSource,
};
use veeva_vault_auth::AccessToken;

/// A token source behind an `Arc` or a `Box` polls exactly as the source inside does.
#[test]
fn a_wrapped_source_reports_the_poll_interval_of_the_source_inside() {
    let every = Duration::from_secs(30);
    let polled = || EnvToken::from_var("VVA_MUTANTS_SOURCES_UNSET").with_poll_interval(every);
    let fixed = || StaticToken::new("veeva-vault-mutants-sources").unwrap();

    assert_eq!(Arc::new(polled()).poll_interval(), Some(every));
    assert_eq!(Arc::new(fixed()).poll_interval(), None);
    let boxed: Box<dyn TokenSource> = Box::new(polled());
    assert_eq!(boxed.poll_interval(), Some(every));
    let boxed: Box<dyn TokenSource> = Box::new(fixed());
    assert_eq!(boxed.poll_interval(), None);
}

/// The environment source reads its variable again every 5 s unless told otherwise, and not at
/// all when told `Duration::ZERO`.
#[test]
fn the_environment_source_polls_every_five_seconds_by_default() {
    let var = "VVA_MUTANTS_SOURCES_UNSET";
    assert_eq!(
        EnvToken::from_var(var).poll_interval(),
        Some(Duration::from_secs(5))
    );
    let every = Duration::from_millis(1500);
    assert_eq!(
        EnvToken::from_var(var)
            .with_poll_interval(every)
            .poll_interval(),
        Some(every)
    );
    assert_eq!(
        EnvToken::from_var(var)
            .with_poll_interval(Duration::ZERO)
            .poll_interval(),
        None
    );
}

/// A token file of exactly the default cap (64 KiB: a token and a long tail of whitespace) is
/// read; one byte more is refused as too large.
#[tokio::test]
async fn a_token_file_of_up_to_64_kib_is_read_by_default() {
    let dir = temp_dir("default-cap");
    let path = dir.join("token");
    let token = "veeva-vault-mutants-sources-file";

    let mut text = token.to_owned();
    text.push_str(&"\n".repeat(64 * 1024 - token.len()));
    std::fs::write(&path, &text).unwrap();
    let read = FileToken::new(&path).fetch().await.expect("64 KiB is read");
    assert_eq!(read.expose_secret(), token);

    text.push('\n');
    std::fs::write(&path, &text).unwrap();
    let err = FileToken::new(&path).fetch().await.unwrap_err();
    assert_eq!(err.kind(), SourceErrorKind::TooLarge, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `FileToken` shows its path, size cap and poll interval.
#[test]
fn a_token_file_shows_its_path_cap_and_interval() {
    let source = FileToken::new("/run/secrets/vault-token")
        .with_max_size(4096)
        .with_poll_interval(Duration::from_secs(10));
    assert_eq!(
        format!("{source:?}"),
        r#"FileToken { path: "/run/secrets/vault-token", max_size: 4096, poll: Some(10s) }"#
    );
}

/// A size cap below what a token of the longest kind takes, with a line end, is raised to it: a
/// file of a 1024-byte token and `\r\n` is always read.
#[tokio::test]
async fn a_token_file_cap_always_leaves_room_for_the_longest_token() {
    let dir = temp_dir("raised-cap");
    let path = dir.join("token");
    let prefix = "veeva-vault-";
    let token = format!("{prefix}{}", "t".repeat(1024 - prefix.len()));
    std::fs::write(&path, format!("{token}\r\n")).unwrap();
    let read = FileToken::new(&path)
        .with_max_size(1)
        .fetch()
        .await
        .expect("the longest token with a line end is read");
    assert_eq!(read.expose_secret(), token);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The file source reads its file again as often as told, and not at all when told
/// `Duration::ZERO`.
#[test]
fn the_file_source_polls_as_told_and_zero_turns_it_off() {
    let every = Duration::from_secs(12);
    let file = || FileToken::new("/run/secrets/vault-token");
    assert_eq!(file().poll_interval(), Some(Duration::from_secs(5)));
    assert_eq!(
        file().with_poll_interval(every).poll_interval(),
        Some(every)
    );
    assert_eq!(
        file().with_poll_interval(Duration::ZERO).poll_interval(),
        None
    );
}

/// A `RotatingToken` shows its name only: the function it wraps may hold credentials.
#[test]
fn a_rotating_token_shows_only_its_name() {
    let source = RotatingToken::new(|| async {
        Ok::<_, SourceError>(AccessToken::new("veeva-vault-rotatingSecret")?)
    });
    assert_eq!(format!("{source:?}"), "RotatingToken { .. }");
}
