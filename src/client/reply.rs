//! The worker's reply envelope, typed.

use std::fmt;

use serde::Deserialize;

use crate::error::Code;

/// A reply of the worker (the envelope of `schemas/reply.schema.json`), typed.
///
/// `Debug` leaves out the JWT, which is a credential for Tucano.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    /// `status.code`.
    pub code: Code,
    /// `data.subscription_id` (32 upper-case hex digits) on `OK`, else `None`.
    pub subscription_id: Option<String>,
    /// `data.jwt`, the signed JWT for Tucano, on `OK`, else `None`.
    pub jwt: Option<String>,
    /// `status.description`: empty on `OK`, else the code's fixed sentence.
    pub description: String,
    /// `status.message`: empty on `OK`, else what exactly was wrong.
    pub message: String,
    /// The reply body exactly as received (UTF-8).
    pub body: String,
}

#[derive(Deserialize)]
struct Envelope {
    data: Option<Data>,
    status: Status,
}

#[derive(Deserialize)]
struct Data {
    subscription_id: String,
    jwt: String,
}

#[derive(Deserialize)]
struct Status {
    code: String,
    description: String,
    message: String,
}

impl Reply {
    /// Reads a reply body; the error says what is not as the envelope requires.
    pub fn parse(body: &[u8]) -> Result<Reply, String> {
        let text = std::str::from_utf8(body).map_err(|err| format!("not UTF-8: {err}"))?;
        let envelope: Envelope =
            serde_json::from_str(text).map_err(|err| format!("not the envelope: {err}"))?;
        let code = Code::parse(&envelope.status.code)
            .ok_or_else(|| format!("unknown status code {:?}", envelope.status.code))?;
        if (code == Code::Ok) != envelope.data.is_some() {
            return Err(format!("data does not match status {code}"));
        }
        let (subscription_id, jwt) = match envelope.data {
            Some(data) => (Some(data.subscription_id), Some(data.jwt)),
            None => (None, None),
        };
        Ok(Reply {
            code,
            subscription_id,
            jwt,
            description: envelope.status.description,
            message: envelope.status.message,
            body: text.to_owned(),
        })
    }

    /// Whether the code is `OK`.
    pub fn is_ok(&self) -> bool {
        self.code == Code::Ok
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("code", &self.code)
            .field("subscription_id", &self.subscription_id)
            .field("jwt", &self.jwt.as_ref().map(|_| "<redacted>"))
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_and_error_envelopes_are_read() {
        let ok = br#"{"data":{"subscription_id":"75E3E50139F24DC3A6C9AA0C026D0292","jwt":"a.b.c"},"status":{"code":"OK","description":"","message":""}}"#;
        let reply = Reply::parse(ok).expect("ok reply");
        assert!(reply.is_ok());
        assert_eq!(reply.jwt.as_deref(), Some("a.b.c"));
        assert!(!format!("{reply:?}").contains("a.b.c"));
        let error =
            br#"{"data":null,"status":{"code":"NOT_FOUND","description":"d","message":"m"}}"#;
        let reply = Reply::parse(error).expect("error reply");
        assert_eq!(
            (reply.code, reply.subscription_id, reply.message.as_str()),
            (Code::NotFound, None, "m")
        );
    }

    #[test]
    fn other_bodies_are_refused() {
        for body in [
            &b"{}"[..],
            b"not json",
            br#"{"data":null,"status":{"code":"MAYBE","description":"","message":""}}"#,
            br#"{"data":null,"status":{"code":"OK","description":"","message":""}}"#,
        ] {
            assert!(Reply::parse(body).is_err(), "{body:?}");
        }
    }
}
