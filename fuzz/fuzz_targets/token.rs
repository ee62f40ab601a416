//! Token validation: any input, never a panic; what is accepted satisfies the documented rules
//! (the prefix, a non-empty rest, at most `MAX_TOKEN_LEN` bytes, visible ASCII only); what is
//! refused says why without the value; `Debug` never shows it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veeva_vault_auth::{AccessToken, InvalidTokenKind, MAX_TOKEN_LEN, TOKEN_PREFIX};

/// Every character the refusal messages are made of: an input holding any other cannot be in a
/// message by chance, so finding it there means the message shows the value.
const MESSAGE_ALPHABET: &str =
    "invalid access token: it does not start with `veeva-vault-` is empty after the prefix illegal character at byte bytes is over the limit of 0123456789";

fn follows_the_rules(value: &str) -> bool {
    value.len() <= MAX_TOKEN_LEN
        && value.len() > TOKEN_PREFIX.len()
        && value.starts_with(TOKEN_PREFIX)
        && value.bytes().all(|b| b.is_ascii_graphic())
}

fn check(value: &str) {
    match AccessToken::new(value) {
        Ok(token) => {
            assert!(follows_the_rules(value), "accepted against the rules");
            assert_eq!(token.expose_secret(), value);
            assert_eq!(format!("{token:?}"), "AccessToken([REDACTED])");
            assert!(token.same_value(&token.clone()));
        }
        Err(err) => {
            assert!(!follows_the_rules(value), "refused a value the rules allow");
            match err.kind() {
                InvalidTokenKind::TooLong { len } => {
                    assert_eq!(len, value.len());
                    assert!(len > MAX_TOKEN_LEN);
                }
                InvalidTokenKind::IllegalCharacter { position } => {
                    let bytes = value.as_bytes();
                    assert!(!bytes[position].is_ascii_graphic());
                    assert!(bytes[..position].iter().all(u8::is_ascii_graphic));
                }
                InvalidTokenKind::Empty => {
                    assert!(value.is_empty() || value == TOKEN_PREFIX)
                }
                InvalidTokenKind::MissingPrefix => assert!(!value.starts_with(TOKEN_PREFIX)),
                _ => {}
            }
            let shown = format!("{err} {err:?}");
            if value.len() >= 6 && value.chars().any(|c| !MESSAGE_ALPHABET.contains(c)) {
                assert!(!shown.contains(value), "the refusal shows the value");
            }
        }
    }
    // Trimming: the same verdict as validating the trimmed value, and the same value.
    let trimmed = value.trim_matches(|c: char| c.is_ascii_whitespace());
    match (AccessToken::new_trimmed(value), AccessToken::new(trimmed)) {
        (Ok(a), Ok(b)) => assert!(a.same_value(&b)),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("new_trimmed disagrees with new on the trimmed value"),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
        // The same input behind the prefix, so the fuzzer reaches the checks after it.
        check(&format!("{TOKEN_PREFIX}{text}"));
    } else {
        check(&String::from_utf8_lossy(data));
    }
});
