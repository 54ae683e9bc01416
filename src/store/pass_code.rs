//! Pass codes: Argon2 verification off the async runtime, and hashing for the demo
//! data.
//!
//! Verification always costs one Argon2 run, whether or not the identifier exists, so
//! response times do not reveal which identifiers are known.
//!
//! Each run takes tens of milliseconds of CPU and 19 MiB of memory, so runs are queued
//! to one long-lived thread per core ([`VERIFIERS`]): a burst of pass-code requests
//! queues here instead of multiplying the worker's memory and starving its other
//! requests.
//!
//! In the `tucano-auth serve` binary each of those threads hands its runs to a helper
//! process of its own ([`use_helper_process`], [`serve_helper`]) instead of running
//! them itself: the helper lowers its priority in a scheduling group of its own, which
//! a thread cannot do (see [`serve_helper`]). If a helper cannot be started or dies,
//! the thread runs the verification itself and starts a new helper later.
//!
//! A stored hash is computed only within the bounds of [`bounds`]; any other is
//! verified like a missing one, against [`DUMMY_HASH`], so that no row can make a
//! verification cost more than the most expensive one those bounds allow.

pub mod bounds;

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Argon2, Block, Params};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{mpsc, Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::error::Error;
use crate::observe::metrics::{PASS_CODES, PASS_CODES_SHED};
use crate::secret::Secret;

/// What an unknown identifier (or one without a pass code) is verified against: a hash,
/// with the crate's default parameters, of a string no pass code can equal. Its salt is
/// fixed, which is harmless because nothing real is hashed with it.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$dHVjYW5vLWF1dGgtZHVtbXk$ZR5YvFeQ5SbhdHZo4GJy5fR5uR1LR9CG+LC1FHprhOY";

/// A verification for the [`VERIFIERS`] threads: the stored hash, the pass code, and
/// where the answer goes.
type Job = (Option<String>, Secret, oneshot::Sender<bool>);

/// One long-lived thread per core runs every Argon2 verification. Long-lived matters:
/// each run allocates 19 MiB, and short-lived blocking threads each left that much in
/// an allocator arena of their own (peak RSS 290 MiB in the benchmark).
static VERIFIERS: LazyLock<Option<mpsc::Sender<Job>>> = LazyLock::new(|| {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    // Every CPU the process was given (by the kernel, a container's cpuset or taskset).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut started = 0;
    for n in 0..threads {
        let rx = Arc::clone(&rx);
        let spawned = std::thread::Builder::new()
            .name(format!("argon2-{n}"))
            .spawn(move || {
                lower_priority();
                let mut verifier = Verifier::default();
                loop {
                    // A poisoned lock means another verifier panicked mid-recv: go on.
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    let Ok((stored, pass_code, answer)) = job else {
                        return;
                    };
                    let verdict = verifier.run(stored.as_deref(), &pass_code);
                    if verdict == Verdict::Unreadable {
                        // The caller checked the bounds ([`bounds::usable`]), so this is
                        // a hash whose memory could not be allocated (or a caller that
                        // did not check): answered as a mismatch.
                        tracing::warn!("a stored pass_code_hash could not be computed");
                    }
                    let _ = answer.send(verdict == Verdict::Match);
                }
            });
        match spawned {
            Ok(_) => started += 1,
            Err(err) => tracing::error!(error = %err, "cannot start a pass-code verifier thread"),
        }
    }
    (started > 0).then_some(tx)
});

/// Gives the calling thread (a verifier thread, or a helper's only thread) the lowest
/// scheduling priority (nice 19).
///
/// Worker, broker and database share few cores, and an Argon2 run holds a core for
/// tens of milliseconds: at normal priority the kernel gave it fair turns with the
/// runtime threads, and every other request in flight waited behind it (open-loop p99
/// 24.5 ms with 0.1 % pass-code requests, 6.8 ms without; 13.4 ms at nice 19). Nice
/// only ranks threads within their scheduling group, though: against RabbitMQ and
/// PostgreSQL it takes a helper's group of its own ([`serve_helper`]).
fn lower_priority() {
    if let Err(err) =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        tracing::warn!(error = %err, "cannot lower the priority of a pass-code verifier thread");
    }
}

/// Whether `pass_code` matches `stored` (an Argon2 PHC string). With no stored hash it
/// verifies against [`DUMMY_HASH`] and answers `false`, taking the same time.
///
/// A stored hash outside the [`bounds`] is treated like a missing one (answering
/// anything else would tell the caller that the identifier exists); callers check
/// [`bounds::usable`] first to say which credential holds it.
pub async fn verify(stored: Option<String>, pass_code: &Secret) -> Result<bool, Error> {
    let started = Instant::now();
    let matched = run(stored, pass_code).await?;
    TYPICAL.record(started.elapsed());
    let result = if matched { "match" } else { "mismatch" };
    metrics::counter!(PASS_CODES, "result" => result).increment(1);
    Ok(matched)
}

/// Takes as long as a [`verify`] takes now, for an attempt refused without verifying
/// it (a locked identifier), so its answer comes neither sooner nor later than a
/// verified one's. Not counted in `tucano_auth_pass_code_verifications_total`: no pass
/// code is verified.
///
/// It waits for the recent verifications' typical time, queueing for a verifier
/// included, instead of running one: a flood of tries for a locked identifier then
/// costs no CPU, and does not delay the verifications of other requests. Before the
/// process has measured one, it waits for the first measure ([`measure`]).
pub async fn pretend() {
    match TYPICAL.get() {
        Some(typical) => tokio::time::sleep(typical).await,
        None => measure().await,
    }
}

/// Runs one verification against no stored hash, uncounted, unless one has been
/// measured already, so that [`pretend`] has a time to wait for; the worker calls it at
/// start. Concurrent callers wait for the one that runs it: a burst of refused tries
/// before the first measure costs one verification, not one each.
pub async fn measure() {
    use std::sync::atomic::Ordering;
    let first = FIRST_MEASURE.notified();
    if TYPICAL.get().is_some() {
        return;
    }
    if MEASURING.swap(true, Ordering::AcqRel) {
        first.await;
        return;
    }
    let started = Instant::now();
    if run(None, &Secret::new("")).await.is_ok() {
        TYPICAL.record(started.elapsed());
    }
    MEASURING.store(false, Ordering::Release);
    // Also when the run failed: its waiters then answer at once, as everything does
    // while no verifier runs.
    FIRST_MEASURE.notify_waiters();
}

/// Whether a [`measure`] is running its verification.
static MEASURING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Woken when the first measure is taken, by [`measure`] or by a [`verify`].
static FIRST_MEASURE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// How long a verification takes, from the request's side: a moving average of the
/// latest ones, each weighing 1/8.
static TYPICAL: Typical = Typical(std::sync::atomic::AtomicU64::new(0));

/// Nanoseconds, 0 before the first measure.
struct Typical(std::sync::atomic::AtomicU64);

impl Typical {
    fn record(&self, took: Duration) {
        use std::sync::atomic::Ordering;
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        let before = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
                Some(match mean {
                    0 => took,
                    mean => mean - mean / 8 + took / 8,
                })
            });
        if before == Ok(0) {
            FIRST_MEASURE.notify_waiters();
        }
    }

    fn get(&self) -> Option<Duration> {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}

/// One run on the [`VERIFIERS`] threads.
async fn run(stored: Option<String>, pass_code: &Secret) -> Result<bool, Error> {
    let unavailable =
        || Error::Internal(anyhow::anyhow!("no pass-code verifier thread is running"));
    let verifiers = VERIFIERS.as_ref().ok_or_else(unavailable)?;
    let (answer, verdict) = oneshot::channel();
    verifiers
        .send((stored, pass_code.clone(), answer))
        .map_err(|_| unavailable())?;
    verdict.await.map_err(|_| unavailable())
}

/// `TUCANO_PASS_CODE_BACKLOG`'s default.
pub const DEFAULT_BACKLOG: usize = 256;

/// How many pass-code requests may wait in a worker (contract section 14): one more is
/// refused at once, so that a flood of them sheds its excess instead of queueing
/// without end, and the worker's other requests keep their slots and their latency.
#[derive(Debug)]
pub struct Backlog {
    waiting: std::sync::atomic::AtomicUsize,
    limit: usize,
}

/// A place in the [`Backlog`], given back when dropped.
#[derive(Debug)]
pub struct Place<'a>(&'a Backlog);

impl Backlog {
    /// A backlog of at most `limit` requests.
    pub fn new(limit: usize) -> Backlog {
        Backlog {
            waiting: std::sync::atomic::AtomicUsize::new(0),
            limit,
        }
    }

    /// A place for one more pass-code request, or [`Error::PassCodeBacklogFull`] (and
    /// one more `tucano_auth_pass_code_shed_total`) when `limit` already wait.
    pub fn enter(&self) -> Result<Place<'_>, Error> {
        use std::sync::atomic::Ordering;
        let entered = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < self.limit).then_some(waiting + 1)
            });
        match entered {
            Ok(_) => Ok(Place(self)),
            Err(_) => {
                metrics::counter!(PASS_CODES_SHED).increment(1);
                Err(Error::PassCodeBacklogFull)
            }
        }
    }

    /// How many wait now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// What a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The pass code matches the stored hash.
    Match,
    /// It does not, or there is no stored hash.
    Mismatch,
    /// The stored hash is outside the [`bounds`] or could not be computed: answered
    /// like a mismatch (anything else would tell the caller that the identifier
    /// exists), and logged.
    Unreadable,
}

impl Verdict {
    /// Its byte on a helper's standard output.
    fn to_byte(self) -> u8 {
        match self {
            Verdict::Match => b'1',
            Verdict::Mismatch => b'0',
            Verdict::Unreadable => b'?',
        }
    }

    fn from_byte(byte: u8) -> Option<Verdict> {
        match byte {
            b'1' => Some(Verdict::Match),
            b'0' => Some(Verdict::Mismatch),
            b'?' => Some(Verdict::Unreadable),
            _ => None,
        }
    }
}

/// The Argon2 run itself: CPU-heavy, called on a verifier thread or in a helper,
/// whose Argon2 memory (`blocks`) is allocated once and reused run after run. With no
/// stored hash, or one it cannot compute (outside the [`bounds`]), it verifies against
/// [`DUMMY_HASH`], taking the same time. The bounds are checked here too, whatever the
/// caller did: this is where an unchecked hash would abort the process.
fn check(stored: Option<&str>, pass_code: &[u8], blocks: &mut Vec<Block>) -> Verdict {
    let verdict = match stored.map(|stored| verify_into(pass_code, stored, blocks)) {
        Some(Some(true)) => return Verdict::Match,
        Some(Some(false)) => return Verdict::Mismatch,
        Some(None) => Verdict::Unreadable,
        None => Verdict::Mismatch,
    };
    // The time of one verification, whose answer cannot be a match.
    let _ = verify_into(pass_code, DUMMY_HASH, blocks);
    verdict
}

/// The executable whose [`HELPER_COMMAND`] serves verifications; unset, every
/// verification runs on the verifier threads.
static HELPER: OnceLock<PathBuf> = OnceLock::new();

/// The hidden subcommand of `tucano-auth` that runs [`serve_helper`].
pub const HELPER_COMMAND: &str = "pass-code-helper";

/// How long a verifier thread runs verifications itself after a helper could not be
/// started, before it tries again.
const HELPER_RETRY: Duration = Duration::from_secs(10);

/// Makes every verifier thread hand its runs to a helper process, `exe
/// pass-code-helper`, started the first time it is needed. The first call wins.
pub fn use_helper_process(exe: PathBuf) {
    let _ = HELPER.set(exe);
}

/// One verifier thread's way of running verifications: through its helper process
/// when there is one, else itself.
#[derive(Default)]
struct Verifier {
    helper: Option<Helper>,
    /// No new helper before this instant (after a failed start).
    retry_at: Option<Instant>,
    /// Argon2 memory for the runs this thread does itself.
    blocks: Vec<Block>,
}

impl Verifier {
    fn run(&mut self, stored: Option<&str>, pass_code: &Secret) -> Verdict {
        if let Some(helper) = self.helper() {
            match helper.verify(stored, pass_code) {
                Ok(verdict) => return verdict,
                Err(err) => {
                    tracing::warn!(error = %err, "a pass-code helper failed; verifying in the worker and starting a new helper");
                    self.helper = None;
                }
            }
        }
        check(stored, pass_code.expose().as_bytes(), &mut self.blocks)
    }

    /// The running helper, started if needed and allowed.
    fn helper(&mut self) -> Option<&mut Helper> {
        let exe = HELPER.get()?;
        if self.helper.is_none() && self.retry_at.is_none_or(|at| Instant::now() >= at) {
            match Helper::start(exe) {
                Ok(helper) => {
                    self.helper = Some(helper);
                    self.retry_at = None;
                }
                Err(err) => {
                    tracing::warn!(error = %err, helper = %exe.display(), "cannot start a pass-code helper; verifying in the worker");
                    self.retry_at = Some(Instant::now() + HELPER_RETRY);
                }
            }
        }
        self.helper.as_mut()
    }
}

/// A helper process and the pipes to it. Dropping it kills and reaps the process.
struct Helper {
    child: Child,
    to: BufWriter<ChildStdin>,
    from: BufReader<ChildStdout>,
}

impl Helper {
    fn start(exe: &std::path::Path) -> io::Result<Helper> {
        // The helper needs nothing from the environment, which holds the worker's
        // secrets (the database URL, the signing keys).
        let mut child = Command::new(exe)
            .arg(HELPER_COMMAND)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let (Some(to), Some(from)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("the helper's pipes were not opened"));
        };
        Ok(Helper {
            child,
            to: BufWriter::new(to),
            from: BufReader::new(from),
        })
    }

    fn verify(&mut self, stored: Option<&str>, pass_code: &Secret) -> io::Result<Verdict> {
        write_field(&mut self.to, stored.map(str::as_bytes))?;
        write_field(&mut self.to, Some(pass_code.expose().as_bytes()))?;
        self.to.flush()?;
        let mut byte = [0u8; 1];
        self.from.read_exact(&mut byte)?;
        Verdict::from_byte(byte[0]).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the helper answered an unknown byte",
            )
        })
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of a verification on the pipe: its length as 4 little-endian bytes, then
/// its bytes; `u32::MAX` alone stands for no stored hash.
fn write_field(to: &mut impl Write, field: Option<&[u8]>) -> io::Result<()> {
    match field {
        None => to.write_all(&u32::MAX.to_le_bytes()),
        Some(bytes) => {
            let len = u32::try_from(bytes.len())
                .ok()
                .filter(|&len| len <= MAX_FIELD)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a field is too long for the helper",
                    )
                })?;
            to.write_all(&len.to_le_bytes())?;
            to.write_all(bytes)
        }
    }
}

/// The longest field a helper reads: far above any stored hash or pass code (requests
/// are at most 64 KiB), and a bound on what a corrupt length can make it allocate.
const MAX_FIELD: u32 = 1 << 20;

/// Reads a field written by [`write_field`]; `Ok(None)` for no stored hash.
fn read_field(from: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    from.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len == u32::MAX {
        return Ok(None);
    }
    if len > MAX_FIELD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a field is too long",
        ));
    }
    let mut bytes = vec![0u8; len as usize];
    from.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

/// The helper process (`tucano-auth pass-code-helper`): reads verifications from
/// standard input, answers each with one byte on standard output, and exits when
/// standard input closes, which happens when the worker exits, however it exits.
///
/// Why a process: the kernel groups processes by session for scheduling
/// (autogroups, on by default), gives every busy group a fair share of the CPU, and
/// applies a thread's nice value only inside its group. An Argon2 run on a nice-19
/// thread of the worker therefore still competed at full weight with RabbitMQ and
/// PostgreSQL whenever the worker's other threads were idle; each run held a core for
/// about 17 ms, and the echo ceiling's open-loop p99 stayed at 15-23 ms with 4 runs a
/// second beside it, against 4-8 ms without. In a session of its own whose group is
/// nice 19 the helper gets the CPU the others leave. Where there are no autogroups
/// (for example in a container's cgroup) it behaves like the nice-19 thread it
/// replaces.
pub fn serve_helper() -> io::Result<()> {
    // Each step is best effort: a helper that cannot lower its priority still
    // verifies correctly. The group's priority is lowered only once the helper has a
    // session, hence a group, of its own: the group it started in is the worker's.
    if rustix::process::setsid().is_ok() {
        let _ = std::fs::write("/proc/self/autogroup", "19");
    }
    lower_priority();
    let mut from = BufReader::new(io::stdin().lock());
    let mut to = io::stdout().lock();
    let mut blocks = Vec::new();
    loop {
        let stored = match read_field(&mut from) {
            Ok(stored) => stored,
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(err) => return Err(err),
        };
        let pass_code = read_field(&mut from)?.unwrap_or_default();
        // Not UTF-8 cannot be a PHC string, and neither can "": both are unreadable.
        let stored = stored.map(|bytes| String::from_utf8(bytes).unwrap_or_default());
        let verdict = check(stored.as_deref(), &pass_code, &mut blocks);
        to.write_all(&[verdict.to_byte()])?;
        to.flush()?;
    }
}

/// What `PasswordVerifier::verify_password` does, with the caller's memory blocks instead
/// of a fresh 19 MiB allocation per run. `None`, without computing anything, when
/// `stored` is outside the [`bounds`]; `None` too when its memory cannot be allocated
/// (a failed allocation is an answer, not an abort).
pub(crate) fn verify_into(pass_code: &[u8], stored: &str, blocks: &mut Vec<Block>) -> Option<bool> {
    let hash = bounds::usable(stored).ok()?;
    let count = hash.params.block_count();
    if blocks.len() < count {
        blocks.try_reserve_exact(count - blocks.len()).ok()?;
        blocks.resize(count, Block::default());
    }
    let mut out = [0u8; argon2::password_hash::Output::MAX_LENGTH];
    let out = &mut out[..hash.expected.len()];
    let computed = Argon2::new(hash.algorithm, hash.version, hash.params.clone())
        .hash_password_into_with_memory(pass_code, hash.salt(), out, &mut blocks[..count]);
    // Memory beyond the worker's own parameters (up to 256 MiB) is given back rather
    // than kept by a long-lived thread for the next run, which most likely needs less.
    if blocks.len() > Params::DEFAULT_M_COST as usize {
        blocks.truncate(Params::DEFAULT_M_COST as usize);
        blocks.shrink_to_fit();
    }
    computed.ok()?;
    // `Output` compares in constant time.
    Some(argon2::password_hash::Output::new(out).ok()? == hash.expected)
}

/// An Argon2id PHC string of `pass_code` with the crate's default parameters and a
/// random salt. CPU-heavy: call it from blocking code.
pub fn hash(pass_code: &str) -> anyhow::Result<String> {
    // A v4 UUID is 16 random bytes from the OS generator: a sound salt.
    let salt = SaltString::encode_b64(Uuid::new_v4().as_bytes())
        .map_err(|err| anyhow::anyhow!("could not encode a salt: {err}"))?;
    let hash = Argon2::default()
        .hash_password(pass_code.as_bytes(), &salt)
        .map_err(|err| anyhow::anyhow!("could not hash a pass code: {err}"))?;
    Ok(hash.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_pass_code_and_nothing_else() {
        let stored = hash("1234").unwrap();
        assert!(verify(Some(stored.clone()), &Secret::new("1234"))
            .await
            .unwrap());
        assert!(!verify(Some(stored), &Secret::new("4321")).await.unwrap());
    }

    #[tokio::test]
    async fn no_stored_hash_never_verifies() {
        assert!(!verify(None, &Secret::new("")).await.unwrap());
    }

    #[tokio::test]
    async fn a_refused_attempt_takes_about_as_long_as_a_verification() {
        let stored = hash("1234").unwrap();
        assert!(!verify(Some(stored), &Secret::new("0000")).await.unwrap());
        let typical = TYPICAL.get().expect("a measure after a verification");
        let started = Instant::now();
        pretend().await;
        assert!(started.elapsed() >= typical);
    }

    #[test]
    fn the_typical_time_follows_the_latest_verifications() {
        let typical = Typical(std::sync::atomic::AtomicU64::new(0));
        assert_eq!(typical.get(), None);
        typical.record(Duration::from_millis(80));
        assert_eq!(typical.get(), Some(Duration::from_millis(80)));
        for _ in 0..64 {
            typical.record(Duration::from_millis(16));
        }
        let now = typical.get().unwrap();
        assert!(now < Duration::from_millis(17), "{now:?}");
    }

    #[test]
    fn the_dummy_hash_is_within_the_bounds() {
        assert!(bounds::usable(DUMMY_HASH).is_ok());
    }

    #[test]
    fn reused_memory_verifies_exactly_as_the_argon2_crate_does() {
        use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
        use argon2::{Algorithm, Version};
        let mut blocks = Vec::new();
        // The least memory the bounds allow, another algorithm, two lanes.
        let light = Params::new(8192, 1, 2, None).unwrap();
        let light = Argon2::new(Algorithm::Argon2i, Version::V0x13, light)
            .hash_password(
                b"light",
                &SaltString::encode_b64(b"salt-salt-salt").unwrap(),
            )
            .unwrap()
            .to_string();
        for stored in [hash("1234").unwrap(), DUMMY_HASH.to_owned(), light] {
            let parsed = PasswordHash::new(&stored).unwrap();
            for code in ["1234", "4321", "", "light"] {
                let expected = Argon2::default()
                    .verify_password(code.as_bytes(), &parsed)
                    .is_ok();
                let ours = verify_into(code.as_bytes(), &stored, &mut blocks).unwrap();
                assert_eq!(ours, expected, "{stored} / {code}");
            }
        }
    }

    #[tokio::test]
    async fn an_unreadable_stored_hash_never_verifies() {
        let stored = "$argon2id$v=19$m=19456,t=2,p=1$bm90LWEtc2FsdA$bm90LWEtaGFzaA".to_owned();
        assert!(!verify(Some(stored), &Secret::new("1234")).await.unwrap());
    }

    #[test]
    fn a_hash_outside_the_bounds_is_never_computed_and_answers_in_one_verification() {
        let mut blocks = Vec::new();
        // 4 TiB of memory: computing it would abort the process; an hour of
        // iterations: it would hold the thread. Neither is started.
        for stored in [
            "$argon2id$v=19$m=4294967295,t=1,p=1$dHVjYW5vLWF1dGgtZHVtbXk$ZR5YvFeQ5SbhdHZo4GJy5fR5uR1LR9CG+LC1FHprhOY",
            "$argon2id$v=19$m=19456,t=4294967295,p=1$dHVjYW5vLWF1dGgtZHVtbXk$ZR5YvFeQ5SbhdHZo4GJy5fR5uR1LR9CG+LC1FHprhOY",
        ] {
            assert_eq!(verify_into(b"1234", stored, &mut blocks), None);
            assert_eq!(check(Some(stored), b"1234", &mut blocks), Verdict::Unreadable);
        }
        // The dummy run kept the worker's own amount of memory, no more.
        assert_eq!(blocks.len(), Params::DEFAULT_M_COST as usize);
    }

    #[test]
    fn memory_beyond_the_workers_own_is_given_back_after_a_run() {
        let big = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            Params::new(64 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"1234", &SaltString::encode_b64(b"0123456789ab").unwrap())
        .unwrap()
        .to_string();
        let mut blocks = Vec::new();
        assert_eq!(verify_into(b"1234", &big, &mut blocks), Some(true));
        assert!(blocks.capacity() <= Params::DEFAULT_M_COST as usize);
    }
}
