//! `tucano-auth probe URL`: one plain HTTP/1.1 GET, for container health checks.
//!
//! The runtime image has no `curl`, so the binary probes its own `/readyz` (or any
//! other plain-HTTP URL). The request is hand-written over a [`TcpStream`]: a health
//! check needs the status line and a short body, not an HTTP client crate. Only
//! `http://` is understood; the answer is read until the server closes the connection
//! (the request says `Connection: close`), its `Content-Length` is reached, or the
//! last chunk of a chunked body arrives.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of an answer the probe reads: a status line, headers and a short body.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why the probe got no HTTP status (the command exits 2 for each).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL is not `http://host[:port][/path]`.
    #[error("not a plain HTTP URL (http://host[:port][/path]): {0}")]
    Url(String),
    /// No TCP connection, or it broke before a status line arrived.
    #[error("cannot reach {authority}: {source}")]
    Connect {
        /// `host:port` as given in the URL.
        authority: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// No complete answer within the timeout.
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    /// The server answered something that is not an HTTP/1.x response.
    #[error("not an HTTP response from {0}")]
    NotHttp(String),
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status line, without its line end (`HTTP/1.1 200 OK`).
    pub status_line: String,
    /// The status code.
    pub status: u16,
    /// The body, decoded from chunks if it came chunked, lossily as UTF-8.
    pub body: String,
}

impl Answer {
    /// A `2xx` status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Parses `--timeout`: `2s`, `500ms`, `1.5s`, or a number of seconds.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    match number.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 && value * scale <= 3600.0 => {
            Ok(Duration::from_secs_f64(value * scale))
        }
        _ => Err(format!(
            "`{text}` is not a duration between 1ms and 1h (2s, 500ms, 1.5)"
        )),
    }
}

/// GETs `url` and returns the answer, all within `timeout`.
pub async fn probe(url: &str, timeout: Duration) -> Result<Answer, ProbeError> {
    let target = Target::parse(url)?;
    tokio::time::timeout(timeout, exchange(&target))
        .await
        .map_err(|_| ProbeError::Timeout(target.authority.clone(), timeout))?
}

/// Where to connect and what to ask for.
struct Target {
    /// `host[:port]` as written, for the `Host` header and messages.
    authority: String,
    /// The host without IPv6 brackets, for the connection.
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, ProbeError> {
        let bad = || ProbeError::Url(crate::redact::url(url));
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('/') => (&rest[..at], rest[at..].to_owned()),
            Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
            None => (rest, "/".to_owned()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            // `[::1]` alone: the colon is inside the brackets, there is no port.
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['@', ' ']) || path.contains([' ', '\r', '\n']) {
            return Err(bad());
        }
        Ok(Target {
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            path,
        })
    }
}

async fn exchange(target: &Target) -> Result<Answer, ProbeError> {
    let io_error = |source| ProbeError::Connect {
        authority: target.authority.clone(),
        source,
    };
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(io_error)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tucano-auth-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(io_error)?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream.read(&mut buffer).await;
        let read = match read {
            Ok(read) => read,
            // A reset after a complete status line still tells the status.
            Err(_) if answer.windows(4).any(|w| w == b"\r\n\r\n") => 0,
            Err(err) => return Err(io_error(err)),
        };
        answer.extend_from_slice(&buffer[..read]);
        if read == 0 || answer.len() >= MAX_ANSWER_BYTES || complete(&answer) {
            break;
        }
    }
    parse_answer(&answer).ok_or_else(|| ProbeError::NotHttp(target.authority.clone()))
}

/// Splits `answer` into its head (status line and headers) and its raw body, once the
/// head is complete.
fn split_head(answer: &[u8]) -> Option<(&str, &[u8])> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    Some((head, &answer[end + 4..]))
}

/// The value of header `name` in `head`, if present.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn is_chunked(head: &str) -> bool {
    header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
}

/// Whether the whole answer is in, so the probe need not wait for the server to close.
fn complete(answer: &[u8]) -> bool {
    let Some((head, body)) = split_head(answer) else {
        return false;
    };
    if is_chunked(head) {
        return body.ends_with(b"0\r\n\r\n");
    }
    match header(head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(length) => body.len() >= length,
        None => false,
    }
}

fn parse_answer(answer: &[u8]) -> Option<Answer> {
    let (head, raw_body) = match split_head(answer) {
        Some(split) => split,
        // A server that closed after the status line alone still answered.
        None => (std::str::from_utf8(answer).ok()?.trim_end(), &[][..]),
    };
    let status_line = head.lines().next()?.trim_end().to_owned();
    let mut parts = status_line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    let status = code.parse::<u16>().ok()?;
    let body = if is_chunked(head) {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    Some(Answer {
        status_line,
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Decodes a chunked body as far as it is well formed.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..line_end])
            .ok()
            .and_then(|line| usize::from_str_radix(line.split(';').next()?.trim(), 16).ok());
        let start = line_end + 2;
        match size {
            Some(size) if size > 0 && raw.len() >= start + size => {
                body.extend_from_slice(&raw[start..start + size]);
                raw = raw.get(start + size + 2..).unwrap_or_default();
            }
            _ => break,
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_path() {
        let target = Target::parse("http://127.0.0.1:9477/readyz").expect("valid");
        assert_eq!(
            (target.host.as_str(), target.port, target.path.as_str()),
            ("127.0.0.1", 9477, "/readyz")
        );
        let target = Target::parse("http://[::1]:9477").expect("valid");
        assert_eq!((target.host.as_str(), target.port), ("::1", 9477));
        assert_eq!(target.path, "/");
        let target = Target::parse("http://[::1]/x?y=1").expect("valid");
        assert_eq!((target.host.as_str(), target.port), ("::1", 80));
        let target = Target::parse("http://example:8080?q").expect("valid");
        assert_eq!(target.path, "/?q");
        for bad in [
            "https://127.0.0.1/",
            "127.0.0.1:9477",
            "http://:9477/",
            "http://host:99999/",
            "http://user@host/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn timeouts_read_as_seconds_or_milliseconds() {
        assert_eq!(parse_timeout("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["0", "-1s", "soon", "2h", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let answer = b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert!(complete(answer));
        let parsed = parse_answer(answer).expect("an answer");
        assert_eq!(parsed.status, 503);
        assert_eq!(parsed.status_line, "HTTP/1.1 503 Service Unavailable");
        assert_eq!(parsed.body, "hello world");
    }

    #[test]
    fn an_answer_is_complete_at_its_content_length() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert!(complete(answer));
        assert!(!complete(&answer[..answer.len() - 1]));
        assert_eq!(parse_answer(answer).expect("an answer").body, "ok");
        assert!(parse_answer(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").is_none());
    }
}
