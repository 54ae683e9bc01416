//! What a request hands the lookup task ([`Lookup`]) and what it gets back
//! ([`Found`]).

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// How a login token names its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::store) enum SessionKey {
    /// By the SHA-256 of a 32-hex token.
    TokenSha256(Vec<u8>),
    /// By the `jti` of a JWT.
    Id(Uuid),
}

/// The SQL branch that finds an identifier's entity; the discriminants are the
/// `path` values the statement tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub(in crate::store) enum Path {
    SubscriptionId = 1,
    SubscriptionNumber,
    ItemId,
    ItemSerialNumber,
    ItemAlternativeCode,
    TokenAuthenticationCode,
    TokenIdentifier,
    MediumAuthenticationCode,
    MediumIdentifier,
}

/// How a subscription type filter names its type; the discriminants are the
/// `type_kind` values the statement tests (0 is "no filter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub(in crate::store) enum TypeColumn {
    Id = 1,
    Name,
    AlternativeCode,
}

/// The entity an identifier names, as statement parameters.
#[derive(Debug, Clone)]
pub(in crate::store) struct EntityKey {
    pub path: Path,
    /// The key, when the path's column is a uuid.
    pub id: Option<Uuid>,
    /// The key, when the path's column is text.
    pub text: Option<String>,
    /// The type filter of an access token: its column and value.
    pub type_filter: Option<(TypeColumn, Option<Uuid>, Option<String>)>,
}

/// What one request needs read.
#[derive(Debug, Clone, Default)]
pub(in crate::store) struct Lookup {
    pub session: Option<SessionKey>,
    pub entity: Option<EntityKey>,
}

/// A login session, with its API user's state.
#[derive(Debug, Clone)]
pub(in crate::store) struct SessionRow {
    pub released_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub user_state: String,
}

/// The entity an identifier named and what the later checks read. Which fields are
/// set depends on the path: `state` is an installed item's state or an access
/// token's (medium's) life cycle state; `life_cycle_state` and
/// `provisioning_provider` are the subscription's on the subscription and installed
/// item paths; `total` is the number of the account's active Tucano subscriptions
/// (of the filtered type) on the credential paths, `id` and `number` then being the
/// first of them by number.
#[derive(Debug, Clone, Default)]
pub(in crate::store) struct EntityRow {
    pub state: Option<String>,
    pub pass_code_hash: Option<String>,
    pub type_found: bool,
    pub total: Option<i64>,
    pub id: Option<Uuid>,
    pub number: Option<String>,
    pub life_cycle_state: Option<String>,
    pub provisioning_provider: Option<String>,
}

/// What a [`Lookup`] found; `None` where nothing matched (or nothing was asked).
#[derive(Debug, Clone, Default)]
pub(in crate::store) struct Found {
    pub session: Option<SessionRow>,
    pub entity: Option<EntityRow>,
}
