//! The fuzz input format: one selector byte for the `content_type` property, then the
//! body.
//!
//! The selector (taken modulo 8) picks one of seven fixed content types whose verdict
//! is known, or (7) a free content type: the bytes up to the first `\n` (decoded lossily,
//! as the AMQP property is a string), the body being what follows.

/// The fixed content types and whether docs/protocol.md accepts them.
pub const FIXED: [(Option<&str>, bool); 7] = [
    (None, true),
    (Some("application/json"), true),
    (Some("application/json; charset=utf-8"), true),
    (Some("Application/JSON;charset=\"UTF-8\""), true),
    (Some("text/plain"), false),
    (Some(""), false),
    (Some("application/json; charset=iso-8859-1"), false),
];

/// The selector value of a free content type.
pub const FREE: u8 = 7;

/// The `content_type` property of one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentType {
    /// One of [`FIXED`], with its known verdict.
    Fixed {
        /// The property, or `None` when absent.
        value: Option<&'static str>,
        /// Whether docs/protocol.md accepts it.
        accepted: bool,
    },
    /// A content type chosen by the fuzzer; its verdict is not predicted.
    Free(String),
}

impl ContentType {
    /// The property as `decode` takes it.
    pub fn as_option(&self) -> Option<&str> {
        match self {
            ContentType::Fixed { value, .. } => *value,
            ContentType::Free(text) => Some(text),
        }
    }
}

/// One fuzz input, split.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The `content_type` property.
    pub content_type: ContentType,
    /// The message body.
    pub body: &'a [u8],
}

impl<'a> Input<'a> {
    /// Splits raw fuzz bytes; `None` for the empty input.
    pub fn parse(data: &'a [u8]) -> Option<Input<'a>> {
        let (&selector, rest) = data.split_first()?;
        let selector = selector % 8;
        if selector == FREE {
            let (property, body) = match rest.iter().position(|&byte| byte == b'\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &[][..]),
            };
            return Some(Input {
                content_type: ContentType::Free(String::from_utf8_lossy(property).into_owned()),
                body,
            });
        }
        let (value, accepted) = FIXED[usize::from(selector)];
        Some(Input {
            content_type: ContentType::Fixed { value, accepted },
            body: rest,
        })
    }
}

/// The bytes of an input: the inverse of [`Input::parse`] (used by the seed tests).
pub fn encode(selector: u8, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![selector];
    if let Some(property) = content_type {
        bytes.extend_from_slice(property.as_bytes());
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_picks_a_fixed_content_type_modulo_eight() {
        let input = Input::parse(b"\x09{}").expect("not empty");
        assert_eq!(input.content_type.as_option(), Some("application/json"));
        assert_eq!(input.body, b"{}");
    }

    #[test]
    fn free_content_type_ends_at_the_first_newline() {
        let bytes = encode(FREE, Some("application/json;x=1"), b"{\n}");
        let input = Input::parse(&bytes).expect("not empty");
        assert_eq!(
            input.content_type,
            ContentType::Free("application/json;x=1".into())
        );
        assert_eq!(input.body, b"{\n}");
        let input = Input::parse(b"\x07text/plain").expect("not empty");
        assert_eq!(input.body, b"");
    }

    #[test]
    fn empty_input_is_skipped() {
        assert!(Input::parse(b"").is_none());
    }
}
