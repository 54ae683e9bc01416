//! Step 6 of the contract's order of checks: which subscription does the identifier
//! lead to? (contract section 5, "Resolution").
//!
//! Each identifier path is one SQL statement that reads the named entity together
//! with everything the later checks need (its subscription, or the account's active
//! Tucano subscriptions and whether the type filter names a type). The checks then
//! run in Rust in the contract's order: the entity named first, then its state, then
//! the subscription it leads to. A pass code is verified before the state of its
//! access token or medium is revealed.

use uuid::Uuid;

use super::{pass_code, show_id, Store, Subscription};
use crate::error::Error;
use crate::request::{
    Credential, Identifier, InstalledItemKey, SubscriptionKey, SubscriptionTypeKey,
};

/// The subscription states that never authenticate (contract section 3).
pub const INACTIVE_STATES: [&str; 5] = [
    "DRAFT",
    "CANCELLED",
    "REGRETTED",
    "REPLACED",
    "PENDING_VERIFICATION",
];

/// [`INACTIVE_STATES`] as an SQL list. Written exactly like the predicate of the
/// partial index `subscriptions_active_tucano_idx`, so the planner can use it.
macro_rules! inactive_states_sql {
    () => {
        "('DRAFT', 'CANCELLED', 'REGRETTED', 'REPLACED', 'PENDING_VERIFICATION')"
    };
}

const SUBSCRIPTION_COLUMNS: &str =
    "SELECT id, number, life_cycle_state, provisioning_provider FROM subscriptions";

const INSTALLED_ITEM_WITH_SUBSCRIPTION: &str = "\
    SELECT i.state, s.id, s.number, s.life_cycle_state, s.provisioning_provider \
    FROM installed_items i LEFT JOIN subscriptions s ON s.id = i.subscription_id";

/// A value bound to a key column: ids are `uuid`, everything else `text`.
enum Key<'a> {
    Id(Uuid),
    Text(&'a str),
}

impl Store {
    /// Resolves `identifier` to the one subscription it leads to, or the step-6 error
    /// of the contract: `AUTHENTICATION_FAILED`, `NOT_FOUND`, `NOT_EFFECTIVE`,
    /// `NOT_PROVISIONED_BY_TUCANO`, `SUBSCRIPTION_INACTIVE` or
    /// `AMBIGUOUS_SUBSCRIPTION`. Database errors are classified by
    /// [`Error::from_db`].
    pub async fn resolve(&self, identifier: &Identifier) -> Result<Subscription, Error> {
        match identifier {
            Identifier::Subscription(key) => self.resolve_subscription(key).await,
            Identifier::InstalledItem(key) => self.resolve_installed_item(key).await,
            Identifier::AccessToken {
                credential,
                subscription_type,
            } => {
                self.resolve_credential(Holder::AccessToken, credential, subscription_type.as_ref())
                    .await
            }
            Identifier::Medium(credential) => {
                self.resolve_credential(Holder::Medium, credential, None)
                    .await
            }
        }
    }

    async fn resolve_subscription(&self, key: &SubscriptionKey) -> Result<Subscription, Error> {
        let (column, value, shown) = match key {
            SubscriptionKey::Id(id) => ("id", Key::Id(*id), format!("id {}", show_id(id))),
            SubscriptionKey::Number(number) => {
                ("number", Key::Text(number), format!("number {number}"))
            }
        };
        let sql = format!("{SUBSCRIPTION_COLUMNS} WHERE {column} = $1");
        let row = bind(sqlx::query_as::<_, SubscriptionRow>(&sql), value)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::from_db)?
            .ok_or_else(|| Error::NotFound(format!("subscription with {shown} not found")))?;
        row.check()
    }

    async fn resolve_installed_item(&self, key: &InstalledItemKey) -> Result<Subscription, Error> {
        let (column, value, shown) = match key {
            InstalledItemKey::Id(id) => ("id", Key::Id(*id), format!("id {}", show_id(id))),
            InstalledItemKey::SerialNumber(serial) => (
                "serial_number",
                Key::Text(serial),
                format!("serial number {serial}"),
            ),
            InstalledItemKey::AlternativeCode(code) => (
                "alternative_code",
                Key::Text(code),
                format!("alternative code {code}"),
            ),
        };
        let sql = format!("{INSTALLED_ITEM_WITH_SUBSCRIPTION} WHERE i.{column} = $1");
        let row = bind(sqlx::query_as::<_, InstalledItemRow>(&sql), value)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::from_db)?
            .ok_or_else(|| Error::NotFound(format!("installed item with {shown} not found")))?;
        if row.state != "EFFECTIVE" {
            return Err(Error::NotEffective(format!(
                "installed item with {shown} is {}",
                row.state
            )));
        }
        match (row.id, row.number, row.life_cycle_state) {
            (Some(id), Some(number), Some(life_cycle_state)) => SubscriptionRow {
                id,
                number,
                life_cycle_state,
                provisioning_provider: row.provisioning_provider,
            }
            .check(),
            _ => Err(Error::NotFound(format!(
                "installed item with {shown} has no subscription"
            ))),
        }
    }

    async fn resolve_credential(
        &self,
        holder: Holder,
        credential: &Credential,
        subscription_type: Option<&SubscriptionTypeKey>,
    ) -> Result<Subscription, Error> {
        let (key_column, key, pass_code, shown) = match credential {
            Credential::AuthenticationCode(code) => (
                "authentication_code",
                code.as_str(),
                None,
                format!("{} with authentication code {code}", holder.name()),
            ),
            Credential::Identifier {
                identifier,
                pass_code,
            } => (
                "identifier",
                identifier.as_str(),
                Some(pass_code),
                format!("{} with identifier {identifier}", holder.name()),
            ),
        };
        let type_key = subscription_type.map(|key| match key {
            SubscriptionTypeKey::Id(id) => ("id", Key::Id(*id), format!("id {}", show_id(id))),
            SubscriptionTypeKey::Name(name) => ("name", Key::Text(name), format!("name {name}")),
            SubscriptionTypeKey::AlternativeCode(code) => (
                "alternative_code",
                Key::Text(code),
                format!("alternative code {code}"),
            ),
        });

        // Only fixed table and column names are formatted into the SQL; every value
        // supplied by the request is a bound parameter.
        let (type_found, type_filter) = match &type_key {
            Some((column, _, _)) => (
                format!("EXISTS (SELECT 1 FROM subscription_types st WHERE st.{column} = $2)"),
                format!(
                    "AND s.subscription_type_id = \
                     (SELECT st.id FROM subscription_types st WHERE st.{column} = $2)"
                ),
            ),
            None => ("true".to_owned(), String::new()),
        };
        let sql = format!(
            concat!(
                "SELECT t.life_cycle_state, t.pass_code_hash, {type_found} AS type_found, ",
                "m.total, m.id, m.number ",
                "FROM {table} t LEFT JOIN LATERAL (",
                "SELECT count(*) OVER () AS total, s.id, s.number FROM subscriptions s ",
                "WHERE s.accounts_receivable_id = t.accounts_receivable_id ",
                "AND s.provisioning_provider = 'TUCANO' ",
                "AND s.life_cycle_state NOT IN ",
                inactive_states_sql!(),
                " {type_filter} ORDER BY s.number LIMIT 1",
                ") m ON true WHERE t.{key_column} = $1"
            ),
            type_found = type_found,
            table = holder.table(),
            type_filter = type_filter,
            key_column = key_column,
        );
        let mut query = sqlx::query_as::<_, CredentialRow>(&sql).bind(key);
        if let Some((_, value, _)) = &type_key {
            query = match value {
                Key::Id(id) => query.bind(*id),
                Key::Text(text) => query.bind(*text),
            };
        }
        let row = query
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::from_db)?;

        if let Some(pass_code) = pass_code {
            let stored = row.as_ref().and_then(|row| row.pass_code_hash.clone());
            // Verified even when the row is missing, so timing reveals nothing.
            if !pass_code::verify(stored, pass_code).await? {
                return Err(Error::AuthenticationFailed);
            }
        }
        let row = row.ok_or_else(|| Error::NotFound(format!("{shown} not found")))?;
        if row.life_cycle_state != "EFFECTIVE" {
            return Err(Error::NotEffective(format!(
                "{shown} is {}",
                row.life_cycle_state
            )));
        }
        let type_shown = type_key.map(|(_, _, shown)| shown);
        if let (false, Some(type_shown)) = (row.type_found, &type_shown) {
            return Err(Error::NotFound(format!(
                "subscription type with {type_shown} not found"
            )));
        }
        match (row.total, row.id, row.number) {
            (Some(1), Some(id), Some(number)) => Ok(Subscription { id, number }),
            (Some(total), Some(_), Some(_)) if total > 1 => Err(Error::AmbiguousSubscription(
                usize::try_from(total).unwrap_or(usize::MAX),
            )),
            _ => Err(Error::NotFound(match type_shown {
                Some(type_shown) => format!(
                    "{shown} leads to no active Tucano subscription of subscription type with {type_shown}"
                ),
                None => format!("{shown} leads to no active Tucano subscription"),
            })),
        }
    }
}

/// The two tables with the access-token columns.
#[derive(Clone, Copy)]
enum Holder {
    AccessToken,
    Medium,
}

impl Holder {
    fn table(self) -> &'static str {
        match self {
            Holder::AccessToken => "access_tokens",
            Holder::Medium => "customer_identification_mediums",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Holder::AccessToken => "access token",
            Holder::Medium => "customer identification medium",
        }
    }
}

fn bind<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    key: Key<'q>,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    match key {
        Key::Id(id) => query.bind(id),
        Key::Text(text) => query.bind(text),
    }
}

/// A subscription, with what the final checks read.
#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    id: Uuid,
    number: String,
    life_cycle_state: String,
    provisioning_provider: Option<String>,
}

impl SubscriptionRow {
    /// The subscription found must be provisioned by Tucano and not inactive.
    fn check(self) -> Result<Subscription, Error> {
        if self.provisioning_provider.as_deref() != Some("TUCANO") {
            return Err(Error::NotProvisionedByTucano(self.number));
        }
        if INACTIVE_STATES.contains(&self.life_cycle_state.as_str()) {
            return Err(Error::SubscriptionInactive {
                number: self.number,
                state: self.life_cycle_state,
            });
        }
        Ok(Subscription {
            id: self.id,
            number: self.number,
        })
    }
}

/// An installed item and (if it has one) its subscription.
#[derive(sqlx::FromRow)]
struct InstalledItemRow {
    state: String,
    id: Option<Uuid>,
    number: Option<String>,
    life_cycle_state: Option<String>,
    provisioning_provider: Option<String>,
}

/// An access token or medium, whether the type filter names a type, and the first of
/// the account's active Tucano subscriptions (by number) with how many there are.
#[derive(sqlx::FromRow)]
struct CredentialRow {
    life_cycle_state: String,
    pass_code_hash: Option<String>,
    type_found: bool,
    total: Option<i64>,
    id: Option<Uuid>,
    number: Option<String>,
}
