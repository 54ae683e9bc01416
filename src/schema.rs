//! The published JSON Schemas of `schemas/`, compiled once.
//!
//! The request and reply schemas are embedded in the binary, so the worker checks exactly
//! what producers can check before sending. [`Schemas`] owns the two compiled validators
//! and turns a schema failure into one reply message: the JSON pointer of the failing
//! part of the request and the reason.
//!
//! A message never carries the value of `token`, `pass_code` or `authentication_code`:
//! values are echoed only for `pattern` failures, and only outside those fields. The
//! wording of the combination rules ("exactly one of ...") is the `description` of the
//! schema node that states the rule, so it lives in one place, the published schema.

use std::fmt;

use anyhow::Context as _;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::types::JsonType;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use crate::error::Error;

/// The request schema as published in `schemas/request.schema.json`.
pub const REQUEST_SCHEMA: &str = include_str!("../schemas/request.schema.json");

/// The reply schema as published in `schemas/reply.schema.json`.
pub const REPLY_SCHEMA: &str = include_str!("../schemas/reply.schema.json");

/// Fields whose values never appear in a message, at any depth.
const SECRET_FIELDS: [&str; 3] = ["token", "pass_code", "authentication_code"];

/// Keywords that combine subschemas; an error under one of them is a combination rule,
/// explained by the nearest `description` in the schema.
const COMBINATORS: [&str; 8] = [
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
];

/// How many characters of a value or field name a message quotes at most.
const QUOTE_LIMIT: usize = 64;

/// How many unknown or given field names a message lists at most.
const NAME_LIMIT: usize = 8;

/// The compiled request and reply schemas (draft 2020-12).
pub struct Schemas {
    request: Compiled,
    reply: Compiled,
}

/// One schema: its document (to look up rule descriptions) and its validator.
struct Compiled {
    document: Value,
    validator: Validator,
}

impl Schemas {
    /// Parses and compiles the embedded schemas; fails only if a schema file is broken.
    pub fn load() -> anyhow::Result<Schemas> {
        Ok(Schemas {
            request: Compiled::new(REQUEST_SCHEMA).context("compiling the request schema")?,
            reply: Compiled::new(REPLY_SCHEMA).context("compiling the reply schema")?,
        })
    }

    /// Checks a request body against the request schema (step 4 of docs/protocol.md §3).
    ///
    /// On failure the message names the JSON pointer of one failing part and the reason,
    /// chosen deterministically: the first error on a single field if there is one, else
    /// the first broken combination rule.
    pub fn check_request(&self, value: &Value) -> Result<(), Error> {
        match self.request.problem(value) {
            None => Ok(()),
            Some(message) => Err(Error::InvalidRequest(message)),
        }
    }

    /// Whether a request body satisfies the request schema.
    pub fn is_valid_request(&self, value: &Value) -> bool {
        self.request.validator.is_valid(value)
    }

    /// Checks a reply body against the reply schema; the error says what is wrong.
    pub fn check_reply(&self, value: &Value) -> anyhow::Result<()> {
        match self.reply.problem(value) {
            None => Ok(()),
            Some(message) => Err(anyhow::anyhow!(
                "reply does not match its schema: {message}"
            )),
        }
    }

    /// Whether a reply body satisfies the reply schema.
    pub fn is_valid_reply(&self, value: &Value) -> bool {
        self.reply.validator.is_valid(value)
    }
}

impl fmt::Debug for Schemas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schemas").finish_non_exhaustive()
    }
}

impl Compiled {
    fn new(text: &str) -> anyhow::Result<Compiled> {
        let document: Value = serde_json::from_str(text).context("the schema is not JSON")?;
        let validator = jsonschema::draft202012::options()
            .build(&document)
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        Ok(Compiled {
            document,
            validator,
        })
    }

    /// The message for the most useful error, or `None` if the value is valid.
    fn problem(&self, value: &Value) -> Option<String> {
        if self.validator.is_valid(value) {
            return None;
        }
        let errors: Vec<ValidationError<'_>> = self.validator.iter_errors(value).collect();
        // A field-level error ("not a string", "unknown field") is concrete and is often
        // the cause of a broken combination rule, so it is preferred.
        let chosen = errors
            .iter()
            .find(|err| !is_combination(err))
            .or_else(|| errors.first());
        Some(match chosen {
            Some(err) => format!("{}: {}", pointer(err), self.reason(err)),
            // `is_valid` and `iter_errors` disagreeing would be a bug in the validator.
            None => "(root): does not match the schema".to_owned(),
        })
    }

    fn reason(&self, err: &ValidationError<'_>) -> String {
        if is_combination(err) {
            if let Some(rule) = self.rule_description(err.schema_path().as_str()) {
                return format!("{rule}; given: {}", given_fields(err.instance()));
            }
        }
        match err.kind() {
            ValidationErrorKind::Type { kind } => {
                format!(
                    "expected {}, found {}",
                    expected_types(kind),
                    type_name(err.instance())
                )
            }
            ValidationErrorKind::MinLength { limit: 1 } => "must not be empty".to_owned(),
            ValidationErrorKind::MinLength { limit } => {
                format!("is shorter than {limit} characters")
            }
            ValidationErrorKind::MaxLength { limit } => {
                format!("is longer than {limit} characters")
            }
            ValidationErrorKind::Pattern { pattern } if is_secret(err) => {
                format!("does not match the pattern {pattern}")
            }
            ValidationErrorKind::Pattern { pattern } => {
                format!(
                    "{} does not match the pattern {pattern}",
                    quote(err.instance())
                )
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let noun = if unexpected.len() == 1 {
                    "field"
                } else {
                    "fields"
                };
                format!(
                    "unknown {noun} {}",
                    names(unexpected.iter().map(String::as_str))
                )
            }
            ValidationErrorKind::Required { property } => {
                format!("missing required field {property}")
            }
            _ => err.masked_with("the value").to_string(),
        }
    }

    /// The `description` of the nearest schema node above the failing keyword.
    fn rule_description(&self, schema_path: &str) -> Option<&str> {
        let mut path = schema_path;
        while let Some((parent, _)) = path.rsplit_once('/') {
            path = parent;
            let node = self.document.pointer(path)?;
            if let Some(description) = node.get("description").and_then(Value::as_str) {
                return Some(description);
            }
        }
        None
    }
}

/// Whether the error comes from a rule that combines subschemas.
fn is_combination(err: &ValidationError<'_>) -> bool {
    err.schema_path()
        .as_str()
        .split('/')
        .any(|segment| COMBINATORS.contains(&segment))
}

/// Whether the failing value is, or is inside, a field whose value is never echoed.
fn is_secret(err: &ValidationError<'_>) -> bool {
    err.instance_path()
        .as_str()
        .split('/')
        .any(|segment| SECRET_FIELDS.contains(&segment))
}

/// The JSON pointer of the failing value; the empty pointer is written `(root)`.
fn pointer(err: &ValidationError<'_>) -> String {
    match err.instance_path().as_str() {
        "" => "(root)".to_owned(),
        path => path.to_owned(),
    }
}

fn expected_types(kind: &TypeKind) -> String {
    let mut types: Vec<JsonType> = match kind {
        TypeKind::Single(single) => vec![*single],
        TypeKind::Multiple(set) => set.iter().collect(),
    };
    // "a string or null" reads better than "null or a string".
    types.sort_by_key(|ty| *ty == JsonType::Null);
    let names: Vec<&str> = types.iter().map(|ty| ty.as_str()).collect();
    names.join(" or ")
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The names of the fields of an object that have a non-null value.
fn given_fields(value: &Value) -> String {
    let given: Vec<&str> = match value {
        Value::Object(object) => object
            .iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(name, _)| name.as_str())
            .collect(),
        _ => Vec::new(),
    };
    if given.is_empty() {
        "none".to_owned()
    } else {
        names(given.into_iter())
    }
}

/// Field names, quoted and shortened, at most [`NAME_LIMIT`] of them.
fn names<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    let total = names.len();
    let mut listed: Vec<String> = names
        .take(NAME_LIMIT)
        .map(|name| quote(&Value::String(name.to_owned())))
        .collect();
    if total > NAME_LIMIT {
        listed.push(format!("and {} more", total - NAME_LIMIT));
    }
    listed.join(", ")
}

/// A value as JSON, cut to [`QUOTE_LIMIT`] characters.
fn quote(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= QUOTE_LIMIT {
        text
    } else {
        let cut: String = text.chars().take(QUOTE_LIMIT).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schemas() -> Schemas {
        Schemas::load().expect("the embedded schemas compile")
    }

    fn message(value: Value) -> String {
        match schemas().check_request(&value) {
            Err(Error::InvalidRequest(message)) => message,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn schemas_are_shareable_between_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Schemas>();
    }

    #[test]
    fn seed_example_is_valid() {
        let request = json!({"token": "35108255345D4F98ABFD7810A08E432F",
                             "subscription_identifier": {"number": "S0000000329"}});
        assert!(schemas().check_request(&request).is_ok());
    }

    #[test]
    fn bad_id_names_pointer_and_value() {
        let got = message(json!({"token": "T", "subscription_identifier": {"id": "xyz"}}));
        assert!(got.starts_with("/subscription_identifier/id: \"xyz\" does not match"));
    }

    #[test]
    fn an_id_with_a_final_newline_is_refused_as_every_engine_refuses_it() {
        let id = "75E3E50139F24DC3A6C9AA0C026D0292\n";
        let got = message(json!({"token": "T", "subscription_identifier": {"id": id}}));
        assert!(got.starts_with("/subscription_identifier/id: "), "{got}");
    }

    #[test]
    fn combination_rule_is_explained_by_its_description() {
        let got = message(json!({"token": "T", "installed_item_identifier": {}}));
        assert_eq!(
            got,
            "/installed_item_identifier: exactly one of id, serial_number, alternative_code \
             must be given (null counts as absent); given: none"
        );
    }

    #[test]
    fn identifier_without_pass_code_lists_what_was_given() {
        let got = message(json!({"token": "T", "access_token_identifier": {"identifier": "A1"}}));
        assert!(got.starts_with("/access_token_identifier: exactly one of authentication_code"));
        assert!(got.ends_with("given: \"identifier\""), "{got}");
    }

    #[test]
    fn field_errors_win_over_combination_rules() {
        let got =
            message(json!({"token": "T", "subscription_identifier": {"id": 5, "number": "S1"}}));
        assert_eq!(
            got,
            "/subscription_identifier/id: expected string or null, found number"
        );
    }

    #[test]
    fn missing_token_and_unknown_field_are_named() {
        let got = message(json!({"subscription_identifier": {"number": "S1"}}));
        assert_eq!(got, "(root): missing required field \"token\"");
        let got =
            message(json!({"token": "T", "subscription_identifier": {"number": "S1", "x": 1}}));
        assert_eq!(got, "/subscription_identifier: unknown field \"x\"");
    }

    #[test]
    fn secrets_are_never_echoed() {
        let token = "TOK-SECRET-".repeat(400);
        let got = message(json!({"token": token, "subscription_identifier": {"number": "S1"}}));
        assert_eq!(got, "/token: is longer than 4096 characters");
        let got = message(json!({"token": "T", "access_token_identifier":
            {"identifier": "A1", "pass_code": 1234, "authentication_code": "AC-SECRET"}}));
        assert!(!got.contains("1234") && !got.contains("AC-SECRET"), "{got}");
    }

    #[test]
    fn reply_schema_checks_ok_and_error_envelopes() {
        let schemas = schemas();
        let ok = json!({"data": {"subscription_id": "75E3E50139F24DC3A6C9AA0C026D0292",
                                 "jwt": "eyJ0.eyJl.FgRj"},
                        "status": {"code": "OK", "description": "", "message": ""}});
        assert!(schemas.is_valid_reply(&ok));
        let error = json!({"data": null, "status": {"code": "NOT_FOUND",
                           "description": "The identified entity does not exist.",
                           "message": "subscription S1 not found"}});
        assert!(schemas.check_reply(&error).is_ok());
        let ok_without_data = json!({"data": null,
            "status": {"code": "OK", "description": "", "message": ""}});
        assert!(!schemas.is_valid_reply(&ok_without_data));
    }
}
