//! Reading the CSV file: the whole file checked (`csv_file`), the header checked
//! against the table, then each record turned into a staged row: its values checked,
//! its pass code still to hash, or the reason it is rejected.
//!
//! Records are read one at a time; nothing here holds more than the chunk being built.

use std::path::Path;

use anyhow::{bail, Context as _};
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
    /// The table column of each field, `None` for the `id` field.
    pub fields: Vec<Option<&'static Column>>,
    /// The position of the `id` field, if the file has one.
    pub id: Option<usize>,
}

impl Header {
    /// Whether the file has the column `name`.
    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().flatten().any(|c| c.name == name)
    }

    /// The table's columns the file has, in the table's order.
    pub fn present(&self, table: Table) -> Vec<&'static Column> {
        table
            .columns()
            .iter()
            .filter(|c| self.has(c.name))
            .collect()
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
    /// header against `table`. A header naming a column the table does not take,
    /// naming one twice, or missing a required one is an error: no row of such a file
    /// can be trusted.
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
            let column = if name == "id" {
                None
            } else {
                Some(table.column(name).with_context(|| {
                    // A file without its header row has data here: in a table with
                    // secrets, the field is named by position, never quoted.
                    let which = if table.has_secret() {
                        format!(
                            "column {} of the header is not a column of table {} \
                             (is the header row missing?)",
                            i + 1,
                            table.name()
                        )
                    } else {
                        format!("unknown column {name:?} for table {}", table.name())
                    };
                    format!(
                        "line {line}: {which}; its columns are id, {}{hint}",
                        column_names(table)
                    )
                })?)
            };
            let taken = match column {
                None => id.replace(i).is_some(),
                Some(column) => fields.contains(&Some(column)),
            };
            if taken {
                bail!("line {line}: column {name:?} is named twice");
            }
            fields.push(column);
        }
        let header = Header { fields, id };
        for column in table.columns() {
            if column.need != Need::Optional && !header.has(column.name) {
                bail!(
                    "line {line}: column {:?} is missing; table {} needs {}{hint}",
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
                    .position(|f| *f == Some(*c))
                    .unwrap_or_default()
            })
            .collect();
        Ok(Source {
            file,
            header,
            present,
            positions,
            secret: table.has_secret(),
            record: csv::ByteRecord::new(),
        })
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
            std::str::from_utf8(&self.record[i]).map_err(|_| {
                let name = self.header.fields[i].map_or("id", |c| c.name);
                format!("{name} is not valid UTF-8")
            })
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
