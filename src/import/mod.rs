//! `tucano-auth import FILE.csv --table TABLE`: loads a CSV file into one table of
//! the data model, upserting by natural key.
//!
//! The file is read on a thread of its own (`read.rs`), pass codes are hashed on every
//! core (`hashing.rs`), and the rows stream into a temporary staging table through
//! `COPY`; the checks that need the database and the upsert are one statement each
//! (`stage.rs`, `upsert.rs`), all in one transaction: an import that fails half-way loads nothing.
//! Memory stays bounded by a chunk of rows, whatever the size of the file (duplicate
//! keys are found in SQL, by the line number staged with each row).
//!
//! Outcomes map to exit codes in [`Outcome::exit_code`]: 0 all rows loaded, 1 some
//! rejected, 2 nothing could be loaded.

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

/// How an import ended.
#[derive(Debug)]
pub struct Outcome {
    /// The counts.
    pub summary: Summary,
    /// The rejected rows, by line.
    pub rejections: Vec<Rejection>,
}

impl Outcome {
    /// 0 when every row was loaded, 1 when some were rejected.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.summary.rejected > 0)
    }
}

/// Runs `job` against the database of `database_url` (created and migrated if
/// needed), showing progress on standard error while the file is read; the caller
/// prints the rejections and the summary. `Err` means nothing was loaded.
pub async fn run(database_url: &str, job: &Job) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    // The file first: a bad file or header needs no database.
    let source = Source::open(&job.file, job.table)
        .with_context(|| format!("{}: nothing imported", job.file.display()))?;
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
            "import: {} rows read; checking references and loading {}",
            read.rows,
            job.table.name()
        );
    }

    let checked = stage::rejections(&mut tx, job.table, &header)
        .await
        .context("checking the staged rows failed; nothing imported")?;
    let lines: Vec<i64> = checked
        .iter()
        .map(|r| i64::try_from(r.line).unwrap_or(i64::MAX))
        .collect();
    stage::drop_lines(&mut tx, &lines)
        .await
        .context("nothing imported")?;
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

    let mut rejections = read.rejections;
    rejections.extend(checked);
    rejections.sort_by_key(|r| r.line);
    let rejected = rejections.len() as u64;
    let valid = read.rows.saturating_sub(rejected);
    let summary = Summary {
        rows: read.rows,
        inserted,
        updated,
        unchanged: valid.saturating_sub(inserted + updated),
        rejected,
        hashed: read.hashed,
    };
    Ok(Outcome {
        summary,
        rejections,
    })
}

/// What the reading thread found.
struct Read {
    rows: u64,
    hashed: u64,
    /// Rows refused before staging (wrong field count, not UTF-8).
    rejections: Vec<Rejection>,
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
        rejections: Vec::new(),
    };
    let mut rows: Vec<Row> = Vec::with_capacity(CHUNK_ROWS);
    let mut passes = 0;
    loop {
        let next = source.next_row()?;
        let done = next.is_none();
        match next {
            Some(Ok(row)) => {
                passes += usize::from(matches!(row.pass, Some(Pass::Clear(_))));
                rows.push(row);
            }
            Some(Err(rejection)) => {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                read.rejections.push(rejection);
            }
            None => {}
        }
        if !done {
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
                read.hashed += hasher.settle(&mut rows, &stored)?;
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
