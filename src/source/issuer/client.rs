//! The issuer's own HTTP client: hyper-util over plain http to loopback, or https with the
//! `rustls` feature; bounded answers, a timeout per call, and Vault's clock read from `Date`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, DATE};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use zeroize::Zeroizing;

use super::config::WallClock;
use super::dates::parse_http_date;
use super::error::{IssuerError, IssuerErrorKind};
use super::transport::Transport;
#[cfg(feature = "rustls")]
use crate::trace::event;

/// The largest answer the issuer reads.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A credential for one call: a session id is sent raw, a token as a bearer.
pub(super) enum Auth<'a> {
    None,
    Bearer(&'a str),
    Session(&'a str),
}

/// What Vault answered: its JSON (any HTTP status), and its `responseStatus`.
///
/// The JSON may hold a session id (a login's answer) or a token (a create's): every string in it
/// is wiped when the answer is dropped. No `Debug`, for the same reason.
pub(super) struct Answer {
    pub(super) json: Value,
}

impl Drop for Answer {
    fn drop(&mut self) {
        wipe_strings(&mut self.json);
    }
}

/// Zeroes every string of `json`, keys included. Parsed JSON nests at most 128 deep
/// (serde_json's limit), so the recursion is bounded.
pub(super) fn wipe_strings(json: &mut Value) {
    use zeroize::Zeroize;
    match json {
        Value::String(text) => text.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe_strings),
        Value::Object(map) => {
            let fields = std::mem::take(map);
            for (mut key, mut value) in fields {
                key.zeroize();
                wipe_strings(&mut value);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

impl Answer {
    pub(super) fn is_success(&self) -> bool {
        self.json["responseStatus"] == "SUCCESS"
    }

    /// `errors[0].type` and `errors[0].message`, or empty strings.
    pub(super) fn error(&self) -> (&str, &str) {
        let first = &self.json["errors"][0];
        (
            first["type"].as_str().unwrap_or(""),
            first["message"].as_str().unwrap_or(""),
        )
    }
}

pub(super) struct Http {
    transport: Transport,
    timeout: Duration,
    client_id: Option<HeaderValue>,
    clock: WallClock,
    /// Vault's clock minus the local wall clock, in seconds, from the last `Date` seen.
    skew: AtomicI64,
    skew_known: AtomicBool,
    /// The call made only to see Vault's `Date` was made (answered or not).
    date_probed: AtomicBool,
}

impl Http {
    pub(super) fn new(
        transport: Transport,
        timeout: Duration,
        client_id: Option<HeaderValue>,
        clock: WallClock,
    ) -> Http {
        Http {
            transport,
            timeout,
            client_id,
            clock,
            skew: AtomicI64::new(0),
            skew_known: AtomicBool::new(false),
            date_probed: AtomicBool::new(false),
        }
    }

    /// The time on Vault's clock: the local wall clock corrected by the last `Date` seen.
    pub(super) fn vault_now(&self) -> SystemTime {
        shift((self.clock)(), self.skew.load(Ordering::Relaxed))
    }

    /// The skew between Vault's clock and the local one, in seconds, if an answer showed it.
    pub(super) fn skew(&self) -> Option<i64> {
        self.skew_known
            .load(Ordering::Relaxed)
            .then(|| self.skew.load(Ordering::Relaxed))
    }

    /// `true` the first time only: whether the caller is to make the call that only shows
    /// Vault's `Date`.
    pub(super) fn first_date_probe(&self) -> bool {
        !self.date_probed.swap(true, Ordering::Relaxed)
    }

    /// The bound on any one call.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One call. `body` is `(content type, bytes)`; the bytes are wiped when sent if they were
    /// built with [`crate::token::wiped_copy`].
    pub(super) async fn call(
        &self,
        method: Method,
        url: &str,
        auth: Auth<'_>,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<Answer, IssuerError> {
        let uri: Uri = url.parse().map_err(|_| {
            IssuerError::new(
                IssuerErrorKind::Transport,
                "the issuer built an invalid URL",
            )
        })?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(ACCEPT, "application/json");
        if let Some(client_id) = &self.client_id {
            request = request.header("x-vaultapi-clientid", client_id.clone());
        }
        let credential = match auth {
            Auth::None => None,
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
            Auth::Session(session) => Some(session.to_owned()),
        };
        if let Some(credential) = credential {
            let credential = zeroize::Zeroizing::new(credential);
            let mut value =
                HeaderValue::from_maybe_shared(crate::token::wiped_copy(credential.as_bytes()))
                    .map_err(|_| {
                        IssuerError::new(
                            IssuerErrorKind::BadCredential,
                            "the credential is not a valid header value",
                        )
                        .retryable(false)
                    })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let (content_type, bytes) = body.unwrap_or(("text/plain", Bytes::new()));
        if !bytes.is_empty() {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(bytes)).map_err(|_| {
            IssuerError::new(
                IssuerErrorKind::Transport,
                "the issuer built an invalid request",
            )
        })?;
        let exchange = async {
            let response = self
                .transport
                .send(request)
                .await
                .map_err(|err| unreachable(&*err))?;
            self.note_date(response.headers().get(DATE));
            let status = response.status();
            let body = read_bounded(response.into_body()).await?;
            // Strings without escapes (as session ids and tokens are) are copied out of `body`
            // once, into the JSON, which the answer wipes.
            let json = serde_json::from_slice::<Value>(&body).map_err(|_| {
                IssuerError::new(
                    IssuerErrorKind::Transport,
                    format!("Vault answered HTTP {status} without JSON"),
                )
            })?;
            Ok(Answer { json })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(IssuerError::new(
                    IssuerErrorKind::Transport,
                    format!("Vault did not answer within {:?}", self.timeout),
                ))
            })
    }

    fn note_date(&self, date: Option<&HeaderValue>) {
        let Some(vault) = date.and_then(|d| d.to_str().ok()).and_then(parse_http_date) else {
            return;
        };
        let local = (self.clock)();
        let skew = match vault.duration_since(local) {
            Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
            Err(behind) => -i64::try_from(behind.duration().as_secs()).unwrap_or(i64::MAX),
        };
        self.skew.store(skew, Ordering::Relaxed);
        self.skew_known.store(true, Ordering::Relaxed);
    }
}

/// Why a call got no answer: a failed TLS handshake (typed, not retryable), or any other
/// failure to reach Vault.
fn unreachable(err: &(dyn std::error::Error + Send + Sync + 'static)) -> IssuerError {
    #[cfg(feature = "rustls")]
    if let Some(why) = super::tls::handshake_failure(err) {
        event!(warn, why = %why, "the TLS handshake with vault failed");
        return IssuerError::new(
            IssuerErrorKind::Tls,
            format!("the TLS handshake with Vault failed: {why}"),
        );
    }
    IssuerError::new(
        IssuerErrorKind::Transport,
        format!("could not reach Vault: {err}"),
    )
}

/// An answer's body, at most [`MAX_ANSWER_BYTES`] of it, in memory that is wiped when dropped
/// (a login's answer holds a session id, a create's a token). The buffer never grows in place:
/// a bigger one is made, the bytes copied, and the old one wiped, so no copy is left behind.
async fn read_bounded(
    mut body: super::transport::AnyBody,
) -> Result<Zeroizing<Vec<u8>>, IssuerError> {
    let unreadable = || {
        IssuerError::new(
            IssuerErrorKind::Transport,
            "Vault's answer could not be read (cut off, or over 1 MiB)",
        )
    };
    let expected = usize::try_from(http_body::Body::size_hint(&body).lower()).unwrap_or(0);
    let mut bytes = Zeroizing::new(Vec::with_capacity(expected.min(MAX_ANSWER_BYTES)));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| unreadable())?;
        if let Ok(data) = frame.into_data() {
            let needed = bytes.len() + data.len();
            if needed > MAX_ANSWER_BYTES {
                return Err(unreadable());
            }
            if needed > bytes.capacity() {
                let room = needed.max(2 * bytes.capacity()).min(MAX_ANSWER_BYTES);
                let mut bigger = Zeroizing::new(Vec::with_capacity(room));
                bigger.extend_from_slice(&bytes);
                // The old buffer is wiped as it drops here.
                bytes = bigger;
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

/// `time` moved by `seconds` (either way).
pub(super) fn shift(time: SystemTime, seconds: i64) -> SystemTime {
    let by = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        time.checked_add(by).unwrap_or(time)
    } else {
        time.checked_sub(by).unwrap_or(time)
    }
}

/// A form body (`key=value&…`, percent-encoded), in memory that is wiped when sent.
pub(super) fn form(pairs: &[(&str, &str)]) -> Bytes {
    // Room for every byte encoded, so the text never moves (leaving an unwiped copy behind).
    let room: usize = pairs.iter().map(|(k, v)| 3 * (k.len() + v.len()) + 2).sum();
    let mut text = zeroize::Zeroizing::new(String::with_capacity(room));
    for (key, value) in pairs {
        if !text.is_empty() {
            text.push('&');
        }
        encode_into(&mut text, key);
        text.push('=');
        encode_into(&mut text, value);
    }
    crate::token::wiped_copy(text.as_bytes())
}

fn encode_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 15)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_of_an_answer_is_wiped() {
        let mut json = serde_json::json!(["secret-session", 7, [{"token__sys": "veeva-vault-x"}]]);
        wipe_strings(&mut json);
        assert_eq!(json, serde_json::json!(["", 7, [{}]]));
        let mut text = Value::String("secret".to_owned());
        wipe_strings(&mut text);
        assert_eq!(text, Value::String(String::new()));
    }

    #[test]
    fn forms_are_percent_encoded() {
        assert_eq!(
            &form(&[("name__v", "a b:c"), ("p", "x&y=z%")])[..],
            b"name__v=a%20b%3Ac&p=x%26y%3Dz%25"
        );
    }
}
