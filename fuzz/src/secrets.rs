//! Finding a secret echoed in an error message, without false alarms.
//!
//! A plain substring test is not enough: a token `"subscription"` is a substring of a
//! pointer, a pass code may equal an `id` the message quotes legitimately. So the test is
//! differential: a probe (the secret, its escaped forms, and their first 8 characters)
//! counts as leaked when it occurs fewer times in the texts once every secret value is
//! replaced by a filler of the same length (a character found nowhere else). Masking
//! cannot add occurrences, and it removes one only where the text was made of the
//! secret's own characters, so coincidences never count and an echo next to a
//! coincidence still does.

use serde_json::Value;

/// Secrets shorter than this are too likely to appear by chance to be tested.
pub const MIN_SECRET_CHARS: usize = 8;

/// Strings under these keys, at any depth.
pub fn values<'a>(value: &'a Value, keys: &[&str], out: &mut Vec<&'a str>) {
    match value {
        Value::Object(object) => {
            for (name, field) in object {
                match field {
                    Value::String(text) if keys.contains(&name.as_str()) => out.push(text),
                    _ => values(field, keys, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| values(item, keys, out)),
        _ => {}
    }
}

/// Every form in which `secret` could be echoed: as is, JSON-escaped, `Debug`-escaped,
/// and the first [`MIN_SECRET_CHARS`] characters of each (a message cut short).
pub fn probes(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap_or_default();
    let debug = format!("{secret:?}");
    let mut forms = vec![secret.to_owned()];
    for quoted in [json, debug] {
        if let Some(inner) = quoted
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
        {
            forms.push(inner.to_owned());
        }
    }
    let prefixes: Vec<String> = forms
        .iter()
        .map(|form| form.chars().take(MIN_SECRET_CHARS).collect())
        .collect();
    forms.extend(prefixes);
    forms.sort();
    forms.dedup();
    forms
}

/// A character absent from every text in `texts` and from escape sequences (which use
/// lower-case hex digits and letters), for [`masked`].
pub fn filler(texts: &[&str]) -> char {
    "QZXJKVWYGHMNPRT"
        .chars()
        .chain('\u{4E00}'..='\u{9FFF}')
        .find(|c| !texts.iter().any(|text| text.contains(*c)))
        .unwrap_or('\u{10FFFD}')
}

/// `value` with every string under `keys` (at any depth) replaced by as many `filler`
/// characters as it has code points, so every length rule gives the same answer.
pub fn masked(value: &Value, keys: &[&str], filler: char) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(name, field)| {
                    let field = match field {
                        Value::String(text) if keys.contains(&name.as_str()) => {
                            Value::from(filler.to_string().repeat(text.chars().count()))
                        }
                        _ => masked(field, keys, filler),
                    };
                    (name.clone(), field)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| masked(item, keys, filler))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The first probe of a secret (≥ [`MIN_SECRET_CHARS`] characters) that occurs fewer
/// times in `after`, the texts of the outcome with the secrets masked, than in `before`.
pub fn leaked(secrets: &[&str], before: &[String], after: &[String]) -> Option<String> {
    let count = |texts: &[String], probe: &str| -> usize {
        texts.iter().map(|text| text.matches(probe).count()).sum()
    };
    secrets
        .iter()
        .filter(|secret| secret.chars().count() >= MIN_SECRET_CHARS)
        .flat_map(|secret| probes(secret))
        .find(|probe| count(before, probe) > count(after, probe))
}

/// Whether any probe of any long-enough secret occurs in `texts` (the cheap first test).
pub fn any_probe_in(secrets: &[&str], texts: &[String]) -> bool {
    secrets
        .iter()
        .filter(|secret| secret.chars().count() >= MIN_SECRET_CHARS)
        .flat_map(|secret| probes(secret))
        .any(|probe| texts.iter().any(|text| text.contains(probe.as_str())))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_found_at_any_depth_and_only_as_strings() {
        let body = json!({"token": "T-1", "a": [{"pass_code": "P-1"}], "pass_code": 5,
                          "b": {"token": {"token": "T-2"}}});
        let mut found = Vec::new();
        values(&body, &["token", "pass_code"], &mut found);
        found.sort_unstable();
        assert_eq!(found, ["P-1", "T-1", "T-2"]);
    }

    #[test]
    fn masking_keeps_lengths_in_code_points() {
        let body = json!({"token": "é-secret", "x": {"pass_code": "12"}, "id": "abc"});
        let got = masked(&body, &["token", "pass_code"], 'Q');
        assert_eq!(
            got,
            json!({"token": "QQQQQQQQ", "x": {"pass_code": "QQ"}, "id": "abc"})
        );
    }

    #[test]
    fn coincidence_is_not_a_leak_but_an_echo_is() {
        let secret = "subscription_identifier";
        let message = |token: &str| vec![format!("/subscription_identifier: bad; {token}")];
        // The token equals a field name the message names anyway: no leak.
        assert_eq!(leaked(&[secret], &message("x"), &message("x")), None);
        // The message also echoes the token: one occurrence goes once masked.
        let masked_token = "Q".repeat(secret.len());
        assert!(leaked(&[secret], &message(secret), &message(&masked_token)).is_some());
    }

    #[test]
    fn a_cut_or_escaped_echo_is_found() {
        let probes = probes("line\n\"quoted\" secret");
        assert!(probes.contains(&"line\\n\\\"quoted\\\" secret".to_owned()));
        assert!(probes.contains(&"line\\n\\\"".to_owned()));
    }
}
