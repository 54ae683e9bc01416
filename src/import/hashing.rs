//! Pass codes and passwords on the way in: Argon2 on every core, and idempotence.
//!
//! A value in clear is hashed with the worker's parameters (`store::pass_code::hash`).
//! A random salt would make every import of the same file change the stored hash, so
//! a clear value that the row's stored hash already verifies keeps that hash: the
//! second import of a file is then "unchanged", at the same cost (one Argon2 run per
//! value) as the first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
use argon2::Argon2;

use super::read::{Pass, Row};
use crate::store::pass_code;

/// Whether `value` is an Argon2 PHC string the schema's check accepts and Argon2 can
/// read.
pub fn is_phc(value: &str) -> bool {
    let prefix_ok = ["$argon2id$", "$argon2i$", "$argon2d$"]
        .iter()
        .any(|p| value.starts_with(p));
    prefix_ok && PasswordHash::new(value).is_ok()
}

/// Whether `stored` is a usable hash that verifies `clear`.
fn verifies(stored: &str, clear: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(clear.as_bytes(), &hash)
            .is_ok()
    })
}

/// Replaces every clear pass code of `rows` by its hash: the stored one from `stored`
/// (by the row's natural key) when it verifies, else a new one. Runs on `threads`
/// threads; returns how many Argon2 runs it made.
pub fn settle(
    rows: &mut [Row],
    stored: &HashMap<String, String>,
    threads: usize,
) -> anyhow::Result<usize> {
    let work: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, row)| matches!(row.pass, Some(Pass::Clear(_))))
        .map(|(i, _)| i)
        .collect();
    if work.is_empty() {
        return Ok(0);
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, anyhow::Result<String>)>> = Mutex::new(Vec::new());
    let rows_ref = &*rows;
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, work.len()) {
            scope.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = work.get(n) else { break };
                    let row = &rows_ref[i];
                    let Some(Pass::Clear(clear)) = &row.pass else {
                        continue;
                    };
                    let key = row.values.first().and_then(Option::as_deref);
                    let kept = key
                        .and_then(|key| stored.get(key))
                        .filter(|hash| verifies(hash, clear.expose()));
                    mine.push((
                        i,
                        match kept {
                            Some(hash) => Ok(hash.clone()),
                            None => pass_code::hash(clear.expose()),
                        },
                    ));
                }
                // A poisoned lock only means another thread panicked; its results are
                // still whole.
                let mut all = results.lock().unwrap_or_else(|p| p.into_inner());
                all.extend(mine);
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let runs = results.len();
    for (i, hash) in results {
        rows[i].pass = Some(Pass::Hashed(hash?));
    }
    Ok(runs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn row(key: &str, pass: &str) -> Row {
        Row {
            line: 2,
            bad: None,
            id: None,
            values: vec![Some(key.to_owned())],
            pass: Some(Pass::Clear(Secret::new(pass))),
        }
    }

    fn hashed(row: &Row) -> &str {
        match &row.pass {
            Some(Pass::Hashed(hash)) => hash,
            _ => panic!("not hashed"),
        }
    }

    #[test]
    fn a_clear_pass_code_is_hashed_or_keeps_the_stored_hash_that_verifies_it() {
        let stored_hash = pass_code::hash("1234").unwrap();
        let stored = HashMap::from([
            ("A".to_owned(), stored_hash.clone()),
            ("B".to_owned(), stored_hash.clone()),
        ]);
        let mut rows = vec![row("A", "1234"), row("B", "9999"), row("C", "1234")];
        assert_eq!(settle(&mut rows, &stored, 2).unwrap(), 3);
        assert_eq!(hashed(&rows[0]), stored_hash);
        assert_ne!(hashed(&rows[1]), stored_hash);
        assert!(verifies(hashed(&rows[1]), "9999"));
        assert!(verifies(hashed(&rows[2]), "1234"));
        assert!(rows.iter().all(|r| is_phc(hashed(r))));
    }

    #[test]
    fn only_argon2_phc_strings_pass_as_hashes() {
        assert!(is_phc(&pass_code::hash("x").unwrap()));
        assert!(!is_phc("$argon2id$nonsense"));
        assert!(!is_phc("$2b$12$abcdefghijklmnopqrstuv"));
    }
}
