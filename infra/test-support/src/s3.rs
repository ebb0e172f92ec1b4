//! A real S3-compatible server per test: moto's server mode (`moto_server`, installed pinned by
//! `scripts/install-tools moto`) on a free port, with a fresh bucket, killed on drop.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;

/// The environment variable naming the `moto_server` binary (else `.tools/bin`, then `PATH`).
pub const MOTO_SERVER_ENV: &str = "THINGLAKE_MOTO_SERVER";

/// Credentials the test server accepts (moto checks none; the client must still sign).
pub const ACCESS_KEY_ID: &str = "thinglake-test";
pub const SECRET_ACCESS_KEY: &str = "thinglake-test-secret";
pub const REGION: &str = "us-east-1";

/// A `moto_server` with one empty bucket; killed on drop. Its objects live in its memory.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    port: u16,
    bucket: String,
    // The server's log, for a failing test to show.
    dir: TempDir,
}

impl S3Server {
    /// Starts the server on a free port, waits until it answers and creates the bucket `lake`.
    /// Panics if `moto_server` is not installed or does not start.
    pub fn start() -> Self {
        let binary = find_moto_server().unwrap_or_else(|searched| {
            panic!("cannot run the S3 tests without moto_server (searched {searched}); install it with `scripts/install-tools moto`")
        });
        let dir = tempfile::Builder::new().prefix("thinglake-s3-").tempdir().expect("a temporary directory for the S3 server's log");
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("the S3 server's log file");
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut server = Self { child, port, bucket: "lake".to_string(), dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.request("GET", "/", b"").is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("moto_server exited with {status}: {}", server.log());
            }
            assert!(Instant::now() < deadline, "moto_server did not answer within 30 s: {}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        let bucket = server.bucket.clone();
        server.create_bucket(&bucket);
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{}", self.bucket, prefix.trim_start_matches('/'))
    }

    /// Creates another bucket.
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = self.request("PUT", &format!("/{name}"), b"").expect("the S3 server answers");
        assert_eq!(status, 200, "creating bucket {name}: {body}");
    }

    /// The keys of the bucket's objects under `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{}?list-type=2&prefix={}", self.bucket, encode(prefix));
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={}", encode(t)));
            }
            let (status, body) = self.request("GET", &path, b"").expect("the S3 server answers");
            assert_eq!(status, 200, "listing {prefix}: {body}");
            keys.extend(elements(&body, "Key"));
            token = elements(&body, "NextContinuationToken").into_iter().next();
            if token.is_none() || elements(&body, "IsTruncated").first().map(String::as_str) != Some("true") {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// What the server logged so far (one line per request: method, path, status), without
    /// the terminal colours it adds.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default();
        let mut plain = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // An escape sequence: `ESC [ … m`.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        plain
    }

    /// One plain HTTP/1.1 request (moto checks no signatures); status and body.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other(format!("not HTTP: {text}")))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status: {head}")))?;
        let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
        Ok((status, if chunked { dechunk(body) } else { body.to_string() }))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$THINGLAKE_MOTO_SERVER`, `.tools/bin/moto_server` above the test binary or the working
/// directory, or `moto_server` on `PATH`; else what was searched.
fn find_moto_server() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(MOTO_SERVER_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let exe_dir = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf));
    let bases = exe_dir.into_iter().chain(std::env::current_dir().ok());
    for base in bases {
        for dir in base.ancestors() {
            let candidate = dir.join(".tools/bin/moto_server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| format!("${MOTO_SERVER_ENV}, .tools/bin and PATH"))
}

/// The texts of every `<name>…</name>` element, unescaped.
fn elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(text, _)| text))
        .map(|text| text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&"))
        .collect()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_server_has_an_empty_bucket_and_lists_what_is_put() {
        let s3 = S3Server::start();
        assert!(s3.keys("").is_empty());
        let (status, body) = s3.request("PUT", "/lake/a/b%20c.txt", b"hello").expect("put");
        assert_eq!(status, 200, "{body}");
        assert_eq!(s3.keys("a/"), vec!["a/b c.txt".to_string()]);
        assert!(s3.keys("b/").is_empty());
        assert_eq!(s3.url("x/y"), "s3://lake/x/y");
    }
}
