//! Which endpoint a method and path name.

use super::*;

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    Versions,
    Login,
    OAuthSession(String),
    EndSession,
    CreateToken,
    CreateSandboxToken(String),
    RevokeTokens,
    TokenMetadata(String),
    Me,
    Query,
    Documents,
    KeepAlive,
    NotFound,
}

impl Route {
    pub(super) fn resolve(method: &Method, path: &str, query: Option<&str>) -> Route {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (method.as_str(), segments.as_slice()) {
            ("GET", ["api"]) => Route::Versions,
            ("POST", ["auth", "oauth", "session", profile]) => {
                Route::OAuthSession((*profile).to_owned())
            }
            (_, ["api", version, rest @ ..]) if is_version(version) => {
                Route::api(effective_method(method, query), rest)
            }
            _ => Route::NotFound,
        }
    }

    /// Routes the part of the path after `/api/{version}`.
    pub(super) fn api(method: &str, rest: &[&str]) -> Route {
        match (method, rest) {
            ("POST", ["auth"]) => Route::Login,
            ("DELETE", ["session"]) => Route::EndSession,
            ("POST", ["objects", "users", "me", "api_access_token__sys"]) => Route::CreateToken,
            ("POST", ["objects", "sandbox", name, "users", "me", "api_access_token__sys"]) => {
                Route::CreateSandboxToken((*name).to_owned())
            }
            ("DELETE", ["vobjects", "api_access_token__sys"]) => Route::RevokeTokens,
            ("GET", ["vobjects", "api_access_token__sys", id]) => {
                Route::TokenMetadata((*id).to_owned())
            }
            ("GET", ["objects", "users", "me"]) => Route::Me,
            ("POST", ["query"]) => Route::Query,
            ("GET", ["objects", "documents"]) => Route::Documents,
            ("POST", ["keep-alive"]) => Route::KeepAlive,
            _ => Route::NotFound,
        }
    }
}

/// `v` followed by one or two dot-separated numbers, e.g. `v26.2`.
pub(super) fn is_version(segment: &str) -> bool {
    let Some(numbers) = segment.strip_prefix('v') else {
        return false;
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    parts.len() <= 2
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// `POST …?_method=DELETE` stands for a `DELETE`, for clients that cannot send a DELETE body.
pub(super) fn effective_method<'a>(method: &'a Method, query: Option<&str>) -> &'a str {
    let overridden = *method == Method::POST
        && form_pairs(query.unwrap_or(""))
            .iter()
            .any(|(key, value)| key == "_method" && value.eq_ignore_ascii_case("DELETE"));
    if overridden {
        "DELETE"
    } else {
        method.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let route =
            |method: Method, path: &str, query: Option<&str>| Route::resolve(&method, path, query);
        assert_eq!(route(Method::GET, "/api/", None), Route::Versions);
        assert_eq!(
            route(Method::GET, "/api/v26.2/objects/users/me", None),
            Route::Me
        );
        assert_eq!(
            route(Method::GET, "/api/v9/objects/documents/", None),
            Route::Documents
        );
        assert_eq!(
            route(
                Method::POST,
                "/api/v26.2/vobjects/api_access_token__sys",
                Some("_method=delete")
            ),
            Route::RevokeTokens
        );
        assert_eq!(
            route(
                Method::GET,
                "/api/v26.2/vobjects/api_access_token__sys/V8T1",
                None
            ),
            Route::TokenMetadata("V8T1".to_owned())
        );
        assert_eq!(
            route(Method::GET, "/api/latest/objects/documents", None),
            Route::NotFound
        );
        assert_eq!(
            route(Method::GET, "/api/v26.2/query", None),
            Route::NotFound
        );
        assert_eq!(route(Method::GET, "/", None), Route::NotFound);
        assert_eq!(route(Method::POST, "/api/v26.2/auth", None), Route::Login);
        assert_eq!(
            route(Method::DELETE, "/api/v26.2/session", None),
            Route::EndSession
        );
        assert_eq!(
            route(Method::POST, "/auth/oauth/session/0oa1", None),
            Route::OAuthSession("0oa1".to_owned())
        );
        assert_eq!(
            route(
                Method::POST,
                "/api/v26.2/objects/sandbox/uat/users/me/api_access_token__sys",
                None
            ),
            Route::CreateSandboxToken("uat".to_owned())
        );
    }
}
