//! The output of `batch`: one NDJSON result line per request line, in input order, and
//! resuming a file a killed run left behind.
//!
//! Each line is written with one `write` of the whole line (newline included) straight
//! to the file, with no buffer in this process, so a SIGKILL leaves at most one torn
//! line at the end: [`resume`] cuts it off and reports the last line number written.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::error::Code;

/// One output line, its fields in the documented order.
#[derive(Debug, Serialize)]
pub struct ResultLine<'a> {
    /// The request's 1-based line number in the input.
    pub line: u64,
    /// The status code.
    pub code: &'a str,
    /// The subscription id on `OK`, else null.
    pub subscription_id: Option<&'a str>,
    /// The JWT on `OK`, else null.
    pub jwt: Option<&'a str>,
    /// Empty on `OK`, else what was wrong.
    pub message: &'a str,
}

/// What an existing output file holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    /// The input line number of the last complete output line (0 for none).
    pub last_line: u64,
    /// Complete output lines per code.
    pub codes: BTreeMap<String, u64>,
}

impl Written {
    /// Counts one line with `code`.
    pub fn count(&mut self, code: &str) {
        match self.codes.get_mut(code) {
            Some(count) => *count += 1,
            None => {
                self.codes.insert(code.to_owned(), 1);
            }
        }
    }

    /// Complete lines in all.
    pub fn total(&self) -> u64 {
        self.codes.values().sum()
    }

    /// Lines whose code is not `OK`.
    pub fn not_ok(&self) -> u64 {
        self.total() - self.codes.get(Code::Ok.as_str()).copied().unwrap_or(0)
    }
}

#[derive(Deserialize)]
struct ReadBack {
    line: u64,
    code: String,
}

/// Reads an output file a previous run left, cuts a torn last line off (a line
/// without its newline, as a kill during a write leaves), and says what it holds.
/// A missing file holds nothing.
pub fn resume(path: &Path) -> anyhow::Result<Written> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(no_follow())
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Written::default()),
        Err(err) => return Err(open_error(err, path)),
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut written = Written::default();
    let (mut complete, mut buffer, mut number) = (0_u64, Vec::new(), 0_u64);
    loop {
        buffer.clear();
        let n = reader
            .read_until(b'\n', &mut buffer)
            .with_context(|| format!("cannot read the output {}", path.display()))?;
        if n == 0 || buffer.last() != Some(&b'\n') {
            break;
        }
        number += 1;
        let line: ReadBack = serde_json::from_slice(&buffer).with_context(|| {
            format!(
                "line {number} of the output {} is not a result line; not resuming",
                path.display()
            )
        })?;
        if line.line <= written.last_line {
            bail!(
                "the output {} is out of order at its line {number}; not resuming",
                path.display()
            );
        }
        written.last_line = line.line;
        written.count(&line.code);
        complete += n as u64;
    }
    let file = reader.into_inner();
    let length = file
        .metadata()
        .with_context(|| format!("cannot read the output {}", path.display()))?
        .len();
    if length > complete {
        OpenOptions::new()
            .write(true)
            .custom_flags(no_follow())
            .open(path)
            .and_then(|file| file.set_len(complete))
            .with_context(|| format!("cannot cut the torn last line of {}", path.display()))?;
    }
    Ok(written)
}

/// `O_NOFOLLOW`: opening a symbolic link fails (`ELOOP`) instead of following it.
fn no_follow() -> i32 {
    // The flag's bits fit an i32: they are a C `int` flag of open(2).
    i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or_default()
}

/// An error opening the output, saying so when `path` is a symbolic link.
fn open_error(err: std::io::Error, path: &Path) -> anyhow::Error {
    if err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        anyhow::anyhow!(
            "the output {} is a symbolic link: refused; give the path of a regular file",
            path.display()
        )
    } else {
        anyhow::Error::new(err).context(format!("cannot open the output {}", path.display()))
    }
}

/// Appends result lines, one `write` per line.
pub struct Output {
    file: File,
    line: Vec<u8>,
}

impl Output {
    /// Opens `path` for appending; without `resume`, a file that exists and is not
    /// empty is refused rather than mixed with this run's lines.
    ///
    /// A new file is created readable and writable by its owner only (its lines hold
    /// JWTs), in the `open` call itself so that it is never readable by others for a
    /// moment; a file that exists keeps its mode. A symbolic link at `path` is refused,
    /// so that nobody who can write the directory redirects the JWTs elsewhere.
    pub fn open(path: &Path, resume: bool) -> anyhow::Result<Output> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(no_follow())
            .open(path)
            .map_err(|err| open_error(err, path))?;
        if !resume {
            let existing = file
                .metadata()
                .with_context(|| format!("cannot read the output {}", path.display()))?
                .len();
            if existing > 0 {
                bail!(
                    "the output {} exists: add --resume to complete it, or remove it",
                    path.display()
                );
            }
        }
        Ok(Output {
            file,
            line: Vec::with_capacity(1024),
        })
    }

    /// Writes one line with a single `write` of the whole line.
    pub fn write(&mut self, result: &ResultLine<'_>) -> anyhow::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, result).context("cannot encode a result line")?;
        self.line.push(b'\n');
        self.file
            .write_all(&self.line)
            .context("cannot write the output")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_cuts_a_torn_line_and_reads_the_last_complete_one() {
        let path = std::env::temp_dir().join(format!("tucano-output-{}", uuid::Uuid::new_v4()));
        let mut output = Output::open(&path, false).expect("open");
        for (line, code) in [(1, "OK"), (3, "NOT_FOUND"), (4, "OK")] {
            let result = ResultLine {
                line,
                code,
                subscription_id: None,
                jwt: None,
                message: "",
            };
            output.write(&result).expect("write");
        }
        drop(output);
        let whole = std::fs::read(&path).expect("read");
        let mut torn = whole.clone();
        torn.extend_from_slice(br#"{"line":5,"co"#);
        std::fs::write(&path, &torn).expect("tear");
        let written = resume(&path).expect("resume");
        assert_eq!(written.last_line, 4);
        assert_eq!((written.total(), written.not_ok()), (3, 1));
        assert_eq!(std::fs::read(&path).expect("read"), whole);
        assert!(
            Output::open(&path, false).is_err(),
            "never mixed without --resume"
        );
        let _ = std::fs::remove_file(&path);
    }
}
