//! What `import` knows about each table: the CSV columns it takes, which of them is the
//! natural key, how each value is checked, which columns reference another table by
//! its natural key, and which other columns must stay unique.
//!
//! The value checks mirror the check constraints in `migrations/`, so a row the
//! database would refuse is rejected with a reason instead of failing the whole load.

use clap::ValueEnum;

/// A table `import` loads (`--table`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Table {
    /// Customer accounts.
    AccountsReceivable,
    /// Subscription types.
    SubscriptionTypes,
    /// Subscriptions.
    Subscriptions,
    /// Installed items.
    InstalledItems,
    /// Access tokens.
    AccessTokens,
    /// Customer identification mediums.
    CustomerIdentificationMediums,
    /// CRM API users.
    ApiUsers,
}

/// Whether a column must be in the header and have a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The natural key: in the header, never empty, unique in the file.
    Key,
    /// In the header, never empty.
    Required,
    /// May be left out of the header or empty (stored as null).
    Optional,
}

/// How a value is checked (and transformed) on the way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Any text.
    Text,
    /// Non-empty upper-case free text.
    Upper,
    /// One of these states.
    OneOf(&'static [&'static str]),
    /// A pass code or password: hashed with Argon2 unless already a PHC string.
    Secret,
    /// The natural key of a row of another table.
    Reference(Reference),
}

/// A column that names a row of another table by that table's natural key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference {
    /// The referenced table.
    pub table: &'static str,
    /// Its natural-key column.
    pub key: &'static str,
    /// The referencing id column of the loaded table.
    pub target: &'static str,
}

/// One CSV column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Its name in the header.
    pub name: &'static str,
    /// Whether it is required.
    pub need: Need,
    /// How its values are checked.
    pub check: Check,
    /// The column of the table it is stored in (for references: the id column).
    pub target: &'static str,
    /// Its value when an inserted row's file leaves the column out.
    pub default: Option<&'static str>,
}

const fn col(name: &'static str, need: Need, check: Check) -> Column {
    let target = match check {
        Check::Reference(reference) => reference.target,
        _ => name,
    };
    Column {
        name,
        need,
        check,
        target,
        default: None,
    }
}

/// The subscription states of the `subscriptions` check constraint.
pub const SUBSCRIPTION_STATES: &[&str] = &[
    "DRAFT",
    "EFFECTIVE",
    "NOT_EFFECTIVE",
    "SHORT_TERM_EFFECTIVE",
    "SHORT_TERM_NOT_EFFECTIVE",
    "IN_RESTING",
    "CANCELLED",
    "REGRETTED",
    "REPLACED",
    "PENDING_VERIFICATION",
];
/// The states of `installed_items.state`.
pub const ITEM_STATES: &[&str] = &["EFFECTIVE", "NOT_EFFECTIVE"];
/// The states of access tokens and customer identification mediums.
pub const TOKEN_STATES: &[&str] = &["EFFECTIVE", "NOT_EFFECTIVE", "PENDING_VERIFICATION"];
/// The states of API users.
pub const USER_STATES: &[&str] = &["ACTIVE", "INACTIVE"];

const ACCOUNT: Reference = Reference {
    table: "accounts_receivable",
    key: "number",
    target: "accounts_receivable_id",
};

const ACCOUNTS: &[Column] = &[
    col("number", Need::Key, Check::Text),
    col("name", Need::Required, Check::Text),
    col("life_cycle_state", Need::Required, Check::Upper),
];

const TYPES: &[Column] = &[
    col("name", Need::Key, Check::Text),
    col("alternative_code", Need::Optional, Check::Text),
];

const SUBSCRIPTIONS: &[Column] = &[
    col("number", Need::Key, Check::Text),
    col(
        "accounts_receivable_number",
        Need::Required,
        Check::Reference(ACCOUNT),
    ),
    col(
        "subscription_type_name",
        Need::Required,
        Check::Reference(Reference {
            table: "subscription_types",
            key: "name",
            target: "subscription_type_id",
        }),
    ),
    col(
        "life_cycle_state",
        Need::Required,
        Check::OneOf(SUBSCRIPTION_STATES),
    ),
    col("provisioning_provider", Need::Optional, Check::Upper),
];

const ITEMS: &[Column] = &[
    col("serial_number", Need::Key, Check::Text),
    col("alternative_code", Need::Optional, Check::Text),
    col("state", Need::Required, Check::OneOf(ITEM_STATES)),
    col(
        "subscription_number",
        Need::Optional,
        Check::Reference(Reference {
            table: "subscriptions",
            key: "number",
            target: "subscription_id",
        }),
    ),
];

const TOKENS: &[Column] = &[
    col("number", Need::Key, Check::Text),
    col("authentication_code", Need::Optional, Check::Text),
    col("identifier", Need::Optional, Check::Text),
    Column {
        target: "pass_code_hash",
        ..col("pass_code", Need::Optional, Check::Secret)
    },
    col(
        "life_cycle_state",
        Need::Required,
        Check::OneOf(TOKEN_STATES),
    ),
    col(
        "accounts_receivable_number",
        Need::Required,
        Check::Reference(ACCOUNT),
    ),
];

const USERS: &[Column] = &[
    col("username", Need::Key, Check::Text),
    col("organisation", Need::Required, Check::Text),
    Column {
        target: "password_hash",
        ..col("password", Need::Optional, Check::Secret)
    },
    // Left out, a new user is ACTIVE (the column's default in the schema).
    Column {
        default: Some("ACTIVE"),
        ..col(
            "life_cycle_state",
            Need::Optional,
            Check::OneOf(USER_STATES),
        )
    },
];

impl Table {
    /// Its name in the database (and on the command line).
    pub fn name(self) -> &'static str {
        match self {
            Table::AccountsReceivable => "accounts_receivable",
            Table::SubscriptionTypes => "subscription_types",
            Table::Subscriptions => "subscriptions",
            Table::InstalledItems => "installed_items",
            Table::AccessTokens => "access_tokens",
            Table::CustomerIdentificationMediums => "customer_identification_mediums",
            Table::ApiUsers => "api_users",
        }
    }

    /// The CSV columns it takes (besides the optional `id`).
    pub fn columns(self) -> &'static [Column] {
        match self {
            Table::AccountsReceivable => ACCOUNTS,
            Table::SubscriptionTypes => TYPES,
            Table::Subscriptions => SUBSCRIPTIONS,
            Table::InstalledItems => ITEMS,
            Table::AccessTokens | Table::CustomerIdentificationMediums => TOKENS,
            Table::ApiUsers => USERS,
        }
    }

    /// The natural-key column (the same name in the CSV and in the table).
    pub fn key(self) -> &'static Column {
        // Every table's first column is its key (see the lists above).
        &self.columns()[0]
    }

    /// Columns other than the key that the table keeps unique: a value already on
    /// another row, or twice in the file, rejects the row.
    pub fn unique(self) -> &'static [&'static str] {
        match self {
            Table::SubscriptionTypes | Table::InstalledItems => &["alternative_code"],
            Table::AccessTokens | Table::CustomerIdentificationMediums => {
                &["authentication_code", "identifier"]
            }
            _ => &[],
        }
    }

    /// Whether the table has a pass-code or password column. A header naming the
    /// columns in another order than its rows then puts secrets under any column's
    /// name, so messages about such a file quote no value at all.
    pub fn has_secret(self) -> bool {
        self.columns().iter().any(|c| c.check == Check::Secret)
    }

    /// The column of the CSV named `name`, if the table takes it.
    pub fn column(self, name: &str) -> Option<&'static Column> {
        self.columns().iter().find(|c| c.name == name)
    }
}

/// Why `value` (non-empty) cannot go into `column`, if it cannot; the value is quoted
/// only when `quote` is set (never in a table with a secret column).
pub fn refuse(column: &Column, value: &str, quote: bool) -> Option<String> {
    let name = column.name;
    let shown = if quote {
        format!(" {value:?}")
    } else {
        String::new()
    };
    if value.contains('\0') {
        return Some(format!("{name} contains a NUL character"));
    }
    match column.check {
        Check::Upper if value != value.to_uppercase() => {
            Some(format!("{name}{shown} is not upper-case"))
        }
        Check::OneOf(states) if !states.contains(&value) => {
            Some(format!("{name}{shown} is not one of {}", states.join(", ")))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_starts_with_its_key_and_names_its_columns_once() {
        for table in Table::value_variants() {
            assert_eq!(table.key().need, Need::Key, "{}", table.name());
            let columns = table.columns();
            for (i, column) in columns.iter().enumerate() {
                assert!(columns[i + 1..].iter().all(|c| c.name != column.name));
                assert!(column.name != "id");
            }
            for unique in table.unique() {
                assert!(table.column(unique).is_some());
            }
        }
    }

    #[test]
    fn states_outside_the_schema_lists_are_refused() {
        let state = Table::Subscriptions
            .column("life_cycle_state")
            .copied()
            .expect("column");
        assert!(refuse(&state, "EFFECTIVE", true).is_none());
        assert!(refuse(&state, "effective", true).is_some_and(|r| r.contains("effective")));
        assert!(refuse(&state, "effective", false).is_some_and(|r| !r.contains("effective")));
        let account_state = Table::AccountsReceivable
            .column("life_cycle_state")
            .copied()
            .expect("column");
        assert!(refuse(&account_state, "ON_HOLD", true).is_none());
        assert!(refuse(&account_state, "On hold", true).is_some());
    }
}
