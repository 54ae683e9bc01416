//! The sanitizer against lapin's own parser (amq-protocol): whatever goes in, what
//! comes out parses, and frames that were fine come out unchanged.

use amq_protocol::frame::{parse_frame, AMQPFrame};
use amq_protocol::types::AMQPValue;
use proptest::prelude::*;

use super::*;

/// A frame of `kind` on channel 1 around `payload`.
fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind, 0, 1];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(FRAME_END);
    out
}

/// A content header payload with these flags and encoded properties.
fn header(flags: u16, properties: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 60, 0, 0];
    out.extend_from_slice(&10u64.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(properties);
    out
}

fn short(value: &[u8]) -> Vec<u8> {
    let mut out = vec![value.len() as u8];
    out.extend_from_slice(value);
    out
}

fn table(entries: &[u8]) -> Vec<u8> {
    let mut out = (entries.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(entries);
    out
}

fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut value = vec![b'S', 0, 0, 0, 1, b'x'];
    for _ in 0..depth {
        let mut next = vec![b'A'];
        next.extend_from_slice(&(value.len() as u32).to_be_bytes());
        next.extend_from_slice(&value);
        value = next;
    }
    value
}

fn sanitize(input: &[u8]) -> Vec<u8> {
    let mut sanitizer = Sanitizer::default();
    let mut out = Vec::new();
    sanitizer.feed(input, &mut out);
    out
}

/// Parses one frame as lapin does; panics with the parser's error otherwise.
fn parse(bytes: &[u8]) -> AMQPFrame {
    let (rest, frame) =
        parse_frame(bytes).unwrap_or_else(|err| panic!("lapin cannot parse: {err:?}"));
    assert!(rest.is_empty(), "{} bytes after the frame", rest.len());
    frame
}

fn repaired_list(frame: &AMQPFrame) -> Option<String> {
    let AMQPFrame::Header(_, header) = frame else {
        panic!("not a content header: {frame:?}");
    };
    let headers = header.properties.headers().as_ref()?;
    match headers.inner().get(REPAIRED_HEADER)? {
        AMQPValue::LongString(list) => Some(String::from_utf8_lossy(list.as_bytes()).into_owned()),
        other => panic!("marker of the wrong type: {other:?}"),
    }
}

#[test]
fn ordinary_frames_pass_unchanged() {
    let mut properties = short(b"application/json");
    properties.extend(table(&[&short(b"k")[..], b"S\0\0\0\x01v"].concat()));
    properties.push(2);
    properties.extend(short(b"corr-1"));
    properties.extend(short(b"amq.gen-abc"));
    let input = frame(FRAME_HEADER, &header(0b1011_0110_0000_0000, &properties));
    assert_eq!(sanitize(&input), input);
    assert_eq!(repaired_list(&parse(&input)), None);
}

#[test]
fn a_correlation_id_that_is_not_utf8_is_repaired_and_marked() {
    let input = frame(FRAME_HEADER, &header(1 << 10, &short(b"a\xffb")));
    assert!(
        parse_frame(&input[..]).is_err(),
        "the raw frame should break lapin"
    );
    let out = sanitize(&input);
    let parsed = parse(&out);
    assert_eq!(repaired_list(&parsed).as_deref(), Some("correlation_id"));
    let AMQPFrame::Header(_, header) = parsed else {
        unreachable!()
    };
    assert_eq!(
        header
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("a?b")
    );
    assert_eq!(header.body_size, 10);
}

#[test]
fn a_header_nested_deeper_than_the_limit_is_replaced() {
    for depth in [MAX_DEPTH, 1_800, 26_000] {
        let entries = [&short(b"deep")[..], &nested_arrays(depth)].concat();
        let mut properties = table(&entries);
        properties.extend(short(b"corr"));
        let input = frame(FRAME_HEADER, &header((1 << 13) | (1 << 10), &properties));
        let parsed = parse(&sanitize(&input));
        assert_eq!(
            repaired_list(&parsed).as_deref(),
            Some("headers"),
            "depth {depth}"
        );
        let AMQPFrame::Header(_, header) = parsed else {
            unreachable!()
        };
        assert_eq!(
            header
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.as_str()),
            Some("corr")
        );
    }
    let shallow = [&short(b"deep")[..], &nested_arrays(MAX_DEPTH - 1)].concat();
    let input = frame(FRAME_HEADER, &header(1 << 13, &table(&shallow)));
    assert_eq!(sanitize(&input), input, "a header within the limit is kept");
}

#[test]
fn header_keys_and_routing_keys_that_are_not_utf8_are_repaired() {
    let entries = [&short(b"k\xfe")[..], b"S\0\0\0\x01v"].concat();
    let input = frame(FRAME_HEADER, &header(1 << 13, &table(&entries)));
    assert_eq!(
        repaired_list(&parse(&sanitize(&input))).as_deref(),
        Some("headers")
    );

    // basic.deliver: consumer tag, delivery tag, redelivered, exchange, routing key.
    let mut deliver = vec![0, 60, 0, 60];
    deliver.extend(short(b"ctag"));
    deliver.extend_from_slice(&7u64.to_be_bytes());
    deliver.push(0);
    deliver.extend(short(b""));
    deliver.extend(short(b"q\xc3"));
    let input = frame(FRAME_METHOD, &deliver);
    assert!(parse_frame(&input[..]).is_err());
    let out = sanitize(&input);
    assert_eq!(out.len(), input.len());
    parse(&out);
}

#[test]
fn unreadable_properties_are_dropped_and_marked() {
    // Flags promise a correlation id the payload does not hold, then trailing bytes.
    for payload in [header(1 << 10, &[5, b'a']), header(0, b"junk")] {
        let parsed = parse(&sanitize(&frame(FRAME_HEADER, &payload)));
        assert_eq!(repaired_list(&parsed).as_deref(), Some("properties"));
    }
}

#[test]
fn frames_split_across_reads_come_out_the_same() {
    let bad = frame(FRAME_HEADER, &header(1 << 9, &short(b"r\xff")));
    let body = frame(3, b"0123456789");
    let stream = [&bad[..], &body[..], &bad[..]].concat();
    let whole = sanitize(&stream);
    let mut sanitizer = Sanitizer::default();
    let mut pieces = Vec::new();
    for byte in &stream {
        sanitizer.feed(std::slice::from_ref(byte), &mut pieces);
    }
    assert_eq!(pieces, whole);
    assert_eq!(sanitizer.repaired(), 2);
}

#[test]
fn a_body_over_the_limit_is_dropped_frame_by_frame() {
    let mut big_header = header(1 << 10, &short(b"corr"));
    big_header[4..12].copy_from_slice(&100u64.to_be_bytes());
    let small = frame(FRAME_HEADER, &header(0, &[]));
    let stream = [
        frame(FRAME_HEADER, &big_header),
        frame(3, &[b'x'; 60]),
        frame(3, &[b'x'; 40]),
        small.clone(),
        frame(3, b"0123456789"),
    ]
    .concat();
    let mut sanitizer = Sanitizer::with_body_limit(64);
    let mut out = Vec::new();
    sanitizer.feed(&stream, &mut out);
    let (rest, first) = parse_frame(&out[..]).expect("parses");
    assert_eq!(repaired_list(&first).as_deref(), Some("body"));
    let AMQPFrame::Header(_, header) = &first else {
        unreachable!()
    };
    assert_eq!(header.body_size, 0);
    assert_eq!(
        header
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("corr")
    );
    // The two body frames are gone; the next message and its body pass unchanged.
    assert_eq!(rest, [&small[..], &frame(3, b"0123456789")[..]].concat());
}

#[test]
fn a_refused_protocol_version_passes_through() {
    let refusal = b"AMQP\x00\x00\x09\x01";
    assert_eq!(sanitize(refusal), refusal);
}

/// Arbitrary bytes shaped like a field value, possibly nested and possibly broken.
fn field_value() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        any::<Vec<u8>>().prop_map(|bytes| [
            &[b'S'][..],
            &(bytes.len() as u32).to_be_bytes(),
            &bytes
        ]
        .concat()),
        any::<[u8; 8]>().prop_map(|bytes| [&[b'l'][..], &bytes].concat()),
        Just(vec![b'V']),
        any::<Vec<u8>>(),
    ];
    leaf.prop_recursive(6, 64, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|values| {
                let content = values.concat();
                [&[b'A'][..], &(content.len() as u32).to_be_bytes(), &content].concat()
            }),
            proptest::collection::vec((any::<Vec<u8>>(), inner), 0..4).prop_map(|entries| {
                let content: Vec<u8> = entries
                    .iter()
                    .flat_map(|(key, value)| {
                        [short(&key[..key.len().min(20)]), value.clone()].concat()
                    })
                    .collect();
                [&[b'F'][..], &(content.len() as u32).to_be_bytes(), &content].concat()
            }),
        ]
    })
}

proptest! {
    #[test]
    fn whatever_the_properties_lapin_can_parse_the_result(
        flags in any::<u16>(),
        strings in proptest::collection::vec(any::<Vec<u8>>(), 14),
        key in any::<Vec<u8>>(),
        value in field_value(),
        tail in proptest::collection::vec(any::<u8>(), 0..3),
    ) {
        let mut properties = Vec::new();
        for (index, (_, kind)) in PROPERTIES.iter().enumerate() {
            if flags & (1 << (15 - index)) == 0 {
                continue;
            }
            match kind {
                Kind::Short => properties.extend(short(&strings[index][..strings[index].len().min(255)])),
                Kind::Table => properties.extend(table(&[short(&key[..key.len().min(255)]), value.clone()].concat())),
                Kind::Octet => properties.push(2),
                Kind::Timestamp => properties.extend_from_slice(&1u64.to_be_bytes()),
            }
        }
        properties.extend_from_slice(&tail);
        let input = frame(FRAME_HEADER, &header(flags, &properties));
        let out = sanitize(&input);
        let parsed = parse(&out);
        if parse_frame(&input[..]).is_ok() && out != input {
            // Only a too-deep header may change a frame lapin could already parse.
            let list = repaired_list(&parsed);
            prop_assert_eq!(list.as_deref(), Some("headers"));
        }
    }
}
