//! A guide to using the layer well: which source to pick, where the layer goes in a stack, what
//! happens when Vault rejects a token, what the layer promises under concurrency, and how a fleet
//! of processes shares one user's tokens.
//!
//! This module holds documentation only.
//!
//! # Which source
//!
//! | situation | source |
//! |---|---|
//! | a script or a test with one long-lived token | [`StaticToken`](crate::source::StaticToken) |
//! | a container that gets its token in the environment | [`EnvToken`](crate::source::EnvToken) (`VEEVA_VAULT_TOKEN`) |
//! | a Kubernetes secret, or a file another process rotates | [`FileToken`](crate::source::FileToken) |
//! | the process issues its own tokens (through Vault's API, a secrets manager, …) | [`RotatingToken`](crate::source::RotatingToken) |
//! | anything else | implement [`TokenSource`](crate::source::TokenSource) |
//!
//! A token that carries an expiry ([`AccessToken::with_expires_in`](crate::AccessToken::with_expires_in)
//! or [`with_expires_at`](crate::AccessToken::with_expires_at)) is renewed ahead of it, whatever
//! the source; see [`RefreshPolicy`](crate::RefreshPolicy). A token without one is kept until
//! Vault rejects it (or, for the file and environment sources, until a poll sees a new value).
//!
//! Issuing through Vault's API: `POST /api/{version}/objects/users/me/api_access_token__sys` with
//! a form body `name__v=…` (and `expiry_date__v=YYYY-MM-DDTHH:MM:SSZ`) and an existing credential
//! answers `{"data":{"token__sys":"veeva-vault-…"}}`. Each user holds at most **25 active
//! tokens**, so an issuer that creates a token per process start, or per renewal, must revoke the
//! ones it no longer uses (`DELETE /api/{version}/vobjects/api_access_token__sys` with
//! `[{"id":"…"}]`). [`VaultIssuer`](crate::source::VaultIssuer) (feature `issuer`) does all of it:
//! it issues from one long-lived credential, revokes what it superseded after a grace period,
//! makes room under the cap (a sandbox's too) by revoking only its own oldest tokens, and wipes
//! the session ids and tokens Vault answers with. Its https client (feature `rustls`) trusts the
//! bundled webpki roots; behind a TLS-inspecting proxy with a private CA, add that CA with
//! [`tls_root_certificates_pem`](crate::source::VaultIssuerBuilder::tls_root_certificates_pem)
//! (or give a whole rustls `ClientConfig` with
//! [`tls_client_config`](crate::source::VaultIssuerBuilder::tls_client_config)); a certificate no
//! trusted root vouches for is a final
//! [`IssuerErrorKind::Tls`](crate::source::IssuerErrorKind::Tls), never a retry loop.
//!
//! # Where the layer goes in a stack
//!
//! From the outside in:
//!
//! ```text
//! TraceLayer → timeout → FollowRedirectLayer → VaultAuthLayer → client
//! ```
//!
//! - **Redirects outside the layer.** Each hop then passes through the layer, which attaches the
//!   token only to hops for the Vault: a same-origin redirect keeps working, a cross-origin hop is
//!   refused with [`NotForVault`](crate::NotForVault) (or sent without the token with
//!   [`pass_through_other_hosts`](crate::VaultAuthLayerBuilder::pass_through_other_hosts)).
//!   With the follower *beneath* the layer, tower-http copies the first request's headers, token
//!   included, into every hop and its standard policy removes them only when a hop changes origin
//!   from the previous one: a second hop on a foreign host gets the token back. If a stack must be
//!   built that way, put [`token_guard`](crate::VaultAuthLayer::token_guard) beneath the follower
//!   (see [`guard`](crate::guard)).
//! - **Tracing outermost.** It sees the request before the token is attached, and one span
//!   covers the token fetch, every hop and a replay. Even a trace layer placed beneath this layer
//!   logs the header as `Sensitive`, since the layer marks it so.
//! - **The timeout outside the layer**, so that it bounds the whole call, including waiting for a
//!   token and a replay. `tower::timeout::TimeoutLayer` fails the call with an error; tower-http's
//!   `TimeoutLayer` is a server middleware that answers 408 (or the status you choose) and needs a
//!   response body that is `Default` (box the body beneath it).
//! - **Retries** (tower's `RetryLayer`) outside the layer: a retried request is a new request, and
//!   gets the current token.
//!
//! # When Vault rejects the token
//!
//! Vault answers a processed request with HTTP 200, also when it fails; a bad token gets
//! `X-VaultAPI-Status: FAILURE` and `errors[].type` `INVALID_SESSION_ID`. A gateway may answer 401.
//! The layer ([`detect::VaultRule`](crate::detect::VaultRule)):
//!
//! 1. hands over unread every response with a single `X-VaultAPI-Status: SUCCESS` and every
//!    response that is neither JSON nor XML (file downloads included); a repeated status header
//!    is read, whatever its values;
//! 2. reads other JSON and XML responses (undoing gzip, deflate or br on a bounded copy) within
//!    64 KiB, counting each frame's bookkeeping, and within
//!    [`max_inspect_wait`](crate::VaultAuthLayerBuilder::max_inspect_wait) (5 s) of the head's
//!    arrival; a body that starts `{"responseStatus":"SUCCESS"` is handed over at once, and one
//!    not judged within the bounds is handed over as it is. Those that are not rejections reach
//!    the caller byte for byte, status, headers and (still encoded) body;
//! 3. on a rejection, drops the token only if it is still the current one (a token fetched since
//!    is kept), asks the source once for every request rejected with that token, and sends each of
//!    them again, once, with the new token, if its body can be reproduced within 64 KiB: no body,
//!    an in-memory one (`Full<Bytes>`, `Empty<Bytes>`, `String`, or `Full`/`Empty` over
//!    `&'static [u8]`), or a boxed one (`BoxBody`/`UnsyncBoxBody` of `Bytes`), which the layer
//!    records as the inner service sends it, in one buffer wiped when it grows or goes. A
//!    recording replays what was sent and then the rest of the original body, so an answer that
//!    came before the body was all sent loses nothing. A body past the cap, a body that failed, or
//!    a body of a type the layer cannot rebuild is sent once: that caller gets Vault's answer,
//!    and the next request carries the new token (box such a body before the layer to have it
//!    replayed). A request is never sent more than twice, and before the replay the rest of the
//!    rejected answer is read (up to 1 MiB, 2 s) so that its connection can carry the replay.
//!    Only an answer to a request that carried the token counts: a hop a redirect follower sent
//!    without it (marked by the token guard), or an answer reqwest reached by a redirect, is
//!    handed over unjudged.
//! 4. If the source hands back the very token that was rejected (a static source, a file nobody
//!    has rewritten yet), nothing is replayed, the callers get Vault's answer, and the source is not
//!    asked about it again until the backoff ends. If it hands out new tokens that Vault rejects
//!    as well (tokens for another Vault, an inactive user), the source is asked again only after a
//!    backoff too.
//! 5. A fetch already under way when the rejection arrives (a poll, a renewal) serves it; if it
//!    read the old token, the next attempt comes after the backoff (1 s at first).
//!
//! # Concurrency, cancellation, failure
//!
//! - **A thousand requests during a refresh.** Requests that find a valid token never wait: the
//!   renewal ahead of expiry runs in a background task. Requests that find none (the first ones,
//!   or after a rejection or expiry) wait on the one fetch in progress, however many they are.
//! - **A future dropped half-way.** The fetch runs in its own task, so dropping any request, the
//!   first one that started the fetch included, strands nobody; the fetch finishes and serves the
//!   others. A request dropped while its replay waits for the fetch just goes away.
//! - **A source that fails.** Every waiter gets the error ([`TokenUnavailable`](crate::TokenUnavailable)).
//!   A token that still works is never replaced by an error: it is served until it expires while
//!   the renewal is retried with backoff ([`Backoff`](crate::Backoff): 1 s doubling to 60 s). With
//!   no valid token, a request joins the next attempt if it is due within the fetch timeout, and
//!   fails at once (with the time to the next attempt) otherwise. The background task keeps trying
//!   for as long as the layer lives.
//! - **A source that hangs, or a runtime nobody drives.** Each fetch has a deadline (the fetch
//!   timeout, 30 s by default). Every waiter waits on its own runtime's clock, so no request waits
//!   past it, even if the fetch's runtime is idle; the first to notice the deadline fails the
//!   fetch with [`UnavailableKind::TimedOut`](crate::UnavailableKind::TimedOut), and the next
//!   attempt runs on a runtime that is alive. A `FileToken` whose `open` blocks keeps one read
//!   outstanding, never more.
//! - **A source that panics.** Its waiters fail with
//!   [`UnavailableKind::Aborted`](crate::UnavailableKind::Aborted); the layer goes on.
//! - **A runtime that shuts down.** A fetch cut off by its runtime's shutdown is not a source
//!   failure: its waiters ask again on their own runtime, and the next request fetches at once.
//!   The renewal task lives on the runtime of the first fetch; when that runtime goes away, the
//!   token is dropped and the next request fetches afresh and starts the task there. If that
//!   runtime lives on but is idle, tokens are not renewed ahead of time, but an expired one is
//!   never sent.
//! - **A server that trickles or stalls.** A response head waits for its body at most
//!   `max_inspect_wait`; a rejected answer is read before a replay for at most 2 s. Beyond that
//!   the caller's own timeout (outside the layer) bounds the call.
//!
//! # Where decompression goes
//!
//! Put tower-http's `DecompressionLayer` outside `VaultAuthLayer` (the natural order). The layer
//! then sees the encoded bytes, judges a decoded copy of at most `max_inspect_body` bytes, and
//! passes the original bytes up for decoding. Inside the layer works too: the layer then sees plain
//! content. gzip, deflate and br are understood; a body in another coding (zstd, or stacked
//! codings) is never judged, so an `INVALID_SESSION_ID` there goes unnoticed.
//!
//! # A fleet sharing one user's tokens
//!
//! Vault allows 25 active tokens per user, and `/auth` logins have their own burst limit. A fleet
//! of processes (pods, workers) that each issued their own token would exhaust the cap and hammer
//! Vault on every rollout. Instead:
//!
//! 1. run **one issuer** (a CronJob, a sidecar, a controller) that issues a token with an expiry
//!    through Vault's API, writes it atomically to a shared file or secret (write a temporary file,
//!    then rename it; a Kubernetes secret update does this for you), and revokes the token before
//!    the previous one once nobody can still be using it;
//! 2. have every process read that file with [`FileToken`](crate::source::FileToken). A rotated
//!    file is picked up at the next poll (5 s by default), and at once by a process whose token
//!    Vault rejected first; until the new file lands, a process whose token was rejected gets
//!    Vault's answer and does not hammer the file;
//! 3. let the issuer renew well before expiry (the overlap must exceed the poll interval), so that
//!    no process ever holds only an expired token.
//!
//! The jitter of [`RefreshPolicy`](crate::RefreshPolicy) spreads renewals of processes that issue
//! their own tokens, so that a fleet started at once does not renew at once.
//!
//! # Feature flags
//!
//! | feature | adds | extra dependencies |
//! |---|---|---|
//! | `tracing` | events and spans (target `veeva_vault_auth`) for fetches, renewals, expiries, re-acquisitions, replays, refusals and failures, with generations and expiries but never a token | `tracing` |
//! | `reqwest` | `VaultAuthMiddleware` (from `VaultAuthLayer::middleware`) for reqwest-middleware chains, sharing the layer's cache | `reqwest` (no TLS feature of its own), `reqwest-middleware`, `async-trait` |
//! | `issuer` | [`VaultIssuer`](crate::source::VaultIssuer): tokens issued, renewed and revoked through Vault's API, over its own hyper-util client (plain http to loopback only) or your tower service | `hyper`, `hyper-util` |
//! | `rustls` | https for the issuer's own client: bundled webpki roots, plus root certificates you add (a private CA), or your own rustls `ClientConfig` | `hyper-rustls`, `rustls`, `webpki-roots` (ring) |
//! | `test-util` | `testing::VaultStandIn`, a Vault stand-in on loopback, for your own tests | `hyper`, `hyper-util` |
