//! Reading the CSV file: the header checked against the table, then each record turned
//! into a staged row (its values checked, its pass code still to hash) or a rejection.
//!
//! Records are read one at a time; nothing here holds more than the chunk being built.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{bail, Context as _};
use uuid::Uuid;

use super::report::Rejection;
use super::table::{refuse, Check, Column, Need, Table};
use crate::secret::Secret;

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
    reader: csv::Reader<BufReader<File>>,
    /// The header.
    pub header: Header,
    /// [`Header::present`], once.
    present: Vec<&'static Column>,
    /// Where each of them is in a record.
    positions: Vec<usize>,
    record: csv::ByteRecord,
}

impl Source {
    /// Opens `path` and checks its header against `table`. A header naming a column
    /// the table does not take, naming one twice, or missing a required one is an
    /// error: no row of such a file can be trusted.
    pub fn open(path: &Path, table: Table) -> anyhow::Result<Source> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 16, file));
        let names = reader
            .byte_headers()
            .with_context(|| format!("cannot read the header of {}", path.display()))?
            .clone();
        if names.is_empty() || names.iter().all(<[u8]>::is_empty) {
            bail!("{}: line 1: the header row is missing", path.display());
        }
        let mut fields = Vec::new();
        let mut id = None;
        for (i, raw) in names.iter().enumerate() {
            let raw = if i == 0 {
                raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
            } else {
                raw
            };
            let name = String::from_utf8_lossy(raw);
            let name = name.trim();
            let column = if name == "id" {
                None
            } else {
                Some(table.column(name).with_context(|| {
                    format!(
                        "line 1: unknown column {name:?} for table {}; its columns are id, {}",
                        table.name(),
                        column_names(table)
                    )
                })?)
            };
            let taken = match column {
                None => id.replace(i).is_some(),
                Some(column) => fields.contains(&Some(column)),
            };
            if taken {
                bail!("line 1: column {name:?} is named twice");
            }
            fields.push(column);
        }
        let header = Header { fields, id };
        for column in table.columns() {
            if column.need != Need::Optional && !header.has(column.name) {
                bail!(
                    "line 1: column {:?} is missing; table {} needs {}",
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
            reader,
            header,
            present,
            positions,
            record: csv::ByteRecord::new(),
        })
    }

    /// Bytes of the file read so far.
    pub fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    /// The next record: `Ok(None)` at the end of the file, `Err` when the file cannot
    /// be read any further.
    pub fn next_row(&mut self) -> anyhow::Result<Option<Result<Row, Rejection>>> {
        let more = self
            .reader
            .read_byte_record(&mut self.record)
            .context("cannot read the file")?;
        if !more {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, csv::Position::line);
        Ok(Some(self.row(line)))
    }

    fn row(&self, line: u64) -> Result<Row, Rejection> {
        let reject = |reason: String| Rejection { line, reason };
        let expected = self.header.fields.len();
        if self.record.len() != expected {
            return Err(reject(format!(
                "{} fields where the header has {expected}",
                self.record.len()
            )));
        }
        let text = |i: usize| -> Result<&str, Rejection> {
            std::str::from_utf8(&self.record[i]).map_err(|_| {
                let name = self.header.fields[i].map_or("id", |c| c.name);
                reject(format!("{name} is not valid UTF-8"))
            })
        };
        let mut bad = None;
        let id = match self.header.id {
            Some(i) => match text(i)? {
                "" => None,
                value => match parse_id(value) {
                    Some(id) => Some(id),
                    None => {
                        bad = Some("id is not 32 hex digits or a UUID".to_owned());
                        None
                    }
                },
            },
            None => None,
        };
        let mut values = Vec::with_capacity(self.positions.len());
        let mut pass = None;
        for (column, &i) in self.present.iter().zip(&self.positions) {
            let value = text(i)?;
            if value.is_empty() {
                if column.need != Need::Optional {
                    bad.get_or_insert_with(|| format!("{} is empty", column.name));
                }
                values.push(None);
                continue;
            }
            if let Some(reason) = refuse(column, value) {
                bad.get_or_insert(reason);
            }
            if column.check == Check::Secret {
                pass = Some(if value.starts_with("$argon2") {
                    if let Err(why) = super::hashing::check_phc(value) {
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
        Ok(Row {
            line,
            bad,
            id,
            values,
            pass,
        })
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
