//! The frames RabbitMQ sends, made safe for lapin before it parses them.
//!
//! RabbitMQ relays message properties as producers wrote them, but lapin's parser
//! (amq-protocol) cannot take every such frame: a short string that is not UTF-8
//! fails the parse and drops the whole connection, and a header table nested a few
//! thousand deep overflows the stack of lapin's I/O thread and aborts the process.
//! Either one, on a request queue, would stop the worker for every caller.
//!
//! [`Sanitizer`] sits between the socket and lapin and rewrites what lapin could not
//! take, so that every frame reaches it parseable and the hostile message becomes an
//! ordinary delivery:
//! - a short string that is not UTF-8 (a property, a header key, a routing key) has
//!   each invalid byte replaced by `?`, keeping its length;
//! - a header table nested deeper than [`MAX_DEPTH`], or one that does not parse, is
//!   replaced by an empty table; properties that do not parse are dropped;
//! - with a body limit ([`Sanitizer::with_body_limit`], the worker's request
//!   connection), a message whose body is larger has its body dropped as it arrives,
//!   frame by frame, and reaches lapin empty: one delivery costs the worker at most the
//!   limit, whatever size the broker accepts;
//! - a content header that was changed gets the header [`REPAIRED_HEADER`] listing
//!   what was repaired (`body` for a dropped body), so the worker can refuse the
//!   request with a clear code (see [`crate::handle`]) instead of answering a message
//!   it was not sent.
//!
//! Frames are rewritten whole; everything else passes through unchanged.

use std::collections::HashMap;

/// The header a repaired content header carries: a long string listing the repaired
/// properties, comma-separated (`correlation_id`, `reply_to`, `headers`, ...).
pub const REPAIRED_HEADER: &str = "x-tucano-repaired-properties";

/// The deepest nesting of arrays and tables a header may have. RabbitMQ's own
/// headers (`x-death`) nest three deep.
pub const MAX_DEPTH: usize = 32;

/// A frame larger than this is not inspected (RabbitMQ never sends one: its largest
/// frame_max is 128 KiB by default and 1 MiB at most in practice).
const MAX_INSPECTED: usize = 16 << 20;

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_END: u8 = 0xCE;
const BASIC: u16 = 60;

/// The names of the basic properties, from flag bit 15 down, and their kinds.
const PROPERTIES: [(&str, Kind); 14] = [
    ("content_type", Kind::Short),
    ("content_encoding", Kind::Short),
    ("headers", Kind::Table),
    ("delivery_mode", Kind::Octet),
    ("priority", Kind::Octet),
    ("correlation_id", Kind::Short),
    ("reply_to", Kind::Short),
    ("expiration", Kind::Short),
    ("message_id", Kind::Short),
    ("timestamp", Kind::Timestamp),
    ("type", Kind::Short),
    ("user_id", Kind::Short),
    ("app_id", Kind::Short),
    ("cluster_id", Kind::Short),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Short,
    Table,
    Octet,
    Timestamp,
}

/// Rewrites a stream of frames from the broker. Feed it what the socket gave
/// ([`Sanitizer::feed`]); it hands out the bytes lapin may read.
#[derive(Debug, Default)]
pub struct Sanitizer {
    /// Bytes read but not yet a whole frame.
    pending: Vec<u8>,
    /// Set when the stream is not a sequence of frames (the broker answered the
    /// protocol header with its own) or a frame is too large to inspect: from then on
    /// everything passes unchanged.
    transparent: bool,
    /// Whether a whole frame went by (the protocol header can only come first).
    started: bool,
    /// How many frames were rewritten.
    repaired: u64,
    /// The largest body passed on, if any is too large.
    body_limit: Option<u64>,
    /// Body bytes still to drop, by channel, of messages whose body was too large.
    dropping: HashMap<u16, u64>,
}

impl Sanitizer {
    /// A sanitizer that also drops bodies larger than `limit` bytes.
    pub fn with_body_limit(limit: u64) -> Sanitizer {
        Sanitizer {
            body_limit: Some(limit),
            ..Sanitizer::default()
        }
    }

    /// Takes `input` from the socket and appends to `out` every byte that is ready
    /// for lapin: whole frames, rewritten where needed. A partial frame waits.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.transparent {
            out.extend_from_slice(input);
            return;
        }
        self.pending.extend_from_slice(input);
        let mut at = 0;
        while let Some(head) = self.pending.get(at..at + 7) {
            if !self.started && head[0] == b'A' {
                // "AMQP" and a version: the broker refuses our protocol version.
                self.transparent = true;
                break;
            }
            let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
            if size > MAX_INSPECTED {
                self.transparent = true;
                break;
            }
            let Some(frame) = self.pending.get(at..at + 8 + size) else {
                break;
            };
            self.started = true;
            let channel = u16::from_be_bytes([head[1], head[2]]);
            at += 8 + size;
            if frame[0] == FRAME_BODY {
                if let Some(left) = self.dropping.get_mut(&channel) {
                    *left = left.saturating_sub(size as u64);
                    if *left == 0 {
                        self.dropping.remove(&channel);
                    }
                    continue;
                }
            }
            match rewrite(frame, self.body_limit) {
                Some((new, dropped)) => {
                    self.repaired += 1;
                    out.extend_from_slice(&new);
                    if dropped > 0 {
                        self.dropping.insert(channel, dropped);
                    }
                }
                None => out.extend_from_slice(frame),
            }
        }
        self.pending.drain(..at);
        if self.transparent {
            out.append(&mut self.pending);
        }
    }

    /// What is left of a partial frame when the socket closes: passed on as is, so
    /// lapin sees the same truncated stream it would have seen.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.pending);
    }

    /// How many frames were rewritten so far.
    pub fn repaired(&self) -> u64 {
        self.repaired
    }
}

/// The rewritten frame, and how many body bytes to drop after it, or `None` when
/// `frame` (head, payload and end byte) is fine.
fn rewrite(frame: &[u8], body_limit: Option<u64>) -> Option<(Vec<u8>, u64)> {
    let kind = frame[0];
    let payload = &frame[7..frame.len() - 1];
    if frame[frame.len() - 1] != FRAME_END {
        return None;
    }
    let (new_payload, dropped) = match kind {
        FRAME_METHOD => (repair_method(payload)?, 0),
        FRAME_HEADER => repair_content_header(payload, body_limit)?,
        _ => return None,
    };
    let mut out = Vec::with_capacity(new_payload.len() + 8);
    out.extend_from_slice(&frame[..3]);
    out.extend_from_slice(&(new_payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&new_payload);
    out.push(FRAME_END);
    Some((out, dropped))
}

/// Repairs the short strings of the methods that carry names another client chose:
/// `basic.deliver`, `basic.return`, `basic.get-ok`, and the reply texts of
/// `connection.close` and `channel.close`.
fn repair_method(payload: &[u8]) -> Option<Vec<u8>> {
    let class = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]);
    let method = u16::from_be_bytes([*payload.get(2)?, *payload.get(3)?]);
    // Each layout: the fields after the method id, as (skip bytes, short strings).
    let layout: &[Field] = match (class, method) {
        (BASIC, 60) => &[Field::Short, Field::Skip(9), Field::Short, Field::Short],
        (BASIC, 50) => &[Field::Skip(2), Field::Short, Field::Short, Field::Short],
        (BASIC, 71) => &[Field::Skip(9), Field::Short, Field::Short],
        (10, 50) | (20, 40) => &[Field::Skip(2), Field::Short],
        _ => return None,
    };
    let mut copy = payload.to_vec();
    let mut at = 4;
    let mut changed = false;
    for field in layout {
        match field {
            Field::Skip(n) => at += n,
            Field::Short => {
                let len = usize::from(*copy.get(at)?);
                let text = copy.get_mut(at + 1..at + 1 + len)?;
                changed |= repair_utf8(text);
                at += 1 + len;
            }
        }
    }
    changed.then_some(copy)
}

#[derive(Debug, Clone, Copy)]
enum Field {
    Skip(usize),
    Short,
}

/// Repairs a content header: see the module's doc. Also returns the body size it cut
/// to zero (0 when the body is kept).
fn repair_content_header(payload: &[u8], body_limit: Option<u64>) -> Option<(Vec<u8>, u64)> {
    // class (2), weight (2), body size (8), flags (2), then the properties. lapin
    // reads the basic class's properties whatever the class.
    if payload.len() < 14 {
        return None;
    }
    let flags = u16::from_be_bytes([payload[12], payload[13]]);
    let mut properties: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut repaired: Vec<&str> = Vec::new();
    let mut at = 14;
    let mut broken = false;
    for (index, (name, kind)) in PROPERTIES.iter().enumerate() {
        if flags & (1 << (15 - index)) == 0 {
            continue;
        }
        let Some((value, len)) = read_property(&payload[at..], *kind) else {
            broken = true;
            break;
        };
        let mut value = value.to_vec();
        match kind {
            Kind::Short => {
                if repair_utf8(&mut value[1..]) {
                    repaired.push(name);
                }
            }
            Kind::Table => match check_table(&mut value[4..]) {
                Table::Fine => {}
                Table::Repaired => repaired.push(name),
                Table::Broken => {
                    value = 0u32.to_be_bytes().to_vec();
                    repaired.push(name);
                }
            },
            Kind::Octet | Kind::Timestamp => {}
        }
        properties.push((index, value));
        at += len;
    }
    if broken || at != payload.len() {
        // Nothing after the first unreadable property can be trusted, and lapin
        // refuses bytes after the last one.
        properties.clear();
        repaired = vec!["properties"];
    }
    let body_size = u64::from_be_bytes(payload[4..12].try_into().ok()?);
    let dropped = match body_limit {
        Some(limit) if body_size > limit => {
            repaired.push("body");
            body_size
        }
        _ => 0,
    };
    if repaired.is_empty() {
        return None;
    }
    // Add the marker to the headers, creating them if there were none.
    let marker = marker_entry(&repaired.join(","));
    match properties.iter_mut().find(|(index, _)| *index == 2) {
        Some((_, table)) => {
            let len = u32::from_be_bytes([table[0], table[1], table[2], table[3]]) as usize;
            table.extend_from_slice(&marker);
            table[..4].copy_from_slice(&((len + marker.len()) as u32).to_be_bytes());
        }
        None => {
            let mut table = (marker.len() as u32).to_be_bytes().to_vec();
            table.extend_from_slice(&marker);
            let position = properties.partition_point(|(index, _)| *index < 2);
            properties.insert(position, (2, table));
        }
    }
    let mut new_flags = 0u16;
    for (index, _) in &properties {
        new_flags |= 1 << (15 - index);
    }
    let mut out = Vec::with_capacity(payload.len() + marker.len() + 8);
    out.extend_from_slice(&payload[..4]);
    let kept = if dropped > 0 { 0 } else { body_size };
    out.extend_from_slice(&kept.to_be_bytes());
    out.extend_from_slice(&new_flags.to_be_bytes());
    for (_, value) in &properties {
        out.extend_from_slice(value);
    }
    Some((out, dropped))
}

/// The encoded property at the start of `input` and its length.
fn read_property(input: &[u8], kind: Kind) -> Option<(&[u8], usize)> {
    let len = match kind {
        Kind::Short => 1 + usize::from(*input.first()?),
        Kind::Table => 4 + u32::from_be_bytes(input.get(..4)?.try_into().ok()?) as usize,
        Kind::Octet => 1,
        Kind::Timestamp => 8,
    };
    Some((input.get(..len)?, len))
}

/// The entry `REPAIRED_HEADER` = `list` (a long string).
fn marker_entry(list: &str) -> Vec<u8> {
    let mut entry = Vec::with_capacity(REPAIRED_HEADER.len() + list.len() + 6);
    entry.push(REPAIRED_HEADER.len() as u8);
    entry.extend_from_slice(REPAIRED_HEADER.as_bytes());
    entry.push(b'S');
    entry.extend_from_slice(&(list.len() as u32).to_be_bytes());
    entry.extend_from_slice(list.as_bytes());
    entry
}

/// What [`check_table`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Fine,
    /// Keys that were not UTF-8 were repaired in place.
    Repaired,
    /// Too deep, or not parseable: the table must be replaced.
    Broken,
}

/// Walks the entries of a field table (without its length prefix) as amq-protocol
/// parses them, without recursion: an explicit stack of the containers' ends.
/// Repairs keys in place.
fn check_table(entries: &mut [u8]) -> Table {
    // (end offset, whether the container is a table, i.e. its entries have keys)
    let mut open: Vec<(usize, bool)> = vec![(entries.len(), true)];
    let mut at = 0;
    let mut repaired = false;
    while let Some(&(end, is_table)) = open.last() {
        if at == end {
            open.pop();
            continue;
        }
        if is_table {
            let Some(&len) = entries.get(at) else {
                return Table::Broken;
            };
            let key_end = at + 1 + usize::from(len);
            if key_end > end {
                return Table::Broken;
            }
            repaired |= repair_utf8(&mut entries[at + 1..key_end]);
            at = key_end;
        }
        let Some(&tag) = entries.get(at).filter(|_| at < end) else {
            return Table::Broken;
        };
        at += 1;
        let fixed = match tag {
            b't' | b'b' | b'B' => Some(1),
            b's' | b'U' | b'u' => Some(2),
            b'I' | b'i' | b'f' => Some(4),
            b'l' | b'L' | b'd' | b'T' => Some(8),
            b'D' => Some(5),
            b'V' => Some(0),
            b'S' | b'x' | b'A' | b'F' => None,
            _ => return Table::Broken,
        };
        match fixed {
            Some(n) => at += n,
            None => {
                let Some(len) = entries.get(at..at + 4) else {
                    return Table::Broken;
                };
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                at += 4;
                let inner_end = at.saturating_add(len);
                if inner_end > end {
                    return Table::Broken;
                }
                match tag {
                    b'A' | b'F' => {
                        if open.len() >= MAX_DEPTH {
                            return Table::Broken;
                        }
                        open.push((inner_end, tag == b'F'));
                    }
                    _ => at = inner_end,
                }
            }
        }
        if at > end {
            return Table::Broken;
        }
    }
    if repaired {
        Table::Repaired
    } else {
        Table::Fine
    }
}

/// Replaces every byte of `text` that is not part of valid UTF-8 with `?`, in place.
/// Returns whether anything changed.
fn repair_utf8(text: &mut [u8]) -> bool {
    let mut changed = false;
    let mut at = 0;
    while at < text.len() {
        match std::str::from_utf8(&text[at..]) {
            Ok(_) => break,
            Err(err) => {
                let bad_start = at + err.valid_up_to();
                let bad_len = err.error_len().unwrap_or(text.len() - bad_start);
                text[bad_start..bad_start + bad_len].fill(b'?');
                changed = true;
                at = bad_start + bad_len;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests;
