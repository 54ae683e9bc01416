//! The input of `batch`: NDJSON or CSV, read one request line at a time.
//!
//! Each request line becomes an [`Item`]: a request body to send, or an answer given
//! here without sending (`INVALID_REQUEST` for a line that is not JSON or a CSV row that
//! cannot be read). Line numbers are 1-based lines of the file: blank NDJSON lines are
//! skipped but counted, and the CSV header is line 1.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{Map, Value};

use crate::request::{parse_json, IDENTIFIERS};

/// The input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON request body per line.
    Ndjson,
    /// A header row of `token` and `<identifier>.<field>` columns, one request per row.
    Csv,
}

impl Format {
    /// `--format` if given, else CSV for a name ending in `.csv`, else NDJSON.
    pub fn of(path: &Path, given: Option<Format>) -> Format {
        given.unwrap_or_else(|| {
            let csv = path
                .extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("csv"));
            if csv {
                Format::Csv
            } else {
                Format::Ndjson
            }
        })
    }
}

/// One request line of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its 1-based line number in the file.
    pub line: u64,
    /// What to do with it.
    pub kind: ItemKind,
}

/// A request to send, or a line answered `INVALID_REQUEST` here (with the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    /// The request body.
    Request(Vec<u8>),
    /// Why the line cannot become a request; never quotes the line.
    Invalid(String),
}

/// The fields a CSV column may name under each identifier, as the request table says.
const CSV_FIELDS: [(&str, &[&str]); 5] = [
    (
        "access_token_identifier",
        &["authentication_code", "identifier", "pass_code"],
    ),
    (
        "customer_identification_medium_identifier",
        &["authentication_code", "identifier", "pass_code"],
    ),
    (
        "installed_item_identifier",
        &["id", "serial_number", "alternative_code"],
    ),
    ("subscription_identifier", &["id", "number"]),
    (
        "subscription_type_identifier",
        &["id", "name", "alternative_code"],
    ),
];

/// Counts the request lines of the file (lines holding more than white space, less the
/// CSV header), a cheap first pass for the progress bar's total.
pub fn count_requests(path: &Path, format: Format) -> anyhow::Result<u64> {
    let mut file =
        File::open(path).with_context(|| format!("cannot read the input {}", path.display()))?;
    let mut buffer = vec![0_u8; 256 * 1024];
    let (mut lines, mut filled) = (0_u64, false);
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read the input {}", path.display()))?;
        if n == 0 {
            break;
        }
        for &byte in &buffer[..n] {
            if byte == b'\n' {
                lines += u64::from(filled);
                filled = false;
            } else if !byte.is_ascii_whitespace() {
                filled = true;
            }
        }
    }
    lines += u64::from(filled);
    Ok(match format {
        Format::Ndjson => lines,
        Format::Csv => lines.saturating_sub(1),
    })
}

/// The request lines of an input file, in order.
pub struct Input {
    source: Source,
    /// Fills the token of every request that has none.
    token: Option<String>,
}

enum Source {
    Ndjson {
        reader: BufReader<File>,
        line: u64,
        buffer: Vec<u8>,
    },
    Csv {
        reader: csv::Reader<File>,
        /// For each column: the identifier it belongs to (`None` for `token`), its field.
        columns: Vec<(Option<String>, String)>,
        record: csv::ByteRecord,
    },
}

impl Input {
    /// Opens `path`; for CSV, reads and checks the header (an unknown column stops the
    /// job before anything is sent).
    pub fn open(path: &Path, format: Format, token: Option<String>) -> anyhow::Result<Input> {
        let file = File::open(path)
            .with_context(|| format!("cannot read the input {}", path.display()))?;
        let source = match format {
            Format::Ndjson => Source::Ndjson {
                reader: BufReader::with_capacity(256 * 1024, file),
                line: 0,
                buffer: Vec::new(),
            },
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .from_reader(file);
                let header = reader
                    .headers()
                    .with_context(|| format!("cannot read the CSV header of {}", path.display()))?
                    .clone();
                Source::Csv {
                    columns: header
                        .iter()
                        .map(csv_column)
                        .collect::<anyhow::Result<_>>()?,
                    reader,
                    record: csv::ByteRecord::new(),
                }
            }
        };
        Ok(Input { source, token })
    }

    /// The next request line; `None` at the end of the file.
    pub fn next_item(&mut self) -> anyhow::Result<Option<Item>> {
        let token = self.token.as_deref();
        match &mut self.source {
            Source::Ndjson {
                reader,
                line,
                buffer,
            } => loop {
                buffer.clear();
                let n = reader
                    .read_until(b'\n', buffer)
                    .context("cannot read the input")?;
                if n == 0 {
                    return Ok(None);
                }
                *line += 1;
                if buffer.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(Item {
                    line: *line,
                    kind: ndjson_request(buffer, token),
                }));
            },
            Source::Csv {
                reader,
                columns,
                record,
            } => {
                let read = reader.read_byte_record(record);
                let line = match &read {
                    Err(err) => err.position().map(csv::Position::line),
                    Ok(_) => record.position().map(csv::Position::line),
                };
                match read {
                    Ok(false) => Ok(None),
                    Ok(true) => Ok(Some(Item {
                        line: line.unwrap_or_default(),
                        kind: csv_request(columns, record, token),
                    })),
                    Err(err) => match (err.kind(), line) {
                        (
                            csv::ErrorKind::UnequalLengths {
                                expected_len, len, ..
                            },
                            Some(line),
                        ) => Ok(Some(Item {
                            line,
                            kind: ItemKind::Invalid(format!(
                                "bad CSV row: {len} fields where the header has {expected_len}"
                            )),
                        })),
                        _ => Err(anyhow::Error::new(err).context("cannot read the CSV input")),
                    },
                }
            }
        }
    }
}

/// An NDJSON line as a request: sent as it is, or with `token` filled in.
fn ndjson_request(line: &[u8], token: Option<&str>) -> ItemKind {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(text) = std::str::from_utf8(line) else {
        return ItemKind::Invalid("the line is not UTF-8".to_owned());
    };
    let value = match parse_json(text) {
        Ok(value) => value,
        Err(err) => return ItemKind::Invalid(format!("the line is not JSON: {err}")),
    };
    match (token, value) {
        (Some(token), Value::Object(mut request)) if has_no_token(&request) => {
            request.insert("token".to_owned(), Value::from(token));
            ItemKind::Request(Value::Object(request).to_string().into_bytes())
        }
        // Sent byte for byte, so the worker judges exactly what the file holds.
        _ => ItemKind::Request(line.to_vec()),
    }
}

fn has_no_token(request: &Map<String, Value>) -> bool {
    request.get("token").is_none_or(Value::is_null)
}

/// A CSV header cell: `token`, or `<identifier>.<field>` of the request table.
fn csv_column(name: &str) -> anyhow::Result<(Option<String>, String)> {
    let name = name.trim();
    if name == "token" {
        return Ok((None, "token".to_owned()));
    }
    let known = name.split_once('.').is_some_and(|(identifier, field)| {
        CSV_FIELDS
            .iter()
            .any(|(known, fields)| *known == identifier && fields.contains(&field))
    });
    match name.split_once('.') {
        Some((identifier, field)) if known => Ok((Some(identifier.to_owned()), field.to_owned())),
        _ => bail!(
            "CSV column {name:?} is not `token` or `<identifier>.<field>` (identifiers: {}, subscription_type_identifier)",
            IDENTIFIERS.join(", ")
        ),
    }
}

/// A CSV row as a request body; an empty cell is an absent field.
fn csv_request(
    columns: &[(Option<String>, String)],
    record: &csv::ByteRecord,
    token: Option<&str>,
) -> ItemKind {
    let mut request = Map::new();
    for ((identifier, field), cell) in columns.iter().zip(record.iter()) {
        if cell.is_empty() {
            continue;
        }
        let Ok(cell) = std::str::from_utf8(cell) else {
            return ItemKind::Invalid(format!("bad CSV row: the {field} cell is not UTF-8"));
        };
        let value = Value::from(cell);
        match identifier {
            None => {
                request.insert(field.clone(), value);
            }
            Some(identifier) => {
                let object = request
                    .entry(identifier.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(object) = object {
                    object.insert(field.clone(), value);
                }
            }
        }
    }
    if let Some(token) = token {
        if has_no_token(&request) {
            request.insert("token".to_owned(), Value::from(token));
        }
    }
    ItemKind::Request(Value::Object(request).to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn items(text: &str, format: Format, token: Option<&str>) -> Vec<Item> {
        let mut file = tempfile();
        file.1.write_all(text.as_bytes()).expect("write");
        let mut input = Input::open(&file.0, format, token.map(str::to_owned)).expect("open");
        let mut items = Vec::new();
        while let Some(item) = input.next_item().expect("read") {
            items.push(item);
        }
        assert_eq!(
            count_requests(&file.0, format).expect("count"),
            items.len() as u64
        );
        let _ = std::fs::remove_file(&file.0);
        items
    }

    fn tempfile() -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!("tucano-input-{}", uuid::Uuid::new_v4()));
        let file = File::create(&path).expect("create");
        (path, file)
    }

    fn request(item: &Item) -> Value {
        match &item.kind {
            ItemKind::Request(body) => serde_json::from_slice(body).expect("json"),
            ItemKind::Invalid(why) => panic!("line {} invalid: {why}", item.line),
        }
    }

    #[test]
    fn ndjson_lines_are_numbered_with_blanks_counted_and_tokens_filled() {
        let items = items(
            "{\"subscription_identifier\":{\"number\":\"S1\"}}\n\n  \nnot json\n{\"token\":\"T0\"}\r\n[1]",
            Format::Ndjson,
            Some("TK"),
        );
        let lines: Vec<u64> = items.iter().map(|item| item.line).collect();
        assert_eq!(lines, [1, 4, 5, 6]);
        assert_eq!(request(&items[0])["token"], "TK");
        assert!(matches!(&items[1].kind, ItemKind::Invalid(why) if why.contains("not JSON")));
        assert_eq!(request(&items[2])["token"], "T0");
        assert_eq!(items[3].kind, ItemKind::Request(b"[1]".to_vec()));
    }

    #[test]
    fn csv_rows_become_nested_requests_with_empty_cells_absent() {
        let items = items(
            "token,subscription_identifier.number,access_token_identifier.identifier,access_token_identifier.pass_code\n\
             T1,S1,,\n\
             ,,AT,1234\n\
             T3,S3\n",
            Format::Csv,
            Some("TK"),
        );
        let lines: Vec<u64> = items.iter().map(|item| item.line).collect();
        assert_eq!(lines, [2, 3, 4]);
        assert_eq!(
            request(&items[0]),
            serde_json::json!({"token": "T1", "subscription_identifier": {"number": "S1"}})
        );
        assert_eq!(
            request(&items[1]),
            serde_json::json!({"token": "TK", "access_token_identifier": {"identifier": "AT", "pass_code": "1234"}})
        );
        assert!(matches!(&items[2].kind, ItemKind::Invalid(why) if why.contains("bad CSV row")));
    }

    #[test]
    fn an_unknown_csv_column_stops_the_job() {
        let (path, mut file) = tempfile();
        file.write_all(b"token,subscription_identifier.nmber\nT,S\n")
            .expect("write");
        let err = Input::open(&path, Format::Csv, None)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("nmber"), "{err}");
        let _ = std::fs::remove_file(&path);
    }
}
