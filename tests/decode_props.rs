//! Property tests of request decoding (docs/protocol.md §3, steps 2 to 4) and of the
//! published schemas.
//!
//! The oracle here is written from the request table of docs/protocol.md §3 alone and calls nothing
//! of the crate: `decode`, the crate's compiled schema and the schema file read from disk
//! must all agree with it. Tokens and pass codes are generated as `TOK-SECRET-...` and
//! `PASS-SECRET-...`, so a message that leaks one is caught by a substring check.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Map, Value};
use tucano_auth::error::{Code, Error};
use tucano_auth::request::{decode, Identifier, Request, MAX_BODY};
use tucano_auth::schema::Schemas;

#[path = "decode_props/agreement.rs"]
mod agreement;

static SCHEMAS: LazyLock<Schemas> =
    LazyLock::new(|| Schemas::load().expect("the embedded schemas compile"));

/// The request schema as a producer would use it: the published file, compiled here.
static PUBLISHED_REQUEST: LazyLock<jsonschema::Validator> =
    LazyLock::new(|| compile_file("schemas/request.schema.json"));

/// The reply schema file, compiled here.
static PUBLISHED_REPLY: LazyLock<jsonschema::Validator> =
    LazyLock::new(|| compile_file("schemas/reply.schema.json"));

fn read_schema(path: &str) -> Value {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("the schema file is readable");
    serde_json::from_str(&text).expect("the schema file is JSON")
}

fn compile_file(path: &str) -> jsonschema::Validator {
    jsonschema::draft202012::new(&read_schema(path)).expect("the schema file compiles")
}

// ---------------------------------------------------------------------------------------
// The oracle: the request table of docs/protocol.md §3, written out by hand.
// ---------------------------------------------------------------------------------------

const ACCESS_TOKEN: &str = "access_token_identifier";
const MEDIUM: &str = "customer_identification_medium_identifier";
const INSTALLED_ITEM: &str = "installed_item_identifier";
const SUBSCRIPTION: &str = "subscription_identifier";
const SUBSCRIPTION_TYPE: &str = "subscription_type_identifier";
const SEMI_OPTIONAL: [&str; 4] = [ACCESS_TOKEN, MEDIUM, INSTALLED_ITEM, SUBSCRIPTION];

/// What docs/protocol.md says a body leads to, as far as decoding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Valid,
    InvalidRequest,
    MissingIdentifier,
    MultipleIdentifiers,
    SubscriptionTypeNotApplicable,
    /// A code decoding must never produce.
    Other(Code),
}

impl Verdict {
    fn of(result: &Result<Request, Error>) -> Verdict {
        match result {
            Ok(_) => Verdict::Valid,
            Err(err) => match err.code() {
                Code::InvalidRequest => Verdict::InvalidRequest,
                Code::MissingIdentifier => Verdict::MissingIdentifier,
                Code::MultipleIdentifiers => Verdict::MultipleIdentifiers,
                Code::SubscriptionTypeNotApplicable => Verdict::SubscriptionTypeNotApplicable,
                other => Verdict::Other(other),
            },
        }
    }
}

/// The oracle for a parsed JSON body (steps 2, after parsing, to 4).
fn oracle(body: &Value) -> Verdict {
    let Some(request) = body.as_object() else {
        return Verdict::InvalidRequest;
    };
    let non_null = |name: &str| request.get(name).is_some_and(|value| !value.is_null());
    let given = SEMI_OPTIONAL.iter().filter(|name| non_null(name)).count();
    if given == 0 {
        Verdict::MissingIdentifier
    } else if given > 1 {
        Verdict::MultipleIdentifiers
    } else if non_null(SUBSCRIPTION_TYPE) && !non_null(ACCESS_TOKEN) {
        Verdict::SubscriptionTypeNotApplicable
    } else if well_formed(request) {
        Verdict::Valid
    } else {
        Verdict::InvalidRequest
    }
}

/// Step 4 of the table: the token and every field's shape.
fn well_formed(request: &Map<String, Value>) -> bool {
    let token_ok = match request.get("token") {
        Some(Value::String(token)) => (1..=4096).contains(&token.chars().count()),
        _ => false,
    };
    token_ok
        && request.iter().all(|(name, value)| match name.as_str() {
            "token" => true,
            _ if value.is_null() && is_known(name) => true,
            ACCESS_TOKEN | MEDIUM => credential_ok(value),
            INSTALLED_ITEM => exactly_one_of(value, &["id", "serial_number", "alternative_code"]),
            SUBSCRIPTION => exactly_one_of(value, &["id", "number"]),
            SUBSCRIPTION_TYPE => exactly_one_of(value, &["id", "name", "alternative_code"]),
            // Unknown fields are rejected, whatever their value.
            _ => false,
        })
}

fn is_known(name: &str) -> bool {
    SEMI_OPTIONAL.contains(&name) || name == SUBSCRIPTION_TYPE
}

/// A non-empty string of at most 256 characters.
fn is_text(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|text| (1..=256).contains(&text.chars().count()))
}

/// 32 hex digits, or 8-4-4-4-12 hex digits with hyphens; any case.
fn is_id(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    let groups: Vec<&str> = text.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
    let hex = groups
        .iter()
        .all(|group| group.chars().all(|c| c.is_ascii_hexdigit()));
    hex && (lengths == [32] || lengths == [8, 4, 4, 4, 12])
}

/// An object whose fields are all among `allowed`, each non-null one well-formed, with
/// exactly one non-null.
fn exactly_one_of(value: &Value, allowed: &[&str]) -> bool {
    let Some(object) = value.as_object() else {
        return false;
    };
    let mut given = 0;
    for (name, field) in object {
        if !allowed.contains(&name.as_str()) {
            return false;
        }
        if field.is_null() {
            continue;
        }
        let ok = if name == "id" {
            is_id(field)
        } else {
            is_text(field)
        };
        if !ok {
            return false;
        }
        given += 1;
    }
    given == 1
}

/// `authentication_code`, or `identifier` together with `pass_code`.
fn credential_ok(value: &Value) -> bool {
    let Some(object) = value.as_object() else {
        return false;
    };
    let allowed = ["authentication_code", "identifier", "pass_code"];
    if !object.keys().all(|name| allowed.contains(&name.as_str())) {
        return false;
    }
    if !object
        .values()
        .all(|field| field.is_null() || is_text(field))
    {
        return false;
    }
    let has = |name: &str| object.get(name).is_some_and(|field| !field.is_null());
    let (code, identifier, pass_code) = (
        has("authentication_code"),
        has("identifier"),
        has("pass_code"),
    );
    (code && !identifier && !pass_code) || (!code && identifier && pass_code)
}

/// Step 2 for the content types the generators use.
const ACCEPTED_CONTENT_TYPES: [&str; 5] = [
    "application/json",
    "Application/JSON",
    "application/json; charset=utf-8",
    "application/json;charset=UTF-8",
    "application/json; charset=\"utf-8\"",
];
const REFUSED_CONTENT_TYPES: [&str; 9] = [
    "",
    "text/plain",
    "application/xml",
    "text/json",
    "application/jsonp",
    "application/json-patch+json",
    "application/json; charset=iso-8859-1",
    "application/json; charset=utf-16",
    "application/ json",
];

// ---------------------------------------------------------------------------------------
// Generators.
// ---------------------------------------------------------------------------------------

/// What a generated field was meant to be; the label oracle predicts from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Absent,
    Null,
    Valid,
    Invalid,
}

type Slot = (Label, Option<Value>);

#[derive(Debug, Clone)]
struct Case {
    content_type: Option<&'static str>,
    content_type_ok: bool,
    token: Slot,
    /// `access_token_identifier`, medium, installed item, subscription, subscription type.
    fields: [Slot; 5],
    unknown: Option<(String, Value)>,
}

const FIELD_NAMES: [&str; 5] = [
    ACCESS_TOKEN,
    MEDIUM,
    INSTALLED_ITEM,
    SUBSCRIPTION,
    SUBSCRIPTION_TYPE,
];

impl Case {
    fn body(&self) -> Value {
        let mut body = Map::new();
        if let Some(token) = &self.token.1 {
            body.insert("token".to_owned(), token.clone());
        }
        for (name, (_, value)) in FIELD_NAMES.iter().zip(&self.fields) {
            if let Some(value) = value {
                body.insert((*name).to_owned(), value.clone());
            }
        }
        if let Some((name, value)) = &self.unknown {
            body.insert(name.clone(), value.clone());
        }
        Value::Object(body)
    }

    /// The prediction from what each part was generated to be.
    fn expected(&self) -> Verdict {
        let present = |i: usize| matches!(self.fields[i].0, Label::Valid | Label::Invalid);
        let given = (0..4).filter(|&i| present(i)).count();
        if !self.content_type_ok {
            Verdict::InvalidRequest
        } else if given == 0 {
            Verdict::MissingIdentifier
        } else if given > 1 {
            Verdict::MultipleIdentifiers
        } else if present(4) && !present(0) {
            Verdict::SubscriptionTypeNotApplicable
        } else if self.token.0 != Label::Valid
            || self.unknown.is_some()
            || self
                .fields
                .iter()
                .any(|(label, _)| *label == Label::Invalid)
        {
            Verdict::InvalidRequest
        } else {
            Verdict::Valid
        }
    }
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[A-Za-z0-9][A-Za-z0-9 _.-]{0,23}",
        2 => "\\PC{1,16}",
        // At the limit in characters, over it in bytes.
        1 => Just("é".repeat(256)),
        1 => Just("x".repeat(256)),
    ]
    .boxed()
}

fn pass_code() -> BoxedStrategy<String> {
    "[0-9A-Za-z]{1,12}"
        .prop_map(|code| format!("PASS-SECRET-{code}"))
        .boxed()
}

fn non_object() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(json!(5)),
        Just(json!("S0000000329")),
        Just(json!(true)),
        Just(json!([])),
        Just(json!([{"number": "S1"}])),
    ]
    .boxed()
}

fn bad_text() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(json!("")),
        Just(json!("é".repeat(257))),
        Just(json!("y".repeat(300))),
        Just(json!(42)),
        Just(json!({})),
        Just(json!(["x"])),
    ]
    .boxed()
}

fn id() -> BoxedStrategy<String> {
    prop_oneof![
        "[0-9a-fA-F]{32}",
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    ]
    .boxed()
}

fn bad_id() -> BoxedStrategy<Value> {
    prop_oneof![
        "[0-9a-f]{31}".prop_map(Value::from),
        "[0-9a-f]{33}".prop_map(Value::from),
        "[0-9a-f]{36}".prop_map(Value::from),
        "[g-z]{32}".prop_map(Value::from),
        "\\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\\}".prop_map(Value::from),
        Just(json!("xyz")),
        Just(json!("")),
        Just(json!(12345)),
    ]
    .boxed()
}

fn field_value(name: &'static str) -> BoxedStrategy<Value> {
    if name == "id" {
        id().prop_map(Value::from).boxed()
    } else {
        text().prop_map(Value::from).boxed()
    }
}

fn bad_field_value(name: &'static str) -> BoxedStrategy<Value> {
    if name == "id" {
        bad_id()
    } else {
        bad_text()
    }
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    )
}

/// An object naming its entity by exactly one of `fields`; some others explicitly null.
fn keyed_valid(fields: &'static [&'static str]) -> BoxedStrategy<Value> {
    (0..fields.len())
        .prop_flat_map(move |i| (Just(i), field_value(fields[i]), any::<u8>()))
        .prop_map(move |(i, value, nulls)| {
            let mut object = Map::new();
            for (j, name) in fields.iter().enumerate() {
                if j == i {
                    object.insert((*name).to_owned(), value.clone());
                } else if nulls & (1 << j) != 0 {
                    object.insert((*name).to_owned(), Value::Null);
                }
            }
            Value::Object(object)
        })
        .boxed()
}

/// An object breaking one rule of its table row.
fn keyed_invalid(fields: &'static [&'static str]) -> BoxedStrategy<Value> {
    let all_null = Value::Object(
        fields
            .iter()
            .map(|f| ((*f).to_owned(), Value::Null))
            .collect(),
    );
    let two = (0..fields.len(), 1..fields.len()).prop_flat_map(move |(i, step)| {
        let j = (i + step) % fields.len();
        (field_value(fields[i]), field_value(fields[j]))
            .prop_map(move |(a, b)| object([(fields[i], a), (fields[j], b)]))
    });
    let unknown = (
        keyed_valid(fields),
        unknown_name(),
        prop::option::of(text()),
    )
        .prop_map(|(mut valid, name, value)| {
            if let Some(object) = valid.as_object_mut() {
                object.insert(name, value.map_or(Value::Null, Value::from));
            }
            valid
        });
    let bad = (0..fields.len()).prop_flat_map(move |i| {
        bad_field_value(fields[i]).prop_map(move |value| object([(fields[i], value)]))
    });
    prop_oneof![
        Just(json!({})),
        Just(all_null),
        two,
        unknown,
        bad,
        non_object(),
    ]
    .boxed()
}

fn credential_valid() -> BoxedStrategy<Value> {
    prop_oneof![
        (text(), any::<bool>()).prop_map(|(code, nulls)| if nulls {
            json!({"authentication_code": code, "identifier": null, "pass_code": null})
        } else {
            json!({ "authentication_code": code })
        }),
        (text(), pass_code(), any::<bool>()).prop_map(|(identifier, pass_code, nulls)| {
            let mut object = json!({"identifier": identifier, "pass_code": pass_code});
            if nulls {
                object["authentication_code"] = Value::Null;
            }
            object
        }),
    ]
    .boxed()
}

fn credential_invalid() -> BoxedStrategy<Value> {
    let long_pass_code = Value::from(format!("PASS-SECRET-{}", "9".repeat(300)));
    prop_oneof![
        Just(json!({})),
        text().prop_map(|identifier| json!({ "identifier": identifier })),
        text().prop_map(|identifier| json!({"identifier": identifier, "pass_code": null})),
        pass_code().prop_map(|pass_code| json!({ "pass_code": pass_code })),
        (text(), pass_code()).prop_map(
            |(code, pass_code)| json!({"authentication_code": code, "pass_code": pass_code})
        ),
        (text(), text(), pass_code()).prop_map(|(code, identifier, pass_code)| {
            json!({"authentication_code": code, "identifier": identifier, "pass_code": pass_code})
        }),
        (text(), text()).prop_map(
            |(code, identifier)| json!({"authentication_code": code, "identifier": identifier})
        ),
        (credential_valid(), unknown_name()).prop_map(|(mut valid, name)| {
            valid[name.as_str()] = json!("x");
            valid
        }),
        id().prop_map(|id| json!({ "id": id })),
        bad_text().prop_map(|code| json!({ "authentication_code": code })),
        (bad_text(), pass_code()).prop_map(
            |(identifier, pass_code)| json!({"identifier": identifier, "pass_code": pass_code})
        ),
        (text(), prop_oneof![bad_text(), Just(long_pass_code)]).prop_map(
            |(identifier, pass_code)| json!({"identifier": identifier, "pass_code": pass_code})
        ),
        non_object(),
    ]
    .boxed()
}

/// A field name that no part of the request table knows.
fn unknown_name() -> BoxedStrategy<String> {
    prop_oneof![
        select(vec![
            "foo",
            "Token",
            "reply_to",
            "subscription",
            "access_token",
            "number "
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,10}".prop_filter("unknown", |name| !KNOWN_KEYS.contains(&name.as_str())),
    ]
    .boxed()
}

fn slot(valid: BoxedStrategy<Value>, invalid: BoxedStrategy<Value>) -> BoxedStrategy<Slot> {
    prop_oneof![
        3 => Just((Label::Absent, None)),
        1 => Just((Label::Null, Some(Value::Null))),
        3 => valid.prop_map(|value| (Label::Valid, Some(value))),
        2 => invalid.prop_map(|value| (Label::Invalid, Some(value))),
    ]
    .boxed()
}

fn token() -> BoxedStrategy<Slot> {
    let valid = prop_oneof![
        8 => "[0-9A-F]{1,40}".prop_map(|t| format!("TOK-SECRET-{t}")),
        1 => Just(format!("TOK-SECRET-{}", "é".repeat(4096 - 11))),
    ];
    let invalid = prop_oneof![
        Just(json!("")),
        Just(json!(format!("TOK-SECRET-{}", "A".repeat(4096 - 10)))),
        Just(json!(35108255345_u64)),
        Just(json!(["TOK-SECRET-IN-ARRAY"])),
        Just(json!({"value": "TOK-SECRET-IN-OBJECT"})),
    ];
    prop_oneof![
        8 => valid.prop_map(|t| (Label::Valid, Some(Value::from(t)))),
        1 => Just((Label::Absent, None)),
        1 => Just((Label::Null, Some(Value::Null))),
        2 => invalid.prop_map(|t| (Label::Invalid, Some(t))),
    ]
    .boxed()
}

const INSTALLED_ITEM_FIELDS: &[&str] = &["id", "serial_number", "alternative_code"];
const SUBSCRIPTION_FIELDS: &[&str] = &["id", "number"];
const SUBSCRIPTION_TYPE_FIELDS: &[&str] = &["id", "name", "alternative_code"];

fn field_slot(index: usize) -> BoxedStrategy<Slot> {
    match index {
        0 | 1 => slot(credential_valid(), credential_invalid()),
        2 => slot(
            keyed_valid(INSTALLED_ITEM_FIELDS),
            keyed_invalid(INSTALLED_ITEM_FIELDS),
        ),
        3 => slot(
            keyed_valid(SUBSCRIPTION_FIELDS),
            keyed_invalid(SUBSCRIPTION_FIELDS),
        ),
        _ => slot(
            keyed_valid(SUBSCRIPTION_TYPE_FIELDS),
            keyed_invalid(SUBSCRIPTION_TYPE_FIELDS),
        ),
    }
}

/// A field present with a non-null value, valid or not.
fn present_slot(index: usize) -> BoxedStrategy<Slot> {
    field_slot(index)
        .prop_filter("present", |(label, _)| {
            matches!(label, Label::Valid | Label::Invalid)
        })
        .boxed()
}

fn absent_or_null() -> BoxedStrategy<Slot> {
    prop_oneof![
        3 => Just((Label::Absent, None)),
        1 => Just((Label::Null, Some(Value::Null))),
    ]
    .boxed()
}

/// Any subset of the five fields, or (more often, so that step 4 is well covered) one
/// semi-optional identifier with the others absent or null.
fn fields() -> BoxedStrategy<[Slot; 5]> {
    let any_subset = (
        field_slot(0),
        field_slot(1),
        field_slot(2),
        field_slot(3),
        field_slot(4),
    )
        .prop_map(|(a, b, c, d, e)| [a, b, c, d, e]);
    let one = (0..4_usize).prop_flat_map(|chosen| {
        let pick = move |i: usize| {
            if i == chosen {
                present_slot(i)
            } else {
                absent_or_null()
            }
        };
        let subscription_type = if chosen == 0 {
            field_slot(4)
        } else {
            prop_oneof![4 => absent_or_null(), 1 => field_slot(4)].boxed()
        };
        (pick(0), pick(1), pick(2), pick(3), subscription_type)
            .prop_map(|(a, b, c, d, e)| [a, b, c, d, e])
    });
    prop_oneof![1 => any_subset, 2 => one].boxed()
}

fn content_type() -> BoxedStrategy<(Option<&'static str>, bool)> {
    prop_oneof![
        6 => Just((None, true)),
        6 => select(ACCEPTED_CONTENT_TYPES.to_vec()).prop_map(|ct| (Some(ct), true)),
        1 => select(REFUSED_CONTENT_TYPES.to_vec()).prop_map(|ct| (Some(ct), false)),
    ]
    .boxed()
}

fn case() -> impl Strategy<Value = Case> {
    let unknown = prop_oneof![
        6 => Just(None),
        1 => (unknown_name(), prop_oneof![Just(Value::Null), Just(json!(1)), Just(json!({}))])
            .prop_map(Some),
    ];
    (content_type(), token(), fields(), unknown).prop_map(
        |((content_type, content_type_ok), token, fields, unknown)| Case {
            content_type,
            content_type_ok,
            token,
            fields,
            unknown,
        },
    )
}

/// Names that arbitrary JSON draws its keys from, mostly.
const KNOWN_KEYS: [&str; 14] = [
    "token",
    ACCESS_TOKEN,
    MEDIUM,
    INSTALLED_ITEM,
    SUBSCRIPTION,
    SUBSCRIPTION_TYPE,
    "id",
    "number",
    "serial_number",
    "alternative_code",
    "name",
    "authentication_code",
    "identifier",
    "pass_code",
];

fn arbitrary_key() -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(KNOWN_KEYS.to_vec()).prop_map(str::to_owned),
        1 => "[a-z_]{0,8}",
    ]
    .boxed()
}

fn arbitrary_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::from),
        id().prop_map(Value::from),
        Just(json!("")),
        Just(json!("é".repeat(257))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((arbitrary_key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Mostly objects at the top, keyed like requests.
fn arbitrary_body() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => arbitrary_json(),
        4 => prop::collection::vec((arbitrary_key(), arbitrary_json()), 0..6)
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
    ]
    .prop_map(|mut body| {
        plant_secrets(&mut body);
        body
    })
    .boxed()
}

/// Marks every string under a `token` or `pass_code` key, so leaks can be found.
fn plant_secrets(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (name, field) in object.iter_mut() {
                match (name.as_str(), &*field) {
                    ("token", Value::String(text)) if !text.is_empty() => {
                        *field = Value::from(format!("TOK-SECRET-{text}"));
                    }
                    ("pass_code", Value::String(text)) if !text.is_empty() => {
                        *field = Value::from(format!("PASS-SECRET-{text}"));
                    }
                    _ => plant_secrets(field),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(plant_secrets),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Checks shared by the properties.
// ---------------------------------------------------------------------------------------

/// The decode result agrees with `expected` and leaks nothing.
fn check_decoded(
    result: &Result<Request, Error>,
    body: Option<&Value>,
    expected: Verdict,
) -> Result<(), TestCaseError> {
    let verdict = Verdict::of(result);
    prop_assert_eq!(verdict, expected);
    match result {
        Err(err) => {
            prop_assert!(Code::ALL.contains(&err.code()));
            for text in [err.message(), err.to_string(), format!("{err:?}")] {
                prop_assert!(!text.contains("TOK-SECRET"), "token leaked: {}", text);
                prop_assert!(!text.contains("PASS-SECRET"), "pass code leaked: {}", text);
            }
        }
        Ok(request) => {
            let debug = format!("{request:?}");
            prop_assert!(!debug.contains("SECRET"), "secret in Debug: {}", debug);
            if let Some(body) = body {
                prop_assert_eq!(Some(request.token.expose()), body["token"].as_str());
                let field = match &request.identifier {
                    Identifier::AccessToken { .. } => ACCESS_TOKEN,
                    Identifier::Medium(_) => MEDIUM,
                    Identifier::InstalledItem(_) => INSTALLED_ITEM,
                    Identifier::Subscription(_) => SUBSCRIPTION,
                };
                prop_assert!(!body[field].is_null(), "decoded {} from {}", field, body);
            }
        }
    }
    Ok(())
}

/// Both compiled forms of the request schema accept a body exactly when it is valid.
fn check_schema(body: &Value, expected: Verdict) -> Result<(), TestCaseError> {
    let valid = expected == Verdict::Valid;
    prop_assert_eq!(
        PUBLISHED_REQUEST.is_valid(body),
        valid,
        "published schema on {}",
        body
    );
    prop_assert_eq!(
        SCHEMAS.is_valid_request(body),
        valid,
        "crate schema on {}",
        body
    );
    Ok(())
}

/// `cases` cases; failures are kept next to this file, in `decode_props.proptest-regressions`.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn decode_and_the_published_schema_agree_with_the_contract_oracle(case in case()) {
        let body = case.body();
        let expected = case.expected();
        // The label oracle (what each part was generated to be) and the JSON oracle
        // (the table applied to the body) agree, so the oracle itself is checked.
        if case.content_type_ok {
            prop_assert_eq!(oracle(&body), expected, "oracles disagree on {}", body);
        }
        let result = decode(case.content_type, body.to_string().as_bytes(), &SCHEMAS);
        check_decoded(&result, Some(&body), expected)?;
        check_schema(&body, oracle(&body))?;
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn arbitrary_json_is_decoded_as_the_oracle_says_without_leaking(body in arbitrary_body()) {
        let expected = oracle(&body);
        let result = decode(None, body.to_string().as_bytes(), &SCHEMAS);
        check_decoded(&result, Some(&body), expected)?;
        check_schema(&body, expected)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_get_a_decoding_code(
        bytes in prop::collection::vec(any::<u8>(), 0..256)
    ) {
        let expected = match serde_json::from_slice::<Value>(&bytes) {
            Ok(body) => oracle(&body),
            Err(_) => Verdict::InvalidRequest,
        };
        check_decoded(&decode(None, &bytes, &SCHEMAS), None, expected)?;
    }

    #[test]
    fn mutated_requests_are_decoded_as_the_oracle_says(
        case in case(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3_u8, any::<u8>()), 1..4),
    ) {
        let mut bytes = case.body().to_string().into_bytes();
        for (at, op, byte) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => {}
            }
        }
        let expected = match serde_json::from_slice::<Value>(&bytes) {
            _ if !case.content_type_ok => Verdict::InvalidRequest,
            Ok(body) => oracle(&body),
            Err(_) => Verdict::InvalidRequest,
        };
        check_decoded(&decode(case.content_type, &bytes, &SCHEMAS), None, expected)?;
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn bodies_over_64_kib_are_invalid_whatever_they_hold(extra in 0..64_usize, over in any::<bool>()) {
        let request = json!({"token": "TOK-SECRET-1", "subscription_identifier": {"number": "S1"}});
        let mut bytes = request.to_string().into_bytes();
        let size = if over { MAX_BODY + 1 + extra } else { MAX_BODY - extra };
        bytes.resize(size, b' ');
        let expected = if over { Verdict::InvalidRequest } else { Verdict::Valid };
        check_decoded(&decode(None, &bytes, &SCHEMAS), None, expected)?;
    }
}

// ---------------------------------------------------------------------------------------
// The reply schema.
// ---------------------------------------------------------------------------------------

#[test]
fn every_code_is_in_the_reply_schema_and_nothing_else_is() {
    let schema = read_schema("schemas/reply.schema.json");
    let listed: BTreeSet<&str> = schema
        .pointer("/properties/status/properties/code/enum")
        .and_then(Value::as_array)
        .expect("status.code has an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let codes: BTreeSet<&str> = Code::ALL.iter().map(|code| code.as_str()).collect();
    assert_eq!(listed, codes);
}

fn ok_reply() -> Value {
    json!({"data": {"subscription_id": "75E3E50139F24DC3A6C9AA0C026D0292",
                    "jwt": "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJleHAiOjE0NzgyNTE5MzF9.FgRjJ6vuhRTP_0A1yFSxaRcaIugkJK5GyHbt1rRGxA0"},
           "status": {"code": "OK", "description": "", "message": ""}})
}

fn error_reply(code: Code) -> Value {
    json!({"data": null,
           "status": {"code": code.as_str(), "description": code.description(),
                      "message": "/subscription_identifier/id: \"xyz\" does not match"}})
}

fn reply_is_valid(reply: &Value) -> bool {
    let published = PUBLISHED_REPLY.is_valid(reply);
    assert_eq!(published, SCHEMAS.is_valid_reply(reply), "{reply}");
    published
}

#[test]
fn seed_ok_reply_and_every_error_reply_match_the_reply_schema() {
    assert!(reply_is_valid(&ok_reply()));
    for code in Code::ALL.into_iter().filter(|code| *code != Code::Ok) {
        let reply = error_reply(code);
        assert!(reply_is_valid(&reply), "{reply}");
        assert!(SCHEMAS.check_reply(&reply).is_ok());
    }
}

#[test]
fn replies_breaking_the_envelope_rules_are_rejected() {
    let mut broken = Vec::new();
    let mut reply = ok_reply();
    reply["data"] = Value::Null;
    broken.push(reply);
    let mut reply = ok_reply();
    reply["status"]["message"] = json!("done");
    broken.push(reply);
    let mut reply = ok_reply();
    reply["data"]["subscription_id"] = json!("75e3e50139f24dc3a6c9aa0c026d0292");
    broken.push(reply);
    let mut reply = ok_reply();
    reply["data"]["jwt"] = json!("not a jwt");
    broken.push(reply);
    let mut reply = ok_reply();
    reply["extra"] = json!(1);
    broken.push(reply);
    let mut reply = error_reply(Code::NotFound);
    reply["data"] = ok_reply()["data"].clone();
    broken.push(reply);
    let mut reply = error_reply(Code::NotFound);
    reply["status"]["description"] = json!("");
    broken.push(reply);
    let mut reply = error_reply(Code::NotFound);
    reply["status"]["code"] = json!("SOMETHING_ELSE");
    broken.push(reply);
    let mut reply = error_reply(Code::NotFound);
    reply["status"]["trace"] = json!("SELECT 1");
    broken.push(reply);
    for reply in broken {
        assert!(!reply_is_valid(&reply), "{reply}");
        assert!(SCHEMAS.check_reply(&reply).is_err());
    }
}
