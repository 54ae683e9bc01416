//! The status codes (docs/protocol.md §3) and the one place that maps every
//! failure to its code.
//!
//! [`Error`] is what the domain returns; [`Error::code`] is the single exhaustive match
//! from a failure to its wire code, and [`Code::description`] holds each code's fixed
//! sentence. Messages ([`Error::message`]) say what exactly was wrong and never carry a
//! secret, a pass code, the request token or SQL: internal details go to the log only.

use std::fmt;
use std::sync::Arc;

/// A wire status code, in the order of checks (docs/protocol.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The request was served.
    Ok,
    /// `reply_to` is outside the allow-list.
    ReplyToNotAllowed,
    /// The body is not a valid request.
    InvalidRequest,
    /// None of the four semi-optional identifiers is present.
    MissingIdentifier,
    /// More than one semi-optional identifier is present.
    MultipleIdentifiers,
    /// `subscription_type_identifier` without `access_token_identifier`.
    SubscriptionTypeNotApplicable,
    /// The login token is unknown, malformed, badly signed or released.
    InvalidToken,
    /// The login token or its session has expired.
    TokenExpired,
    /// `identifier` and `pass_code` do not match.
    AuthenticationFailed,
    /// An identified entity does not exist.
    NotFound,
    /// The access token, medium or installed item is not `EFFECTIVE`.
    NotEffective,
    /// The subscription is not provisioned by Tucano.
    NotProvisionedByTucano,
    /// The subscription is in an inactive state.
    SubscriptionInactive,
    /// An access token or medium leads to several Tucano subscriptions.
    AmbiguousSubscription,
    /// The database could not be reached within the retry budget.
    TemporarilyUnavailable,
    /// Anything else; details only in the log.
    InternalError,
}

impl Code {
    /// Every code, in the documented order (docs/protocol.md §3).
    pub const ALL: [Code; 16] = [
        Code::Ok,
        Code::ReplyToNotAllowed,
        Code::InvalidRequest,
        Code::MissingIdentifier,
        Code::MultipleIdentifiers,
        Code::SubscriptionTypeNotApplicable,
        Code::InvalidToken,
        Code::TokenExpired,
        Code::AuthenticationFailed,
        Code::NotFound,
        Code::NotEffective,
        Code::NotProvisionedByTucano,
        Code::SubscriptionInactive,
        Code::AmbiguousSubscription,
        Code::TemporarilyUnavailable,
        Code::InternalError,
    ];

    /// The code named `text` (as in `status.code`), if it is one of the documented codes.
    pub fn parse(text: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|code| code.as_str() == text)
    }

    /// Its position in [`Code::ALL`], for tables indexed by code.
    pub fn index(self) -> usize {
        // The variants are declared in the order of `ALL` (a test checks it).
        self as usize
    }

    /// The code as it appears in `status.code` and the `x-status-code` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::ReplyToNotAllowed => "REPLY_TO_NOT_ALLOWED",
            Code::InvalidRequest => "INVALID_REQUEST",
            Code::MissingIdentifier => "MISSING_IDENTIFIER",
            Code::MultipleIdentifiers => "MULTIPLE_IDENTIFIERS",
            Code::SubscriptionTypeNotApplicable => "SUBSCRIPTION_TYPE_NOT_APPLICABLE",
            Code::InvalidToken => "INVALID_TOKEN",
            Code::TokenExpired => "TOKEN_EXPIRED",
            Code::AuthenticationFailed => "AUTHENTICATION_FAILED",
            Code::NotFound => "NOT_FOUND",
            Code::NotEffective => "NOT_EFFECTIVE",
            Code::NotProvisionedByTucano => "NOT_PROVISIONED_BY_TUCANO",
            Code::SubscriptionInactive => "SUBSCRIPTION_INACTIVE",
            Code::AmbiguousSubscription => "AMBIGUOUS_SUBSCRIPTION",
            Code::TemporarilyUnavailable => "TEMPORARILY_UNAVAILABLE",
            Code::InternalError => "INTERNAL_ERROR",
        }
    }

    /// The code's fixed one-sentence description (empty for `OK`, as in the seed).
    pub fn description(self) -> &'static str {
        match self {
            Code::Ok => "",
            Code::ReplyToNotAllowed => "The reply_to address is not allowed.",
            Code::InvalidRequest => "The request is not a valid authenticate request.",
            Code::MissingIdentifier => {
                "One of access_token_identifier, customer_identification_medium_identifier, installed_item_identifier or subscription_identifier must be specified."
            }
            Code::MultipleIdentifiers => {
                "Only one of access_token_identifier, customer_identification_medium_identifier, installed_item_identifier or subscription_identifier may be specified."
            }
            Code::SubscriptionTypeNotApplicable => {
                "subscription_type_identifier is applicable only with access_token_identifier."
            }
            Code::InvalidToken => "The login token is not valid.",
            Code::TokenExpired => "The login token has expired.",
            Code::AuthenticationFailed => "The identifier and pass code do not match.",
            Code::NotFound => "The identified entity does not exist.",
            Code::NotEffective => "The identified entity is not effective.",
            Code::NotProvisionedByTucano => {
                "The subscription is not provisioned by AlphaNetworks Tucano."
            }
            Code::SubscriptionInactive => "The subscription is not active.",
            Code::AmbiguousSubscription => {
                "The identifier leads to more than one Tucano subscription."
            }
            Code::TemporarilyUnavailable => {
                "The service is temporarily unavailable; try again later."
            }
            Code::InternalError => "An internal error occurred.",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request was not served. Each variant's `Display` is the reply's `message`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `reply_to` is outside the allow-list (the value is the rejected name).
    #[error("reply_to '{0}' is outside the allow-list")]
    ReplyToNotAllowed(String),
    /// The body or its properties are not a valid request; says where and why.
    #[error("{0}")]
    InvalidRequest(String),
    /// No semi-optional identifier.
    #[error("none of access_token_identifier, customer_identification_medium_identifier, installed_item_identifier, subscription_identifier is present")]
    MissingIdentifier,
    /// Several semi-optional identifiers (their names).
    #[error("only one identifier may be present, found: {}", .0.join(", "))]
    MultipleIdentifiers(Vec<&'static str>),
    /// `subscription_type_identifier` without `access_token_identifier`.
    #[error("subscription_type_identifier is present without access_token_identifier")]
    SubscriptionTypeNotApplicable,
    /// The login token is not valid; says why without echoing it.
    #[error("{0}")]
    InvalidToken(&'static str),
    /// The login token or its session expired.
    #[error("{0}")]
    TokenExpired(&'static str),
    /// Identifier and pass code do not match (or the identifier does not exist).
    #[error("identifier and pass_code do not match")]
    AuthenticationFailed,
    /// Which entity was not found.
    #[error("{0}")]
    NotFound(String),
    /// Which entity is not effective.
    #[error("{0}")]
    NotEffective(String),
    /// The subscription (its number) is not provisioned by Tucano.
    #[error("subscription {0} is not provisioned by Tucano")]
    NotProvisionedByTucano(String),
    /// The subscription (number, state) is inactive.
    #[error("subscription {number} is {state}")]
    SubscriptionInactive {
        /// The subscription number.
        number: String,
        /// Its life cycle state.
        state: String,
    },
    /// How many Tucano subscriptions matched.
    #[error(
        "{0} Tucano subscriptions match; narrow the request with subscription_type_identifier"
    )]
    AmbiguousSubscription(usize),
    /// `TUCANO_PASS_CODE_BACKLOG` pass-code requests already wait in this worker: not
    /// retried, answered at once.
    #[error("too many pass-code checks in progress, retry later")]
    PassCodeBacklogFull,
    /// The database could not be reached; retried by the caller until its budget ends.
    #[error("the database is unreachable")]
    Unavailable(#[source] DbError),
    /// Anything else. The detail is logged, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    /// The one exhaustive mapping from a failure to its wire code.
    pub fn code(&self) -> Code {
        match self {
            Error::ReplyToNotAllowed(_) => Code::ReplyToNotAllowed,
            Error::InvalidRequest(_) => Code::InvalidRequest,
            Error::MissingIdentifier => Code::MissingIdentifier,
            Error::MultipleIdentifiers(_) => Code::MultipleIdentifiers,
            Error::SubscriptionTypeNotApplicable => Code::SubscriptionTypeNotApplicable,
            Error::InvalidToken(_) => Code::InvalidToken,
            Error::TokenExpired(_) => Code::TokenExpired,
            Error::AuthenticationFailed => Code::AuthenticationFailed,
            Error::NotFound(_) => Code::NotFound,
            Error::NotEffective(_) => Code::NotEffective,
            Error::NotProvisionedByTucano(_) => Code::NotProvisionedByTucano,
            Error::SubscriptionInactive { .. } => Code::SubscriptionInactive,
            Error::AmbiguousSubscription(_) => Code::AmbiguousSubscription,
            Error::PassCodeBacklogFull => Code::TemporarilyUnavailable,
            Error::Unavailable(_) => Code::TemporarilyUnavailable,
            Error::Internal(_) => Code::InternalError,
        }
    }

    /// The reply's `message`: what exactly was wrong, safe to send.
    pub fn message(&self) -> String {
        match self {
            Error::Unavailable(_) => {
                "the database could not be reached within the retry budget".to_owned()
            }
            Error::Internal(_) => "internal error; the details are in the worker log".to_owned(),
            other => other.to_string(),
        }
    }

    /// Classifies an error of the lookup statement: connection trouble is
    /// [`Error::Unavailable`] (retried), anything else is [`Error::Internal`].
    /// The error is shared because one lookup statement answers many requests.
    pub fn from_postgres(err: Arc<tokio_postgres::Error>) -> Error {
        if is_transient(&err) {
            Error::Unavailable(err)
        } else {
            Error::Internal(anyhow::Error::new(err))
        }
    }
}

/// A database error behind [`Error::Unavailable`].
pub type DbError = Arc<dyn std::error::Error + Send + Sync>;

/// Whether a database error means "the database is not reachable right now": the
/// connection closed or could not be opened (an I/O error, a timeout), or the server
/// said so (SQLSTATE class 08 connection exception, 57P operator intervention such as
/// a shutdown, 53 insufficient resources).
fn is_transient(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    if let Some(code) = err.code() {
        let code = code.code();
        return code.starts_with("08") || code.starts_with("57P") || code.starts_with("53");
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_indexes_its_place_in_all() {
        for (i, code) in Code::ALL.iter().enumerate() {
            assert_eq!(code.index(), i, "{code}");
        }
    }
    use crate::handle::Outcome;
    use crate::schema::Schemas;

    /// The wire codes the published reply schema allows.
    fn schema_codes() -> Vec<String> {
        let schema: serde_json::Value = serde_json::from_str(crate::schema::REPLY_SCHEMA).unwrap();
        let codes = schema
            .pointer("/properties/status/properties/code/enum")
            .or_else(|| schema.pointer("/$defs/status/properties/code/enum"))
            .expect("the reply schema lists the codes");
        codes
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    }

    fn assert_in_schema(err: Error) {
        let code = err.code();
        assert!(
            schema_codes().iter().any(|c| c == code.as_str()),
            "{code} is not in the reply schema's enum"
        );
        // The whole reply for this failure validates against the published schema.
        let outcome = Outcome::from_result(None, Err(err));
        let body: serde_json::Value = serde_json::from_slice(&outcome.body).unwrap();
        assert!(Schemas::load().unwrap().is_valid_reply(&body), "{body}");
    }

    fn refused() -> DbError {
        Arc::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ))
    }

    // Each variant has its own test; `variant_name` makes adding a variant without a
    // test here a compile error.
    #[allow(dead_code)]
    fn variant_name(err: &Error) -> &'static str {
        match err {
            Error::ReplyToNotAllowed(_) => "reply_to_not_allowed",
            Error::InvalidRequest(_) => "invalid_request",
            Error::MissingIdentifier => "missing_identifier",
            Error::MultipleIdentifiers(_) => "multiple_identifiers",
            Error::SubscriptionTypeNotApplicable => "subscription_type_not_applicable",
            Error::InvalidToken(_) => "invalid_token",
            Error::TokenExpired(_) => "token_expired",
            Error::AuthenticationFailed => "authentication_failed",
            Error::NotFound(_) => "not_found",
            Error::NotEffective(_) => "not_effective",
            Error::NotProvisionedByTucano(_) => "not_provisioned_by_tucano",
            Error::SubscriptionInactive { .. } => "subscription_inactive",
            Error::AmbiguousSubscription(_) => "ambiguous_subscription",
            Error::PassCodeBacklogFull => "pass_code_backlog_full",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    #[test]
    fn reply_to_not_allowed_is_in_the_reply_schema() {
        assert_in_schema(Error::ReplyToNotAllowed("x".into()));
    }
    #[test]
    fn invalid_request_is_in_the_reply_schema() {
        assert_in_schema(Error::InvalidRequest("/token: bad".into()));
    }
    #[test]
    fn pass_code_backlog_full_is_in_the_reply_schema() {
        assert_in_schema(Error::PassCodeBacklogFull);
        assert_eq!(
            Error::PassCodeBacklogFull.code(),
            Code::TemporarilyUnavailable
        );
    }
    #[test]
    fn missing_identifier_is_in_the_reply_schema() {
        assert_in_schema(Error::MissingIdentifier);
    }
    #[test]
    fn multiple_identifiers_is_in_the_reply_schema() {
        assert_in_schema(Error::MultipleIdentifiers(vec!["a", "b"]));
    }
    #[test]
    fn subscription_type_not_applicable_is_in_the_reply_schema() {
        assert_in_schema(Error::SubscriptionTypeNotApplicable);
    }
    #[test]
    fn invalid_token_is_in_the_reply_schema() {
        assert_in_schema(Error::InvalidToken("unknown"));
    }
    #[test]
    fn token_expired_is_in_the_reply_schema() {
        assert_in_schema(Error::TokenExpired("expired"));
    }
    #[test]
    fn authentication_failed_is_in_the_reply_schema() {
        assert_in_schema(Error::AuthenticationFailed);
    }
    #[test]
    fn not_found_is_in_the_reply_schema() {
        assert_in_schema(Error::NotFound("subscription S1".into()));
    }
    #[test]
    fn not_effective_is_in_the_reply_schema() {
        assert_in_schema(Error::NotEffective("item".into()));
    }
    #[test]
    fn not_provisioned_by_tucano_is_in_the_reply_schema() {
        assert_in_schema(Error::NotProvisionedByTucano("S1".into()));
    }
    #[test]
    fn subscription_inactive_is_in_the_reply_schema() {
        assert_in_schema(Error::SubscriptionInactive {
            number: "S1".into(),
            state: "CANCELLED".into(),
        });
    }
    #[test]
    fn ambiguous_subscription_is_in_the_reply_schema() {
        assert_in_schema(Error::AmbiguousSubscription(2));
    }
    #[test]
    fn unavailable_is_in_the_reply_schema() {
        assert_in_schema(Error::Unavailable(refused()));
    }
    #[test]
    fn internal_is_in_the_reply_schema() {
        assert_in_schema(Error::Internal(anyhow::anyhow!("secret detail")));
    }

    #[test]
    fn internal_details_never_reach_the_message() {
        let err = Error::Internal(anyhow::anyhow!("SELECT secret FROM x"));
        assert!(!err.message().contains("SELECT"));
        let err = Error::Unavailable(refused());
        assert!(!err.message().contains("refused"));
    }

    #[tokio::test]
    async fn connection_trouble_is_transient_and_other_database_errors_are_not() {
        // Nothing listens on port 1.
        let refused = tokio_postgres::connect(
            "postgres://postgres@127.0.0.1:1/none",
            tokio_postgres::NoTls,
        )
        .await
        .err()
        .expect("nothing listens on port 1");
        assert_eq!(
            Error::from_postgres(Arc::new(refused)).code(),
            Code::TemporarilyUnavailable
        );
        let bad_setting = "port=not-a-number"
            .parse::<tokio_postgres::Config>()
            .expect_err("not a port");
        assert_eq!(
            Error::from_postgres(Arc::new(bad_setting)).code(),
            Code::InternalError
        );
    }

    #[test]
    fn every_code_has_a_description_and_only_ok_has_an_empty_one() {
        for code in Code::ALL {
            assert_eq!(code.description().is_empty(), code == Code::Ok, "{code}");
        }
    }
}
