//! `keygen` and `jwks`, and where the JWT signing keys come from ([`JwtKeys`], which
//! `serve` shares).

use anyhow::bail;
use std::path::PathBuf;

use clap::Args;

use super::Outcome;
use crate::keys::KeySource;
use crate::secret::Secret;

/// The demo JWT secret `serve --demo` falls back to, loudly, when none is configured.
pub const DEMO_JWT_SECRET: &str = "tucano-auth-demo-secret-do-not-use-in-production";

/// Where the JWT signing keys come from (docs/protocol.md §9): one of the three.
#[derive(Args)]
pub struct JwtKeys {
    /// HS256 key shared with Tucano, at least 32 bytes.
    #[arg(long, env = "TUCANO_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// File holding the HS256 key (trailing newline ignored); re-read on SIGHUP.
    #[arg(long, env = "TUCANO_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// A JWK Set of private signing keys (HS256, ES256, EdDSA), the first of which
    /// signs and names its kid in the JWT header; re-read on SIGHUP.
    #[arg(long, env = "TUCANO_JWT_KEYS_FILE")]
    pub jwt_keys_file: Option<PathBuf>,
}

impl JwtKeys {
    /// Which source is configured; with none, the demo secret when `demo`, else an
    /// error saying what to set. The files are read by [`KeySource::load`].
    pub fn source(&self, demo: bool) -> anyhow::Result<KeySource> {
        // Checked here rather than by clap, whose message would name the flags
        // (`--jwt-secret`) when the user most likely set the variables.
        Ok(match (&self.jwt_secret, &self.jwt_secret_file, &self.jwt_keys_file) {
            (Some(_), Some(_), _) => bail!(
                "TUCANO_JWT_SECRET and TUCANO_JWT_SECRET_FILE (or --jwt-secret and --jwt-secret-file) are both set: set only one"
            ),
            (Some(_), None, Some(_)) => bail!(
                "TUCANO_JWT_KEYS_FILE and TUCANO_JWT_SECRET (or --jwt-keys-file and --jwt-secret) are both set: set only one; put the secret in the keys file as an HS256 key if both are needed"
            ),
            (None, Some(_), Some(_)) => bail!(
                "TUCANO_JWT_KEYS_FILE and TUCANO_JWT_SECRET_FILE (or --jwt-keys-file and --jwt-secret-file) are both set: set only one"
            ),
            (Some(value), None, None) => KeySource::Secret(Secret::new(value.clone())),
            (None, Some(path), None) => KeySource::SecretFile(path.clone()),
            (None, None, Some(path)) => KeySource::KeysFile(path.clone()),
            (None, None, None) if demo => {
                tracing::warn!("DEMO MODE: TUCANO_JWT_SECRET is not set, signing JWTs with the public demo secret; never use this in production");
                KeySource::Secret(Secret::new(DEMO_JWT_SECRET))
            }
            (None, None, None) => bail!(
                "TUCANO_JWT_SECRET is not set: set it (at least 32 bytes), TUCANO_JWT_SECRET_FILE or TUCANO_JWT_KEYS_FILE, or run `serve --demo`"
            ),
        })
    }
}

/// `keygen`: a new private key.
#[derive(Args)]
pub struct Keygen {
    /// The algorithm.
    #[arg(long, value_enum, ignore_case = true)]
    pub alg: crate::keys::generate::Alg,
    /// The key's id, shown in the header of the JWTs it signs and in the JWKS.
    #[arg(long)]
    pub kid: String,
}

/// `jwks`: the public keys of the configuration `serve` would use.
#[derive(Args)]
pub struct Jwks {
    /// The signing keys.
    #[command(flatten)]
    pub jwt: JwtKeys,
}

/// Runs `keygen`: prints the new key.
pub fn keygen(args: &Keygen) -> anyhow::Result<Outcome> {
    anyhow::ensure!(!args.kid.trim().is_empty(), "--kid must not be empty");
    println!("{}", crate::keys::generate::generate(args.alg, &args.kid));
    Ok(Outcome::Done)
}

/// Runs `jwks`: prints the public set (empty with symmetric keys only).
pub fn jwks(args: &Jwks) -> anyhow::Result<Outcome> {
    let keys = args.jwt.source(false)?.load()?;
    let set = keys
        .public_set()
        .unwrap_or_else(|| serde_json::json!({"keys": []}));
    println!("{set}");
    Ok(Outcome::Done)
}
