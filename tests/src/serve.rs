//! `pretext serve` under test: started on a free loopback port, stopped when dropped, and
//! spoken to with raw HTTP requests, so a test can send what no browser would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::process::pretext_command;

/// A running `pretext serve`.
pub struct Served {
    child: Child,
    pub addr: SocketAddr,
}

impl Served {
    /// Starts `pretext serve RUNS --addr 127.0.0.1:0 --dist DIST` and waits for the line
    /// that names its URL.
    pub fn start(runs: &Path, dist: &Path) -> Self {
        let runs = runs.to_str().expect("test paths are UTF-8");
        let dist = dist.to_str().expect("test paths are UTF-8");
        let mut child = pretext_command(&["serve", runs, "--addr", "127.0.0.1:0", "--dist", dist], &[])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start pretext serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("cannot read pretext serve's first line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("pretext serve did not print its address: {line:?}"));
        Self { child, addr }
    }

    /// `http://ADDR/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Sends `METHOD TARGET` and returns the status code, the headers (lower-case names)
    /// and the body.
    pub fn request(&self, method: &str, target: &str) -> Reply {
        self.raw(format!("{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr).as_bytes())
    }

    /// A connection that stays open between requests, as a browser's do.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("cannot connect to pretext serve");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
        stream
    }

    /// Sends a keep-alive `GET target` on `stream` and reads exactly its answer (by its
    /// `Content-Length`), leaving the connection open; `None` if none came within 10 s.
    pub fn get_on(&self, stream: &mut TcpStream, target: &str) -> Option<Reply> {
        let request = format!("GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n", self.addr);
        stream.write_all(request.as_bytes()).ok()?;
        let mut bytes = Vec::new();
        let mut byte = [0u8; 1];
        while !bytes.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).ok()?;
            bytes.push(byte[0]);
        }
        let head = Reply::parse(&bytes);
        let len: usize = head.header("content-length").and_then(|v| v.parse().ok()).expect("a Content-Length");
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).ok()?;
        Some(Reply { body, ..head })
    }

    /// Sends bytes as they are and reads the answer until the server closes.
    pub fn raw(&self, request: &[u8]) -> Reply {
        let mut stream = TcpStream::connect(self.addr).expect("cannot connect to pretext serve");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a read timeout");
        stream.write_all(request).expect("cannot send the request");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).expect("cannot read the answer");
        Reply::parse(&bytes)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    fn parse(bytes: &[u8]) -> Self {
        let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP answer has a header end");
        let head = String::from_utf8_lossy(&bytes[..split]);
        let mut lines = head.lines();
        let status_line = lines.next().unwrap_or_default();
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Self { status, headers, body: bytes[split + 4..].to_vec() }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
