//! Reading the CSV file: the whole file checked (`csv_file`), the header checked
//! against the table, then each record turned into a staged row: its values checked,
//! its pass code still to hash, or the reason it is rejected.
//!
//! Records are read one at a time; nothing here holds more than the chunk being built.

use std::path::Path;

use anyhow::bail;
use uuid::Uuid;

use super::table::{refuse, Check, Column, Need, Table};
use crate::csv_file::{self, CsvFile};
use crate::secret::Secret;
use crate::store::pass_code::bounds::{self, OutOfBounds};

/// Whether `value` is an Argon2 PHC string the worker will compute: within the same
/// bounds the worker applies ([`bounds::usable`]), so that no imported row can abort
/// or stall a worker. The error says which bound, never the value.
pub fn check_phc(value: &str) -> Result<(), OutOfBounds> {
    bounds::usable(value).map(|_| ())
}

/// The file's header, checked: which table column each CSV field feeds.
#[derive(Debug, Clone)]
pub struct Header {
    /// What each field is, in the file's order.
    pub fields: Vec<Field>,
    /// The position of the `id` field, if the file has one.
    pub id: Option<usize>,
}

/// What one field of the header names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The optional `id` column.
    Id,
    /// A column of the table.
    Column(&'static Column),
    /// A name the table does not take, as messages name it: quoted, or by its
    /// position in a table with secrets. A row with a value under it is rejected.
    Unknown(String),
}

impl Header {
    /// Whether the file has the column `name`.
    pub fn has(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|f| matches!(f, Field::Column(c) if c.name == name))
    }

    /// The table's columns the file has, in the table's order.
    pub fn present(&self, table: Table) -> Vec<&'static Column> {
        table
            .columns()
            .iter()
            .filter(|c| self.has(c.name))
            .collect()
    }

    /// The fields naming no column of the table, as messages name them.
    pub fn unknown(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().filter_map(|f| match f {
            Field::Unknown(name) => Some(name.as_str()),
            _ => None,
        })
    }
}

impl Field {
    /// The field as messages name it.
    fn name(&self) -> &str {
        match self {
            Field::Id => "id",
            Field::Column(column) => column.name,
            Field::Unknown(name) => name,
        }
    }
}

/// A pass code or password on its way to the stage.
pub enum Pass {
    /// In clear: to hash (or to match against the stored hash).
    Clear(Secret),
    /// Already an Argon2 PHC string (given so, or hashed).
    Hashed(String),
}

/// A row ready for the staging table, except perhaps for hashing its pass code.
pub struct Row {
    /// Its line number in the file (the header is line 1).
    pub line: u64,
    /// Why the row cannot be loaded, found while reading; such a row is staged only
    /// with its key, so that a later row with the same key is still reported.
    pub bad: Option<String>,
    /// The `id` to insert it with.
    pub id: Option<Uuid>,
    /// The values of the file's columns in [`Header::present`] order; `None` is null.
    pub values: Vec<Option<String>>,
    /// The pass code, when the table has one and the row gives it.
    pub pass: Option<Pass>,
}

/// The CSV reader over the file, with its checked header.
pub struct Source {
    file: CsvFile,
    /// The header.
    pub header: Header,
    /// The header's line in the file.
    header_line: u64,
    /// [`Header::present`], once.
    present: Vec<&'static Column>,
    /// Where each of them is in a record.
    positions: Vec<usize>,
    /// Whether the table has a pass-code or password column: then no reason quotes a
    /// value (see [`Source::row`]).
    secret: bool,
    record: csv::ByteRecord,
}

impl Source {
    /// Checks the whole file (a quote never closed, a record over 1 MiB, bytes that are
    /// not UTF-8 refuse it, at the line the fault begins), opens it and checks its
    /// header against `table`. A header naming a column twice or missing a required
    /// one is an error: no row of such a file can be trusted. A field naming no column
    /// of the table is kept as [`Field::Unknown`]: rows with a value under it are
    /// rejected, the others loaded ([`Source::notice`] tells why).
    ///
    /// A pipe (`<(zcat file.csv.gz)`) cannot be read twice: it is checked as it is
    /// read instead, and a fault then fails the import's transaction, so nothing is
    /// loaded either way.
    pub fn open(path: &Path, table: Table) -> anyhow::Result<Source> {
        if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            csv_file::check(path, b',')?;
        }
        let mut file = CsvFile::open(path, b',')?;
        let mut names = csv::ByteRecord::new();
        let first = file.next(&mut names)?;
        if first.is_none() || names.iter().all(<[u8]>::is_empty) {
            bail!("line 1: the header row is missing");
        }
        let line = first.unwrap_or(1);
        let hint = csv_file::delimiter_hint(&names, b',')
            .map(|hint| format!("; {hint}"))
            .unwrap_or_default();
        let mut fields = Vec::new();
        let mut id = None;
        for (i, raw) in names.iter().enumerate() {
            // The whole file was checked as UTF-8.
            let name = String::from_utf8_lossy(raw);
            let name = name.trim();
            let field = if name == "id" {
                Field::Id
            } else if let Some(column) = table.column(name) {
                Field::Column(column)
            } else if table.has_secret() {
                // A file without its header row has data here: in a table with
                // secrets, the field is named by position, never quoted.
                Field::Unknown(format!("column {}", i + 1))
            } else {
                Field::Unknown(format!("column {name:?}"))
            };
            let taken = match &field {
                Field::Id => id.replace(i).is_some(),
                Field::Column(_) => fields.contains(&field),
                Field::Unknown(_) => false,
            };
            if taken {
                bail!("line {line}: column {name:?} is named twice");
            }
            fields.push(field);
        }
        let header = Header { fields, id };
        let unknown = header.unknown().count();
        for column in table.columns() {
            if column.need != Need::Optional && !header.has(column.name) {
                // Fields naming no column beside a missing one: most likely the header
                // row is missing and the first row of data was read as the header
                // (unless the hint says the separator is wrong).
                let also = if unknown == 0 || !hint.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} of the header's {} fields name no column of the table \
                         (is the header row missing?)",
                        unknown,
                        header.fields.len()
                    )
                };
                bail!(
                    "line {line}: column {:?} is missing; table {} needs {}{also}{hint}",
                    column.name,
                    table.name(),
                    table
                        .columns()
                        .iter()
                        .filter(|c| c.need != Need::Optional)
                        .map(|c| c.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        let present = header.present(table);
        let positions = present
            .iter()
            .map(|c| {
                header
                    .fields
                    .iter()
                    .position(|f| matches!(f, Field::Column(column) if column == c))
                    .unwrap_or_default()
            })
            .collect();
        Ok(Source {
            file,
            header,
            header_line: line,
            present,
            positions,
            secret: table.has_secret(),
            record: csv::ByteRecord::new(),
        })
    }

    /// What to tell about the header before loading: the fields that name no column
    /// of the table (`None` when there are none).
    pub fn notice(&self, table: Table) -> Option<String> {
        let unknown: Vec<&str> = self.header.unknown().collect();
        if unknown.is_empty() {
            return None;
        }
        Some(format!(
            "line {}: {} {} no column of table {} (its columns are id, {}); \
             a row with a value under {} is rejected",
            self.header_line,
            unknown.join(", "),
            if unknown.len() == 1 { "names" } else { "name" },
            table.name(),
            column_names(table),
            if unknown.len() == 1 { "it" } else { "them" },
        ))
    }

    /// Bytes of the file read so far.
    pub fn bytes_read(&self) -> u64 {
        self.file.bytes_read()
    }

    /// The next record: `Ok(None)` at the end of the file, `Err` when the file cannot
    /// be read any further.
    pub fn next_row(&mut self) -> anyhow::Result<Option<Row>> {
        let Some(line) = self.file.next(&mut self.record)? else {
            return Ok(None);
        };
        Ok(Some(self.row(line)))
    }

    /// The record as a row; a bad one keeps only its key (when it has one) and the
    /// reason, so that it is reported, in line order, with those the database finds.
    ///
    /// In a table with a pass-code column no reason quotes a value: a header naming
    /// the columns in another order than the rows puts pass codes and codes under any
    /// name.
    fn row(&self, line: u64) -> Row {
        let expected = self.header.fields.len();
        if self.record.len() != expected {
            return Row {
                line,
                bad: Some(format!(
                    "{} field{} where the header has {expected}",
                    self.record.len(),
                    if self.record.len() == 1 { "" } else { "s" }
                )),
                id: None,
                values: vec![None; self.positions.len()],
                pass: None,
            };
        }
        // Not reached for a file `csv_file::check` passed, unless it changed since.
        let text = |i: usize| -> Result<&str, String> {
            std::str::from_utf8(&self.record[i])
                .map_err(|_| format!("{} is not valid UTF-8", self.header.fields[i].name()))
        };
        let mut bad = None;
        let id = match self.header.id.map(text) {
            None | Some(Ok("")) => None,
            Some(Ok(value)) => parse_id(value).or_else(|| {
                bad = Some("id is not 32 hex digits or a UUID".to_owned());
                None
            }),
            Some(Err(reason)) => {
                bad = Some(reason);
                None
            }
        };
        // A value under a column the table does not take would be silently dropped:
        // the row is refused instead (a misspelt `pass_code` must not load a
        // credential without its pass code). An empty one loses nothing.
        for (i, field) in self.header.fields.iter().enumerate() {
            if let Field::Unknown(name) = field {
                if !self.record[i].is_empty() {
                    bad.get_or_insert_with(|| {
                        format!("{name} has a value, but the table has no such column")
                    });
                }
            }
        }
        let mut values = Vec::with_capacity(self.positions.len());
        let mut pass = None;
        for (column, &i) in self.present.iter().zip(&self.positions) {
            let value = match text(i) {
                Ok(value) => value,
                Err(reason) => {
                    bad.get_or_insert(reason);
                    values.push(None);
                    continue;
                }
            };
            if value.is_empty() {
                if column.need != Need::Optional {
                    bad.get_or_insert_with(|| format!("{} is empty", column.name));
                }
                values.push(None);
                continue;
            }
            if let Some(reason) = refuse(column, value, !self.secret) {
                bad.get_or_insert(reason);
            }
            if column.check == Check::Secret {
                pass = Some(if value.starts_with("$argon2") {
                    if let Err(why) = check_phc(value) {
                        bad.get_or_insert_with(|| {
                            format!(
                                "{} is not an Argon2 hash the worker accepts: {why}",
                                column.name
                            )
                        });
                    }
                    Pass::Hashed(value.to_owned())
                } else {
                    Pass::Clear(Secret::new(value))
                });
                values.push(None);
            } else {
                values.push(Some(value.to_owned()));
            }
        }
        if bad.is_some() {
            // Only the key is kept, for the duplicate check; nothing is hashed.
            values.iter_mut().skip(1).for_each(|v| *v = None);
            pass = None;
        }
        Row {
            line,
            bad,
            id,
            values,
            pass,
        }
    }
}

/// An id as requests and import files write them: 32 hex digits (any case) or a
/// hyphenated UUID.
pub fn parse_id(value: &str) -> Option<Uuid> {
    if !matches!(value.len(), 32 | 36) {
        return None;
    }
    Uuid::try_parse(value).ok()
}

/// The table's column names, for messages.
fn column_names(table: Table) -> String {
    table
        .columns()
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_digits_or_hyphenated_uuids() {
        let want = Uuid::from_u128(0x75E3E501_39F2_4DC3_A6C9_AA0C026D0292);
        assert_eq!(parse_id("75E3E50139F24DC3A6C9AA0C026D0292"), Some(want));
        assert_eq!(parse_id("75e3e501-39f2-4dc3-a6c9-aa0c026d0292"), Some(want));
        assert_eq!(parse_id("75E3E50139F24DC3A6C9AA0C026D029"), None);
        assert_eq!(parse_id("{75e3e501-39f2-4dc3-a6c9-aa0c026d0292}"), None);
        assert_eq!(parse_id("urn:uuid:75e3e501-39f2-4dc3-a6c9-aa0c026d"), None);
    }
}
