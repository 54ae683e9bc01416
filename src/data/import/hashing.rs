//! Pass codes and passwords on the way in: Argon2 on every core, and idempotence.
//!
//! A value in clear is hashed with the worker's parameters (Argon2id, the argon2
//! crate's defaults, as `store::pass_code::hash`). A random salt would make every
//! import of the same file change the stored hash, so a clear value that the row's
//! stored hash already verifies keeps that hash: the second import of a file is then
//! "unchanged", at the same cost (one Argon2 run per value) as the first.
//!
//! The runs go to one long-lived thread per core, each reusing its Argon2 memory:
//! threads started per chunk, allocating 19 MiB per run, left that memory in
//! allocator arenas of their own and took an import of 1,000 pass codes to 4.8 GiB
//! RSS (see `docs/import.md`, Performance).

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use argon2::password_hash::{Output, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use uuid::Uuid;

use super::read::{Pass, Row};
use crate::secret::Secret;
use crate::store::pass_code::verify_into;

/// One Argon2 job: the row's index, its clear value, the stored hash to try first.
type Job = (usize, Secret, Option<String>);
/// Its answer: the row's index and the hash to store.
type Done = (usize, anyhow::Result<String>);

/// The hashing threads of one import.
pub struct Hasher {
    jobs: Option<mpsc::Sender<(Job, mpsc::Sender<Done>)>>,
    threads: Vec<JoinHandle<()>>,
}

impl Hasher {
    /// Starts `threads` hashing threads.
    pub fn start(threads: usize) -> Hasher {
        let (jobs, queue) = mpsc::channel::<(Job, mpsc::Sender<Done>)>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = (0..threads.max(1))
            .filter_map(|n| {
                let queue = Arc::clone(&queue);
                std::thread::Builder::new()
                    .name(format!("import-argon2-{n}"))
                    .spawn(move || {
                        let mut blocks = Vec::new();
                        loop {
                            // A poisoned lock means another thread panicked in recv: go on.
                            let next = match queue.lock() {
                                Ok(guard) => guard.recv(),
                                Err(poisoned) => poisoned.into_inner().recv(),
                            };
                            let Ok(((i, clear, stored), answer)) = next else {
                                return;
                            };
                            let hash = settle_one(&clear, stored.as_deref(), &mut blocks);
                            let _ = answer.send((i, hash));
                        }
                    })
                    .ok()
            })
            .collect();
        Hasher {
            jobs: Some(jobs),
            threads,
        }
    }

    /// Replaces every clear pass code of `rows` by its hash: the stored one from
    /// `stored` (by the row's natural key) when it verifies, else a new one. Returns
    /// how many Argon2 runs it made.
    pub fn settle(
        &self,
        rows: &mut [Row],
        stored: &HashMap<String, String>,
    ) -> anyhow::Result<u64> {
        let jobs = self
            .jobs
            .as_ref()
            .filter(|_| !self.threads.is_empty())
            .ok_or_else(|| anyhow::anyhow!("no hashing thread could be started"))?;
        let (answer, answers) = mpsc::channel();
        let mut sent = 0u64;
        for (i, row) in rows.iter().enumerate() {
            if let Some(Pass::Clear(clear)) = &row.pass {
                let key = row.values.first().and_then(Option::as_deref);
                let old = key.and_then(|key| stored.get(key)).cloned();
                jobs.send(((i, clear.clone(), old), answer.clone()))
                    .map_err(|_| anyhow::anyhow!("the hashing threads stopped"))?;
                sent += 1;
            }
        }
        drop(answer);
        for _ in 0..sent {
            let (i, hash) = answers
                .recv()
                .map_err(|_| anyhow::anyhow!("a hashing thread stopped"))?;
            rows[i].pass = Some(Pass::Hashed(hash?));
        }
        Ok(sent)
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The hash to store for `clear`: `stored` if it verifies, else a new one.
fn settle_one(
    clear: &Secret,
    stored: Option<&str>,
    blocks: &mut Vec<Block>,
) -> anyhow::Result<String> {
    if let Some(stored) = stored {
        // A stored hash outside the bounds (written by other means) is not computed:
        // it is replaced like one that does not verify.
        let verified = verify_into(clear.expose().as_bytes(), stored, blocks);
        if verified == Some(true) {
            return Ok(stored.to_owned());
        }
    }
    hash_into(clear.expose(), blocks)
}

/// An Argon2id PHC string of `clear` with the argon2 crate's default parameters (the
/// worker's) and a random salt, computed in `blocks`.
fn hash_into(clear: &str, blocks: &mut Vec<Block>) -> anyhow::Result<String> {
    let params = Params::default();
    // A v4 UUID is 16 random bytes from the OS generator: a sound salt.
    let salt = Uuid::new_v4();
    let count = params.block_count();
    if blocks.len() < count {
        blocks.resize(count, Block::default());
    }
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            clear.as_bytes(),
            salt.as_bytes(),
            &mut out,
            &mut blocks[..count],
        )
        .map_err(|err| anyhow::anyhow!("could not hash a pass code: {err}"))?;
    let salt = SaltString::encode_b64(salt.as_bytes())
        .map_err(|err| anyhow::anyhow!("could not encode a salt: {err}"))?;
    let out = Output::new(&out).map_err(|err| anyhow::anyhow!("could not encode a hash: {err}"))?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${out}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        salt.as_str()
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::data::import::read::check_phc;
    use crate::store::pass_code;
    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};

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

    fn verifies(stored: &str, clear: &str) -> bool {
        Argon2::default()
            .verify_password(clear.as_bytes(), &PasswordHash::new(stored).unwrap())
            .is_ok()
    }

    #[test]
    fn a_clear_pass_code_is_hashed_or_keeps_the_stored_hash_that_verifies_it() {
        let stored_hash = pass_code::hash("1234").unwrap();
        let stored = HashMap::from([
            ("A".to_owned(), stored_hash.clone()),
            ("B".to_owned(), stored_hash.clone()),
        ]);
        let mut rows = vec![row("A", "1234"), row("B", "9999"), row("C", "1234")];
        assert_eq!(Hasher::start(2).settle(&mut rows, &stored).unwrap(), 3);
        assert_eq!(hashed(&rows[0]), stored_hash);
        assert_ne!(hashed(&rows[1]), stored_hash);
        assert!(verifies(hashed(&rows[1]), "9999"));
        assert!(verifies(hashed(&rows[2]), "1234"));
        assert!(rows.iter().all(|r| check_phc(hashed(r)).is_ok()));
    }

    #[test]
    fn new_hashes_have_the_workers_parameters() {
        let ours = hash_into("1234", &mut Vec::new()).unwrap();
        let theirs = pass_code::hash("1234").unwrap();
        let prefix = |h: &str| h.rsplitn(3, '$').nth(2).unwrap().to_owned();
        assert_eq!(prefix(&ours), prefix(&theirs));
        assert!(verifies(&ours, "1234"));
        assert!(!verifies(&ours, "1235"));
    }

    #[test]
    fn only_argon2_phc_strings_pass_as_hashes() {
        assert!(check_phc(&pass_code::hash("x").unwrap()).is_ok());
        assert!(check_phc("$argon2id$nonsense").is_err());
        assert!(check_phc("$2b$12$abcdefghijklmnopqrstuv").is_err());
    }
}
