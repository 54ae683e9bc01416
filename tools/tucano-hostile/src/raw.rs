//! A raw AMQP 0-9-1 publisher: just enough of the protocol to log in, open a channel
//! with publisher confirms and publish a message whose properties are any bytes.
//!
//! Client libraries refuse to send what an attacker sends (a short string that is not
//! UTF-8, a header table nested thousands deep); RabbitMQ accepts it and hands it to
//! the worker. This writes the frames itself so tests can put exactly those bytes on
//! the queue.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;

/// How long any one answer from the broker may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The basic properties of a message, each as the raw bytes that go on the wire.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    /// `content_type` (a short string).
    pub content_type: Option<Vec<u8>>,
    /// `headers`: the encoded entries of a field table, without its length prefix
    /// (see [`crate::table`]).
    pub headers: Option<Vec<u8>>,
    /// `delivery_mode` (2 = persistent).
    pub delivery_mode: Option<u8>,
    /// `correlation_id` (a short string).
    pub correlation_id: Option<Vec<u8>>,
    /// `reply_to` (a short string).
    pub reply_to: Option<Vec<u8>>,
    /// `message_id` (a short string).
    pub message_id: Option<Vec<u8>>,
}

/// A connection with one channel in confirm mode.
#[derive(Debug)]
pub struct Publisher {
    stream: TcpStream,
    frame_max: u32,
}

/// Where to connect, from an `amqp://user:password@host:port/vhost` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    address: String,
    user: String,
    password: String,
    vhost: String,
}

fn parse_url(url: &str) -> io::Result<Target> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    let rest = url
        .strip_prefix("amqp://")
        .ok_or_else(|| invalid("only amqp:// URLs are supported"))?;
    let (authority, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let (credentials, host) = authority
        .rsplit_once('@')
        .unwrap_or(("guest:guest", authority));
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let address = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5672")
    };
    let vhost = match vhost {
        "" => "/".to_owned(),
        other => other.replace("%2f", "/").replace("%2F", "/"),
    };
    Ok(Target {
        address,
        user: user.to_owned(),
        password: password.to_owned(),
        vhost,
    })
}

impl Publisher {
    /// Connects to `url` (`amqp://user:password@host:port/vhost`), logs in with PLAIN,
    /// opens channel 1 and puts it in confirm mode.
    pub async fn connect(url: &str) -> io::Result<Publisher> {
        let target = parse_url(url)?;
        let stream = tokio::time::timeout(ANSWER_TIMEOUT, TcpStream::connect(&target.address))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting"))??;
        let mut publisher = Publisher {
            stream,
            frame_max: 4096,
        };
        publisher.stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
        publisher.expect_method(0, (10, 10)).await?;
        let mut start_ok = method(10, 11);
        put_u32(&mut start_ok, 0); // empty client-properties table
        put_short(&mut start_ok, b"PLAIN");
        let response = format!("\0{}\0{}", target.user, target.password);
        put_long(&mut start_ok, response.as_bytes());
        put_short(&mut start_ok, b"en_US");
        publisher.send(FRAME_METHOD, 0, &start_ok).await?;
        let tune = publisher.expect_method(0, (10, 30)).await?;
        let channel_max = read_u16(&tune, 4)?;
        let frame_max = read_u32(&tune, 6)?;
        publisher.frame_max = if frame_max == 0 { 131_072 } else { frame_max };
        let mut tune_ok = method(10, 31);
        tune_ok.extend_from_slice(&channel_max.to_be_bytes());
        tune_ok.extend_from_slice(&publisher.frame_max.to_be_bytes());
        tune_ok.extend_from_slice(&0u16.to_be_bytes()); // no heartbeats
        publisher.send(FRAME_METHOD, 0, &tune_ok).await?;
        let mut open = method(10, 40);
        put_short(&mut open, target.vhost.as_bytes());
        put_short(&mut open, b"");
        open.push(0);
        publisher.send(FRAME_METHOD, 0, &open).await?;
        publisher.expect_method(0, (10, 41)).await?;
        let mut channel_open = method(20, 10);
        put_short(&mut channel_open, b"");
        publisher.send(FRAME_METHOD, 1, &channel_open).await?;
        publisher.expect_method(1, (20, 11)).await?;
        let mut select = method(85, 10);
        select.push(0);
        publisher.send(FRAME_METHOD, 1, &select).await?;
        publisher.expect_method(1, (85, 11)).await?;
        Ok(publisher)
    }

    /// Publishes `body` to the default exchange with `routing_key` and waits for the
    /// broker's confirm. An error means the broker refused it or closed the channel.
    pub async fn publish(
        &mut self,
        routing_key: &[u8],
        properties: &Properties,
        body: &[u8],
    ) -> io::Result<()> {
        let mut publish = method(60, 40);
        publish.extend_from_slice(&0u16.to_be_bytes());
        put_short(&mut publish, b"");
        put_short(&mut publish, routing_key);
        publish.push(0);
        self.send(FRAME_METHOD, 1, &publish).await?;
        self.send(FRAME_HEADER, 1, &content_header(properties, body.len()))
            .await?;
        let chunk = (self.frame_max as usize).saturating_sub(8).max(1);
        for part in body.chunks(chunk) {
            self.send(FRAME_BODY, 1, part).await?;
        }
        loop {
            let (kind, channel, payload) = self.read_frame().await?;
            if kind != FRAME_METHOD || channel != 1 {
                continue;
            }
            match method_id(&payload)? {
                (60, 80) => return Ok(()),
                (60, 120) => return Err(io::Error::other("the broker nacked the message")),
                _ => {}
            }
        }
    }

    /// Closes the connection politely (best effort).
    pub async fn close(mut self) {
        let mut close = method(10, 50);
        close.extend_from_slice(&200u16.to_be_bytes());
        put_short(&mut close, b"bye");
        close.extend_from_slice(&[0, 0, 0, 0]);
        if self.send(FRAME_METHOD, 0, &close).await.is_ok() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), self.expect_method(0, (10, 51))).await;
        }
    }

    async fn send(&mut self, kind: u8, channel: u16, payload: &[u8]) -> io::Result<()> {
        let size = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        let mut frame = Vec::with_capacity(payload.len() + 8);
        frame.push(kind);
        frame.extend_from_slice(&channel.to_be_bytes());
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend_from_slice(payload);
        frame.push(FRAME_END);
        self.stream.write_all(&frame).await
    }

    async fn read_frame(&mut self) -> io::Result<(u8, u16, Vec<u8>)> {
        tokio::time::timeout(ANSWER_TIMEOUT, async {
            loop {
                let mut head = [0u8; 7];
                self.stream.read_exact(&mut head).await?;
                let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
                let mut payload = vec![0u8; size + 1];
                self.stream.read_exact(&mut payload).await?;
                payload.pop();
                if head[0] == FRAME_HEARTBEAT {
                    continue;
                }
                let channel = u16::from_be_bytes([head[1], head[2]]);
                if head[0] == FRAME_METHOD {
                    if let Some(reason) = closed(&payload) {
                        return Err(io::Error::new(io::ErrorKind::ConnectionAborted, reason));
                    }
                }
                return Ok((head[0], channel, payload));
            }
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer from the broker"))?
    }

    async fn expect_method(&mut self, channel: u16, id: (u16, u16)) -> io::Result<Vec<u8>> {
        loop {
            let (kind, on, payload) = self.read_frame().await?;
            if kind == FRAME_METHOD && on == channel && method_id(&payload)? == id {
                return Ok(payload);
            }
        }
    }
}

/// The reply text of a `connection.close` or `channel.close`, if `payload` is one.
fn closed(payload: &[u8]) -> Option<String> {
    match method_id(payload).ok()? {
        (10, 50) | (20, 40) => {
            let code = read_u16(payload, 4).ok()?;
            let len = usize::from(*payload.get(6)?);
            let text = payload.get(7..7 + len)?;
            Some(format!(
                "closed by the broker: {code} {}",
                String::from_utf8_lossy(text)
            ))
        }
        _ => None,
    }
}

fn content_header(properties: &Properties, body_len: usize) -> Vec<u8> {
    let mut flags = 0u16;
    let mut list = Vec::new();
    // Properties in the order of their flag bits, from bit 15 down.
    if let Some(value) = &properties.content_type {
        flags |= 1 << 15;
        put_short(&mut list, value);
    }
    if let Some(entries) = &properties.headers {
        flags |= 1 << 13;
        put_long(&mut list, entries);
    }
    if let Some(mode) = properties.delivery_mode {
        flags |= 1 << 12;
        list.push(mode);
    }
    if let Some(value) = &properties.correlation_id {
        flags |= 1 << 10;
        put_short(&mut list, value);
    }
    if let Some(value) = &properties.reply_to {
        flags |= 1 << 9;
        put_short(&mut list, value);
    }
    if let Some(value) = &properties.message_id {
        flags |= 1 << 7;
        put_short(&mut list, value);
    }
    let mut header = Vec::with_capacity(14 + list.len());
    header.extend_from_slice(&60u16.to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&(body_len as u64).to_be_bytes());
    header.extend_from_slice(&flags.to_be_bytes());
    header.extend_from_slice(&list);
    header
}

fn method(class: u16, id: u16) -> Vec<u8> {
    let mut payload = Vec::with_capacity(64);
    payload.extend_from_slice(&class.to_be_bytes());
    payload.extend_from_slice(&id.to_be_bytes());
    payload
}

fn method_id(payload: &[u8]) -> io::Result<(u16, u16)> {
    Ok((read_u16(payload, 0)?, read_u16(payload, 2)?))
}

/// Appends a short string: a length byte, then at most 255 bytes (longer input is cut,
/// as the wire format cannot say more).
pub(crate) fn put_short(out: &mut Vec<u8>, value: &[u8]) {
    let value = &value[..value.len().min(255)];
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

/// Appends a long string (or a field table's entries): a 32-bit length, then the bytes.
pub(crate) fn put_long(out: &mut Vec<u8>, value: &[u8]) {
    put_u32(out, value.len() as u32);
    out.extend_from_slice(value);
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn read_u16(payload: &[u8], at: usize) -> io::Result<u16> {
    payload
        .get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short frame"))
}

fn read_u32(payload: &[u8], at: usize) -> io::Result<u32> {
    payload
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short frame"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_address_credentials_and_vhost() {
        let target = parse_url("amqp://guest:guest@127.0.0.1:5672/%2f").expect("parses");
        assert_eq!(target.address, "127.0.0.1:5672");
        assert_eq!(
            (target.user.as_str(), target.password.as_str()),
            ("guest", "guest")
        );
        assert_eq!(target.vhost, "/");
        let bare = parse_url("amqp://rabbit").expect("parses");
        assert_eq!(bare.address, "rabbit:5672");
        assert!(parse_url("amqps://x").is_err());
    }

    #[test]
    fn content_header_sets_flags_in_wire_order() {
        let properties = Properties {
            content_type: Some(b"a".to_vec()),
            reply_to: Some(b"r".to_vec()),
            ..Properties::default()
        };
        let header = content_header(&properties, 3);
        assert_eq!(&header[4..12], &3u64.to_be_bytes());
        assert_eq!(u16::from_be_bytes([header[12], header[13]]), 0x8200);
        assert_eq!(&header[14..], b"\x01a\x01r");
    }
}
