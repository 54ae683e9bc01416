//! CSV files as `import` and `batch` read them: strictly, with physical line numbers.
//!
//! The csv crate forgives: a quote that never closes takes the rest of the file into one
//! field, a record grows as long as the file, and a CRLF file's records are numbered
//! from where the previous record's `\r` left the parser (one line short). Both
//! commands feed whole files to the database or the broker, so a forgiven fault loses
//! or mixes rows silently. Here every byte the csv reader gets passes a [`Scanner`]
//! that follows the same grammar (the csv crate's defaults: `"` quotes, `""` inside
//! quotes, `\r`, `\n` or `\r\n` end a record, blank lines skipped) and stops the file
//! at the first fault, naming the line where it begins:
//!
//! - a quote that never closes,
//! - a record over [`MAX_RECORD`] bytes (stopped there: never buffered whole),
//! - bytes that are not UTF-8.
//!
//! [`check`] runs the scanner over the whole file first, so a fault near the end stops
//! the command before it loads or sends anything; [`CsvFile`] then reads the records
//! through the same scanner, which also gives each record the physical line it begins
//! on (a UTF-8 byte-order mark dropped, `\n`, `\r\n` and a lone `\r` each ending a
//! line). Memory stays bounded: one record of at most 1 MiB and the read buffers.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context as _;

/// The longest record taken, in bytes (its terminator not counted).
pub const MAX_RECORD: usize = 1 << 20;

/// Bytes read from the file at a time.
const BUFFER: usize = 1 << 16;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a file is refused, and the line where the fault begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The physical line (1-based).
    pub line: u64,
    /// What is wrong.
    pub kind: FaultKind,
}

/// The faults that refuse a whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// A field opened with `"` on this line never closes before the end of the file.
    QuoteNeverClosed,
    /// The record beginning on this line is longer than [`MAX_RECORD`]; `open_quote`
    /// is the line of a quote still open there, the likely cause.
    RecordTooLong {
        /// The line of a quote that is still open when the limit is passed.
        open_quote: Option<u64>,
    },
    /// A byte on this line is not part of a UTF-8 character.
    NotUtf8,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match self.kind {
            FaultKind::QuoteNeverClosed => write!(
                f,
                "quote never closed (a field that opens with \" must close with \"; \
                 a quote inside it is written \"\")"
            ),
            FaultKind::RecordTooLong { open_quote } => {
                write!(f, "record over 1 MiB")?;
                match open_quote {
                    Some(line) => write!(f, " (the quote opened on line {line} never closes)"),
                    None => Ok(()),
                }
            }
            FaultKind::NotUtf8 => write!(f, "bytes that are not UTF-8 (save the file as UTF-8)"),
        }
    }
}

impl std::error::Error for Fault {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between records: line ends here are blank lines.
    StartRecord,
    StartField,
    InField,
    InQuotes,
    /// A `"` inside quotes: closes them, or with another `"` is one quote.
    QuoteInQuotes,
}

/// The grammar of the csv crate's default reader, byte by byte: where records begin,
/// on which line, and the faults of [`FaultKind`].
#[derive(Debug)]
pub struct Scanner {
    delimiter: u8,
    state: State,
    /// The current physical line.
    line: u64,
    /// A `\r` was the last byte: the line it ends is counted at the next byte, which
    /// may be the `\n` of the same line end.
    after_cr: bool,
    record_line: u64,
    record_bytes: usize,
    quote_line: u64,
    /// Continuation bytes the current UTF-8 character still needs, and the range of
    /// the next one (narrower after some lead bytes: no overlong forms, no surrogates).
    utf8_need: u8,
    utf8_range: (u8, u8),
    /// The line each record begins on, for the reader that has not taken it yet
    /// (only kept when `track` is set).
    starts: VecDeque<u64>,
    track: bool,
    records: u64,
}

impl Scanner {
    /// A scanner for fields separated by `delimiter`; `track` keeps each record's line
    /// for [`Scanner::take_start`].
    pub fn new(delimiter: u8, track: bool) -> Scanner {
        Scanner {
            delimiter,
            state: State::StartRecord,
            line: 1,
            after_cr: false,
            record_line: 1,
            record_bytes: 0,
            quote_line: 1,
            utf8_need: 0,
            utf8_range: (0x80, 0xBF),
            starts: VecDeque::new(),
            track,
            records: 0,
        }
    }

    /// Records begun so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The line of the oldest record not yet taken.
    pub fn take_start(&mut self) -> Option<u64> {
        self.starts.pop_front()
    }

    /// Scans the next bytes of the file.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        for &byte in bytes {
            if self.after_cr {
                self.after_cr = false;
                if byte != b'\n' {
                    self.line += 1;
                }
            }
            self.utf8(byte)?;
            self.step(byte);
            if self.state != State::StartRecord {
                self.record_bytes += 1;
                if self.record_bytes > MAX_RECORD {
                    return Err(Fault {
                        line: self.record_line,
                        kind: FaultKind::RecordTooLong {
                            open_quote: matches!(self.state, State::InQuotes)
                                .then_some(self.quote_line),
                        },
                    });
                }
            }
            match byte {
                b'\n' => self.line += 1,
                b'\r' => self.after_cr = true,
                _ => {}
            }
        }
        Ok(())
    }

    /// The end of the file: a quote still open, or a character cut short, is a fault.
    pub fn finish(&self) -> Result<(), Fault> {
        if self.state == State::InQuotes {
            return Err(Fault {
                line: self.quote_line,
                kind: FaultKind::QuoteNeverClosed,
            });
        }
        if self.utf8_need > 0 {
            return Err(Fault {
                line: self.line,
                kind: FaultKind::NotUtf8,
            });
        }
        Ok(())
    }

    fn step(&mut self, byte: u8) {
        let end = byte == b'\n' || byte == b'\r';
        self.state = match self.state {
            State::StartRecord if end => State::StartRecord,
            State::StartRecord => {
                self.records += 1;
                self.record_line = self.line;
                self.record_bytes = 0;
                if self.track {
                    self.starts.push_back(self.line);
                }
                self.field_start(byte)
            }
            State::StartField => self.field_start(byte),
            State::InField | State::QuoteInQuotes if end => State::StartRecord,
            State::InField | State::QuoteInQuotes if byte == self.delimiter => State::StartField,
            State::QuoteInQuotes if byte == b'"' => State::InQuotes,
            State::InField | State::QuoteInQuotes => State::InField,
            State::InQuotes if byte == b'"' => State::QuoteInQuotes,
            State::InQuotes => State::InQuotes,
        };
    }

    fn field_start(&mut self, byte: u8) -> State {
        match byte {
            b'"' => {
                self.quote_line = self.line;
                State::InQuotes
            }
            b'\n' | b'\r' => State::StartRecord,
            _ if byte == self.delimiter => State::StartField,
            _ => State::InField,
        }
    }

    fn utf8(&mut self, byte: u8) -> Result<(), Fault> {
        let fault = Fault {
            line: self.line,
            kind: FaultKind::NotUtf8,
        };
        if self.utf8_need > 0 {
            let (low, high) = self.utf8_range;
            if !(low..=high).contains(&byte) {
                return Err(fault);
            }
            self.utf8_need -= 1;
            self.utf8_range = (0x80, 0xBF);
            return Ok(());
        }
        (self.utf8_need, self.utf8_range) = match byte {
            0x00..=0x7F => return Ok(()),
            0xC2..=0xDF => (1, (0x80, 0xBF)),
            0xE0 => (2, (0xA0, 0xBF)),
            0xE1..=0xEC | 0xEE..=0xEF => (2, (0x80, 0xBF)),
            0xED => (2, (0x80, 0x9F)),
            0xF0 => (3, (0x90, 0xBF)),
            0xF1..=0xF3 => (3, (0x80, 0xBF)),
            0xF4 => (3, (0x80, 0x8F)),
            _ => return Err(fault),
        };
        Ok(())
    }
}

/// A reader that passes every byte through a [`Scanner`] after dropping a leading
/// UTF-8 byte-order mark; a fault is an [`io::ErrorKind::InvalidData`] error holding
/// the [`Fault`].
pub struct Strict<R> {
    inner: R,
    scanner: Scanner,
    started: bool,
}

impl<R: BufRead> Strict<R> {
    /// Reads `inner` with `scanner`.
    pub fn new(inner: R, scanner: Scanner) -> Strict<R> {
        Strict {
            inner,
            scanner,
            started: false,
        }
    }

    /// The scanner, with what it has seen so far.
    pub fn scanner(&mut self) -> &mut Scanner {
        &mut self.scanner
    }
}

impl<R: BufRead> Read for Strict<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.started {
            self.started = true;
            // A regular file fills a buffer this size, so a mark is never split.
            if self.inner.fill_buf()?.starts_with(BOM) {
                self.inner.consume(BOM.len());
            }
        }
        let n = self.inner.read(buf)?;
        let scanned = if n == 0 {
            self.scanner.finish()
        } else {
            self.scanner.feed(&buf[..n])
        };
        scanned.map_err(|fault| io::Error::new(io::ErrorKind::InvalidData, fault))?;
        Ok(n)
    }
}

/// The [`Fault`] inside an error of reading through [`Strict`], if it is one.
pub fn fault_of(err: &io::Error) -> Option<&Fault> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<Fault>())
}

/// Reads the whole file at `path` through a [`Scanner`]: `Ok` with the number of
/// records (the header counted) when it is well formed, else the first fault.
pub fn check(path: &Path, delimiter: u8) -> anyhow::Result<u64> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut strict = Strict::new(
        BufReader::with_capacity(BUFFER, file),
        Scanner::new(delimiter, false),
    );
    let mut buffer = vec![0_u8; BUFFER];
    loop {
        match strict.read(&mut buffer) {
            Ok(0) => return Ok(strict.scanner.records()),
            Ok(_) => {}
            Err(err) => return Err(refusal(err, path)),
        }
    }
}

/// An error of reading `path` through [`Strict`]: the fault itself, or the I/O error.
fn refusal(err: io::Error, path: &Path) -> anyhow::Error {
    match fault_of(&err) {
        Some(fault) => anyhow::Error::new(fault.clone()),
        None => anyhow::Error::new(err).context(format!("cannot read {}", path.display())),
    }
}

/// The records of a CSV file, each with the physical line it begins on. Fields are not
/// counted against the header here: callers report a short or long row as theirs.
pub struct CsvFile {
    reader: csv::Reader<Strict<BufReader<File>>>,
    path: std::path::PathBuf,
}

impl CsvFile {
    /// Opens `path` for records separated by `delimiter`.
    pub fn open(path: &Path, delimiter: u8) -> anyhow::Result<CsvFile> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let strict = Strict::new(
            BufReader::with_capacity(BUFFER, file),
            Scanner::new(delimiter, true),
        );
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .buffer_capacity(BUFFER)
            .from_reader(strict);
        Ok(CsvFile {
            reader,
            path: path.to_owned(),
        })
    }

    /// Reads the next record into `record`: `Ok(Some(line))` with the line it begins
    /// on, `Ok(None)` at the end of the file, `Err` on a fault or a read error.
    pub fn next(&mut self, record: &mut csv::ByteRecord) -> anyhow::Result<Option<u64>> {
        match self.reader.read_byte_record(record) {
            Ok(false) => Ok(None),
            Ok(true) => {
                // The scanner saw every byte the csv reader parsed, so it has this
                // record's start; the two follow the same grammar.
                let line = self.reader.get_mut().scanner().take_start();
                line.map(Some)
                    .context("the CSV reader and the line scanner disagree on records")
            }
            Err(err) => Err(match err.into_kind() {
                csv::ErrorKind::Io(err) => refusal(err, &self.path),
                kind => anyhow::anyhow!("cannot read {}: {kind:?}", self.path.display()),
            }),
        }
    }

    /// Bytes of the file read so far (read ahead of the records returned).
    pub fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }
}

/// A hint for a header that looks separated by something other than `delimiter`: one
/// field holding semicolons or tabs.
pub fn delimiter_hint(header: &csv::ByteRecord, delimiter: u8) -> Option<String> {
    if header.len() != 1 || delimiter != b',' {
        return None;
    }
    let field = &header[0];
    let (name, seen) = if field.contains(&b';') {
        ("semicolons", ';')
    } else if field.contains(&b'\t') {
        ("tabs", '\t')
    } else {
        return None;
    };
    Some(format!(
        "the header has no comma but {name} ({seen:?}): the file must be separated by commas; \
         export it again as comma-separated CSV"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records of `text` as (line, fields), or the fault.
    fn parse(text: &[u8]) -> Result<Vec<(u64, Vec<String>)>, Fault> {
        let strict = Strict::new(text, Scanner::new(b',', true));
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(7)
            .from_reader(strict);
        let mut out = Vec::new();
        let mut record = csv::ByteRecord::new();
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(false) => return Ok(out),
                Ok(true) => {
                    let line = reader.get_mut().scanner().take_start().expect("a start");
                    let fields = record
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect();
                    out.push((line, fields));
                }
                Err(err) => match err.into_kind() {
                    csv::ErrorKind::Io(err) => return Err(fault_of(&err).expect("fault").clone()),
                    kind => panic!("{kind:?}"),
                },
            }
        }
    }

    fn lines(text: &str) -> Vec<u64> {
        parse(text.as_bytes())
            .expect("parses")
            .into_iter()
            .map(|(line, _)| line)
            .collect()
    }

    #[test]
    fn records_get_their_physical_line_whatever_the_line_ends() {
        let lf = "h,i\na,b\n\n\"c\nd\",e\nf,\"\"\"g\"\"\"\n";
        assert_eq!(lines(lf), [1, 2, 4, 6]);
        assert_eq!(lines(&lf.replace('\n', "\r\n")), [1, 2, 4, 6]);
        assert_eq!(
            lines(&format!("\u{feff}{}", lf.replace('\n', "\r\n"))),
            [1, 2, 4, 6]
        );
        assert_eq!(lines(&lf.replace('\n', "\r")), [1, 2, 4, 6]);
        let fields = parse(format!("\u{feff}{lf}").as_bytes()).expect("parses");
        assert_eq!(
            fields[0].1,
            ["h", "i"],
            "the mark is not part of the header"
        );
        assert_eq!(fields[2].1, ["c\nd", "e"]);
        assert_eq!(fields[3].1, ["f", "\"g\""]);
    }

    #[test]
    fn a_quote_that_never_closes_is_refused_at_its_line() {
        let fault = parse(
            b"number,life_cycle_state,name\nA1,ACTIVE,Alice\nA2,ACTIVE,\"Bob\nA3,ACTIVE,Carol\n",
        )
        .expect_err("refused");
        assert_eq!(fault.line, 3);
        assert!(fault.to_string().starts_with("line 3: quote never closed"));
        // A quote in the middle of a field is a character, as the csv crate reads it.
        assert_eq!(lines("a,b\"c\nd,e\n"), [1, 2]);
        // A closed quote at the very end is fine.
        assert_eq!(lines("a,\"b\""), [1]);
    }

    #[test]
    fn a_record_over_the_limit_is_refused_at_its_first_line() {
        let mut text = b"h\nok\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_RECORD + 1));
        let fault = parse(&text).expect_err("refused");
        assert_eq!(
            fault,
            Fault {
                line: 3,
                kind: FaultKind::RecordTooLong { open_quote: None }
            }
        );
        let mut text = b"h\n\"open\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_RECORD));
        let fault = parse(&text).expect_err("refused");
        assert_eq!(
            fault.kind,
            FaultKind::RecordTooLong {
                open_quote: Some(2)
            }
        );
        let mut text = b"h\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_RECORD));
        assert_eq!(parse(&text).expect("exactly the limit").len(), 2);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_at_their_line() {
        for bad in [
            &b"\xff"[..],
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xe2\x82",
        ] {
            let mut text = b"h\r\nok\r\nx".to_vec();
            text.extend_from_slice(bad);
            text.extend_from_slice(b"\r\n");
            let fault = parse(&text).expect_err("refused");
            assert_eq!((fault.line, fault.kind), (3, FaultKind::NotUtf8), "{bad:?}");
        }
        let cut = parse(b"h\nx\xe2\x82").expect_err("cut at the end");
        assert_eq!((cut.line, cut.kind), (2, FaultKind::NotUtf8));
        assert!(parse("h\né,€,𝄞\n".as_bytes()).is_ok());
    }

    #[test]
    fn a_semicolon_or_tab_header_gets_a_hint() {
        let hint = |h: &str| delimiter_hint(&csv::ByteRecord::from(vec![h]), b',');
        assert!(hint("number;name").is_some_and(|h| h.contains("semicolons")));
        assert!(hint("number\tname").is_some_and(|h| h.contains("tabs")));
        assert!(hint("number").is_none());
    }

    /// The records of `text` as the csv crate reads it alone (no scanner).
    fn plain(text: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text);
        let mut out = Vec::new();
        let mut record = csv::ByteRecord::new();
        while reader.read_byte_record(&mut record).expect("in memory") {
            out.push(record.iter().map(<[u8]>::to_vec).collect());
        }
        out
    }

    /// The physical lines of `text` that hold something, 1-based: where the records of
    /// a file without quotes begin.
    fn filled_lines(text: &[u8]) -> Vec<u64> {
        let text = String::from_utf8_lossy(text)
            .replace("\r\n", "\n")
            .replace('\r', "\n");
        text.split('\n')
            .enumerate()
            .filter(|(_, line)| !line.is_empty())
            .map(|(i, _)| i as u64 + 1)
            .collect()
    }

    proptest::proptest! {
        /// The scanner and the csv crate agree on every record of any file over the
        /// bytes that matter to the grammar; without quotes, each record's line is the
        /// line it is on.
        #[test]
        fn the_scanner_agrees_with_the_csv_crate(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b',', b'"', b'\r', b'\n']),
                0..64,
            )
        ) {
            match parse(&bytes) {
                Ok(records) => {
                    let fields: Vec<Vec<Vec<u8>>> = records
                        .iter()
                        .map(|(_, fields)| fields.iter().map(|f| f.as_bytes().to_vec()).collect())
                        .collect();
                    proptest::prop_assert_eq!(&fields, &plain(&bytes));
                    let lines: Vec<u64> = records.iter().map(|(line, _)| *line).collect();
                    proptest::prop_assert!(lines.windows(2).all(|w| w[0] <= w[1]));
                    if !bytes.contains(&b'"') {
                        proptest::prop_assert_eq!(lines, filled_lines(&bytes));
                    }
                }
                Err(fault) => {
                    proptest::prop_assert_eq!(fault.kind, FaultKind::QuoteNeverClosed);
                    proptest::prop_assert!(bytes.contains(&b'"'));
                }
            }
        }
    }
}
