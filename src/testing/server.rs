//! The server: accepting connections, holding requests, reading bodies, writing answers.

use super::*;

/// What the handles share; aborts the server when the last handle goes.
pub(super) struct Inner {
    pub(super) addr: SocketAddr,
    pub(super) shared: Arc<Shared>,
    pub(super) server: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// State shared by the handles and the server tasks.
pub(super) struct Shared {
    pub(super) base_url: String,
    pub(super) identity: VaultIdentity,
    pub(super) state: Mutex<State>,
    pub(super) hold: watch::Sender<HoldState>,
    pub(super) entropy: Entropy,
}

/// Accepts connections until aborted. Connection tasks live in a `JoinSet` owned by this task,
/// so aborting it also aborts every connection (and every held request).
pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                // E.g. too many open files: back off briefly instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

pub(super) async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(shared.handle(request).await) }
    });
    // No timer is configured (so paused test time cannot fire one); hence no header timeout.
    let _ = http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

impl Shared {
    pub(super) fn new(addr: SocketAddr) -> Shared {
        Shared {
            base_url: format!("http://{addr}"),
            identity: VaultIdentity::new(addr),
            state: Mutex::new(State::new()),
            hold: watch::Sender::new(HoldState::default()),
            entropy: Entropy::default(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A token for the user named `user`, as if made in Vault's UI (not limited by the cap).
    pub(super) fn issue(
        &self,
        user: &str,
        name: Option<&str>,
        lifetime: Option<Duration>,
    ) -> Option<String> {
        let mut state = self.lock();
        let user = state.user_named(user)?.id;
        let name = name.map_or_else(
            || format!("stand-in token {}", state.tokens.len() + 1),
            str::to_owned,
        );
        let expiry = lifetime.map(|lifetime| state.clock.now() + lifetime);
        Some(state.add_token(&self.entropy, user, name, expiry).1)
    }

    /// Records the request, holds it if asked to, then answers it.
    pub(super) async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = read_body(body).await;
        let seq = self.lock().record(&parts, body.bytes.clone());
        self.wait_while_held().await;
        let reply = self.answer(&parts, &body);
        self.lock().set_outcome(seq, reply.outcome);
        self.respond(reply, &parts.headers)
    }

    pub(super) async fn wait_while_held(&self) {
        let mut generation = None;
        self.hold.send_if_modified(|hold| {
            if hold.holding {
                hold.held += 1;
                generation = Some(hold.generation);
            }
            hold.holding
        });
        let Some(generation) = generation else { return };
        // Un-counts the request if its connection goes away while it is held.
        let _held = HeldGuard {
            hold: &self.hold,
            generation,
        };
        let mut hold = self.hold.subscribe();
        let _ = hold.wait_for(|hold| hold.generation != generation).await;
    }

    pub(super) fn answer(&self, parts: &http::request::Parts, body: &ReceivedBody) -> Reply {
        if let Some(redirect) = self.lock().redirect_for(parts.uri.path()) {
            return Reply::redirect(redirect);
        }
        let route = Route::resolve(&parts.method, parts.uri.path(), parts.uri.query());
        let content_type = parts.headers.get(CONTENT_TYPE);
        let unread = body
            .problem
            .map(|problem| Reply::failure("INVALID_DATA", problem.message()));
        match route {
            Route::NotFound => return Reply::not_found(),
            Route::Versions => return self.versions(),
            Route::Login => {
                return unread.unwrap_or_else(|| {
                    let mut state = self.lock();
                    state.log_in(&self.entropy, &self.identity, content_type, &body.bytes)
                });
            }
            Route::OAuthSession(ref profile) => {
                return unread.unwrap_or_else(|| {
                    let mut state = self.lock();
                    let (identity, headers) = (&self.identity, &parts.headers);
                    state.oauth_session(&self.entropy, identity, profile, headers, &body.bytes)
                });
            }
            _ => {}
        }
        let mut state = self.lock();
        let Some(caller) = state.authenticate(&parts.headers) else {
            return Reply::invalid_session(state.unauthorized_mode);
        };
        if let Some(error_type) = state.injected_failure(parts.uri.path()) {
            return Reply::failure(&error_type, injected_message(&error_type)).by(caller);
        }
        if let Some(reply) = unread {
            return reply.by(caller);
        }
        let body = &body.bytes;
        let reply = match route {
            Route::CreateToken => {
                state.create_token(&self.entropy, caller.user, content_type, body)
            }
            Route::CreateSandboxToken(name) => {
                drop(state);
                return self
                    .create_sandbox_token(caller, &name, content_type, body)
                    .by(caller);
            }
            Route::RevokeTokens => state.revoke_tokens(caller, content_type, body),
            Route::TokenMetadata(id) => state.token_metadata(caller, &id),
            Route::Me => state.me(caller),
            Route::Query => state.query(caller, content_type, body),
            Route::Documents => documents(),
            Route::KeepAlive => Reply::success(Vec::new()),
            Route::EndSession => state.end_session(caller),
            Route::Versions | Route::NotFound | Route::Login | Route::OAuthSession(_) => {
                Reply::not_found()
            }
        };
        reply.by(caller)
    }

    pub(super) fn versions(&self) -> Reply {
        let urls = SUPPORTED_VERSIONS.iter().map(|version| {
            (
                *version,
                Json::string(&format!("{}/api/{version}", self.base_url)),
            )
        });
        Reply::success(vec![("values", Json::object(urls))])
    }

    pub(super) fn respond(
        &self,
        reply: Reply,
        request_headers: &HeaderMap,
    ) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(reply.body.0)));
        *response.status_mut() = reply.status;
        let headers = response.headers_mut();
        if let Some(location) = reply.location {
            headers.insert(LOCATION, location);
        } else {
            headers.insert(CONTENT_TYPE, JSON_CONTENT_TYPE);
            let status = if reply.success { "SUCCESS" } else { "FAILURE" };
            headers.insert(STATUS_HEADER, HeaderValue::from_static(status));
        }
        if let Ok(id) = HeaderValue::try_from(self.entropy.execution_id()) {
            headers.insert(EXECUTION_ID_HEADER, id);
        }
        if let Some(reference) = request_headers.get(&REFERENCE_ID_HEADER) {
            headers.insert(REFERENCE_ID_HEADER, reference.clone());
        }
        if let Some(user) = reply.user {
            headers.insert(USER_ID_HEADER, HeaderValue::from(user));
        }
        let date = http_date(self.lock().clock.now());
        if let Ok(date) = HeaderValue::try_from(date) {
            headers.insert(DATE, date);
        }
        if reply.status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Whether requests are held, and how many are held in the current generation. Releasing starts
/// a new generation, which wakes every request waiting on the old one.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct HoldState {
    pub(super) holding: bool,
    pub(super) generation: u64,
    pub(super) held: usize,
}

impl HoldState {
    pub(super) fn release_all(&mut self) {
        self.generation += 1;
        self.held = 0;
    }
}

pub(super) struct HeldGuard<'a> {
    pub(super) hold: &'a watch::Sender<HoldState>,
    pub(super) generation: u64,
}

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        self.hold.send_if_modified(|hold| {
            let still_held = hold.generation == self.generation;
            if still_held {
                hold.held = hold.held.saturating_sub(1);
            }
            still_held
        });
    }
}

/// A request body read up to [`MAX_BODY_BYTES`].
pub(super) struct ReceivedBody {
    pub(super) bytes: Bytes,
    pub(super) problem: Option<BodyProblem>,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum BodyProblem {
    TooLarge,
    Unreadable,
}

impl BodyProblem {
    pub(super) fn message(self) -> &'static str {
        match self {
            BodyProblem::TooLarge => "The request body is larger than 1 MiB.",
            BodyProblem::Unreadable => "The request body could not be read.",
        }
    }
}

/// Reads a body, keeping at most [`MAX_BODY_BYTES`]; the rest of an oversized body is read and
/// discarded (up to a limit) so that the client gets to see the answer.
pub(super) async fn read_body<B>(mut body: B) -> ReceivedBody
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut kept = Vec::new();
    let mut seen = 0usize;
    let mut problem = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            problem = Some(BodyProblem::Unreadable);
            break;
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        let room = MAX_BODY_BYTES.saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
        if seen > MAX_BODY_BYTES {
            problem = Some(BodyProblem::TooLarge);
        }
        if seen > MAX_DRAINED_BYTES {
            break;
        }
    }
    ReceivedBody {
        bytes: Bytes::from(kept),
        problem,
    }
}
