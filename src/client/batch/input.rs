//! The input of `batch`: NDJSON or CSV, read one request line at a time.
//!
//! Each request line becomes an [`Item`]: a request body to send, or an answer given
//! here without sending (`INVALID_REQUEST` for a line that is not JSON, an NDJSON line
//! over 1 MiB, or a CSV row with the wrong number of fields). Line numbers are the
//! file's physical lines, whatever its line ends and with or without a UTF-8
//! byte-order mark: blank NDJSON lines are skipped but counted, the CSV header is
//! line 1, and a CSV record spanning lines has the line it begins on. A CSV file that is
//! not well formed is refused whole (`csv_file`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{Map, Value};

use crate::csv_file::{self, CsvFile};
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

/// The longest NDJSON line taken, in bytes (its line end not counted): a longer one is
/// answered `INVALID_REQUEST` without being held whole.
pub const MAX_LINE: usize = 1 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Counts the request lines of the file: NDJSON lines holding more than white space,
/// or the records of a CSV file less its header. For CSV this is also the strict check
/// of the whole file (a quote never closed, a record over 1 MiB, bytes that are not
/// UTF-8 stop the job here, naming the line, before anything is sent).
pub fn count_requests(path: &Path, format: Format) -> anyhow::Result<u64> {
    if format == Format::Csv {
        let records = csv_file::check(path, b',')
            .with_context(|| format!("the input {} is not well-formed CSV", path.display()))?;
        return Ok(records.saturating_sub(1));
    }
    let mut file =
        File::open(path).with_context(|| format!("cannot read the input {}", path.display()))?;
    let mut buffer = vec![0_u8; 256 * 1024];
    let (mut lines, mut filled, mut first) = (0_u64, false, true);
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read the input {}", path.display()))?;
        if n == 0 {
            break;
        }
        let mut bytes = &buffer[..n];
        if std::mem::take(&mut first) {
            bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
        }
        for &byte in bytes {
            if byte == b'\n' {
                lines += u64::from(filled);
                filled = false;
            } else if !byte.is_ascii_whitespace() {
                filled = true;
            }
        }
    }
    lines += u64::from(filled);
    Ok(lines)
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
        // Boxed: the csv reader's state is large beside the NDJSON variant.
        file: Box<CsvFile>,
        /// For each column: the identifier it belongs to (`None` for `token`), its field.
        columns: Vec<(Option<String>, String)>,
        record: csv::ByteRecord,
    },
}

impl Input {
    /// Opens `path`; for CSV, reads and checks the header (an unknown column stops the
    /// job before anything is sent).
    pub fn open(path: &Path, format: Format, token: Option<String>) -> anyhow::Result<Input> {
        let source = match format {
            Format::Ndjson => {
                let file = File::open(path)
                    .with_context(|| format!("cannot read the input {}", path.display()))?;
                Source::Ndjson {
                    reader: BufReader::with_capacity(256 * 1024, file),
                    line: 0,
                    buffer: Vec::new(),
                }
            }
            Format::Csv => {
                let mut file = CsvFile::open(path, b',')
                    .with_context(|| format!("cannot read the input {}", path.display()))?;
                let mut header = csv::ByteRecord::new();
                file.next(&mut header)
                    .with_context(|| format!("cannot read the CSV header of {}", path.display()))?;
                let hint = csv_file::delimiter_hint(&header, b',')
                    .map(|hint| format!("; {hint}"))
                    .unwrap_or_default();
                let columns = header
                    .iter()
                    .enumerate()
                    .map(|(i, name)| csv_column(i + 1, &String::from_utf8_lossy(name)))
                    .collect::<anyhow::Result<_>>()
                    .map_err(|err| anyhow::anyhow!("{}: line 1: {err:#}{hint}", path.display()))?;
                Source::Csv {
                    columns,
                    file: Box::new(file),
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
                let Some(mut read) = read_line(reader, buffer).context("cannot read the input")?
                else {
                    return Ok(None);
                };
                *line += 1;
                if *line == 1 && buffer.starts_with(BOM) {
                    buffer.drain(..BOM.len());
                    if !read.too_long {
                        read.filled = buffer.iter().any(|b| !b.is_ascii_whitespace());
                    }
                }
                if !read.filled {
                    continue;
                }
                let kind = if read.too_long {
                    ItemKind::Invalid("the line is over 1 MiB".to_owned())
                } else {
                    ndjson_request(buffer, token)
                };
                return Ok(Some(Item { line: *line, kind }));
            },
            Source::Csv {
                file,
                columns,
                record,
            } => {
                let Some(line) = file.next(record).context("cannot read the CSV input")? else {
                    return Ok(None);
                };
                let kind = if record.len() == columns.len() {
                    csv_request(columns, record, token)
                } else {
                    ItemKind::Invalid(format!(
                        "bad CSV row: {} where the header has {}",
                        match record.len() {
                            1 => "1 field".to_owned(),
                            n => format!("{n} fields"),
                        },
                        columns.len()
                    ))
                };
                Ok(Some(Item { line, kind }))
            }
        }
    }
}

/// What [`read_line`] read.
struct Line {
    /// The line is longer than [`MAX_LINE`]: only its start is in the buffer.
    too_long: bool,
    /// Some byte of the line (kept or not) is not white space.
    filled: bool,
}

/// Reads one line (through its `\n`) into `buffer`, keeping at most [`MAX_LINE`] bytes
/// and its line end; the rest of a longer line is read and dropped. `None` at the end
/// of the file.
fn read_line(reader: &mut impl BufRead, buffer: &mut Vec<u8>) -> std::io::Result<Option<Line>> {
    let (mut any, mut too_long, mut filled) = (false, false, false);
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        any = true;
        let end = available.iter().position(|&b| b == b'\n');
        let take = end.map_or(available.len(), |i| i + 1);
        let chunk = &available[..take];
        filled |= chunk.iter().any(|b| !b.is_ascii_whitespace());
        let room = (MAX_LINE + 2).saturating_sub(buffer.len());
        buffer.extend_from_slice(&chunk[..take.min(room)]);
        too_long |= take > room;
        reader.consume(take);
        if end.is_some() {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    let content = buffer.strip_suffix(b"\n").unwrap_or(buffer);
    let content = content.strip_suffix(b"\r").unwrap_or(content);
    too_long |= content.len() > MAX_LINE;
    Ok(Some(Line { too_long, filled }))
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

/// The `position`-th (1-based) CSV header cell: `token`, or `<identifier>.<field>` of
/// the request table. A cell that names no identifier is not quoted in the message: in
/// a file without its header row it is a login token or a pass code.
fn csv_column(position: usize, name: &str) -> anyhow::Result<(Option<String>, String)> {
    let name = name.trim();
    if name == "token" {
        return Ok((None, "token".to_owned()));
    }
    let known = name.split_once('.').and_then(|(identifier, field)| {
        CSV_FIELDS
            .iter()
            .find(|(known, _)| *known == identifier)
            .map(|(_, fields)| (identifier, field, fields))
    });
    let Some((identifier, field, fields)) = known else {
        bail!(
            "CSV column {position} of the header is not `token` or `<identifier>.<field>` \
             with an identifier of {} (is the header row missing?)",
            identifiers()
        );
    };
    if !fields.contains(&field) {
        bail!(
            "CSV column {name:?}: {identifier} has no field {field:?}; its fields are {}",
            fields.join(", ")
        );
    }
    Ok((Some(identifier.to_owned()), field.to_owned()))
}

/// The identifiers a CSV column may name, for messages.
fn identifiers() -> String {
    let mut names: Vec<&str> = IDENTIFIERS.to_vec();
    names.push("subscription_type_identifier");
    names.join(", ")
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
        let err = err.to_string();
        assert!(err.contains("line 1: CSV column \"subscription_identifier.nmber\": subscription_identifier has no field \"nmber\"; its fields are id, number"), "{err}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_ndjson_line_over_1_mib_is_invalid_alone_and_a_byte_order_mark_is_dropped() {
        let body = r#"{"token":"T","subscription_identifier":{"number":"S1"}}"#;
        let long = format!(r#"{{"token":"{}"}}"#, "x".repeat(MAX_LINE));
        let text = format!("\u{feff}{body}\r\n{long}\r\n\r\n{body}\r\n");
        let items = items(&text, Format::Ndjson, None);
        let lines: Vec<u64> = items.iter().map(|item| item.line).collect();
        assert_eq!(lines, [1, 2, 4]);
        assert_eq!(request(&items[0])["token"], "T");
        assert!(matches!(&items[1].kind, ItemKind::Invalid(why) if why.contains("over 1 MiB")));
        assert_eq!(request(&items[2])["token"], "T");
        // Exactly the limit is taken (and is answered by the worker, not here).
        let edge = format!(r#"{{"token":"{}"}}"#, "x".repeat(MAX_LINE - 12));
        assert_eq!(edge.len(), MAX_LINE);
        let items = self::items(&edge, Format::Ndjson, None);
        assert!(matches!(&items[0].kind, ItemKind::Request(body) if body.len() == MAX_LINE));
    }

    #[test]
    fn csv_lines_are_the_same_with_lf_crlf_and_a_byte_order_mark() {
        let lf = "token,subscription_identifier.number\nT1,S1\n\n\"T\n2\",S2\nT3,S3\n";
        let expected = [2, 4, 6];
        for text in [
            lf.to_owned(),
            lf.replace('\n', "\r\n"),
            format!("\u{feff}{}", lf.replace('\n', "\r\n")),
        ] {
            let got: Vec<u64> = items(&text, Format::Csv, None)
                .iter()
                .map(|item| item.line)
                .collect();
            assert_eq!(got, expected, "{text:?}");
        }
    }

    #[test]
    fn a_semicolon_separated_csv_gets_a_delimiter_hint() {
        let (path, mut file) = tempfile();
        file.write_all(b"token;subscription_identifier.number\nT;S\n")
            .expect("write");
        let err = Input::open(&path, Format::Csv, None)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("semicolons") && err.contains("separated by commas"),
            "{err}"
        );
        let _ = std::fs::remove_file(&path);
    }
}
