//! The request on the wire, and its decoding: bytes and properties in, a typed
//! [`Request`] or a coded [`Error`] out, following steps 2 to 4 of the order of
//! checks (docs/protocol.md §3).

use serde_json::Value;
use uuid::Uuid;

use crate::error::Error;
use crate::schema::Schemas;
use crate::secret::Secret;

/// Largest accepted body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// A decoded, valid request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The login token, as given.
    pub token: Secret,
    /// The one semi-optional identifier.
    pub identifier: Identifier,
}

/// The one semi-optional identifier of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    /// `access_token_identifier`, with the optional `subscription_type_identifier`.
    AccessToken {
        /// How the access token is named.
        credential: Credential,
        /// The type filter.
        subscription_type: Option<SubscriptionTypeKey>,
    },
    /// `customer_identification_medium_identifier`.
    Medium(Credential),
    /// `installed_item_identifier`.
    InstalledItem(InstalledItemKey),
    /// `subscription_identifier`.
    Subscription(SubscriptionKey),
}

/// How an access token or customer identification medium is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `authentication_code`.
    AuthenticationCode(String),
    /// `identifier` together with `pass_code`.
    Identifier {
        /// The public identifier.
        identifier: String,
        /// The pass code, checked against `pass_code_hash`.
        pass_code: Secret,
    },
}

/// How an installed item is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstalledItemKey {
    /// `id`.
    Id(Uuid),
    /// `serial_number`.
    SerialNumber(String),
    /// `alternative_code`.
    AlternativeCode(String),
}

/// How a subscription is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionKey {
    /// `id`.
    Id(Uuid),
    /// `number`.
    Number(String),
}

/// How a subscription type is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionTypeKey {
    /// `id`.
    Id(Uuid),
    /// `name`.
    Name(String),
    /// `alternative_code`.
    AlternativeCode(String),
}

/// The four semi-optional identifiers, in the order of docs/protocol.md §3 (also the order of the
/// names in [`Error::MultipleIdentifiers`]).
pub const IDENTIFIERS: [&str; 4] = [ACCESS_TOKEN, MEDIUM, INSTALLED_ITEM, SUBSCRIPTION];

const ACCESS_TOKEN: &str = "access_token_identifier";
const MEDIUM: &str = "customer_identification_medium_identifier";
const INSTALLED_ITEM: &str = "installed_item_identifier";
const SUBSCRIPTION: &str = "subscription_identifier";
const SUBSCRIPTION_TYPE: &str = "subscription_type_identifier";

/// Decodes a request body and its `content_type` property, checking in the documented
/// order (docs/protocol.md §3):
///
/// 2. the content type (absent, or `application/json` with at most a `charset=utf-8`
///    parameter, case-insensitive), the size, UTF-8, JSON, a JSON object;
/// 3. which semi-optional identifiers are present with a non-null value: none is
///    [`Error::MissingIdentifier`], several is [`Error::MultipleIdentifiers`] (this wins
///    over the next rule), then a non-null `subscription_type_identifier` without
///    `access_token_identifier` is [`Error::SubscriptionTypeNotApplicable`];
/// 4. the published request schema, so the worker and the schema never disagree.
///
/// Every failure of step 2 and 4 is [`Error::InvalidRequest`]; its message never
/// contains the token or a pass code.
pub fn decode(
    content_type: Option<&str>,
    body: &[u8],
    schemas: &Schemas,
) -> Result<Request, Error> {
    check_content_type(content_type)?;
    let request = parse(body)?;
    let field = identifier_field(&request)?;
    schemas.check_request(&request)?;
    convert(&request, field)
}

/// Step 2, property half. An empty `content_type` is not absent: it is refused.
fn check_content_type(content_type: Option<&str>) -> Result<(), Error> {
    let Some(text) = content_type else {
        return Ok(());
    };
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let accepted = essence.eq_ignore_ascii_case("application/json")
        && parts.all(|parameter| parameter.trim().is_empty() || is_utf8_charset(parameter));
    if accepted {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "content type {} is not application/json",
            shorten(text)
        )))
    }
}

/// Whether a media type parameter is `charset=utf-8` (the value may be quoted).
fn is_utf8_charset(parameter: &str) -> bool {
    let Some((name, value)) = parameter.split_once('=') else {
        return false;
    };
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|quoted| quoted.strip_suffix('"'))
        .unwrap_or(value);
    name.trim().eq_ignore_ascii_case("charset") && value.eq_ignore_ascii_case("utf-8")
}

/// Step 2, body half: bytes to a JSON object, parsed once.
fn parse(body: &[u8]) -> Result<Value, Error> {
    if body.len() > MAX_BODY {
        return Err(Error::InvalidRequest(format!(
            "the body is {} bytes, over the limit of {MAX_BODY} bytes",
            body.len()
        )));
    }
    let text = std::str::from_utf8(body).map_err(|err| {
        Error::InvalidRequest(format!(
            "the body is not UTF-8 (invalid byte at offset {})",
            err.valid_up_to()
        ))
    })?;
    // serde_json's syntax errors name a position, never the input itself.
    let value: Value = parse_json(text)
        .map_err(|err| Error::InvalidRequest(format!("the body is not JSON: {err}")))?;
    if !value.is_object() {
        return Err(Error::InvalidRequest(format!(
            "the body is a JSON {}, not an object",
            json_type(&value)
        )));
    }
    Ok(value)
}

/// Parses JSON text, accepting what JSON accepts and serde_json does not: a `\uXXXX`
/// escape of a lone UTF-16 surrogate (`"\ud800"`, as Node's and Python's serialisers
/// write for such a string).
///
/// Each lone surrogate becomes U+0000. Both are one code point, so length limits and
/// patterns judge the string as a JSON Schema validator judges the original, and
/// PostgreSQL text can hold no U+0000, so a key containing one names nothing: the
/// lookup treats it as matching no row (`NOT_FOUND`, or `AUTHENTICATION_FAILED` for a
/// credential; a token with one is `INVALID_TOKEN`). U+FFFD would not do: a stored
/// value could contain it and be matched by a string that never named it.
pub fn parse_json(text: &str) -> Result<Value, serde_json::Error> {
    match serde_json::from_str(text) {
        Ok(value) => Ok(value),
        Err(err) => match replace_lone_surrogates(text) {
            Some(repaired) => serde_json::from_str(&repaired),
            None => Err(err),
        },
    }
}

/// `text` with every `\uXXXX` escape of a lone surrogate replaced by `\u0000`; `None`
/// when there is none (the text is then not JSON for another reason).
fn replace_lone_surrogates(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let escape_at = |i: usize| -> Option<u16> {
        let hex = bytes.get(i..i + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        std::str::from_utf8(&hex[2..])
            .ok()
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
    };
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut i, mut replaced) = (0, 0, false);
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        match escape_at(i) {
            Some(0xD800..=0xDBFF)
                if escape_at(i + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) =>
            {
                i += 12;
            }
            Some(0xD800..=0xDFFF) => {
                out.push_str(&text[copied..i]);
                out.push_str("\\u0000");
                replaced = true;
                i += 6;
                copied = i;
            }
            Some(_) => i += 6,
            // Any other escape is two characters; skipping both keeps `\\u` from
            // being read as the start of an escape.
            None => i += 2,
        }
    }
    out.push_str(&text[copied..]);
    replaced.then_some(out)
}

/// Step 3: looks only at which keys are present with a non-null value.
fn identifier_field(request: &Value) -> Result<&'static str, Error> {
    let present: Vec<&'static str> = IDENTIFIERS
        .into_iter()
        .filter(|name| given(request, name).is_some())
        .collect();
    match present.as_slice() {
        [] => Err(Error::MissingIdentifier),
        [field] if *field != ACCESS_TOKEN && given(request, SUBSCRIPTION_TYPE).is_some() => {
            Err(Error::SubscriptionTypeNotApplicable)
        }
        [field] => Ok(field),
        _ => Err(Error::MultipleIdentifiers(present)),
    }
}

/// A field's value, with null counting as absent.
fn given<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|value| !value.is_null())
}

/// The typed request from a body the schema accepted.
///
/// Every check here repeats one the schema made; a failure means the two disagree, a bug
/// reported as [`Error::InvalidRequest`] rather than a panic.
fn convert(request: &Value, field: &'static str) -> Result<Request, Error> {
    let token = text(request, "", "token")?.ok_or_else(|| disagree("/token"))?;
    let object = given(request, field).ok_or_else(|| disagree(field))?;
    let identifier = match field {
        ACCESS_TOKEN => Identifier::AccessToken {
            credential: credential(object, field)?,
            subscription_type: match given(request, SUBSCRIPTION_TYPE) {
                Some(object) => Some(subscription_type(object)?),
                None => None,
            },
        },
        MEDIUM => Identifier::Medium(credential(object, field)?),
        INSTALLED_ITEM => Identifier::InstalledItem(installed_item(object)?),
        SUBSCRIPTION => Identifier::Subscription(subscription(object)?),
        _ => return Err(disagree(field)),
    };
    Ok(Request {
        token: Secret::new(token),
        identifier,
    })
}

fn credential(object: &Value, at: &str) -> Result<Credential, Error> {
    let code = text(object, at, "authentication_code")?;
    let identifier = text(object, at, "identifier")?;
    let pass_code = text(object, at, "pass_code")?;
    match (code, identifier, pass_code) {
        (Some(code), None, None) => Ok(Credential::AuthenticationCode(code)),
        (None, Some(identifier), Some(pass_code)) => Ok(Credential::Identifier {
            identifier,
            pass_code: Secret::new(pass_code),
        }),
        _ => Err(disagree(at)),
    }
}

fn installed_item(object: &Value) -> Result<InstalledItemKey, Error> {
    let at = INSTALLED_ITEM;
    let id = uuid_field(object, at)?;
    let serial_number = text(object, at, "serial_number")?;
    let alternative_code = text(object, at, "alternative_code")?;
    match (id, serial_number, alternative_code) {
        (Some(id), None, None) => Ok(InstalledItemKey::Id(id)),
        (None, Some(serial_number), None) => Ok(InstalledItemKey::SerialNumber(serial_number)),
        (None, None, Some(code)) => Ok(InstalledItemKey::AlternativeCode(code)),
        _ => Err(disagree(at)),
    }
}

fn subscription(object: &Value) -> Result<SubscriptionKey, Error> {
    let at = SUBSCRIPTION;
    match (uuid_field(object, at)?, text(object, at, "number")?) {
        (Some(id), None) => Ok(SubscriptionKey::Id(id)),
        (None, Some(number)) => Ok(SubscriptionKey::Number(number)),
        _ => Err(disagree(at)),
    }
}

fn subscription_type(object: &Value) -> Result<SubscriptionTypeKey, Error> {
    let at = SUBSCRIPTION_TYPE;
    let id = uuid_field(object, at)?;
    let name = text(object, at, "name")?;
    let alternative_code = text(object, at, "alternative_code")?;
    match (id, name, alternative_code) {
        (Some(id), None, None) => Ok(SubscriptionTypeKey::Id(id)),
        (None, Some(name), None) => Ok(SubscriptionTypeKey::Name(name)),
        (None, None, Some(code)) => Ok(SubscriptionTypeKey::AlternativeCode(code)),
        _ => Err(disagree(at)),
    }
}

/// A string field (`at` names its object, for the message); null counts as absent.
fn text(object: &Value, at: &str, name: &str) -> Result<Option<String>, Error> {
    match given(object, name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(disagree(&format!("{at}/{name}"))),
    }
}

/// An `id` field: 32 hex digits or a hyphenated UUID, as the schema's pattern says.
fn uuid_field(object: &Value, at: &str) -> Result<Option<Uuid>, Error> {
    match text(object, at, "id")? {
        None => Ok(None),
        Some(value) => Uuid::try_parse(&value)
            .map(Some)
            .map_err(|_| disagree(&format!("{at}/id"))),
    }
}

/// The error for a body the schema accepted but the decoder cannot read: a bug.
fn disagree(at: &str) -> Error {
    let pointer = if at.starts_with('/') {
        at.to_owned()
    } else {
        format!("/{at}")
    };
    Error::InvalidRequest(format!(
        "{pointer}: not understood although the request schema accepts it (a bug in tucano-auth)"
    ))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A property value for a message: quoted, cut to 64 characters.
fn shorten(text: &str) -> String {
    let cut: String = text.chars().take(64).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::Code;

    fn schemas() -> Schemas {
        Schemas::load().expect("the embedded schemas compile")
    }

    fn decode_json(value: Value) -> Result<Request, Error> {
        decode(None, value.to_string().as_bytes(), &schemas())
    }

    fn code_of(value: Value) -> Code {
        decode_json(value).err().map_or(Code::Ok, |err| err.code())
    }

    const TOKEN: &str = "35108255345D4F98ABFD7810A08E432F";

    #[test]
    fn seed_example_decodes_to_a_subscription_number() {
        let request = decode_json(json!({"token": TOKEN,
            "subscription_identifier": {"number": "S0000000329"}}))
        .expect("valid");
        assert_eq!(request.token.expose(), TOKEN);
        assert_eq!(
            request.identifier,
            Identifier::Subscription(SubscriptionKey::Number("S0000000329".into()))
        );
    }

    #[test]
    fn content_type_is_absent_or_application_json() {
        let body = json!({"token": TOKEN, "subscription_identifier": {"number": "S1"}}).to_string();
        let schemas = schemas();
        for accepted in [
            None,
            Some("application/json"),
            Some("Application/JSON; charset=UTF-8"),
            Some("application/json;charset=\"utf-8\""),
        ] {
            assert!(
                decode(accepted, body.as_bytes(), &schemas).is_ok(),
                "{accepted:?}"
            );
        }
        for refused in [
            "",
            "text/plain",
            "application/jsonx",
            "application/json; charset=iso-8859-1",
            "application/json; version=2",
        ] {
            let err = decode(Some(refused), body.as_bytes(), &schemas).expect_err(refused);
            assert_eq!(err.code(), Code::InvalidRequest, "{refused}");
        }
    }

    #[test]
    fn body_of_exactly_the_limit_is_read_and_one_byte_more_is_not() {
        let json = json!({"token": TOKEN, "subscription_identifier": {"number": "S1"}}).to_string();
        let mut body = json.into_bytes();
        body.resize(MAX_BODY, b' ');
        assert!(decode(None, &body, &schemas()).is_ok());
        body.push(b' ');
        let err = decode(None, &body, &schemas()).expect_err("over the limit");
        assert_eq!(err.code(), Code::InvalidRequest);
    }

    #[test]
    fn bodies_that_are_not_utf8_json_objects_are_invalid_requests() {
        let schemas = schemas();
        for body in [
            &b"\xff{}"[..],
            b"",
            b"{",
            b"[]",
            b"null",
            b"\"x\"",
            b"{} {}",
        ] {
            let err = decode(None, body, &schemas).expect_err("invalid");
            assert_eq!(err.code(), Code::InvalidRequest, "{body:?}");
        }
    }

    #[test]
    fn step_three_looks_only_at_non_null_keys() {
        // No token and garbage inside: step 3 still decides first.
        assert_eq!(code_of(json!({})), Code::MissingIdentifier);
        assert_eq!(
            code_of(json!({"subscription_identifier": null, "subscription_type_identifier": {}})),
            Code::MissingIdentifier
        );
        assert_eq!(
            code_of(json!({"installed_item_identifier": 1, "subscription_identifier": "x"})),
            Code::MultipleIdentifiers
        );
        assert_eq!(
            code_of(json!({"installed_item_identifier": 1, "subscription_type_identifier": []})),
            Code::SubscriptionTypeNotApplicable
        );
    }

    #[test]
    fn multiple_identifiers_wins_over_subscription_type_and_names_them_in_order() {
        let err = decode_json(json!({"token": TOKEN,
            "subscription_identifier": {"number": "S1"},
            "customer_identification_medium_identifier": {"authentication_code": "C"},
            "subscription_type_identifier": {"name": "Gold"}}))
        .expect_err("multiple");
        match err {
            Error::MultipleIdentifiers(names) => assert_eq!(
                names,
                [
                    "customer_identification_medium_identifier",
                    "subscription_identifier"
                ]
            ),
            other => panic!("expected MultipleIdentifiers, got {other:?}"),
        }
    }

    #[test]
    fn access_token_with_pass_code_and_subscription_type_decodes() {
        let request = decode_json(json!({"token": TOKEN,
            "access_token_identifier": {"identifier": "AT-1", "pass_code": "1234",
                                        "authentication_code": null},
            "subscription_type_identifier": {"alternative_code": "GOLD", "id": null}}))
        .expect("valid");
        assert_eq!(
            request.identifier,
            Identifier::AccessToken {
                credential: Credential::Identifier {
                    identifier: "AT-1".into(),
                    pass_code: Secret::new("1234"),
                },
                subscription_type: Some(SubscriptionTypeKey::AlternativeCode("GOLD".into())),
            }
        );
    }

    #[test]
    fn ids_are_read_in_both_forms_and_any_case() {
        let expected = Uuid::parse_str("75E3E50139F24DC3A6C9AA0C026D0292").expect("uuid");
        for id in [
            "75E3E50139F24DC3A6C9AA0C026D0292",
            "75e3e501-39f2-4dc3-a6c9-aa0c026d0292",
        ] {
            let request =
                decode_json(json!({"token": TOKEN, "installed_item_identifier": {"id": id}}))
                    .expect("valid");
            assert_eq!(
                request.identifier,
                Identifier::InstalledItem(InstalledItemKey::Id(expected))
            );
        }
        for bad in [
            "75E3E50139F24DC3A6C9AA0C026D029",
            "{75e3e501-39f2-4dc3-a6c9-aa0c026d0292}",
            "urn:uuid:75e3e501-39f2-4dc3-a6c9-aa0c026d0292",
            "75E3E50139F24DC3A6C9AA0C026D029G",
        ] {
            let code = code_of(json!({"token": TOKEN, "subscription_identifier": {"id": bad}}));
            assert_eq!(code, Code::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let at_limit = "é".repeat(256);
        let over = "é".repeat(257);
        assert_eq!(
            code_of(json!({"token": TOKEN, "subscription_identifier": {"number": at_limit}})),
            Code::Ok
        );
        assert_eq!(
            code_of(json!({"token": TOKEN, "subscription_identifier": {"number": over}})),
            Code::InvalidRequest
        );
        assert_eq!(
            code_of(json!({"token": "é".repeat(4096), "subscription_identifier": {"number": "S"}})),
            Code::Ok
        );
    }

    #[test]
    fn schema_errors_name_the_pointer_but_never_the_token_or_pass_code() {
        let err = decode_json(json!({"token": "TOK-SECRET", "access_token_identifier":
            {"pass_code": "PASS-SECRET"}}))
        .expect_err("pass_code alone");
        let message = err.message();
        assert!(
            message.starts_with("/access_token_identifier: "),
            "{message}"
        );
        assert!(!message.contains("SECRET"), "{message}");
        let err = decode_json(
            json!({"token": ["TOK-SECRET"], "subscription_identifier": {"number": "S"}}),
        )
        .expect_err("mistyped token");
        assert_eq!(err.message(), "/token: expected string, found array");
    }

    #[test]
    fn lone_surrogates_are_strings_that_name_nothing_not_syntax_errors() {
        let schemas = schemas();
        let body = br#"{"token":"T","subscription_identifier":{"number":"S\ud800x"}}"#;
        let request = decode(None, body, &schemas).expect("valid JSON, valid request");
        assert_eq!(
            request.identifier,
            Identifier::Subscription(SubscriptionKey::Number("S\0x".into()))
        );
        // A pair stays a character; an escaped backslash is not an escape.
        let value = parse_json(r#"["\ud83d\ude00", "\\ud800", "\udc00\ud800"]"#).expect("json");
        assert_eq!(value, json!(["\u{1F600}", "\\ud800", "\0\0"]));
        // Lengths count the surrogate as one character, as JSON Schema validators do.
        let long = format!(
            r#"{{"token":"T","subscription_identifier":{{"number":"{}\ud800"}}}}"#,
            "x".repeat(256)
        );
        let err = decode(None, long.as_bytes(), &schemas).expect_err("257 characters");
        assert_eq!(err.code(), Code::InvalidRequest);
        assert!(!err.message().contains("not JSON"), "{}", err.message());
        for broken in [r#"{"a":"\ud800"#, r#"{"a":"\ud80"}"#, r#"{"a":"\uZZZZ"}"#] {
            assert!(parse_json(broken).is_err(), "{broken}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected_even_when_null() {
        assert_eq!(
            code_of(json!({"token": TOKEN, "subscription_identifier": {"number": "S"}, "x": null})),
            Code::InvalidRequest
        );
        assert_eq!(
            code_of(json!({"token": TOKEN, "subscription_identifier": {"number": "S", "x": null}})),
            Code::InvalidRequest
        );
    }
}
