//! The protocol's request table (`docs/protocol.md` section 3, steps 3 and 4), written
//! out by hand from that page without calling the crate, so `decode` and the published schema are
//! both checked against a third opinion.

use serde_json::{Map, Value};
use tucano_auth::error::Code;

const ACCESS_TOKEN: &str = "access_token_identifier";
const MEDIUM: &str = "customer_identification_medium_identifier";
const INSTALLED_ITEM: &str = "installed_item_identifier";
const SUBSCRIPTION: &str = "subscription_identifier";
const SUBSCRIPTION_TYPE: &str = "subscription_type_identifier";

/// The semi-optional identifiers, in the documented order (docs/protocol.md §3).
pub const SEMI_OPTIONAL: [&str; 4] = [ACCESS_TOKEN, MEDIUM, INSTALLED_ITEM, SUBSCRIPTION];

/// What step 3 says about a JSON object: `None` when it passes, else the code and the
/// identifiers given (in the order of docs/protocol.md §3).
pub fn step3(request: &Map<String, Value>) -> Option<(Code, Vec<&'static str>)> {
    let given: Vec<&'static str> = SEMI_OPTIONAL
        .into_iter()
        .filter(|name| non_null(request, name))
        .collect();
    match given.len() {
        0 => Some((Code::MissingIdentifier, given)),
        1 if non_null(request, SUBSCRIPTION_TYPE) && given[0] != ACCESS_TOKEN => {
            Some((Code::SubscriptionTypeNotApplicable, given))
        }
        1 => None,
        _ => Some((Code::MultipleIdentifiers, given)),
    }
}

/// Step 4 for an object that passed step 3: the token, and every field's shape.
pub fn well_formed(request: &Map<String, Value>) -> bool {
    let token_ok = request
        .get("token")
        .and_then(Value::as_str)
        .is_some_and(|token| (1..=4096).contains(&token.chars().count()));
    token_ok
        && request.iter().all(|(name, value)| match name.as_str() {
            "token" => true,
            ACCESS_TOKEN | MEDIUM => value.is_null() || credential_ok(value),
            INSTALLED_ITEM => {
                value.is_null() || one_of(value, &["id", "serial_number", "alternative_code"])
            }
            SUBSCRIPTION => value.is_null() || one_of(value, &["id", "number"]),
            SUBSCRIPTION_TYPE => {
                value.is_null() || one_of(value, &["id", "name", "alternative_code"])
            }
            // Unknown fields are refused, even when null.
            _ => false,
        })
}

/// A valid request in the shape `decode`'s result is compared with: null fields dropped
/// at both levels, ids as 32 lower-case hex digits.
pub fn normalized(request: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (name, value) in request {
        match value {
            Value::Null => {}
            Value::Object(fields) => {
                let fields: Map<String, Value> = fields
                    .iter()
                    .filter(|(_, field)| !field.is_null())
                    .map(|(field, inner)| match (field.as_str(), inner.as_str()) {
                        ("id", Some(id)) => (
                            field.clone(),
                            Value::from(id.replace('-', "").to_ascii_lowercase()),
                        ),
                        _ => (field.clone(), inner.clone()),
                    })
                    .collect();
                out.insert(name.clone(), Value::Object(fields));
            }
            other => {
                out.insert(name.clone(), other.clone());
            }
        }
    }
    Value::Object(out)
}

fn non_null(object: &Map<String, Value>, name: &str) -> bool {
    object.get(name).is_some_and(|value| !value.is_null())
}

/// A non-empty string of at most 256 Unicode code points.
fn is_text(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|text| (1..=256).contains(&text.chars().count()))
}

/// 32 hex digits, or hex digits grouped 8-4-4-4-12 by hyphens; any case.
fn is_id(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    let hex = |group: &str| group.bytes().all(|byte| byte.is_ascii_hexdigit());
    let lengths: Vec<usize> = text.split('-').map(str::len).collect();
    text.split('-').all(hex) && (lengths == [32] || lengths == [8, 4, 4, 4, 12])
}

/// An object of known fields only, each non-null one well-formed, exactly one non-null.
fn one_of(value: &Value, allowed: &[&str]) -> bool {
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

/// `authentication_code` alone, or `identifier` together with `pass_code`.
fn credential_ok(value: &Value) -> bool {
    let Some(object) = value.as_object() else {
        return false;
    };
    let allowed = ["authentication_code", "identifier", "pass_code"];
    let shapes_ok = object.iter().all(|(name, field)| {
        allowed.contains(&name.as_str()) && (field.is_null() || is_text(field))
    });
    let (code, identifier, pass_code) = (
        non_null(object, "authentication_code"),
        non_null(object, "identifier"),
        non_null(object, "pass_code"),
    );
    shapes_ok && ((code && !identifier && !pass_code) || (!code && identifier && pass_code))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().expect("an object").clone()
    }

    #[test]
    fn step3_looks_only_at_non_null_semi_optional_keys() {
        assert_eq!(
            step3(&object(json!({"token": 1}))).map(|s| s.0),
            Some(Code::MissingIdentifier)
        );
        let got = step3(&object(
            json!({"subscription_identifier": 1, "access_token_identifier": "x"}),
        ));
        assert_eq!(
            got,
            Some((Code::MultipleIdentifiers, vec![ACCESS_TOKEN, SUBSCRIPTION]))
        );
        let got = step3(&object(
            json!({"subscription_identifier": 1, "subscription_type_identifier": []}),
        ));
        assert_eq!(got.map(|s| s.0), Some(Code::SubscriptionTypeNotApplicable));
        assert_eq!(
            step3(&object(
                json!({"access_token_identifier": 1, "subscription_type_identifier": []})
            )),
            None
        );
    }

    #[test]
    fn well_formed_follows_the_table() {
        let ok = json!({"token": "T", "subscription_identifier": {"id": "75e3e501-39f2-4dc3-a6c9-aa0c026d0292", "number": null}});
        assert!(well_formed(&object(ok)));
        let bad_id = json!({"token": "T", "subscription_identifier": {"id": "75e3e50139f24dc3a6c9aa0c026d029"}});
        assert!(!well_formed(&object(bad_id)));
        let no_pass_code = json!({"token": "T", "access_token_identifier": {"identifier": "A"}});
        assert!(!well_formed(&object(no_pass_code)));
        let unknown_null =
            json!({"token": "T", "subscription_identifier": {"number": "S"}, "x": null});
        assert!(!well_formed(&object(unknown_null)));
    }

    #[test]
    fn normalized_drops_nulls_and_canonicalises_ids() {
        let got = normalized(&object(
            json!({"token": "T", "installed_item_identifier": null,
            "subscription_identifier": {"id": "75E3E501-39F2-4DC3-A6C9-AA0C026D0292", "number": null}}),
        ));
        assert_eq!(
            got,
            json!({"token": "T", "subscription_identifier": {"id": "75e3e50139f24dc3a6c9aa0c026d0292"}})
        );
    }
}
