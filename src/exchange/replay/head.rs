//! The head of a request kept for a replay: method, version, URI parts, headers and extensions
//! (and the bytes of an in-memory body) written into one buffer from a small per-thread pool, which
//! goes back to the pool wiped when the request is done.

use std::cell::RefCell;
use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Extensions, HeaderName, HeaderValue, Method, Request, Uri, Version};
use zeroize::Zeroize;

use super::tape::Recording;
use crate::token::wiped_copy;

/// How many spare heads a thread keeps.
const POOL_SIZE: usize = 64;

/// A spare head whose buffers (the text and the header list) grew past this many bytes is freed
/// instead of kept.
const KEEP_BYTES: usize = 8 * 1024;

thread_local! {
    /// Each thread's spare heads. Boxed: a head moves between the pool and a response future,
    /// which carries only the pointer.
    #[allow(clippy::vec_box)]
    static POOL: RefCell<Vec<Box<Head>>> = const { RefCell::new(Vec::new()) };
}

/// A request's head (and maybe its body's bytes) in a pooled buffer. Goes back to the pool,
/// wiped, when dropped.
pub(crate) struct HeadCopy(Option<Box<Head>>);

#[derive(Default)]
struct Head {
    method: Method,
    version: Version,
    /// `http` and `https` are kept by name, not copied: one copy fewer per request.
    scheme: SchemePart,
    extensions: Extensions,
    /// The recording of a boxed body, type-erased: kept here rather than beside the head, so
    /// that the copy a request future carries stays one pointer for it.
    tape: Option<Arc<dyn Recording>>,
    /// The URI's scheme, authority and path-and-query, each header's name and value, then the
    /// body's bytes if they are kept here. Allocated at its full size before anything is written,
    /// so that it never moves: a reallocation would free a block still holding the caller's
    /// bytes, unwiped.
    text: Vec<u8>,
    /// Where the scheme, the authority and the path-and-query end in `text` (each part is empty
    /// when the URI has none): the URI is rebuilt part by part, so that no part can run into the
    /// next as it could if the whole string were parsed again.
    scheme_end: usize,
    authority_end: usize,
    uri_end: usize,
    headers: Vec<HeaderSpan>,
}

/// A URI's scheme as [`Head`] keeps it.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum SchemePart {
    /// The URI has none.
    #[default]
    None,
    Http,
    Https,
    /// Another scheme, its name at the start of [`Head::text`].
    Written,
}

/// Where one header sits in [`Head::text`]: its name ends at `name_end`, its value (which starts
/// there) at `value_end`.
struct HeaderSpan {
    name_end: usize,
    value_end: usize,
    sensitive: bool,
}

impl HeadCopy {
    /// Copies the head of `req`, with room for `body_len` more bytes.
    #[inline]
    pub(crate) fn of<B>(req: &Request<B>, body_len: usize) -> Self {
        #[cfg(test)]
        tests::COPIES.with(|copies| copies.set(copies.get() + 1));
        let head = match POOL.try_with(|pool| pool.borrow_mut().pop()) {
            Ok(Some(head)) => head,
            _ => new_head(),
        };
        // Held by the copy from here on: if anything below panics (an extension's `Clone`), the
        // buffer is still wiped.
        let mut copy = Self(Some(head));
        let Some(head) = copy.0.as_deref_mut() else {
            return copy;
        };
        let uri = req.uri();
        let (scheme_part, scheme) = match uri.scheme_str() {
            None => (SchemePart::None, ""),
            Some("https") => (SchemePart::Https, ""),
            Some("http") => (SchemePart::Http, ""),
            Some(other) => (SchemePart::Written, other),
        };
        let authority = uri.authority().map_or("", |authority| authority.as_str());
        let path_and_query = uri.path_and_query().map_or("", |pq| pq.as_str());
        let headers_len: usize = if req.headers().is_empty() {
            0
        } else {
            req.headers()
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len())
                .sum()
        };
        let needed = scheme.len() + authority.len() + path_and_query.len() + headers_len + body_len;
        if head.text.capacity() < needed {
            // The old buffer is empty and was wiped when it went back to the pool.
            head.text = Vec::with_capacity(needed);
        }
        head.method.clone_from(req.method());
        head.version = req.version();
        head.scheme = scheme_part;
        let text = &mut head.text;
        text.extend_from_slice(scheme.as_bytes());
        head.scheme_end = text.len();
        text.extend_from_slice(authority.as_bytes());
        head.authority_end = text.len();
        text.extend_from_slice(path_and_query.as_bytes());
        head.uri_end = text.len();
        for (name, value) in req.headers() {
            text.extend_from_slice(name.as_str().as_bytes());
            let name_end = text.len();
            text.extend_from_slice(value.as_bytes());
            head.headers.push(HeaderSpan {
                name_end,
                value_end: text.len(),
                sensitive: value.is_sensitive(),
            });
        }
        if !req.extensions().is_empty() {
            head.extensions = req.extensions().clone();
        }
        copy
    }

    /// The room its buffer has, for tests of what a copy reserves.
    #[cfg(test)]
    pub(super) fn text_room(&self) -> usize {
        self.0.as_deref().map_or(0, |head| head.text.capacity())
    }

    /// The buffer, for the body's bytes to follow the head's.
    pub(super) fn text(&mut self) -> &mut Vec<u8> {
        &mut self.0.get_or_insert_with(Box::default).text
    }

    /// Keeps the recording of the request's body with the head.
    pub(super) fn keep_tape(&mut self, tape: Arc<dyn Recording>) {
        self.0.get_or_insert_with(Box::default).tape = Some(tape);
    }

    /// The recording kept with the head, if any.
    pub(super) fn take_tape(&mut self) -> Option<Arc<dyn Recording>> {
        self.0.as_deref_mut()?.tape.take()
    }

    /// The recording kept with the head, if any.
    pub(super) fn tape(&self) -> Option<&Arc<dyn Recording>> {
        self.0.as_deref()?.tape.as_ref()
    }

    /// What follows the head in the buffer: the body's bytes, if they are kept there.
    pub(super) fn body_bytes(&self) -> Option<&[u8]> {
        let head = self.0.as_deref()?;
        let end = head
            .headers
            .last()
            .map_or(head.uri_end, |span| span.value_end);
        head.text.get(end..)
    }

    /// Builds the request again around `body`; `None` if a part does not parse again (which a
    /// part copied from a valid request always does) or the headers would not fit a map.
    pub(super) fn rebuild<B>(&self, body: B) -> Option<Request<B>> {
        let head = self.0.as_deref()?;
        let mut request = Request::new(body);
        *request.method_mut() = head.method.clone();
        *request.version_mut() = head.version;
        *request.uri_mut() = head.uri()?;
        let headers = request.headers_mut();
        let mut start = head.uri_end;
        for span in &head.headers {
            let name = HeaderName::from_bytes(&head.text[start..span.name_end]).ok()?;
            let mut value = HeaderValue::from_maybe_shared(wiped_copy(
                &head.text[span.name_end..span.value_end],
            ))
            .ok()?;
            value.set_sensitive(span.sensitive);
            headers.try_append(name, value).ok()?;
            start = span.value_end;
        }
        *request.extensions_mut() = head.extensions.clone();
        Some(request)
    }
}

impl Head {
    /// The bytes its two buffers hold on to, whatever they hold now.
    fn size(&self) -> usize {
        self.text.capacity() + self.headers.capacity() * std::mem::size_of::<HeaderSpan>()
    }

    /// The URI, from its parts.
    fn uri(&self) -> Option<Uri> {
        let part = |range: std::ops::Range<usize>| {
            let bytes = &self.text[range];
            (!bytes.is_empty()).then(|| wiped_copy(bytes))
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = match self.scheme {
            SchemePart::None => None,
            SchemePart::Http => Some(Scheme::HTTP),
            SchemePart::Https => Some(Scheme::HTTPS),
            SchemePart::Written => Some(Scheme::try_from(&self.text[..self.scheme_end]).ok()?),
        };
        if let Some(authority) = part(self.scheme_end..self.authority_end) {
            parts.authority = Some(Authority::from_maybe_shared(authority).ok()?);
        }
        if let Some(path_and_query) = part(self.authority_end..self.uri_end) {
            parts.path_and_query = Some(PathAndQuery::from_maybe_shared(path_and_query).ok()?);
        }
        Uri::from_parts(parts).ok()
    }
}

/// A head for a thread whose pool is empty (or gone).
#[cold]
fn new_head() -> Box<Head> {
    Box::default()
}

impl Drop for HeadCopy {
    fn drop(&mut self) {
        let Some(mut head) = self.0.take() else {
            return;
        };
        // The buffer held the caller's headers and body (cookies, say): wipe what was written.
        head.text.as_mut_slice().zeroize();
        head.text.clear();
        head.headers.clear();
        if !head.extensions.is_empty() {
            head.extensions.clear();
        }
        head.tape = None;
        if head.size() > KEEP_BYTES {
            return;
        }
        // A thread that is exiting has no pool left: the head is simply freed.
        let _ = POOL.try_with(|pool| {
            if let Ok(mut pool) = pool.try_borrow_mut() {
                if pool.len() < POOL_SIZE {
                    pool.push(head);
                }
            }
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;
    use http::header::{ACCEPT, COOKIE};
    use http_body_util::Full;

    fn request() -> Request<Full<Bytes>> {
        let mut cookie = HeaderValue::from_static("session=abc");
        cookie.set_sensitive(true);
        let mut request = Request::builder()
            .method(Method::PATCH)
            .version(Version::HTTP_2)
            .uri("https://myvault.veevavault.com/api/v26.2/objects/users?limit=5&offset=10")
            .header(ACCEPT, "application/json")
            .header("x-custom", "one")
            .header("x-custom", "two")
            .header(COOKIE, cookie)
            .body(Full::new(Bytes::from_static(b"name__v=x")))
            .unwrap();
        request.extensions_mut().insert(42_u32);
        request
    }

    #[test]
    fn a_head_comes_back_as_it_was() {
        let original = request();
        let copy = HeadCopy::of(&original, 0);
        let again = copy.rebuild(()).expect("rebuilt");
        assert_eq!(again.method(), original.method());
        assert_eq!(again.version(), original.version());
        assert_eq!(again.uri(), original.uri());
        assert_eq!(again.headers(), original.headers());
        let values: Vec<_> = again.headers().get_all("x-custom").iter().collect();
        assert_eq!(values, ["one", "two"], "repeated headers keep their order");
        assert!(again.headers()[COOKIE].is_sensitive());
        assert!(!again.headers()[ACCEPT].is_sensitive());
        assert_eq!(again.extensions().get::<u32>(), Some(&42));
    }

    fn round_trip(original: &Request<()>) -> Request<()> {
        HeadCopy::of(original, 0).rebuild(()).expect("rebuilt")
    }

    /// Rebuilt part by part: a path that does not start with `/` cannot run into the authority.
    #[test]
    fn each_part_of_the_uri_comes_back_as_it_was() {
        for path in [
            "*",
            "/api/v26.2/objects?q=1",
            "/a%20b/%F0%9F%98%80?x=@y",
            "/",
        ] {
            let Ok(uri) = Uri::builder()
                .scheme("https")
                .authority("user:pa%40ss@myvault.veevavault.com:443")
                .path_and_query(path)
                .build()
            else {
                continue;
            };
            let original = Request::get(uri).body(()).unwrap();
            let again = round_trip(&original);
            assert_eq!(again.uri().scheme(), original.uri().scheme(), "{path}");
            assert_eq!(
                again.uri().authority(),
                original.uri().authority(),
                "{path}"
            );
            assert_eq!(again.uri().host(), Some("myvault.veevavault.com"), "{path}");
            assert_eq!(
                again.uri().path_and_query(),
                original.uri().path_and_query(),
                "{path}"
            );
        }
        let ipv6 = Request::get("https://[::1]:8443/x?y").body(()).unwrap();
        assert_eq!(round_trip(&ipv6).uri(), ipv6.uri());
    }

    /// `Uri`'s own parser refuses a whole URI over 64 KiB that its parts can add up to.
    #[test]
    fn a_uri_longer_than_a_parsed_one_may_be_comes_back() {
        let path = format!("/api/{}", "a".repeat(65_520));
        let uri = Uri::builder()
            .scheme("https")
            .authority("myvault.veevavault.com")
            .path_and_query(path.as_str())
            .build()
            .unwrap();
        let original = Request::get(uri).body(()).unwrap();
        assert_eq!(round_trip(&original).uri().path(), path);
    }

    /// Many values under one name fill a map by values, not names: no capacity reserved by count.
    #[test]
    fn many_values_of_one_header_come_back() {
        let mut original = Request::get("https://h/").body(()).unwrap();
        for i in 0..30_000_u64 {
            original.headers_mut().append("x-dup", HeaderValue::from(i));
        }
        let again = round_trip(&original);
        assert_eq!(again.headers().get_all("x-dup").iter().count(), 30_000);
        assert_eq!(again.headers(), original.headers());
    }

    #[test]
    fn the_buffer_is_made_once_at_full_size() {
        let mut original = Request::get("https://myvault.veevavault.com/a/long/path?q=1")
            .body(String::from("name__v=secret"))
            .unwrap();
        for i in 0..40 {
            original.headers_mut().insert(
                HeaderName::try_from(format!("x-h{i}")).unwrap(),
                HeaderValue::from_static("padding"),
            );
        }
        let body_len = original.body().len();
        let mut copy = HeadCopy::of(&original, body_len);
        copy.text().extend_from_slice(original.body().as_bytes());
        let head = copy.0.as_deref().expect("a head");
        assert_eq!(
            head.text.len(),
            head.text.capacity(),
            "exact size, never grown"
        );
    }

    /// `http` and `https` are kept by name; any other scheme is written out, and each comes back.
    #[test]
    fn every_scheme_comes_back() {
        for uri in [
            "https://myvault.veevavault.com/x",
            "http://127.0.0.1:8080/x",
            "wss://myvault.veevavault.com/x",
            "/relative/only?q=1",
        ] {
            let original = Request::get(uri).body(()).unwrap();
            let again = round_trip(&original);
            assert_eq!(again.uri(), original.uri(), "{uri}");
            assert_eq!(
                again.uri().scheme_str(),
                original.uri().scheme_str(),
                "{uri}"
            );
        }
    }

    #[test]
    fn an_authority_without_a_path_comes_back_with_the_root() {
        let original = Request::get("https://myvault.veevavault.com")
            .body(())
            .unwrap();
        let again = HeadCopy::of(&original, 0).rebuild(()).expect("rebuilt");
        assert_eq!(again.uri().authority(), original.uri().authority());
        assert_eq!(again.uri().path(), "/");
    }

    fn spare_heads() -> usize {
        POOL.with(|pool| pool.borrow().len())
    }

    thread_local! {
        /// Heads copied on this thread.
        pub(crate) static COPIES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    pub(crate) fn copies() -> usize {
        COPIES.with(std::cell::Cell::get)
    }

    #[test]
    fn heads_are_reused_wiped() {
        let before = spare_heads();
        drop(HeadCopy::of(&request(), 0));
        assert_eq!(spare_heads(), before + 1, "the head went back to the pool");
        let second = HeadCopy::of(&Request::get("https://h/x").body(()).unwrap(), 0);
        assert_eq!(spare_heads(), before, "a spare head was taken");
        let head = second.0.as_deref().expect("a head");
        assert_eq!(&head.text[..], b"h/x", "nothing of the old request is left");
        assert!(head.headers.is_empty());
        assert!(head.extensions.is_empty());
        assert_eq!(head.method, Method::GET);
    }

    /// A head that grew to hold a few KiB of headers (cookies, say) is kept: the bound is 8 KiB.
    #[test]
    fn heads_of_a_few_kib_are_kept() {
        std::thread::spawn(|| {
            let value = "x".repeat(7 * 1024);
            let request = Request::get("https://h/")
                .header("cookie", value.as_str())
                .body(())
                .unwrap();
            drop(HeadCopy::of(&request, 0));
            assert_eq!(spare_heads(), 1, "the head went back to the pool");
        })
        .join()
        .unwrap();
    }

    /// The bound is inclusive: a head of exactly 8 KiB of buffers is kept, one byte more is not.
    #[test]
    fn a_head_of_exactly_the_bound_is_kept() {
        std::thread::spawn(|| {
            for (room, kept) in [(KEEP_BYTES, 1), (KEEP_BYTES + 1, 0)] {
                let head = Head {
                    text: Vec::with_capacity(room),
                    ..Head::default()
                };
                assert_eq!(head.size(), room);
                drop(HeadCopy(Some(Box::new(head))));
                assert_eq!(spare_heads(), kept, "{room} bytes");
                POOL.with(|pool| pool.borrow_mut().clear());
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_pool_is_bounded_and_big_heads_are_not_kept() {
        let big = "x".repeat(KEEP_BYTES + 1);
        let request = Request::get("https://h/")
            .header("x-big", big.as_str())
            .body(())
            .unwrap();
        let before = spare_heads();
        drop(HeadCopy::of(&request, 0));
        assert_eq!(
            spare_heads(),
            before.saturating_sub(1),
            "the grown head was freed"
        );

        // Many short headers: a small text, but a long list of where each one sits.
        let mut short = Request::get("https://h/").body(()).unwrap();
        for i in 0..(KEEP_BYTES / 8) as u64 {
            short.headers_mut().append("x", HeaderValue::from(i % 10));
        }
        let before = spare_heads();
        drop(HeadCopy::of(&short, 0));
        assert_eq!(
            spare_heads(),
            before.saturating_sub(1),
            "the head with the long header list was freed"
        );

        let many: Vec<_> = (0..POOL_SIZE + 10)
            .map(|_| HeadCopy::of(&Request::get("https://h/").body(()).unwrap(), 0))
            .collect();
        drop(many);
        assert_eq!(spare_heads(), POOL_SIZE);
    }
}
