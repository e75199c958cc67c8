//! Who a certificate speaks for. Every certificate issued by `synapsectl certs` carries a URI
//! SAN `synapse://ROLE/NAME`; the hub reads it to know whether a peer is an agent (and which)
//! or a console user (an operator, who may change the fleet, or a viewer, who may only read
//! it), so that a certificate of one role cannot be used for another.

use std::fmt;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// URI scheme of identities in certificate SANs.
pub const SCHEME: &str = "synapse://";

/// What a certificate holder may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Hub,
    Agent,
    /// May use every RPC of the console.
    Operator,
    /// May use the console's read-only RPCs only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Hub => "hub",
            Role::Agent => "agent",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "hub" => Some(Role::Hub),
            "agent" => Some(Role::Agent),
            "operator" => Some(Role::Operator),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role and a name, e.g. `synapse://agent/edge-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    pub role: Role,
    pub name: String,
}

/// Why an identity could not be read or built.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("name {0:?} must be 1-128 characters of letters, digits, '.', '_' or '-'")]
    InvalidName(String),
    #[error("{0:?} is not a synapse identity URI (synapse://hub|agent|operator|viewer/NAME)")]
    InvalidUri(String),
    #[error("certificate does not parse: {0}")]
    Certificate(String),
    #[error("certificate carries no synapse:// identity in its subject alternative names")]
    Missing,
    #[error("the peer presented no certificate")]
    NoCertificate,
}

/// Checks that `name` can be an identity (and a file name).
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidName(name.to_owned()))
    }
}

impl PeerIdentity {
    pub fn new(role: Role, name: &str) -> Result<Self, IdentityError> {
        validate_name(name)?;
        Ok(Self {
            role,
            name: name.to_owned(),
        })
    }

    /// The SAN URI form.
    pub fn uri(&self) -> String {
        format!("{SCHEME}{}/{}", self.role, self.name)
    }

    pub fn parse_uri(uri: &str) -> Result<Self, IdentityError> {
        let invalid = || IdentityError::InvalidUri(uri.to_owned());
        let rest = uri.strip_prefix(SCHEME).ok_or_else(invalid)?;
        let (role, name) = rest.split_once('/').ok_or_else(invalid)?;
        let role = Role::parse(role).ok_or_else(invalid)?;
        Self::new(role, name)
    }

    /// Reads the identity from a DER certificate's SAN URIs.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::Certificate(e.to_string()))?
            .ok_or(IdentityError::Missing)?;
        san.value
            .general_names
            .iter()
            .find_map(|name| match name {
                GeneralName::URI(uri) if uri.starts_with(SCHEME) => Some(Self::parse_uri(uri)),
                _ => None,
            })
            .ok_or(IdentityError::Missing)?
    }
}

/// A certificate's serial number as lowercase hex without leading zeros (`0` for zero), the
/// form revocation lists name it in.
pub fn serial_hex(der: &[u8]) -> Result<String, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Certificate(e.to_string()))?;
    let hex: String = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let trimmed = hex.trim_start_matches('0');
    Ok(if trimmed.is_empty() { "0" } else { trimmed }.to_owned())
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uri_round_trips() {
        let id = PeerIdentity::new(Role::Agent, "edge-1").unwrap();
        assert_eq!(id.uri(), "synapse://agent/edge-1");
        assert_eq!(PeerIdentity::parse_uri(&id.uri()).unwrap(), id);
    }

    #[test]
    fn unknown_roles_and_path_names_are_refused() {
        assert!(PeerIdentity::parse_uri("synapse://root/x").is_err());
        assert_eq!(
            PeerIdentity::parse_uri("synapse://viewer/ops-ro")
                .unwrap()
                .role,
            Role::Viewer
        );
        assert!(PeerIdentity::parse_uri("synapse://agent/../etc").is_err());
        assert!(PeerIdentity::parse_uri("https://agent/x").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("a/b").is_err());
    }
}
