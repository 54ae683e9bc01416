//! The lookup statement: the SQL ([`STATEMENT`]), its array parameters built from a
//! batch of lookups, and the decoding of its rows ([`read`]).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, Row, Statement};
use uuid::Uuid;

use super::types::{EntityRow, Found, Lookup, Path, SessionKey, SessionRow, TypeColumn};

/// The subscription states that never authenticate (docs/protocol.md §3).
pub const INACTIVE_STATES: [&str; 5] = [
    "DRAFT",
    "CANCELLED",
    "REGRETTED",
    "REPLACED",
    "PENDING_VERIFICATION",
];

/// [`INACTIVE_STATES`] as an SQL list. Written exactly like the predicate of the
/// partial index `subscriptions_active_tucano_idx`, so the planner can use it.
const INACTIVE_STATES_SQL: &str =
    "('DRAFT', 'CANCELLED', 'REGRETTED', 'REPLACED', 'PENDING_VERIFICATION')";

/// The statement. Every branch of a lateral subquery is gated by the request's `path`
/// or `type_kind` (PostgreSQL evaluates such a condition once per row, before the
/// index scan behind it), so each request costs only the index lookups of its own
/// path. Only fixed table and column names are formatted in; every value is a bound
/// array element.
pub(super) static STATEMENT: LazyLock<String> = LazyLock::new(|| {
    let subscription = |path: Path, condition: &str| {
        format!(
            "SELECT true AS found, NULL::text AS state, NULL::text AS pass_code_hash, \
             NULL::bigint AS total, s.id, s.number, s.life_cycle_state, s.provisioning_provider \
             FROM subscriptions s WHERE r.path = {} AND {condition}",
            path as i16
        )
    };
    let item = |path: Path, condition: &str| {
        format!(
            "SELECT true, i.state, NULL, NULL, s.id, s.number, s.life_cycle_state, \
             s.provisioning_provider \
             FROM installed_items i LEFT JOIN subscriptions s ON s.id = i.subscription_id \
             WHERE r.path = {} AND {condition}",
            path as i16
        )
    };
    let credential = |path: Path, table: &str, column: &str| {
        format!(
            "SELECT true, t.life_cycle_state, t.pass_code_hash, m.total, m.id, m.number, NULL, NULL \
             FROM {table} t LEFT JOIN LATERAL (\
             SELECT count(*) OVER () AS total, s.id, s.number FROM subscriptions s \
             WHERE s.accounts_receivable_id = t.accounts_receivable_id \
             AND s.provisioning_provider = 'TUCANO' \
             AND s.life_cycle_state NOT IN {inactive} \
             AND (r.type_kind = 0 OR s.subscription_type_id = ty.id) \
             ORDER BY s.number LIMIT 1) m ON true \
             WHERE r.path = {path} AND t.{column} = r.key_text",
            inactive = INACTIVE_STATES_SQL,
            path = path as i16,
        )
    };
    let subscription_type = |column: TypeColumn, condition: &str| {
        format!(
            "SELECT st.id FROM subscription_types st WHERE r.type_kind = {} AND {condition}",
            column as i16
        )
    };
    let entity = [
        subscription(Path::SubscriptionId, "s.id = r.key_id"),
        subscription(Path::SubscriptionNumber, "s.number = r.key_text"),
        item(Path::ItemId, "i.id = r.key_id"),
        item(Path::ItemSerialNumber, "i.serial_number = r.key_text"),
        item(Path::ItemAlternativeCode, "i.alternative_code = r.key_text"),
        credential(
            Path::TokenAuthenticationCode,
            "access_tokens",
            "authentication_code",
        ),
        credential(Path::TokenIdentifier, "access_tokens", "identifier"),
        credential(
            Path::MediumAuthenticationCode,
            "customer_identification_mediums",
            "authentication_code",
        ),
        credential(
            Path::MediumIdentifier,
            "customer_identification_mediums",
            "identifier",
        ),
    ]
    .join(" UNION ALL ");
    let types = [
        subscription_type(TypeColumn::Id, "st.id = r.type_id"),
        subscription_type(TypeColumn::Name, "st.name = r.type_text"),
        subscription_type(
            TypeColumn::AlternativeCode,
            "st.alternative_code = r.type_text",
        ),
    ]
    .join(" UNION ALL ");
    let session = "SELECT s.released_at, s.expires_at, u.life_cycle_state AS user_state \
                   FROM sessions s JOIN api_users u ON u.id = s.api_user_id";
    // Requests in flight mostly share a few login tokens: each distinct session is
    // read once (`ses`), and requests refer to it by its position (`r.login`).
    format!(
        "WITH ses AS MATERIALIZED (SELECT k.i, x.released_at, x.expires_at, x.user_state \
         FROM unnest($1::bytea[], $2::uuid[]) WITH ORDINALITY AS k(sha, id, i) \
         JOIN LATERAL ({session} WHERE s.token_sha256 = k.sha \
         UNION ALL {session} WHERE s.id = k.id) x ON true) \
         SELECT r.ord, ses.released_at, ses.expires_at, ses.user_state, \
         e.found AS entity_found, e.state, e.pass_code_hash, \
         (r.type_kind = 0 OR ty.id IS NOT NULL) AS type_found, \
         e.total, e.id, e.number, e.life_cycle_state, e.provisioning_provider \
         FROM unnest($3::int8[], $4::int2[], $5::uuid[], $6::text[], \
         $7::int2[], $8::uuid[], $9::text[]) WITH ORDINALITY \
         AS r(login, path, key_id, key_text, type_kind, type_id, type_text, ord) \
         LEFT JOIN ses ON ses.i = r.login \
         LEFT JOIN LATERAL ({types}) ty ON true \
         LEFT JOIN LATERAL ({entity}) e ON true"
    )
});

/// Runs the statement for `lookups` on `client`, where it is prepared as `statement`:
/// the lookups become its array parameters, one element per request.
pub(super) async fn query(
    client: &Client,
    statement: &Statement,
    lookups: &[&Lookup],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let n = lookups.len();
    // The distinct sessions of the batch, and each request's (1-based; 0 for none).
    let mut sessions: Vec<&SessionKey> = Vec::new();
    let mut login = Vec::with_capacity(n);
    let mut path = Vec::with_capacity(n);
    let mut key_id = Vec::with_capacity(n);
    let mut key_text = Vec::with_capacity(n);
    let mut type_kind = Vec::with_capacity(n);
    let mut type_id = Vec::with_capacity(n);
    let mut type_text = Vec::with_capacity(n);
    for lookup in lookups {
        let position = lookup.session.as_ref().map_or(0, |key| {
            let index = match sessions.iter().position(|known| *known == key) {
                Some(index) => index,
                None => {
                    sessions.push(key);
                    sessions.len() - 1
                }
            };
            index as i64 + 1
        });
        login.push(position);
        let entity = lookup.entity.as_ref();
        path.push(entity.map_or(0, |entity| entity.path as i16));
        key_id.push(entity.and_then(|entity| entity.id));
        key_text.push(entity.and_then(|entity| entity.text.as_deref()));
        let filter = entity.and_then(|entity| entity.type_filter.as_ref());
        type_kind.push(filter.map_or(0, |(column, _, _)| *column as i16));
        type_id.push(filter.and_then(|(_, id, _)| *id));
        type_text.push(filter.and_then(|(_, _, text)| text.as_deref()));
    }
    let (session_sha, session_id): (Vec<_>, Vec<_>) = sessions
        .iter()
        .map(|key| match key {
            SessionKey::TokenSha256(sha) => (Some(sha.as_slice()), None),
            SessionKey::Id(id) => (None, Some(*id)),
        })
        .unzip();
    client
        .query(
            statement,
            &[
                &session_sha,
                &session_id,
                &login,
                &path,
                &key_id,
                &key_text,
                &type_kind,
                &type_id,
                &type_text,
            ],
        )
        .await
}

/// What each of `n` lookups found, from the statement's `rows`, in order (`None`
/// where the statement returned no row for it, a bug in the statement). Columns are
/// read by name.
pub(super) fn decode(
    rows: Vec<Row>,
    n: usize,
) -> Result<Vec<Option<Found>>, tokio_postgres::Error> {
    let rows = rows
        .into_iter()
        .map(Flat::try_from)
        .collect::<Result<Vec<Flat>, _>>()?;
    let mut found: Vec<Option<Found>> = vec![None; n];
    for row in rows {
        let slot = usize::try_from(row.ord)
            .ok()
            .and_then(|ord| ord.checked_sub(1))
            .and_then(|index| found.get_mut(index));
        if let Some(slot) = slot {
            *slot = Some(row.into_found());
        }
    }
    Ok(found)
}

/// One output row of the statement.
struct Flat {
    ord: i64,
    released_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    user_state: Option<String>,
    entity_found: Option<bool>,
    state: Option<String>,
    pass_code_hash: Option<String>,
    type_found: bool,
    total: Option<i64>,
    id: Option<Uuid>,
    number: Option<String>,
    life_cycle_state: Option<String>,
    provisioning_provider: Option<String>,
}

impl TryFrom<Row> for Flat {
    type Error = tokio_postgres::Error;

    /// By column name, as sqlx's `FromRow` read it: a reordered select list cannot
    /// swap two fields of the same type.
    fn try_from(row: Row) -> Result<Flat, tokio_postgres::Error> {
        Ok(Flat {
            ord: row.try_get("ord")?,
            released_at: row.try_get("released_at")?,
            expires_at: row.try_get("expires_at")?,
            user_state: row.try_get("user_state")?,
            entity_found: row.try_get("entity_found")?,
            state: row.try_get("state")?,
            pass_code_hash: row.try_get("pass_code_hash")?,
            type_found: row.try_get("type_found")?,
            total: row.try_get("total")?,
            id: row.try_get("id")?,
            number: row.try_get("number")?,
            life_cycle_state: row.try_get("life_cycle_state")?,
            provisioning_provider: row.try_get("provisioning_provider")?,
        })
    }
}

impl Flat {
    fn into_found(self) -> Found {
        let session = match (self.expires_at, self.user_state) {
            (Some(expires_at), Some(user_state)) => Some(SessionRow {
                released_at: self.released_at,
                expires_at,
                user_state,
            }),
            _ => None,
        };
        let entity = self.entity_found.unwrap_or(false).then_some(EntityRow {
            state: self.state,
            pass_code_hash: self.pass_code_hash,
            type_found: self.type_found,
            total: self.total,
            id: self.id,
            number: self.number,
            life_cycle_state: self.life_cycle_state,
            provisioning_provider: self.provisioning_provider,
        });
        Found { session, entity }
    }
}
