//! The stand-in's request handling without its server, for the fuzz targets (feature `__fuzz`,
//! opened through `crate::__fuzz::StandIn`): what [`Shared::handle`] does with a request (read
//! the body, record, answer, respond), driven on the caller's thread and never held.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::*;

/// The user the fuzz targets log in as (the stand-in's first user has no password).
pub(crate) const FUZZ_USER: &str = "fuzz@example.com";
/// [`FUZZ_USER`]'s password.
pub(crate) const FUZZ_PASSWORD: &str = "fuzz-password";
/// The OAuth profile and identity provider token that open a session for [`FUZZ_USER`].
pub(crate) const FUZZ_OAUTH: (&str, &str) = ("0oafuzz", "idp-token-for-fuzzing");
/// Paths ending so are answered with a redirect to `/api/v26.2/objects/documents`.
pub(crate) const FUZZ_REDIRECTED: &str = "/redirected";
/// Paths ending so are answered with an injected `INSUFFICIENT_ACCESS` (for a good credential).
pub(crate) const FUZZ_FAILING: &str = "/documents";

/// A stand-in with no listener: its state, and the request path that serves it.
pub(crate) struct Offline {
    shared: Shared,
}

impl Offline {
    /// A fresh stand-in with [`FUZZ_USER`] (an admin when `admin`), an OAuth grant, a redirect
    /// and an injected failure; `unauthorized_mode` and `picklists_as_arrays` as named.
    pub(crate) fn new(unauthorized_mode: bool, picklists_as_arrays: bool, admin: bool) -> Offline {
        let shared = Shared::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 9)));
        {
            let mut state = shared.lock();
            state.unauthorized_mode = unauthorized_mode;
            state.settings.picklists_as_arrays = picklists_as_arrays;
            let user = state.add_user(FUZZ_USER, Some(FUZZ_PASSWORD));
            if let Some(user) = state.user_named_mut(FUZZ_USER) {
                user.admin = admin;
            }
            let (profile, idp_token) = FUZZ_OAUTH;
            state
                .oauth_grants
                .push((profile.to_owned(), idp_token.to_owned(), user));
            let location = HeaderValue::from_static("/api/v26.2/objects/documents");
            let redirect = Redirect {
                status: StatusCode::FOUND,
                location,
            };
            state.redirects.push((FUZZ_REDIRECTED.to_owned(), redirect));
            state
                .failures
                .push((FUZZ_FAILING.to_owned(), "INSUFFICIENT_ACCESS".to_owned()));
        }
        Offline { shared }
    }

    /// A new token for [`FUZZ_USER`], as if made in Vault's UI.
    pub(crate) fn issue_token(&self) -> String {
        self.shared
            .issue(FUZZ_USER, None, None)
            .expect("the fuzz user exists")
    }

    /// Serves one request as the server would. `None` when reading the body does not finish at
    /// once (an in-memory body always does: `None` is a hang).
    pub(crate) fn serve<B>(&self, request: Request<B>) -> Option<Response<Full<Bytes>>>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
    {
        let (parts, body) = request.into_parts();
        let mut reading = pin!(read_body(body));
        let Poll::Ready(body) = reading
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        else {
            return None;
        };
        let seq = self.shared.lock().record(&parts, body.bytes.clone());
        let reply = self.shared.answer(&parts, &body);
        self.shared.lock().set_outcome(seq, reply.outcome);
        Some(self.shared.respond(reply, &parts.headers))
    }

    /// Every request served so far, in order.
    pub(crate) fn recorded(&self) -> Vec<RecordedRequest> {
        let state = self.shared.lock();
        state.requests.iter().map(|(_, r)| r.clone()).collect()
    }
}
