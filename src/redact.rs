//! How every command shows a broker, database or probe URL: one function, so that no
//! message, log line or error prints a password however the URL is written.
//!
//! A URL is parsed by a real parser and rebuilt from the parts that are not secret
//! (scheme, user, host, port, path); the password, the query (PostgreSQL takes
//! `password=` there) and the fragment are never copied. What does not parse is not
//! shown at all: a password with an unencoded `/`, `#` or `?` cuts the URL short, and
//! a parser then reads part of it as the host, port or path (issue 31: `call` printed
//! `amqp://guest:pa/ss@host` whole). An `@` left in the path, query or fragment is the
//! sign of that, so such a URL is shown as [`UNPARSEABLE`] too.

use std::str::FromStr;

/// What is shown of a URL that cannot be shown safely.
pub const UNPARSEABLE: &str = "<unparseable URL>";

/// `text`, a URL (AMQP, PostgreSQL, HTTP) or a PostgreSQL `key=value` connection
/// string, fit for a message: `scheme://user@host:port/path`, never a password
/// (` (password hidden)` follows when there was one); or [`UNPARSEABLE`].
pub fn url(text: &str) -> String {
    let text = text.trim();
    // PostgreSQL's own parser first: it is the one the connection uses, and it reads a
    // password with `/` or `#` in it as the password (up to the last `@`), and
    // several hosts and `key=value` strings, which are not URLs.
    let postgres = text.starts_with("postgres://") || text.starts_with("postgresql://");
    if text.is_empty() {
        return UNPARSEABLE.to_owned();
    }
    if postgres || !text.contains("://") {
        if let Ok(config) = tokio_postgres::Config::from_str(text) {
            return postgres_shown(&config).unwrap_or_else(|| UNPARSEABLE.to_owned());
        }
        if !postgres {
            return UNPARSEABLE.to_owned();
        }
    }
    by_url_crate(text).unwrap_or_else(|| UNPARSEABLE.to_owned())
}

/// A comma-separated list of URLs (`AMQP_URL` naming the nodes of a cluster), each
/// shown as [`url`] shows a URL (a node is never a `key=value` string), joined with `", "`; [`UNPARSEABLE`] alone if any node is. A
/// password with a comma in it splits its URL in two, and the first half can pass for
/// a URL whose port is the password's start (`amqp://u:1234` of `amqp://u:1234,x@h`):
/// the half after it, which cannot parse, gives that away.
pub fn nodes(list: &str) -> String {
    let shown: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(|node| by_url_crate(node).unwrap_or_else(|| UNPARSEABLE.to_owned()))
        .collect();
    if shown.is_empty() || shown.iter().any(|node| node == UNPARSEABLE) {
        return UNPARSEABLE.to_owned();
    }
    shown.join(", ")
}

fn by_url_crate(text: &str) -> Option<String> {
    let parsed = url::Url::parse(text).ok()?;
    if parsed.cannot_be_a_base() {
        return None;
    }
    let host = parsed.host_str().filter(|host| !host.is_empty())?;
    let stray_at = parsed.path().contains('@')
        || parsed.query().is_some_and(|query| query.contains('@'))
        || parsed
            .fragment()
            .is_some_and(|fragment| fragment.contains('@'));
    if stray_at || host.contains('@') {
        return None;
    }
    let user = match parsed.username() {
        "" => String::new(),
        user => format!("{user}@"),
    };
    let port = parsed
        .port()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    let path = match parsed.path() {
        "/" | "" => "",
        path => path,
    };
    let password = parsed.password().is_some()
        || parsed
            .query_pairs()
            .any(|(key, _)| key.eq_ignore_ascii_case("password"));
    Some(format!(
        "{}://{user}{host}{port}{path}{}",
        parsed.scheme(),
        hidden(password)
    ))
}

/// `None` when a part holds `=`, a quote or a blank: in `user= password=x` the parser
/// takes `password=x` for the user (after `=`, blanks are skipped), so it would show the
/// password as the user name.
fn postgres_shown(config: &tokio_postgres::Config) -> Option<String> {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let user = config
        .get_user()
        .filter(|user| !user.is_empty())
        .map(|user| format!("{user}@"))
        .unwrap_or_default();
    let port = match ports.join(",") {
        ports if ports.is_empty() => String::new(),
        ports => format!(":{ports}"),
    };
    let database = config.get_dbname().unwrap_or_default();
    let parts = [user.as_str(), &hosts.join(","), database];
    let suspect =
        |part: &str| part.contains(['=', '\'', '"', '\\']) || part.contains(char::is_whitespace);
    // The parser takes the first `@` as the end of the password: one more, and part of
    // the password is read as the host (or the database).
    if parts.iter().any(|part| suspect(part))
        || config.get_hosts().iter().any(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => {
                name.is_empty() || name.contains(['@', '/', '?', '#'])
            }
            tokio_postgres::config::Host::Unix(path) => !path.is_absolute(),
        })
        || database.contains('@')
    {
        return None;
    }
    Some(format!(
        "postgres://{user}{}{port}/{database}{}",
        hosts.join(","),
        hidden(config.get_password().is_some())
    ))
}

/// Says that a password was there: an operator reading "connection refused" should not
/// wonder whether the URL lost it.
fn hidden(password: bool) -> &'static str {
    if password {
        " (password hidden)"
    } else {
        ""
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        for (text, shown) in [
            (
                "amqp://guest:s3cret@rabbit-1:5672/%2f",
                "amqp://guest@rabbit-1:5672/%2f (password hidden)",
            ),
            ("amqps://host", "amqps://host"),
            ("amqp://rabbit:5672", "amqp://rabbit:5672"),
            (
                "amqp://u:p%2Fw@[::1]:5671/v?heartbeat=10&auth_mechanism=plain#x",
                "amqp://u@[::1]:5671/v (password hidden)",
            ),
            (
                "amqp://u:p@ss@host:5672/%2f",
                "amqp://u@host:5672/%2f (password hidden)",
            ),
            (
                "postgres://app:s3cr:et@db.example:5432/tucano?password=SECRETX&sslmode=require",
                "postgres://app@db.example:5432/tucano (password hidden)",
            ),
            (
                "host=db.example password=SECRETX port=5433 user=app dbname=tucano",
                "postgres://app@db.example:5433/tucano (password hidden)",
            ),
            (
                "postgres://app:SECRETX@db.example:5432/tucano?statement-cache-capacity=1",
                "postgres://app@db.example:5432/tucano (password hidden)",
            ),
            (
                "postgres://postgres@127.0.0.1:5432/tucano_auth",
                "postgres://postgres@127.0.0.1:5432/tucano_auth",
            ),
            (
                "postgres://u:SE/CR@h1:5432,h2:5433/x",
                "postgres://u@h1,h2:5432,5433/x (password hidden)",
            ),
            (
                "host=/var/run/postgresql user=app dbname=tucano",
                "postgres://app@/var/run/postgresql/tucano",
            ),
            (
                "http://user:pw@127.0.0.1:9477/readyz",
                "http://user@127.0.0.1:9477/readyz (password hidden)",
            ),
        ] {
            assert_eq!(url(text), shown, "{text}");
        }
    }

    #[test]
    fn what_does_not_parse_is_not_shown_at_all() {
        for text in [
            // Issue 31: the `/` ends the authority; `pa` is no port.
            "amqp://guest:pa/ss@127.0.0.1:5672/%2f",
            // `12` would pass for a port and `ab@host` for a path.
            "amqp://guest:12/ab@host:5672/%2f",
            "amqp://guest:12#ab@host",
            "amqp://guest:12?ab@host",
            "guest:s3cret@host",
            "s3cret",
            "host=db password=SECRETX port=bogus",
            "host=db user= password=SECRETX",
            "host=db dbname= password=SECRETX",
            "postgres://u:SECRETX@h:port/x?statement-cache-capacity=1",
            "",
        ] {
            assert_eq!(url(text), UNPARSEABLE, "{text}");
        }
    }

    #[test]
    fn each_node_of_a_list_is_shown_alone() {
        assert_eq!(
            nodes("amqp://a:SECRET1@n1:5672/%2f, amqps://b:SECRET2@n2:5671/%2f,,"),
            "amqp://a@n1:5672/%2f (password hidden), amqps://b@n2:5671/%2f (password hidden)"
        );
        assert_eq!(
            nodes("amqp://a:SECRET1@n1:5672/%2f, amqp://b:SE/CRET2@n2:5672/%2f"),
            UNPARSEABLE
        );
        assert_eq!(nodes("amqp://u:1234,ab@host:5672"), UNPARSEABLE);
        assert_eq!(nodes(" , "), UNPARSEABLE);
    }

    /// A password of what a careless operator types, with `QXJ` in it, which no other
    /// part of the generated URLs (nor [`UNPARSEABLE`]) has. What comes before `QXJ`
    /// is what would pass for a port or a path if the URL were cut short there.
    fn password() -> impl Strategy<Value = String> {
        "[0-9/#?@:,.%-]{0,5}QXJ[A-Za-z0-9/#?@:%!$&'()*+,;= .\\[\\]-]{0,12}"
    }

    proptest! {
        #[test]
        fn no_password_is_ever_shown(
            scheme in prop::sample::select(vec!["amqp", "amqps", "postgres", "postgresql", "http"]),
            user in "[a-z]{0,6}",
            password in password(),
            host in "[a-z0-9.-]{0,12}",
            port in prop::option::of(0u32..70000),
            path in "(/[a-z%0-9]{0,6}){0,2}",
            query in "(\\?[a-z=&]{0,10})?",
            separator in prop::sample::select(vec![",", ", ", ""]),
        ) {
            let port = port.map(|port| format!(":{port}")).unwrap_or_default();
            let text = format!("{scheme}://{user}:{password}@{host}{port}{path}{query}");
            let secret = "QXJ";
            for shown in [url(&text), nodes(&format!("amqp://n{separator}{text}"))] {
                prop_assert!(!shown.contains(secret), "{text:?} -> {shown:?}");
            }
            // As a key=value string, quoted or not.
            let text = format!("host={host} user={user} password='{password}' dbname=x");
            let shown = url(&text);
            prop_assert!(!shown.contains(secret), "{text:?} -> {shown:?}");
        }
    }
}
