//! Replays the corpus and any crash artifacts through the same checks, on stable and
//! without libFuzzer: `cargo test --manifest-path fuzz/Cargo.toml`.
//!
//! `FUZZ_REPLAY=path` replays one file or directory instead (a reproducer, say).

use std::fs;
use std::path::{Path, PathBuf};

fn inputs(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .map(|dir| {
                dir.filter_map(|entry| entry.ok().map(|e| e.path()))
                    .collect()
            })
            .unwrap_or_default();
        entries.sort();
        for entry in entries {
            inputs(&entry, out);
        }
    } else if path.is_file() {
        out.push(path.to_owned());
    }
}

#[test]
fn every_stored_input_keeps_the_invariants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    match std::env::var_os("FUZZ_REPLAY") {
        Some(path) => inputs(Path::new(&path), &mut files),
        None => {
            inputs(&root.join("corpus/decode"), &mut files);
            inputs(&root.join("artifacts/decode"), &mut files);
        }
    }
    for file in &files {
        let data = fs::read(file).expect("a readable input");
        eprintln!("replaying {}", file.display());
        tucano_auth_fuzz::check(&data);
    }
    eprintln!("{} inputs replayed", files.len());
}
