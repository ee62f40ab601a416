//! A bare HTTP/1.1 server on loopback that keeps every request exactly as it came off the wire
//! (head and body, chunked framing included) and answers each with bytes a test writes by hand:
//! for checking a replay byte for byte, and for answers no well-behaved server would send.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Writes the answer to the `n`-th request (counted from 0), given its raw bytes; an empty answer
/// means none: the connection is held and never answered.
pub type Answerer = dyn Fn(usize, &[u8]) -> Vec<u8> + Send + Sync;

/// The server; stops when dropped.
pub struct RawServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    task: AbortHandle,
}

impl RawServer {
    /// Listens on `bind` (`127.0.0.1:0`, `[::1]:0`).
    pub async fn start(
        bind: &str,
        answer: impl Fn(usize, &[u8]) -> Vec<u8> + Send + Sync + 'static,
    ) -> RawServer {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Answerer> = Arc::new(answer);
        let kept = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, answer) = (Arc::clone(&kept), Arc::clone(&answer));
                tokio::spawn(serve(stream, seen, answer));
            }
        })
        .abort_handle();
        RawServer { addr, seen, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, as it came off the wire.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, seen: Arc<Mutex<Vec<Vec<u8>>>>, answer: Arc<Answerer>) {
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        let n = {
            let mut seen = seen.lock().unwrap();
            seen.push(request.clone());
            seen.len() - 1
        };
        let reply = answer(n, &request);
        if reply.is_empty() {
            // No answer: the connection is held open and never written to.
            return std::future::pending().await;
        }
        if stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// Reads one whole request (its body by `Content-Length` or chunked framing) off `stream`;
/// `None` once the connection ends.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let head_end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at + 4;
        }
        fill(stream, buffer).await?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok());
    let chunked = head
        .lines()
        .any(|line| line.starts_with("transfer-encoding:") && line.contains("chunked"));
    let end = if chunked {
        chunked_end(stream, buffer, head_end).await?
    } else {
        let end = head_end + length.unwrap_or(0);
        while buffer.len() < end {
            fill(stream, buffer).await?;
        }
        end
    };
    Some(buffer.drain(..end).collect())
}

/// Where the chunked body that starts at `from` ends (past its last chunk and trailers).
async fn chunked_end(stream: &mut TcpStream, buffer: &mut Vec<u8>, from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let line_end = loop {
            if let Some(end) = find(&buffer[at..], b"\r\n") {
                break at + end;
            }
            fill(stream, buffer).await?;
        };
        let size_text = String::from_utf8_lossy(&buffer[at..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailers, if any, then the empty line.
            loop {
                let line_end = loop {
                    if let Some(end) = find(&buffer[at..], b"\r\n") {
                        break at + end;
                    }
                    fill(stream, buffer).await?;
                };
                let empty = line_end == at;
                at = line_end + 2;
                if empty {
                    return Some(at);
                }
            }
        }
        while buffer.len() < at + size + 2 {
            fill(stream, buffer).await?;
        }
        at += size + 2;
    }
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The values of header `name` (any case) in a raw request, in order.
pub fn header_values(raw: &[u8], name: &str) -> Vec<String> {
    let head_end = find(raw, b"\r\n\r\n").unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..head_end])
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// A raw request's head (up to the empty line) and its body with any chunked framing undone.
pub fn head_and_body(raw: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let head_end = find(raw, b"\r\n\r\n").map_or(raw.len(), |at| at + 4);
    let (head, mut rest) = raw.split_at(head_end);
    if !header_values(raw, "transfer-encoding")
        .iter()
        .any(|v| v.contains("chunked"))
    {
        return (head.to_vec(), rest.to_vec());
    }
    let mut body = Vec::new();
    while let Some(line_end) = find(rest, b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    (head.to_vec(), body)
}

/// The raw request without its `Authorization` line(s).
pub fn without_authorization(raw: &[u8]) -> Vec<u8> {
    let head_end = find(raw, b"\r\n\r\n").map_or(raw.len(), |at| at + 4);
    let head = &raw[..head_end];
    let mut out = Vec::with_capacity(raw.len());
    for line in head.split_inclusive(|b| *b == b'\n') {
        if !line.to_ascii_lowercase().starts_with(b"authorization:") {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&raw[head_end..]);
    out
}

/// A whole answer: status line, `Content-Length`, the given header lines and body.
pub fn answer(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// Vault's success, as JSON.
pub fn vault_success() -> Vec<u8> {
    answer(
        "200 OK",
        &[
            ("content-type", "application/json;charset=UTF-8"),
            ("x-vaultapi-status", "SUCCESS"),
        ],
        r#"{"responseStatus":"SUCCESS","data":[]}"#,
    )
}

/// Vault's answer to a bad token, as JSON.
pub fn vault_invalid_session() -> Vec<u8> {
    answer(
        "200 OK",
        &[
            ("content-type", "application/json;charset=UTF-8"),
            ("x-vaultapi-status", "FAILURE"),
        ],
        crate::common::INVALID_SESSION,
    )
}

/// Answers `rejected` to requests carrying token `bad` (as `Bearer bad`), success to any other.
pub fn reject_token(
    bad: &'static str,
    rejected: impl Fn() -> Vec<u8> + Send + Sync + 'static,
) -> impl Fn(usize, &[u8]) -> Vec<u8> + Send + Sync + 'static {
    let bad = format!("Bearer {bad}");
    move |_, raw| {
        if header_values(raw, "authorization").contains(&bad) {
            rejected()
        } else {
            vault_success()
        }
    }
}
