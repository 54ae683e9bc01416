//! `tucano-auth import FILE.csv --table TABLE`: loads a CSV file into one table of
//! the data model, upserting by natural key.
//!
//! The whole file is first checked as well-formed CSV (`crate::csv_file`): a fault
//! refuses it before any database work. It is then read on a thread of its own
//! (`read.rs`), pass codes are hashed on every
//! core (`hashing.rs`), and the rows stream into a temporary staging table through
//! `COPY`; the checks that need the database and the upsert are one statement each
//! (`stage.rs`, `upsert.rs`), all in one transaction: an import that fails half-way loads nothing.
//! Memory stays bounded by a chunk of rows, whatever the size of the file (duplicate
//! keys are found in SQL, by the line number staged with each row, and the rejected
//! rows are streamed from there to the caller, never collected).
//!
//! The command line (`cli/data.rs`) turns the outcome into the exit code: 0 all rows
//! loaded, 1 some rejected, 2 nothing could be loaded.

mod hashing;
mod read;
mod report;
mod stage;
mod table;
mod upsert;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use sqlx::{Connection as _, PgPool};
use tokio::sync::mpsc;

pub use read::parse_id;
pub use report::{Rejection, Summary};
pub use table::Table;

use read::{Pass, Row, Source};
use report::{Counters, Progress};

/// Rows per `COPY` chunk.
const CHUNK_ROWS: usize = 2048;
/// Pass codes per chunk, at most: each is an Argon2 run, so a chunk with many of them
/// is sent sooner.
const CHUNK_PASSES: usize = 256;

/// What `import` was asked to do.
#[derive(Debug, Clone)]
pub struct Job {
    /// The CSV file.
    pub file: PathBuf,
    /// The table to load.
    pub table: Table,
}

/// How an import ended (the rejected rows went to the `report` of [`run`]).
#[derive(Debug)]
pub struct Outcome {
    /// The counts.
    pub summary: Summary,
}

/// Runs `job` against the database of `database_url` (created and migrated if
/// needed), showing progress on standard error while the file is read. Each rejected
/// row goes to `report` as it is found (in line order, once the file is read), so
/// none is held here; the caller prints the summary. `Err` means nothing was loaded
/// (rows reported before it were not loaded either).
pub async fn run(
    database_url: &str,
    job: &Job,
    report: &mut (dyn FnMut(Rejection) + Send),
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    // The file first: a bad file or header needs no database.
    let source = Source::open(&job.file, job.table)
        .with_context(|| format!("{}: nothing imported", job.file.display()))?;
    if let Some(notice) = source.notice(job.table) {
        eprintln!("{}: {notice}", job.file.display());
    }
    let total = std::fs::metadata(&job.file).map_or(0, |m| m.len());
    // One connection stages and upserts; the other reads stored hashes.
    let pool = crate::store::prepare(database_url, 2)
        .await
        .context("nothing imported")?;
    let mut conn = pool.acquire().await.context("nothing imported")?;
    let mut tx = conn.begin().await.context("nothing imported")?;
    stage::create(&mut tx, job.table)
        .await
        .context("cannot create the staging table; nothing imported")?;

    let counters = Arc::new(Counters::default());
    let progress = Progress::start(counters.clone(), total);
    let header = source.header.clone();
    let present = header.present(job.table);
    let (chunks, mut incoming) = mpsc::channel::<Vec<u8>>(4);
    let reader = {
        let pool = pool.clone();
        let counters = counters.clone();
        let runtime = tokio::runtime::Handle::current();
        let table = job.table;
        tokio::task::spawn_blocking(move || {
            read_all(source, table, &pool, &runtime, &counters, &chunks)
        })
    };
    let mut copy = tx
        .copy_in_raw(&stage::copy_statement(&present))
        .await
        .context("cannot start COPY; nothing imported")?;
    let mut sent = Ok(());
    while let Some(chunk) = incoming.recv().await {
        if let Err(err) = copy.send(chunk).await {
            sent = Err(err);
            break;
        }
    }
    // Dropping the receiver stops a reader that is still sending.
    drop(incoming);
    let read = reader.await.context("the reading thread failed")?;
    let read = match (read, sent) {
        (Ok(read), Ok(())) => read,
        (Err(err), _) => {
            let _ = copy.abort("the file could not be read").await;
            return Err(err.context(format!("{}: nothing imported", job.file.display())));
        }
        (_, Err(err)) => {
            return Err(anyhow::Error::new(err)
                .context("COPY into the staging table failed; nothing imported"))
        }
    };
    copy.finish()
        .await
        .context("COPY into the staging table failed; nothing imported")?;
    let copied = started.elapsed();
    counters.loading.store(true, Ordering::Relaxed);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!(
            "import: {} read; checking references and loading {}",
            report::count(read.rows, "row", "rows"),
            job.table.name()
        );
    }

    let rejected = stage::reject(&mut tx, job.table, &header, report)
        .await
        .context("checking the staged rows failed; nothing imported")?;
    let checked_at = started.elapsed();
    let (inserted, updated) = upsert::upsert(&mut tx, job.table, &header)
        .await
        .with_context(|| format!("loading {} failed; nothing imported", job.table.name()))?;
    tx.commit()
        .await
        .context("commit failed; nothing imported")?;
    drop(progress);
    tracing::debug!(
        ?copied,
        checks = ?(checked_at - copied),
        upsert_and_commit = ?(started.elapsed() - checked_at),
        "import phases"
    );

    let valid = read.rows.saturating_sub(rejected);
    let summary = Summary {
        rows: read.rows,
        inserted,
        updated,
        unchanged: valid.saturating_sub(inserted + updated),
        rejected,
        hashed: read.hashed,
        kept: read.kept,
        given: read.given,
    };
    Ok(Outcome { summary })
}

/// What the reading thread found.
struct Read {
    rows: u64,
    /// Clear pass codes given a new hash.
    hashed: u64,
    /// Clear pass codes the stored hash already verified: that hash is kept.
    kept: u64,
    /// Pass codes given as Argon2 PHC strings, stored as they are.
    given: u64,
}

/// Reads every row of `source`, hashes pass codes chunk by chunk and sends the chunks,
/// encoded for `COPY`, to `chunks`.
fn read_all(
    mut source: Source,
    table: Table,
    pool: &PgPool,
    runtime: &tokio::runtime::Handle,
    counters: &Counters,
    chunks: &mpsc::Sender<Vec<u8>>,
) -> anyhow::Result<Read> {
    let hasher =
        hashing::Hasher::start(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let present = source.header.present(table);
    let mut read = Read {
        rows: 0,
        hashed: 0,
        kept: 0,
        given: 0,
    };
    let mut rows: Vec<Row> = Vec::with_capacity(CHUNK_ROWS);
    let mut passes = 0;
    loop {
        let next = source.next_row()?;
        let done = next.is_none();
        if let Some(row) = next {
            if row.bad.is_some() {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
            }
            match row.pass {
                Some(Pass::Clear(_)) => passes += 1,
                Some(Pass::Hashed(_)) => read.given += 1,
                None => {}
            }
            rows.push(row);
            read.rows += 1;
            counters.rows.fetch_add(1, Ordering::Relaxed);
        }
        counters.bytes.store(source.bytes_read(), Ordering::Relaxed);
        if rows.len() >= CHUNK_ROWS || passes >= CHUNK_PASSES || (done && !rows.is_empty()) {
            if passes > 0 {
                let keys = rows
                    .iter()
                    .filter(|r| matches!(r.pass, Some(Pass::Clear(_))))
                    .filter_map(|r| r.values.first().cloned().flatten())
                    .collect();
                let stored = runtime
                    .block_on(stage::stored_hashes(pool, table, keys))
                    .context("cannot read the stored pass-code hashes")?;
                let clear: Vec<usize> = (0..rows.len())
                    .filter(|&i| matches!(rows[i].pass, Some(Pass::Clear(_))))
                    .collect();
                hasher.settle(&mut rows, &stored)?;
                // A stored hash comes back only when it verified the clear value.
                let kept = clear
                    .iter()
                    .filter(|&&i| match (&rows[i].pass, rows[i].values.first()) {
                        (Some(Pass::Hashed(hash)), Some(Some(key))) => {
                            stored.get(key) == Some(hash)
                        }
                        _ => false,
                    })
                    .count() as u64;
                read.kept += kept;
                read.hashed += clear.len() as u64 - kept;
            }
            let mut out = Vec::with_capacity(rows.len() * 96);
            for row in &rows {
                stage::encode(row, &present, &mut out);
            }
            rows.clear();
            passes = 0;
            if chunks.blocking_send(out).is_err() {
                anyhow::bail!("the database stopped taking rows");
            }
        }
        if done {
            return Ok(read);
        }
    }
}
