//! The one set-based upsert of an import: what is left in the staging table goes
//! into the table by its natural key, references resolved by joins.
//!
//! Identifiers come from the static column lists of `table.rs`, never from the file.

use std::fmt::Write as _;

use sqlx::{PgConnection, Row as _};

use super::read::Header;
use super::stage::STAGE;
use super::table::{Check, Need, Table};

/// Upserts what is left in the stage into `table` by its natural key. Columns the
/// file leaves out keep their stored values (a new row gets null or the column's
/// default); a row equal to the stored one is not touched. Returns (inserted,
/// updated).
///
/// Rows equal to the stored ones are first dropped from the stage by a join: left to
/// `ON CONFLICT DO UPDATE … WHERE`, each would still lock (write) its stored row,
/// which made a second import of 1,000,000 rows cost most of the first.
pub async fn upsert(
    conn: &mut PgConnection,
    table: Table,
    header: &Header,
) -> sqlx::Result<(u64, u64)> {
    let plan = Plan::new(table, header);
    if let Some(sql) = plan.drop_unchanged() {
        sqlx::query(&sql).execute(&mut *conn).await?;
    }
    let row = sqlx::query(&plan.upsert()).fetch_one(&mut *conn).await?;
    let inserted: i64 = row.try_get(0)?;
    let updated: i64 = row.try_get(1)?;
    Ok((
        u64::try_from(inserted).unwrap_or_default(),
        u64::try_from(updated).unwrap_or_default(),
    ))
}

/// The pieces of the upsert: which columns get which value from the stage `s`
/// joined with the referenced tables `r<i>`.
struct Plan {
    table: &'static str,
    key: &'static str,
    /// Inserted columns and their values.
    inserted: Vec<(String, String)>,
    /// The joins that resolve references.
    joins: String,
    /// Columns an update may change, and their values.
    updated: Vec<(String, String)>,
}

impl Plan {
    fn new(table: Table, header: &Header) -> Plan {
        let mut inserted = vec![(
            "id".to_owned(),
            "coalesce(s.id, gen_random_uuid())".to_owned(),
        )];
        let mut joins = String::new();
        let mut updated = Vec::new();
        for (i, column) in table.columns().iter().enumerate() {
            let present = header.has(column.name);
            let value = match (present, column.check, column.default) {
                (true, Check::Reference(reference), _) => {
                    let join = if column.need == Need::Optional {
                        "LEFT JOIN"
                    } else {
                        "JOIN"
                    };
                    let _ = write!(
                        joins,
                        " {join} {} r{i} ON r{i}.{} = s.{}",
                        reference.table, reference.key, column.name
                    );
                    format!("r{i}.id")
                }
                (true, _, _) => format!("s.{}", column.name),
                (false, _, Some(default)) => format!("'{default}'"),
                (false, _, None) => continue,
            };
            if present && column.need != Need::Key {
                updated.push((column.target.to_owned(), value.clone()));
            }
            inserted.push((column.target.to_owned(), value));
        }
        Plan {
            table: table.name(),
            key: table.key().name,
            inserted,
            joins,
            updated,
        }
    }

    /// Removes from the stage the rows equal to their stored row; `None` when the
    /// file has no column an update could change.
    fn drop_unchanged(&self) -> Option<String> {
        if self.updated.is_empty() {
            return None;
        }
        let (t, key, joins) = (self.table, self.key, &self.joins);
        let old: Vec<String> = self.updated.iter().map(|(c, _)| format!("t.{c}")).collect();
        let new: Vec<&str> = self.updated.iter().map(|(_, v)| v.as_str()).collect();
        Some(format!(
            "DELETE FROM {STAGE} WHERE line IN (SELECT s.line FROM {STAGE} s \
             JOIN {t} t ON t.{key} = s.{key}{joins} \
             WHERE ({}) IS NOT DISTINCT FROM ({}))",
            old.join(", "),
            new.join(", ")
        ))
    }

    /// The one `INSERT … ON CONFLICT` statement, counting inserted and updated rows.
    fn upsert(&self) -> String {
        let (t, key, joins) = (self.table, self.key, &self.joins);
        let action = if self.updated.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            let set: Vec<String> = self
                .updated
                .iter()
                .map(|(c, _)| format!("{c} = EXCLUDED.{c}"))
                .collect();
            let old: Vec<String> = self.updated.iter().map(|(c, _)| format!("t.{c}")).collect();
            let new: Vec<String> = self
                .updated
                .iter()
                .map(|(c, _)| format!("EXCLUDED.{c}"))
                .collect();
            format!(
                "DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})",
                set.join(", "),
                old.join(", "),
                new.join(", ")
            )
        };
        let targets: Vec<&str> = self.inserted.iter().map(|(c, _)| c.as_str()).collect();
        let values: Vec<&str> = self.inserted.iter().map(|(_, v)| v.as_str()).collect();
        format!(
            "WITH up AS (INSERT INTO {t} AS t ({}) SELECT {} FROM {STAGE} s{joins} \
             ON CONFLICT ({key}) {action} RETURNING (xmax = 0) AS inserted) \
             SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up",
            targets.join(", "),
            values.join(", ")
        )
    }
}
