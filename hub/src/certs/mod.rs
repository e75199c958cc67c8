//! The fleet's certificate authority: `synapsectl certs init` creates it and
//! `synapsectl certs issue` signs hub, agent, operator and viewer certificates (rcgen, ECDSA
//! P-256). Each certificate carries its identity as a `synapse://ROLE/NAME` URI SAN (and its
//! role as the subject's OU); a hub certificate also carries its DNS names and loopback
//! addresses. Private keys are written with mode 0600 and never overwritten. [`revocation`] is the hub's revocation list, and
//! [`revoke`] (`synapsectl certs revoke`) appends a certificate to it.

mod files;
pub mod revocation;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use synapse_link::identity::{IdentityError, PeerIdentity, Role};

pub use files::write_private;

/// File names of the CA inside its directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";

/// Why a certificate could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path} already exists; refusing to overwrite a key")]
    Exists { path: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("{0:?} is not a valid DNS name for a certificate")]
    DnsName(String),
}

/// Paths of an issued certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub role: Role,
    pub name: String,
    /// Extra DNS names (hub certificates).
    pub dns: Vec<String>,
    /// Extra IP addresses (hub certificates).
    pub ips: Vec<IpAddr>,
}

fn this_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

/// Validity from January 1st of this year for `years` years.
fn validity(params: &mut CertificateParams, years: i32) {
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

/// Creates a CA in `dir` (`ca.pem`, `ca.key`), valid for 10 years.
pub fn init(dir: &Path) -> Result<Issued, CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let issued = Issued {
        cert: dir.join(CA_CERT),
        key: dir.join(CA_KEY),
    };
    files::refuse_existing(&issued.key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "SynapseStream fleet CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, 10);
    let cert = params.self_signed(&key)?;
    files::write_private(&issued.key, key.serialize_pem().as_bytes())?;
    files::write_public(&issued.cert, cert.pem().as_bytes())?;
    Ok(issued)
}

/// Issues a certificate signed by the CA in `ca_dir`, written to `out_dir/NAME.pem` and
/// `out_dir/NAME.key`, valid for 2 years.
pub fn issue(ca_dir: &Path, out_dir: &Path, request: &IssueRequest) -> Result<Issued, CertError> {
    let identity = PeerIdentity::new(request.role, &request.name)?;
    let issued = Issued {
        cert: out_dir.join(format!("{}.pem", request.name)),
        key: out_dir.join(format!("{}.key", request.name)),
    };
    files::refuse_existing(&issued.key)?;
    let ca_pem = files::read_text(&ca_dir.join(CA_CERT))?;
    let ca_key = KeyPair::from_pem(&files::read_text(&ca_dir.join(CA_KEY))?)?;
    let ca = CertificateParams::from_ca_cert_pem(&ca_pem)?.self_signed(&ca_key)?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, request.name.as_str());
    dn.push(DnType::OrganizationalUnitName, request.role.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(identity.uri().try_into()?)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if request.role == Role::Hub {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
        let mut dns = vec![request.name.clone(), "localhost".to_owned()];
        dns.extend(request.dns.iter().cloned());
        for name in dns {
            let san = name
                .clone()
                .try_into()
                .map_err(|_| CertError::DnsName(name))?;
            params.subject_alt_names.push(SanType::DnsName(san));
        }
        let mut ips: Vec<IpAddr> =
            vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
        ips.extend(request.ips.iter().copied());
        params
            .subject_alt_names
            .extend(ips.into_iter().map(SanType::IpAddress));
    }
    validity(&mut params, 2);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    std::fs::create_dir_all(out_dir).map_err(|source| CertError::Write {
        path: out_dir.display().to_string(),
        source,
    })?;
    files::write_private(&issued.key, key.serialize_pem().as_bytes())?;
    files::write_public(&issued.cert, cert.pem().as_bytes())?;
    Ok(issued)
}

/// Appends the certificate in PEM file `cert` to the revocation list at `list` (created if missing), by
/// serial or by fingerprint, with its identity as a comment. Returns the line written.
pub fn revoke(list: &Path, cert: &Path, by_fingerprint: bool) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::io::Write;
    let ders = synapse_link::tls::load_certs(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?;
    let der = ders
        .first()
        .with_context(|| format!("{} holds no certificate", cert.display()))?;
    let reference = revocation::CertRef::from_der(der)?;
    let who = PeerIdentity::from_cert_der(der)
        .map(|id| id.to_string())
        .unwrap_or_else(|_| "no synapse identity".into());
    let entry = if by_fingerprint {
        format!("sha256:{}", reference.sha256)
    } else {
        reference.serial.clone()
    };
    let line = format!("{entry}  # {who} ({})\n", cert.display());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(list)
        .with_context(|| format!("cannot open {}", list.display()))?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", list.display()))?;
    Ok(line.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn issued_certificates_carry_their_identity_and_private_keys_are_0600() {
        let dir = tempfile::tempdir().unwrap();
        let ca = init(dir.path()).unwrap();
        let request = IssueRequest {
            role: Role::Agent,
            name: "edge-1".into(),
            dns: vec![],
            ips: vec![],
        };
        let issued = issue(dir.path(), dir.path(), &request).unwrap();
        for key in [&ca.key, &issued.key] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let der = synapse_link::tls::load_certs(&issued.cert).unwrap();
        let identity = PeerIdentity::from_cert_der(&der[0]).unwrap();
        assert_eq!(identity, PeerIdentity::new(Role::Agent, "edge-1").unwrap());
    }

    #[test]
    fn existing_keys_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path()).unwrap();
        assert!(matches!(init(dir.path()), Err(CertError::Exists { .. })));
    }
}
