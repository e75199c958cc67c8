//! Readiness for systemd (`Type=notify`, sd_notify(3)): the agent says `READY=1` once its
//! eBPF telemetry is attached and the gateway listens, and `STOPPING=1` when it begins to
//! stop, as datagrams on the socket systemd names in `NOTIFY_SOCKET`.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) the notifier does nothing. A notification that
//! cannot be sent is logged and ignored: the agent serves whether or not systemd hears it.

use std::{
    io,
    os::unix::net::{SocketAddr, UnixDatagram},
    path::Path,
};

use tracing::warn;

/// Where notifications go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The socket systemd gave in `NOTIFY_SOCKET`: a path, or `@name` for an abstract one.
    /// Unset or empty means not started by systemd: notifications are dropped.
    pub fn from_env() -> Self {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(value) if !value.is_empty() => Self::at(Path::new(&value)).unwrap_or_else(|e| {
                warn!(
                    "NOTIFY_SOCKET={}: {e}; systemd will not hear from the agent",
                    value.display()
                );
                Self::none()
            }),
            _ => Self::none(),
        }
    }

    /// Notifications to the datagram socket at `path` (`@name` for the abstract namespace).
    pub fn at(path: &Path) -> io::Result<Self> {
        let address = match path.as_os_str().as_encoded_bytes() {
            [b'@', name @ ..] => abstract_address(name)?,
            _ => SocketAddr::from_pathname(path)?,
        };
        Ok(Self {
            target: Some((UnixDatagram::unbound()?, address)),
        })
    }

    /// A notifier that drops everything.
    pub fn none() -> Self {
        Self { target: None }
    }

    /// The agent serves: telemetry attached, gateway listening. `status` is shown by
    /// `systemctl status`.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// The agent stops its instances and flushes its store.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    fn send(&self, message: &str) {
        let Some((socket, address)) = &self.target else {
            return;
        };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), address) {
            warn!("telling systemd `{}`: {e}", message.replace('\n', " "));
        }
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(_: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn ready_and_stopping_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::at(&path).unwrap();
        notifier.ready("serving");
        notifier.stopping();
        assert_eq!(received(&systemd), "READY=1\nSTATUS=serving");
        assert_eq!(received(&systemd), "STOPPING=1\nSTATUS=stopping");
    }

    #[test]
    fn an_abstract_socket_is_named_with_an_at_sign() {
        let name = format!("synapse-notify-test-{}", std::process::id());
        let systemd = UnixDatagram::bind_addr(&abstract_address(name.as_bytes()).unwrap()).unwrap();
        Notifier::at(Path::new(&format!("@{name}")))
            .unwrap()
            .ready("up");
        assert_eq!(received(&systemd), "READY=1\nSTATUS=up");
    }

    #[test]
    fn a_vanished_socket_does_not_stop_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = Notifier::at(&dir.path().join("gone")).unwrap();
        notifier.ready("serving");
        Notifier::none().stopping();
    }
}
