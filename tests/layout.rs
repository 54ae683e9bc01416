//! The house drawn from its imports: no import circle between the modules of `src/`,
//! and nothing below the command line imports it. No services needed; it reads the
//! source files.
//!
//! How the drawing is made:
//! - Every file under `src/` is a module (`lib.rs` the crate root, `a/mod.rs` and
//!   `a.rs` module `a`, `a/b.rs` module `a::b`); `main.rs` is the binary, not a module
//!   of the library.
//! - A reference is a path starting `crate::`, `super::` or `self::`, in a `use` (brace
//!   groups expanded) or in code; comments and string literals are not read. It points
//!   at the file of the longest module prefix of the path that exists: `crate::broker::Names`
//!   points at `broker/mod.rs` even when `Names` is defined in a child and re-exported.
//! - A module referring to its own descendants is its facade (declaring children,
//!   re-exporting them, assembling them) and draws no edge. A child referring to its
//!   parent's items does draw one: so a parent that re-exports a child which uses the
//!   parent is fine, and a child that needs a sibling goes through the parent or the
//!   sibling, never in a circle.
//! - Unit-test modules (an inline `mod tests { .. }` or a file module named `tests`)
//!   are not drawn: a test may reach anywhere to check something.
//!
//! Two pictures must have no circle: the files (modules), and at every level the
//! rooms under one parent (a reference from `a::x` to `b::y` under one parent is an
//! edge `a -> b` between the siblings), so a circle between two rooms made of
//! different files (`broker::stats -> observe`, `observe -> broker`) is caught too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path below the crate root: `["store", "lookup"]`.
type Module = Vec<String>;

/// One reference, kept to say where an edge comes from when a circle is found.
#[derive(Debug, Clone)]
struct Reference {
    from: Module,
    to: Module,
    at: String,
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

/// Every `.rs` file under `dir`, with the module it is.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = path
                .strip_prefix(src)
                .expect("under src/")
                .with_extension("");
            let mut parts: Module = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            match parts.as_slice() {
                [only] if only == "main" => continue,
                [only] if only == "lib" => parts.clear(),
                [.., last] if last == "mod" => {
                    parts.pop();
                }
                _ => {}
            }
            found.insert(parts, path);
        }
    }
    found
}

/// `text` with comments and the contents of string and character literals blanked
/// (newlines kept, so line numbers stay right).
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep_newlines = |out: &mut String, part: &[char]| {
        out.extend(part.iter().filter(|&&c| c == '\n'));
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let word_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let start = i;
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i = (i + 2).min(chars.len());
            keep_newlines(&mut out, &chars[start..i]);
        } else if c == 'r'
            && (!word_before || (i > 0 && chars[i - 1] == 'b'))
            && matches!(next, Some('"' | '#'))
        {
            // A raw string: r"..", r#".."#, br#".."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let start = i;
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            keep_newlines(&mut out, &chars[start..j.min(chars.len())]);
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(chars.len());
            keep_newlines(&mut out, &chars[start..i]);
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('x', '\n', '\''), not a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'' && j > i + 2)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    out.push_str("' '");
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The paths of a use tree (or a plain path) starting at `at`: `a::{b, c::{d}}` gives
/// `a::b` and `a::c::d`. Returns them and where the tree ends.
fn paths(text: &[char], mut at: usize) -> (Vec<Vec<String>>, usize) {
    let mut segments: Vec<String> = Vec::new();
    loop {
        while at < text.len() && text[at].is_whitespace() {
            at += 1;
        }
        if text.get(at) == Some(&'{') {
            at += 1;
            let mut all = Vec::new();
            loop {
                while at < text.len() && (text[at].is_whitespace() || text[at] == ',') {
                    at += 1;
                }
                if at >= text.len() || text[at] == '}' {
                    at += 1;
                    break;
                }
                let (inner, end) = paths(text, at);
                // `as` renames and anything else up to the next separator.
                at = end;
                while at < text.len() && !matches!(text[at], ',' | '}') {
                    at += 1;
                }
                for path in inner {
                    all.push([segments.clone(), path].concat());
                }
            }
            if all.is_empty() {
                all.push(segments);
            }
            return (all, at);
        }
        let start = at;
        while at < text.len() && (text[at].is_alphanumeric() || text[at] == '_' || text[at] == '*')
        {
            at += 1;
        }
        if start == at {
            return (vec![segments], at);
        }
        segments.push(text[start..at].iter().collect());
        let mut look = at;
        while look < text.len() && text[look].is_whitespace() {
            look += 1;
        }
        if text.get(look) == Some(&':') && text.get(look + 1) == Some(&':') {
            at = look + 2;
        } else {
            return (vec![segments], at);
        }
    }
}

/// The references of one file, its unit-test modules left out.
fn references(module: &Module, path: &Path) -> Vec<(Vec<String>, usize)> {
    let text: Vec<char> = strip(&std::fs::read_to_string(path).expect("read source"))
        .chars()
        .collect();
    let mut found = Vec::new();
    // Inline modules open at a brace depth: (name, depth).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut line = 1;
    let mut i = 0;
    let word_at = |i: usize, word: &str| {
        let w: Vec<char> = word.chars().collect();
        text.get(i..i + w.len()) == Some(&w[..])
            && (i == 0
                || !(text[i - 1].is_alphanumeric() || text[i - 1] == '_' || text[i - 1] == ':'))
            && text
                .get(i + w.len())
                .is_none_or(|c| !(c.is_alphanumeric() || *c == '_'))
    };
    while i < text.len() {
        match text[i] {
            '\n' => line += 1,
            '{' => depth += 1,
            '}' => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        if word_at(i, "mod") {
            let (names, end) = paths(&text, i + 3);
            let mut look = end;
            while look < text.len() && text[look].is_whitespace() {
                look += 1;
            }
            if text.get(look) == Some(&'{') {
                let name = names
                    .first()
                    .and_then(|p| p.first())
                    .cloned()
                    .unwrap_or_default();
                line += text[i..look].iter().filter(|&&c| c == '\n').count();
                depth += 1;
                inline.push((name, depth));
                i = look + 1;
                continue;
            }
        }
        let starts = ["crate", "super", "self"].iter().any(|w| {
            word_at(i, w) && text.get(i + w.len()..i + w.len() + 2) == Some(&[':', ':'][..])
        });
        if starts {
            let (found_paths, end) = paths(&text, i);
            let in_tests = inline.iter().any(|(name, _)| name == "tests");
            if !in_tests {
                let here: Module = module
                    .iter()
                    .cloned()
                    .chain(inline.iter().map(|(name, _)| name.clone()))
                    .collect();
                for path in found_paths {
                    let mut base = here.clone();
                    let mut rest = path.as_slice();
                    if rest.first().is_some_and(|s| s == "crate") {
                        base.clear();
                        rest = &rest[1..];
                    }
                    while let Some(first) = rest.first() {
                        match first.as_str() {
                            "super" => {
                                base.pop();
                            }
                            "self" => {}
                            _ => break,
                        }
                        rest = &rest[1..];
                    }
                    let full: Vec<String> = base
                        .into_iter()
                        .chain(rest.iter().filter(|s| *s != "self" && *s != "*").cloned())
                        .collect();
                    found.push((full, line));
                }
            }
            line += text[i..end.min(text.len())]
                .iter()
                .filter(|&&c| c == '\n')
                .count();
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    found
}

/// Every reference between two distinct modules, test modules left out.
fn graph(src: &Path) -> Vec<Reference> {
    let modules = modules(src);
    let mut edges = Vec::new();
    for (module, path) in &modules {
        if module.iter().any(|part| part == "tests") {
            continue;
        }
        for (full, line) in references(module, path) {
            let Some(to) = (0..=full.len())
                .rev()
                .map(|n| full[..n].to_vec())
                .find(|prefix| modules.contains_key(prefix))
            else {
                continue;
            };
            // Itself, or a descendant: the facade.
            if to.starts_with(module) {
                continue;
            }
            let shown = path
                .strip_prefix(src.parent().unwrap_or(src))
                .unwrap_or(path);
            edges.push(Reference {
                from: module.clone(),
                to,
                at: format!("{}:{line}: {}", shown.display(), full.join("::")),
            });
        }
    }
    edges
}

/// The edges between the rooms under one parent: `a::x -> b::y` is `a -> b`.
fn rooms(edges: &[Reference]) -> Vec<Reference> {
    edges
        .iter()
        .filter_map(|edge| {
            let common = edge
                .from
                .iter()
                .zip(&edge.to)
                .take_while(|(a, b)| a == b)
                .count();
            // `to` is an ancestor of `from` (a child using its parent): inside the room.
            if common == edge.to.len() || common == edge.from.len() {
                return None;
            }
            Some(Reference {
                from: edge.from[..=common].to_vec(),
                to: edge.to[..=common].to_vec(),
                at: edge.at.clone(),
            })
        })
        .collect()
}

/// A circle in `edges`, each step with the reference that makes it, if there is one.
fn circle(edges: &[Reference]) -> Option<Vec<Reference>> {
    let mut out: BTreeMap<&Module, Vec<&Reference>> = BTreeMap::new();
    for edge in edges {
        out.entry(&edge.from).or_default().push(edge);
    }
    // Depth-first, iteratively; `path` holds the edges from the start to the node.
    let mut done: BTreeSet<&Module> = BTreeSet::new();
    for start in out.keys().copied().collect::<Vec<_>>() {
        if done.contains(start) {
            continue;
        }
        let mut on_path: Vec<&Module> = vec![start];
        let mut path: Vec<&Reference> = Vec::new();
        let mut next: Vec<usize> = vec![0];
        while let Some(node) = on_path.last().copied() {
            let at = next.last_mut().expect("in step with on_path");
            let outgoing = out.get(node).map_or(&[][..], |v| v.as_slice());
            if let Some(edge) = outgoing.get(*at) {
                *at += 1;
                if let Some(pos) = on_path.iter().position(|m| *m == &edge.to) {
                    let mut found: Vec<Reference> =
                        path[pos..].iter().map(|e| (*e).clone()).collect();
                    found.push((*edge).clone());
                    return Some(found);
                }
                if !done.contains(&edge.to) {
                    on_path.push(&edge.to);
                    path.push(edge);
                    next.push(0);
                }
            } else {
                done.insert(node);
                on_path.pop();
                path.pop();
                next.pop();
            }
        }
    }
    None
}

fn show(circle: &[Reference]) -> String {
    circle
        .iter()
        .map(|e| format!("  {} -> {}   ({})", name(&e.from), name(&e.to), e.at))
        .collect::<Vec<_>>()
        .join("\n")
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_modules_import_each_other_in_no_circle() {
    let edges = graph(&src());
    assert!(
        edges.len() > 100,
        "the drawing found too few references to be right: {}",
        edges.len()
    );
    if let Some(found) = circle(&edges) {
        panic!("an import circle between modules:\n{}", show(&found));
    }
    if let Some(found) = circle(&rooms(&edges)) {
        panic!("an import circle between rooms:\n{}", show(&found));
    }
}

#[test]
fn nothing_below_the_command_line_imports_it() {
    let from_below: Vec<String> = graph(&src())
        .into_iter()
        .filter(|e| e.to.first().is_some_and(|r| r == "cli"))
        .filter(|e| e.from.first().is_none_or(|r| r != "cli"))
        .map(|e| format!("  {}", e.at))
        .collect();
    assert!(
        from_below.is_empty(),
        "only src/cli/ (and main.rs) may use crate::cli:\n{}",
        from_below.join("\n")
    );
}

/// The drawing itself: each of the circles the layout once had is found when put
/// back, so a passing test above means something.
#[test]
fn the_drawing_finds_a_circle_between_rooms_and_between_files() {
    let dir = std::env::temp_dir().join(format!("tucano-layout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write(
        "src/lib.rs",
        "pub mod broker;\npub mod observe;\npub mod keys;\npub mod token;\n",
    );
    // broker <-> observe through different files: stats uses observe, observe the
    // broker's facade. A parent using its own child (broker -> stats) is no edge.
    write(
        "src/broker/mod.rs",
        "mod stats;\npub use self::stats::Stats;\n// crate::keys in a comment is not read\n",
    );
    write("src/broker/stats.rs", "use crate::observe::Readiness;\n");
    write(
        "src/observe/mod.rs",
        "pub struct Readiness;\nfn f() { let _ = \"crate::token\"; crate::broker::Stats::default(); }\n",
    );
    // keys <-> token, in a use group; and a test module that would close another one.
    write("src/keys/mod.rs", "use crate::{token::MIN, observe};\n");
    write(
        "src/token.rs",
        "use crate::keys::KeySet;\n#[cfg(test)]\nmod tests {\n    use crate::broker;\n}\n",
    );
    let edges = graph(&dir.join("src"));
    let rooms = rooms(&edges);
    let found = circle(&rooms).expect("a circle between rooms");
    let shown = show(&found);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        shown.contains("keys -> token") || shown.contains("broker -> observe"),
        "{shown}"
    );
    let pairs: BTreeSet<(String, String)> =
        rooms.iter().map(|e| (name(&e.from), name(&e.to))).collect();
    for (from, to) in [
        ("broker", "observe"),
        ("observe", "broker"),
        ("keys", "token"),
        ("token", "keys"),
        ("keys", "observe"),
    ] {
        assert!(
            pairs.contains(&(from.to_owned(), to.to_owned())),
            "{from} -> {to} in {pairs:?}"
        );
    }
    assert!(
        !pairs.contains(&("token".to_owned(), "broker".to_owned())),
        "a unit-test module is not drawn: {pairs:?}"
    );
    for (from, to) in [("broker", "keys"), ("observe", "token")] {
        assert!(
            !pairs.contains(&(from.to_owned(), to.to_owned())),
            "comments and strings are not read: {pairs:?}"
        );
    }
    // Between files: the facade's own child is no edge, the child using the
    // parent is one.
    let files: BTreeSet<(String, String)> =
        edges.iter().map(|e| (name(&e.from), name(&e.to))).collect();
    assert!(files.contains(&("broker::stats".to_owned(), "observe".to_owned())));
    assert!(!files.iter().any(|(from, _)| from == "broker"), "{files:?}");
}
