//! The invariants of `tucano_auth::request::decode`, checked on one fuzz input.
//!
//! [`check`] decodes one input ([`input`] says how bytes become a `content_type` and a
//! body) and panics when the outcome breaks docs/protocol.md §3:
//!
//! - `decode` never panics, and every error has a code of [`Code::ALL`], from steps 2
//!   to 4 only (a decoder never says `NOT_FOUND`);
//! - a refused content type is `INVALID_REQUEST`; an accepted one changes nothing;
//! - a body that is too large, not UTF-8, not JSON or not an object is `INVALID_REQUEST`;
//! - on a JSON object, step 3 gives exactly the code of the status table of docs/protocol.md §3 (and names
//!   the identifiers in order), and the schema rejects every such request;
//! - past step 3, `decode` succeeds exactly when the published schema accepts, so an
//!   `INVALID_REQUEST` there is always a schema rejection, never a decoder quirk; the
//!   schema in turn agrees with the status table of docs/protocol.md §3 ([`oracle`]);
//! - a decoded request holds exactly what the body said (nulls dropped, ids canonical);
//! - no error text carries a `token`, `pass_code` or `authentication_code` value, and no
//!   decoded request's `Debug` a token or pass code ([`secrets`] says how this avoids
//!   false alarms).

pub mod input;
pub mod oracle;
pub mod secrets;

use std::sync::LazyLock;

use serde_json::{json, Map, Value};
use tucano_auth::error::{Code, Error};
use tucano_auth::request::{
    decode, Credential, Identifier, InstalledItemKey, Request, SubscriptionKey,
    SubscriptionTypeKey, MAX_BODY,
};
use tucano_auth::schema::Schemas;

use crate::input::{ContentType, Input};

/// The schemas, compiled once per fuzzing process.
pub static SCHEMAS: LazyLock<Schemas> =
    LazyLock::new(|| Schemas::load().expect("the embedded schemas compile"));

/// Keys whose values an error text must never carry.
const SECRET_KEYS: [&str; 3] = ["token", "pass_code", "authentication_code"];

/// Keys whose values a decoded request's `Debug` must never carry.
const REDACTED_KEYS: [&str; 2] = ["token", "pass_code"];

/// The codes of steps 2 to 4: all that decoding may answer.
const DECODING_CODES: [Code; 4] = [
    Code::InvalidRequest,
    Code::MissingIdentifier,
    Code::MultipleIdentifiers,
    Code::SubscriptionTypeNotApplicable,
];

/// Checks every invariant on one fuzz input; panics when one is broken.
pub fn check(data: &[u8]) {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let schemas = &*SCHEMAS;
    let content_type = input.content_type.as_option();
    let result = decode(content_type, input.body, schemas);
    let outcome = Outcome::of(&result);
    assert!(
        Code::ALL.contains(&outcome.code),
        "code {:?} is not in Code::ALL",
        outcome.code
    );
    assert!(
        outcome.code == Code::Ok || DECODING_CODES.contains(&outcome.code),
        "decoding answered {} ({})",
        outcome.code,
        outcome.text
    );
    match &input.content_type {
        ContentType::Fixed {
            accepted: false, ..
        } => {
            assert_eq!(
                outcome.code,
                Code::InvalidRequest,
                "content type {content_type:?} must be refused"
            );
            return;
        }
        ContentType::Fixed { accepted: true, .. } => {}
        ContentType::Free(property) => {
            // Accepted, the property changes nothing; refused, it is INVALID_REQUEST.
            let plain = Outcome::of(&decode(None, input.body, schemas));
            if outcome != plain {
                assert_eq!(
                    outcome.code,
                    Code::InvalidRequest,
                    "content type {property:?} changed the outcome"
                );
                return;
            }
            let essence = property.split(';').next().unwrap_or_default().trim();
            assert!(
                essence.eq_ignore_ascii_case("application/json"),
                "content type {property:?} was accepted"
            );
        }
    }
    check_body(content_type, input.body, &result, schemas);
}

/// The invariants of a body whose content type was accepted.
fn check_body(
    content_type: Option<&str>,
    body: &[u8],
    result: &Result<Request, Error>,
    schemas: &Schemas,
) {
    let code = Outcome::of(result).code;
    let parsed = std::str::from_utf8(body)
        .ok()
        .filter(|_| body.len() <= MAX_BODY)
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    let Some(value) = parsed.filter(Value::is_object) else {
        assert_eq!(
            code,
            Code::InvalidRequest,
            "not a UTF-8 JSON object of at most {MAX_BODY} bytes"
        );
        return;
    };
    let Some(object) = value.as_object() else {
        return;
    };
    let schema_valid = schemas.is_valid_request(&value);
    match oracle::step3(object) {
        Some((expected, given)) => {
            assert_eq!(code, expected, "step 3 of the status table of docs/protocol.md §3");
            if let Err(Error::MultipleIdentifiers(names)) = result {
                assert_eq!(names, &given, "MULTIPLE_IDENTIFIERS names them in order");
            }
            assert!(
                !schema_valid,
                "the schema accepts what step 3 refuses ({code})"
            );
        }
        None => {
            match result {
                Ok(request) => {
                    assert!(schema_valid, "decoded although the schema rejects it");
                    assert_eq!(
                        described(request),
                        oracle::normalized(object),
                        "the decoded request differs from the body"
                    );
                }
                Err(err) => {
                    assert_eq!(code, Code::InvalidRequest, "step 4 is INVALID_REQUEST");
                    assert!(
                        !schema_valid,
                        "refused although the schema accepts it: {}",
                        err.message()
                    );
                }
            }
            assert_eq!(
                schema_valid,
                oracle::well_formed(object),
                "the schema and the status table of docs/protocol.md §3 disagree"
            );
        }
    }
    check_secrets(content_type, &value, result, schemas);
}

/// No secret value of the body in the outcome's texts (see [`secrets`]).
fn check_secrets(
    content_type: Option<&str>,
    value: &Value,
    result: &Result<Request, Error>,
    schemas: &Schemas,
) {
    let keys: &[&str] = if result.is_ok() {
        &REDACTED_KEYS
    } else {
        &SECRET_KEYS
    };
    let mut found = Vec::new();
    secrets::values(value, keys, &mut found);
    let before = texts(result);
    if !secrets::any_probe_in(&found, &before) {
        return;
    }
    let mut seen = found.clone();
    seen.extend(before.iter().map(String::as_str));
    let masked = secrets::masked(value, keys, secrets::filler(&seen));
    let bytes = serde_json::to_vec(&masked).expect("a JSON value serialises");
    let again = decode(content_type, &bytes, schemas);
    assert_eq!(
        Outcome::of(result).code,
        Outcome::of(&again).code,
        "the outcome depends on a secret's value, not only its length"
    );
    if let Some(probe) = secrets::leaked(&found, &before, &texts(&again)) {
        panic!("a secret is echoed: {probe:?} in {before:?}");
    }
}

/// What a caller or a log could see of an outcome.
fn texts(result: &Result<Request, Error>) -> Vec<String> {
    match result {
        Ok(request) => vec![format!("{request:?}")],
        Err(err) => vec![err.message(), err.to_string(), format!("{err:?}")],
    }
}

/// An outcome, comparable: the code and the message (or the request's `Debug`).
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    code: Code,
    text: String,
}

impl Outcome {
    fn of(result: &Result<Request, Error>) -> Outcome {
        match result {
            Ok(request) => Outcome {
                code: Code::Ok,
                text: format!("{request:?}"),
            },
            Err(err) => Outcome {
                code: err.code(),
                text: err.message(),
            },
        }
    }
}

/// A decoded request written back as JSON, in the shape of [`oracle::normalized`].
fn described(request: &Request) -> Value {
    let mut out = Map::new();
    out.insert("token".into(), request.token.expose().into());
    let (field, inner) = match &request.identifier {
        Identifier::AccessToken {
            credential,
            subscription_type,
        } => {
            if let Some(key) = subscription_type {
                let inner = match key {
                    SubscriptionTypeKey::Id(id) => json!({"id": id.simple().to_string()}),
                    SubscriptionTypeKey::Name(name) => json!({ "name": name }),
                    SubscriptionTypeKey::AlternativeCode(code) => {
                        json!({ "alternative_code": code })
                    }
                };
                out.insert("subscription_type_identifier".into(), inner);
            }
            ("access_token_identifier", described_credential(credential))
        }
        Identifier::Medium(credential) => (
            "customer_identification_medium_identifier",
            described_credential(credential),
        ),
        Identifier::InstalledItem(key) => (
            "installed_item_identifier",
            match key {
                InstalledItemKey::Id(id) => json!({"id": id.simple().to_string()}),
                InstalledItemKey::SerialNumber(number) => json!({ "serial_number": number }),
                InstalledItemKey::AlternativeCode(code) => json!({ "alternative_code": code }),
            },
        ),
        Identifier::Subscription(key) => (
            "subscription_identifier",
            match key {
                SubscriptionKey::Id(id) => json!({"id": id.simple().to_string()}),
                SubscriptionKey::Number(number) => json!({ "number": number }),
            },
        ),
    };
    out.insert(field.into(), inner);
    Value::Object(out)
}

fn described_credential(credential: &Credential) -> Value {
    match credential {
        Credential::AuthenticationCode(code) => json!({ "authentication_code": code }),
        Credential::Identifier {
            identifier,
            pass_code,
        } => json!({"identifier": identifier, "pass_code": pass_code.expose()}),
    }
}
