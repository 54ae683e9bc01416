//! TLS for the broker and database connections (docs/protocol.md §10), with rustls and
//! its ring provider: no OpenSSL at build time.
//!
//! The broker's and the database's settings differ (a CA file and a client certificate
//! for `amqps://`; `sslmode` and `sslrootcert` for PostgreSQL), but both come down to
//! the same three choices made here: which roots, how much of the server's certificate
//! to check, and which certificate to show.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// The crypto provider of every connection: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots that server certificates must chain to: those of `ca_file` (PEM) if given,
/// else the system's. `what` names the setting in errors (`AMQP_CA_FILE`, say).
pub fn roots(ca_file: Option<&Path>, what: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|err| pem_error(err, path))
                .with_context(|| format!("cannot read {what} {}", path.display()))?;
            anyhow::ensure!(
                !certificates.is_empty(),
                "{what} {} holds no PEM certificate",
                path.display()
            );
            for certificate in certificates {
                roots.add(certificate).with_context(|| {
                    format!(
                        "{what} {} holds a certificate that does not parse",
                        path.display()
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for certificate in found.certs {
                // A system root that does not parse is skipped, as every TLS client does.
                let _ = roots.add(certificate);
            }
            anyhow::ensure!(
                !roots.is_empty(),
                "the system has no CA certificates to check the server's against: set {what}"
            );
        }
    }
    Ok(roots)
}

/// A client certificate and its key, shown to servers that ask for one.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The client certificate of two optional settings, `what` naming them in errors:
    /// none if neither is set, an error if only one is.
    pub fn load_pair(
        cert_file: Option<&Path>,
        key_file: Option<&Path>,
        what: (&str, &str),
    ) -> anyhow::Result<Option<Identity>> {
        match (cert_file, key_file) {
            (Some(cert), Some(key)) => Identity::load(cert, key, what).map(Some),
            (None, None) => Ok(None),
            _ => anyhow::bail!("{} and {} go together: set both or neither", what.0, what.1),
        }
    }

    /// Reads the PEM certificate chain in `cert_file` and the PEM private key in
    /// `key_file`; `what` names the two settings in errors.
    pub fn load(cert_file: &Path, key_file: &Path, what: (&str, &str)) -> anyhow::Result<Identity> {
        let chain = CertificateDer::pem_file_iter(cert_file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|err| pem_error(err, cert_file))
            .with_context(|| format!("cannot read {} {}", what.0, cert_file.display()))?;
        anyhow::ensure!(
            !chain.is_empty(),
            "{} {} holds no PEM certificate",
            what.0,
            cert_file.display()
        );
        // Never the key's bytes in a message: only the file's name.
        let key = PrivateKeyDer::from_pem_file(key_file)
            .map_err(|err| pem_error(err, key_file))
            .with_context(|| {
                format!(
                    "cannot read a PEM private key from {} {}",
                    what.1,
                    key_file.display()
                )
            })?;
        Ok(Identity { chain, key })
    }
}

/// How much of the server's certificate is checked.
pub enum Verify {
    /// Its chain to `roots`, and that it names the host connected to.
    Full(RootCertStore),
    /// Its chain to `roots` only (PostgreSQL's `sslmode=verify-ca`).
    ChainOnly(RootCertStore),
    /// Nothing: the connection is encrypted, not authenticated (`sslmode=require`).
    Nothing,
}

/// A client configuration checking the server's certificate as `verify` says and
/// showing `identity` if the server asks for a certificate.
pub fn client_config(verify: Verify, identity: Option<Identity>) -> anyhow::Result<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("the TLS provider offers no protocol version")?;
    let builder = match verify {
        Verify::Full(roots) => builder.with_root_certificates(roots),
        Verify::ChainOnly(roots) => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("cannot check certificates against the given roots")?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
        }
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked { provider })),
    };
    match identity {
        Some(Identity { chain, key }) => builder
            .with_client_auth_cert(chain, key)
            .context("the client certificate does not match its private key"),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Why a TLS handshake failed, if `err` (or an error it wraps) is a TLS error: the
/// server's certificate refused, ours refused by the server, or no TLS spoken at the
/// other end. A setting to fix, not an outage to wait out.
pub fn handshake_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(rustls) = err.downcast_ref::<rustls::Error>() {
            return certificate_problem(rustls);
        }
        // io::Error hides what it wraps from `source()`.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(rustls) = inner.downcast_ref::<rustls::Error>() {
                return certificate_problem(rustls);
            }
        }
        next = err.source();
    }
    None
}

fn certificate_problem(err: &rustls::Error) -> Option<String> {
    // Every rustls error is a TLS failure; the common ones get words an operator knows.
    match err {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => Some(
            "the server's certificate is not signed by a trusted CA (unknown issuer)".to_owned(),
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => Some("the server's certificate does not name the host connected to".to_owned()),
        rustls::Error::InvalidCertificate(other) => {
            Some(format!("the server's certificate is refused: {other:?}"))
        }
        rustls::Error::AlertReceived(alert) => Some(format!(
            "the server refused the TLS handshake ({alert:?}): does it want a client certificate?"
        )),
        rustls::Error::NoCertificatesPresented => {
            Some("the server presented no certificate".to_owned())
        }
        rustls::Error::InvalidMessage(_) => {
            Some("the server does not speak TLS there (is it a plain-text port?)".to_owned())
        }
        other => Some(format!("the TLS handshake failed: {other}")),
    }
}

/// A PEM error with the file's name, as rustls-pki-types gives none.
fn pem_error(err: rustls::pki_types::pem::Error, path: &Path) -> anyhow::Error {
    match err {
        rustls::pki_types::pem::Error::Io(io) => anyhow::Error::new(io),
        rustls::pki_types::pem::Error::NoItemsFound => {
            anyhow::anyhow!("{} holds no PEM item of the expected kind", path.display())
        }
        other => anyhow::anyhow!("{} is not valid PEM: {other:?}", path.display()),
    }
}

/// Checks the chain and nothing of the name (`sslmode=verify-ca`).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Takes any certificate, still checking that the server holds its key
/// (`sslmode=prefer` and `require`, as libpq without a root certificate).
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
