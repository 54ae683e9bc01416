//! The helper process (`tucano-auth pass-code-helper`) and its wire protocol: the
//! worker writes a verification as two length-prefixed fields on the helper's
//! standard input ([`write_field`]), the helper answers one byte per verification.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::hashing::{check, Verdict};
use crate::secret::Secret;

/// The executable whose [`HELPER_COMMAND`] serves verifications; unset, every
/// verification runs on the verifier threads.
pub(super) static HELPER: OnceLock<PathBuf> = OnceLock::new();

/// The hidden subcommand of `tucano-auth` that runs [`serve_helper`].
pub const HELPER_COMMAND: &str = "pass-code-helper";

/// How long a verifier thread runs verifications itself after a helper could not be
/// started, before it tries again.
pub(super) const HELPER_RETRY: Duration = Duration::from_secs(10);

/// Makes every verifier thread hand its runs to a helper process, `exe
/// pass-code-helper`, started the first time it is needed. The first call wins.
pub fn use_helper_process(exe: PathBuf) {
    let _ = HELPER.set(exe);
}

/// Gives the calling thread (a verifier thread, or a helper's only thread) the lowest
/// scheduling priority (nice 19).
///
/// Worker, broker and database share few cores, and an Argon2 run holds a core for
/// tens of milliseconds: at normal priority the kernel gave it fair turns with the
/// runtime threads, and every other request in flight waited behind it (open-loop p99
/// 24.5 ms with 0.1 % pass-code requests, 6.8 ms without; 13.4 ms at nice 19). Nice
/// only ranks threads within their scheduling group, though: against RabbitMQ and
/// PostgreSQL it takes a helper's group of its own ([`serve_helper`]).
pub(super) fn lower_priority() {
    if let Err(err) =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        tracing::warn!(error = %err, "cannot lower the priority of a pass-code verifier thread");
    }
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

/// A helper process and the pipes to it. Dropping it kills and reaps the process.
pub(super) struct Helper {
    child: Child,
    to: BufWriter<ChildStdin>,
    from: BufReader<ChildStdout>,
}

impl Helper {
    pub(super) fn start(exe: &std::path::Path) -> io::Result<Helper> {
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

    pub(super) fn verify(
        &mut self,
        stored: Option<&str>,
        pass_code: &Secret,
    ) -> io::Result<Verdict> {
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
