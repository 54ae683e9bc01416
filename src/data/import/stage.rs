//! The SQL of an import before the upsert (`upsert.rs`): a temporary staging table
//! filled by `COPY`, and the checks that need the database (duplicate keys in the
//! file, unknown references, values already taken by another row).
//!
//! Every statement is built from the static column lists of `table.rs`, never from
//! the file: identifiers come from those lists, values only through `COPY` and binds.

use std::collections::HashMap;
use std::fmt::Write as _;

use futures_util::TryStreamExt as _;
use sqlx::{PgConnection, PgPool, Row as _};

use super::read::{Header, Pass, Row};
use super::report::Rejection;
use super::table::{Check, Column, Table};

/// The staging table's name (temporary: private to the connection, dropped at commit).
pub(super) const STAGE: &str = "import_stage";

/// Creates the staging table for `table` on `conn`: the line number, the reason a row
/// was refused while reading, the id, and every CSV column as text (a pass code as
/// its hash).
pub async fn create(conn: &mut PgConnection, table: Table) -> sqlx::Result<()> {
    // Temporary tables live in local buffers; more of them keeps a large import off
    // the disk. Allowed only before the session's first temporary table.
    sqlx::query("SET temp_buffers = '256MB'")
        .execute(&mut *conn)
        .await?;
    let mut ddl = format!("CREATE TEMP TABLE {STAGE} (line bigint NOT NULL, bad text, id uuid");
    for column in table.columns() {
        let _ = write!(ddl, ", {} text", column.name);
    }
    ddl.push_str(") ON COMMIT DROP");
    sqlx::query(&ddl).execute(&mut *conn).await?;
    Ok(())
}

/// The `COPY` statement for the file's columns, in [`encode`]'s order.
pub fn copy_statement(present: &[&Column]) -> String {
    let mut sql = format!("COPY {STAGE} (line, bad, id");
    for column in present {
        let _ = write!(sql, ", {}", column.name);
    }
    sql.push_str(") FROM STDIN");
    sql
}

/// Appends `row` to `out` as one line of `COPY`'s text format.
pub fn encode(row: &Row, present: &[&Column], out: &mut Vec<u8>) {
    out.extend_from_slice(row.line.to_string().as_bytes());
    out.push(b'\t');
    field(row.bad.as_deref(), out);
    out.push(b'\t');
    field(row.id.map(|id| id.to_string()).as_deref(), out);
    for (column, value) in present.iter().zip(&row.values) {
        out.push(b'\t');
        let value = match (&column.check, &row.pass) {
            (Check::Secret, Some(Pass::Hashed(hash))) => Some(hash.as_str()),
            // Not reached: rows are hashed before they are encoded.
            (Check::Secret, _) => None,
            _ => value.as_deref(),
        };
        field(value, out);
    }
    out.push(b'\n');
}

/// One field of `COPY`'s text format: `\N` for null, else the value with backslash,
/// tab, newline and carriage return escaped.
fn field(value: Option<&str>, out: &mut Vec<u8>) {
    let Some(value) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for &byte in value.as_bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(byte),
        }
    }
}

/// The temporary table of the rows refused, one reason each (dropped at commit).
const REJECTED: &str = "import_rejected";

/// Finds the rows to refuse, each once (with the first reason found), and removes them
/// from the stage: refused while reading, a natural key or id already on an earlier
/// line, an id of another row, an unknown reference, a unique value on an earlier line
/// or on another row of the table. Each goes to `report` in line order, streamed from
/// the database so that no list of them is held here. Returns how many there were.
pub async fn reject(
    conn: &mut PgConnection,
    table: Table,
    header: &Header,
    report: &mut (dyn FnMut(Rejection) + Send),
) -> sqlx::Result<u64> {
    sqlx::query(&format!("ANALYZE {STAGE}"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "CREATE TEMP TABLE {REJECTED} ON COMMIT DROP AS \
         SELECT DISTINCT ON (line) line, reason FROM ({}) AS c (line, reason, rank) \
         ORDER BY line, rank",
        checks(table, header)
    ))
    .execute(&mut *conn)
    .await?;
    let mut count = 0;
    {
        let sql = format!("SELECT line, reason FROM {REJECTED} ORDER BY line");
        let mut rows = sqlx::query(&sql).fetch(&mut *conn);
        while let Some(row) = rows.try_next().await? {
            let line: i64 = row.try_get(0)?;
            let reason: String = row.try_get(1)?;
            count += 1;
            report(Rejection {
                line: u64::try_from(line).unwrap_or_default(),
                reason,
            });
        }
    }
    sqlx::query(&format!(
        "DELETE FROM {STAGE} s USING {REJECTED} r WHERE s.line = r.line"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(count)
}

/// The query behind [`reject`]: (line, reason, rank) of every finding. In a table with
/// a secret column no reason quotes a value of the file (see `Table::has_secret`).
fn checks(table: Table, header: &Header) -> String {
    let t = table.name();
    let key = table.key().name;
    let quote = !table.has_secret();
    let mut parts = vec![
        format!("SELECT line, bad, 1 FROM {STAGE} WHERE bad IS NOT NULL"),
        later_lines(
            key,
            &if quote {
                format!("format('{key} %L is already on line %s', v, first)")
            } else {
                format!("format('{key} is the same as on line %s', first)")
            },
            2,
            false,
        ),
    ];
    if header.id.is_some() {
        parts.push(later_lines(
            "id",
            "format('id is already on line %s', first)",
            3,
            true,
        ));
        // The key quoted here is the stored row's, not a value of the file.
        parts.push(format!(
            "SELECT s.line, format('id already belongs to the {t} row with {key} %L', t.{key}), 3 \
             FROM {STAGE} s JOIN {t} t ON t.id = s.id \
             WHERE s.bad IS NULL AND t.{key} IS DISTINCT FROM s.{key}"
        ));
    }
    for column in header.present(table) {
        if let Check::Reference(reference) = column.check {
            let name = column.name;
            let reason = if quote {
                format!("format('unknown {name} %L', s.{name})")
            } else {
                format!("'{name} names no {} row'", reference.table)
            };
            parts.push(format!(
                "SELECT s.line, {reason}, 4 FROM {STAGE} s \
                 WHERE s.bad IS NULL AND s.{name} IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM {} r WHERE r.{} = s.{name})",
                reference.table, reference.key
            ));
        }
    }
    for &unique in table.unique().iter().filter(|u| header.has(u)) {
        // Values of these columns may be codes: messages name the column, not the value.
        parts.push(later_lines(
            unique,
            &format!("format('{unique} is the same as on line %s', first)"),
            5,
            true,
        ));
        parts.push(format!(
            "SELECT s.line, '{unique} already belongs to another {t} row', 5 \
             FROM {STAGE} s JOIN {t} t ON t.{unique} = s.{unique} \
             WHERE s.bad IS NULL AND t.{key} IS DISTINCT FROM s.{key}"
        ));
    }
    parts.join(" UNION ALL ")
}

/// The rows whose `column` value is on an earlier line too, with `reason` built from
/// `v` (the value) and `first` (the earlier line). `only_good` leaves rows refused
/// while reading out of the comparison.
fn later_lines(column: &str, reason: &str, rank: u8, only_good: bool) -> String {
    let filter = if only_good { " AND bad IS NULL" } else { "" };
    format!(
        "SELECT line, {reason}, {rank} FROM (SELECT line, {column} AS v, \
         min(line) OVER (PARTITION BY {column}) AS first FROM {STAGE} \
         WHERE {column} IS NOT NULL{filter}) AS d WHERE line <> first"
    )
}

/// The stored hashes of the rows of `table` whose natural key is in `keys`, by key
/// (rows without a hash are left out).
pub async fn stored_hashes(
    pool: &PgPool,
    table: Table,
    keys: Vec<String>,
) -> sqlx::Result<HashMap<String, String>> {
    let Some(secret) = table.columns().iter().find(|c| c.check == Check::Secret) else {
        return Ok(HashMap::new());
    };
    let key = table.key().name;
    let sql = format!(
        "SELECT {key}, {} FROM {} WHERE {key} = ANY($1) AND {} IS NOT NULL",
        secret.target,
        table.name(),
        secret.target
    );
    let rows: Vec<(String, String)> = sqlx::query_as(&sql).bind(keys).fetch_all(pool).await?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_escape_what_the_text_format_reserves() {
        let mut out = Vec::new();
        field(Some("a\tb\\c\nd\re"), &mut out);
        out.push(b'|');
        field(None, &mut out);
        assert_eq!(out, b"a\\tb\\\\c\\nd\\re|\\N");
    }
}
