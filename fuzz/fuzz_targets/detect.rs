//! Rejection detection over arbitrary answers: any status, headers (repeated, non-UTF-8 values)
//! and body bytes, never a panic; a 401 is always a rejection.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use veeva_vault_auth::detect::{
    has_invalid_session_error, FailureRule, UnauthorizedOnly, VaultRule, Verdict,
};

#[derive(Arbitrary, Debug)]
struct Answer {
    status: u16,
    headers: Vec<(Name, Vec<u8>)>,
    body: Vec<u8>,
}

/// Mostly the names detection reads, sometimes any.
#[derive(Arbitrary, Debug)]
enum Name {
    ContentType,
    VaultStatus,
    ContentEncoding,
    Other(Vec<u8>),
}

fuzz_target!(|answer: Answer| {
    let Ok(status) = StatusCode::from_u16(answer.status) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers {
        let name = match name {
            Name::ContentType => HeaderName::from_static("content-type"),
            Name::VaultStatus => HeaderName::from_static("x-vaultapi-status"),
            Name::ContentEncoding => HeaderName::from_static("content-encoding"),
            Name::Other(bytes) => match HeaderName::from_bytes(&bytes) {
                Ok(name) => name,
                Err(_) => continue,
            },
        };
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.append(name, value);
        }
    }
    let verdict = VaultRule.check_head(status, &headers);
    if verdict == Verdict::InspectBody {
        let _ = VaultRule.check_body(status, &headers, &answer.body);
    }
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(verdict, Verdict::AuthFailure);
        assert_eq!(
            UnauthorizedOnly.check_head(status, &headers),
            Verdict::AuthFailure
        );
    }
    let _ = UnauthorizedOnly.check_body(status, &headers, &answer.body);
    let _ = has_invalid_session_error(&answer.body);
});
