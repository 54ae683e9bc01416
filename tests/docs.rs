//! The documentation against the code, with no service needed: the configuration table
//! of docs/operations.md against what every subcommand's `--help` shows, every variable
//! a table of docs/ or the README names against the code, and every relative link of
//! docs/ and the README against the files and headings it points to
//! (docs/development.md, "The documentation check").
//!
//! Documents drift silently: a variable added without its row, a row left for a
//! variable removed, a link to a section renamed. Each of these fails here instead.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_tucano-auth");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Shown by `serve --help` but not documented: only the benchmark set them.
/// Named in a table of docs/ though no file of ours names them: opentelemetry-otlp's
/// HTTP exporter reads them itself (its crate documentation lists them).
const READ_BY_LIBRARIES: &[&str] = &["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT"];

/// What one `--help` says about one variable.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    flag: String,
    default: Option<String>,
}

/// One command's `--help`: the variables it shows, and its subcommands.
struct Help {
    variables: BTreeMap<String, Shown>,
    subcommands: Vec<String>,
}

fn help(path: &[String]) -> Help {
    // No variable of the test's environment may show up as a value in the help.
    let output = Command::new(BINARY)
        .args(path)
        .arg("--help")
        .env_clear()
        .output()
        .expect("run tucano-auth --help");
    assert!(
        output.status.success(),
        "tucano-auth {} --help failed: {}",
        path.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    parse_help(&String::from_utf8(output.stdout).expect("UTF-8 help"))
}

/// Reads clap's long help: option lines (`      --amqp-url <AMQP_URL>`) are indented
/// by 2 to 6 spaces, their `[env: NAME=...]` and `[default: ...]` lines follow.
fn parse_help(text: &str) -> Help {
    let mut variables = BTreeMap::new();
    let mut subcommands = Vec::new();
    let mut section = "";
    let mut flag: Option<String> = None;
    let mut env: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if section == "Commands:" && indent == 2 {
            let name = trimmed.split_whitespace().next().unwrap_or("");
            if !name.is_empty() && name != "help" {
                subcommands.push(name.to_owned());
            }
        }
        if section != "Options:" {
            continue;
        }
        if (2..=6).contains(&indent) && trimmed.starts_with('-') {
            flag = trimmed
                .split([',', ' '])
                .find(|word| word.starts_with("--"))
                .map(str::to_owned);
            env = None;
        } else if let Some(rest) = trimmed.strip_prefix("[env: ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let shown = Shown {
                flag: flag.clone().expect("an [env: ] line under an option"),
                default: None,
            };
            variables.insert(name.clone(), shown);
            env = Some(name);
        } else if let Some(rest) = trimmed.strip_prefix("[default: ") {
            if let Some(name) = &env {
                let shown: &mut Shown = variables.get_mut(name).unwrap();
                shown.default = Some(rest.trim_end_matches(']').to_owned());
            }
        }
    }
    Help {
        variables,
        subcommands,
    }
}

/// Every command path (`[]` is the binary itself, then `["serve"]`, `["user", "add"]`...)
/// with its help. The hidden pass-code helper is not listed, and has no help to check.
fn every_help() -> Vec<(Vec<String>, Help)> {
    let mut all = Vec::new();
    let mut pending = vec![Vec::new()];
    while let Some(path) = pending.pop() {
        let help = help(&path);
        for sub in &help.subcommands {
            let mut child = path.clone();
            child.push(sub.clone());
            pending.push(child);
        }
        all.push((path, help));
    }
    all
}

/// The commands that read each variable, as the table writes them: the commands whose
/// help shows it and whose parent's does not (a variable of `user` is not repeated for
/// `user add`), or `every command` for one the binary's own help shows (a global flag).
fn read_by(all: &[(Vec<String>, Help)]) -> BTreeMap<String, (BTreeSet<String>, Shown)> {
    let by_path: BTreeMap<&Vec<String>, &Help> = all.iter().map(|(p, h)| (p, h)).collect();
    let mut read = BTreeMap::<String, (BTreeSet<String>, Shown)>::new();
    for (path, help) in all {
        for (name, shown) in &help.variables {
            let entry = read
                .entry(name.clone())
                .or_insert_with(|| (BTreeSet::new(), shown.clone()));
            assert_eq!(
                &entry.1.flag, &shown.flag,
                "{name} has two flags: {} and {}",
                entry.1.flag, shown.flag
            );
            if path.is_empty() {
                entry.0.insert("every command".to_owned());
                continue;
            }
            let parent = path[..path.len() - 1].to_vec();
            let inherited = by_path[&parent].variables.contains_key(name);
            if !inherited {
                entry.0.insert(path.join(" "));
            }
        }
    }
    for (commands, _) in read.values_mut() {
        if commands.contains("every command") {
            commands.retain(|c| c == "every command");
        }
    }
    read
}

fn read(path: impl AsRef<Path>) -> String {
    let path = Path::new(ROOT).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The text without fenced code blocks, so that a `|` or a `](` in a shell example is
/// not taken for a table or a link.
fn prose(markdown: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if !fenced {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The cells of a table row; `\|` is a pipe inside a cell.
fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    row.replace("\\|", "\u{0}")
        .split('|')
        .map(|cell| cell.replace('\u{0}', "|").trim().to_owned())
        .collect()
}

/// Every table of `markdown`: its header cells and its rows.
fn tables(markdown: &str) -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    let text = prose(markdown);
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 1 < lines.len() {
        let separator = lines[i + 1].trim();
        if lines[i].trim().starts_with('|')
            && separator.starts_with('|')
            && separator.chars().all(|c| "|-: ".contains(c))
        {
            let header = cells(lines[i]);
            let mut rows = Vec::new();
            i += 2;
            while i < lines.len() && lines[i].trim().starts_with('|') {
                rows.push(cells(lines[i]));
                i += 1;
            }
            found.push((header, rows));
        } else {
            i += 1;
        }
    }
    found
}

/// The `code` spans of a cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

fn is_variable_name(s: &str) -> bool {
    s.len() > 2
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The configuration table: the first table under "### Every variable".
fn configuration_table() -> Vec<Vec<String>> {
    let operations = read("docs/operations.md");
    let start = operations
        .find("\n### Every variable\n")
        .expect("docs/operations.md has a section \"Every variable\"");
    let (header, rows) = tables(&operations[start..])
        .into_iter()
        .next()
        .expect("a table under \"Every variable\"");
    assert_eq!(
        header,
        ["variable", "flag", "default", "read by", "meaning"],
        "the columns of the configuration table"
    );
    rows
}

#[test]
fn the_configuration_table_is_what_every_help_shows() {
    let shown = read_by(&every_help());
    let mut documented = BTreeSet::new();
    for row in configuration_table() {
        let names = code_spans(&row[0]);
        assert_eq!(names.len(), 1, "one variable a row: {row:?}");
        let name = &names[0];
        assert!(documented.insert(name.clone()), "{name} has two rows");
        let Some((commands, help)) = shown.get(name) else {
            panic!("{name} is in docs/operations.md's table, but no command's --help shows it");
        };
        assert_eq!(
            code_spans(&row[1]),
            std::slice::from_ref(&help.flag),
            "{name}'s flag in docs/operations.md"
        );
        let table_commands: BTreeSet<String> = if row[3] == "every command" {
            BTreeSet::from(["every command".to_owned()])
        } else {
            code_spans(&row[3]).into_iter().collect()
        };
        assert_eq!(
            &table_commands, commands,
            "the commands that read {name}, in docs/operations.md against --help"
        );
        if let Some(default) = &help.default {
            assert!(
                code_spans(&row[2]).contains(default),
                "{name}'s default is `{default}` in --help, the table says {:?}",
                row[2]
            );
        }
    }
    let missing: Vec<&String> = shown.keys().filter(|n| !documented.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "shown by --help but not in docs/operations.md's table: {missing:?}"
    );
}

/// The files whose text counts as code: what a variable must be named in.
fn code_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "node_modules" || name == "target" {
            continue;
        }
        if path.is_dir() {
            code_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn the_markdown() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .flatten()
        .map(|e| PathBuf::from("docs").join(e.file_name()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The text of every code file under `dirs` of the repository, joined.
fn code_text(dirs: &[&str]) -> String {
    let mut files = Vec::new();
    for dir in dirs {
        code_files(&Path::new(ROOT).join(dir), &mut files);
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_variable_a_table_names_is_in_the_code() {
    let code = code_text(&["src", "tools", "deploy", ".ci"]);
    let mut checked = 0;
    let mut unknown = Vec::new();
    for doc in the_markdown() {
        for (header, rows) in tables(&read(&doc)) {
            let Some(column) = header
                .iter()
                .position(|h| h == "variable" || h == "variables")
            else {
                continue;
            };
            for row in rows {
                let Some(cell) = row.get(column) else {
                    continue;
                };
                for name in code_spans(cell).into_iter().filter(|s| is_variable_name(s)) {
                    checked += 1;
                    if !code.contains(&name) && !READ_BY_LIBRARIES.contains(&name.as_str()) {
                        unknown.push(format!("{}: {name}", doc.display()));
                    }
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} variables found in the tables");
    assert!(
        unknown.is_empty(),
        "variables in a table of the documents that no code names: {unknown:?}"
    );
}

/// The prefixes of the product's own variables, and of the OpenTelemetry ones it reads.
const PREFIXES: &[&str] = &[
    "TUCANO_",
    "AMQP_",
    "DATABASE_",
    "CRM_",
    "QUEUE_",
    "METRICS_",
    "LOG_",
    "REPLY_",
    "OTEL_",
];

#[test]
fn every_variable_the_documents_name_is_in_the_code() {
    let code = code_text(&["src", "tools", "deploy", ".ci", "clients", "examples"]);
    let mut unknown = BTreeSet::new();
    for doc in the_markdown() {
        // performance.md is a record of what was measured, with the settings of the
        // day, some of them since removed.
        if doc == Path::new("docs/performance.md") {
            continue;
        }
        let text = read(&doc);
        let words =
            text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
        for word in words {
            let word = word.trim_end_matches('_');
            if PREFIXES
                .iter()
                .any(|p| word.starts_with(p) && word.len() > p.len())
                && !code.contains(word)
                && !READ_BY_LIBRARIES.contains(&word)
            {
                unknown.insert(format!("{}: {word}", doc.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "variables the documents name that no code does: {unknown:?}"
    );
}

/// GitHub's anchor of a heading: lower case, spaces as `-`, every character other than
/// a letter, a digit, `-` and `_` dropped; a repeated heading gets `-1`, `-2`...
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen = BTreeMap::<String, usize>::new();
    let mut anchors = BTreeSet::new();
    for line in prose(markdown).lines() {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// The targets of the inline links `[text](target)` outside code.
fn links(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose(markdown).lines() {
        // Inline code may hold `](`: leave it out.
        let text: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            targets.push(rest[..end].trim().to_owned());
            rest = &rest[end..];
        }
    }
    targets
}

#[test]
fn every_relative_link_leads_somewhere() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in the_markdown() {
        let text = read(&doc);
        let dir = doc.parent().unwrap_or(Path::new(""));
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                doc.clone()
            } else {
                dir.join(file)
            };
            if !Path::new(ROOT).join(&path).exists() {
                broken.push(format!(
                    "{}: {target} (no file {})",
                    doc.display(),
                    path.display()
                ));
                continue;
            }
            if let Some(anchor) = anchor {
                let is_markdown = path.extension().is_some_and(|e| e == "md");
                if is_markdown && !anchors(&read(&path)).contains(anchor) {
                    broken.push(format!("{}: {target} (no such heading)", doc.display()));
                }
            }
        }
    }
    assert!(checked > 30, "only {checked} links found");
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn slugs_follow_github() {
    assert_eq!(
        slug("Encrypted connections (TLS)"),
        "encrypted-connections-tls"
    );
    assert_eq!(
        slug("Hostile messages and the broker's limits"),
        "hostile-messages-and-the-brokers-limits"
    );
    assert_eq!(
        slug("`node-loss` and `standby`, by hand"),
        "node-loss-and-standby-by-hand"
    );
    assert_eq!(slug("8. Observing it"), "8-observing-it");
    let repeated = anchors("## Figures\n\n## Figures\n");
    assert_eq!(
        repeated,
        BTreeSet::from(["figures".to_owned(), "figures-1".to_owned()])
    );
}

#[test]
fn help_parsing_reads_flags_variables_and_defaults() {
    let help = parse_help(
        "Usage: x\n\nCommands:\n  serve  Serve\n  help   Help\n\nOptions:\n      --amqp-url <AMQP_URL>\n          RabbitMQ URL, see --other\n          \n          [env: AMQP_URL]\n          [default: amqp://h/%2f]\n\n  -t, --token <TOKEN>\n          [env: TUCANO_BATCH_TOKEN=]\n\n  -h, --help\n          Print help\n",
    );
    assert_eq!(help.subcommands, ["serve"]);
    assert_eq!(
        help.variables["AMQP_URL"],
        Shown {
            flag: "--amqp-url".into(),
            default: Some("amqp://h/%2f".into())
        }
    );
    assert_eq!(help.variables["TUCANO_BATCH_TOKEN"].flag, "--token");
    assert_eq!(help.variables.len(), 2);
}
