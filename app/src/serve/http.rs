//! HTTP/1.1 on one connection, for `pretext serve`: reads request heads (httparse), asks the
//! router for each answer, and writes it with a `Content-Length`. Connections are kept alive
//! until the client closes them or stays idle for [`IDLE`]; a malformed or oversized head, a
//! request with a body, or HTTP/1.0 gets its answer and then the connection closes. It knows
//! nothing of runs or files (that is the router's, in `mod.rs`) and never reads a body.
//!
//! Why not tiny_http, which this replaced: it hands each keep-alive connection to a pool
//! thread for the connection's whole life, and its pool can queue a new connection behind
//! busy ones when several arrive at once (it counts a woken thread as still idle). A browser
//! keeps its connections open, so a request on the queued connection waited minutes; the
//! browser test saw it on a loaded machine. One thread per connection cannot starve that way.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// How long a kept-alive connection may sit without a request before it is closed, and how
/// long a write may block on a client that does not read.
pub const IDLE: Duration = Duration::from_secs(30);

/// The largest request head read; a longer request line is answered 414, longer headers 431.
const MAX_HEAD: usize = 16 * 1024;

/// Headers parsed per request; a browser sends about fifteen.
const MAX_HEADERS: usize = 64;

/// How much of an unread request is drained before closing, so the client reads the answer
/// instead of a connection reset.
const MAX_DRAIN: usize = 1 << 20;

/// One answer: status, headers besides `Content-Length` and `Connection`, and the body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, body: Vec<u8>) -> Self {
        Self { status, headers: Vec::new(), body }
    }

    #[must_use]
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// A plain-text error answer.
    pub fn error(status: u16, text: &str) -> Self {
        Self::new(status, format!("{text}\n").into_bytes()).with("Content-Type", "text/plain; charset=utf-8")
    }
}

/// Answers the requests of one connection with `answer(method, target)` until it closes.
pub fn serve_connection(mut stream: TcpStream, answer: &dyn Fn(&str, &str) -> Reply) {
    if stream.set_read_timeout(Some(IDLE)).is_err() || stream.set_write_timeout(Some(IDLE)).is_err() {
        return;
    }
    let mut buf = Vec::with_capacity(4096);
    loop {
        let request = match next_request(&mut stream, &mut buf) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(refused) => {
                let reply = Reply::error(refused.status(), refused.text());
                log::info!("refused a request: {}", refused.text());
                if write_reply(&mut stream, &reply, false, true).is_ok() {
                    linger(&mut stream);
                }
                return;
            }
        };
        let reply = answer(&request.method, &request.target);
        log::info!("{} {} → {}", request.method, shorten(&request.target), reply.status);
        let close = !request.keep_alive;
        if let Err(e) = write_reply(&mut stream, &reply, request.method == "HEAD", close) {
            log::debug!("the client went away before the answer to {} was sent: {e}", shorten(&request.target));
            return;
        }
        if close {
            linger(&mut stream);
            return;
        }
    }
}

struct Request {
    method: String,
    target: String,
    keep_alive: bool,
}

/// Why a request head is answered with an error and the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Malformed,
    TargetTooLong,
    HeadersTooLarge,
    Version,
}

impl Refused {
    fn status(self) -> u16 {
        match self {
            Self::Malformed => 400,
            Self::TargetTooLong => 414,
            Self::HeadersTooLarge => 431,
            Self::Version => 505,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::Malformed => "the request is not valid HTTP/1.1",
            Self::TargetTooLong => "the request path is too long",
            Self::HeadersTooLarge => "the request headers are too large",
            Self::Version => "only HTTP/1.0 and HTTP/1.1 are served",
        }
    }
}

/// The next request head on the connection: `Ok(None)` when the client closed it, went
/// idle, or the socket failed. Bytes after the head (a pipelined request) stay in `buf`.
fn next_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<Request>, Refused> {
    loop {
        if !buf.is_empty() {
            if let Some((request, len)) = parse_head(buf)? {
                buf.drain(..len);
                return Ok(Some(request));
            }
            if buf.len() >= MAX_HEAD {
                let line_ended = buf.windows(2).any(|w| w == b"\r\n");
                return Err(if line_ended { Refused::HeadersTooLarge } else { Refused::TargetTooLong });
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Ok(None),
        }
    }
}

/// A complete head at the start of `buf` and its length; `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, Refused> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::Version) => return Err(Refused::Version),
        Err(httparse::Error::TooManyHeaders) => return Err(Refused::HeadersTooLarge),
        Err(_) => return Err(Refused::Malformed),
    };
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(Refused::Malformed);
    };
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
    };
    // A body would have to be read past to find the next request; no route takes one.
    let has_body = header("transfer-encoding").is_some() || header("content-length").is_some_and(|v| v.trim() != "0");
    let closes = header("connection").is_some_and(|v| v.split(',').any(|t| t.trim() == "close"));
    let keep_alive = version == 1 && !closes && !has_body;
    Ok(Some((Request { method: method.to_string(), target: target.to_string(), keep_alive }, len)))
}

fn write_reply(stream: &mut TcpStream, reply: &Reply, head_only: bool, close: bool) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&reply.body);
    }
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Ends the connection after a last answer: the write side first, then whatever the client
/// still sends is read and dropped (bounded), so its unread bytes do not turn the close
/// into a reset that would discard the answer.
fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut drained = 0;
    let mut chunk = [0u8; 8192];
    while drained < MAX_DRAIN {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// A URL cut for the log, so a hostile request cannot flood it.
fn shorten(url: &str) -> String {
    if url.len() <= 120 {
        return url.to_string();
    }
    let cut = (0..=120).rev().find(|&i| url.is_char_boundary(i)).unwrap_or(0);
    format!("{}… ({} bytes)", &url[..cut], url.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<(Request, usize)>, Refused> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        let cases = [
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nConnection: Keep-Alive, Close\r\n\r\n", false),
            ("GET / HTTP/1.0\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", false),
            ("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", true),
        ];
        for (text, keep) in cases {
            let (request, _) = head(text).ok().flatten().unwrap_or_else(|| panic!("{text:?} did not parse"));
            assert_eq!(request.keep_alive, keep, "{text:?}");
        }
    }

    #[test]
    fn a_pipelined_request_is_left_for_the_next_read() {
        let text = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let Ok(Some((request, len))) = head(text) else { panic!("the first head did not parse") };
        assert_eq!((request.method.as_str(), request.target.as_str()), ("GET", "/a"));
        assert_eq!(&text[len..], "GET /b HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn incomplete_and_bad_heads() {
        assert!(matches!(head("GET /a HTTP/1.1\r\nHost:"), Ok(None)));
        assert_eq!(head("GET /a HTTP/2.0\r\n\r\n").err(), Some(Refused::Version));
        assert_eq!(head("GET\0 / HTTP/1.1\r\n\r\n").err(), Some(Refused::Malformed));
    }
}
