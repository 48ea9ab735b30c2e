//! Free local ports.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// Ports handed out by this process, never handed out twice, so that tests
/// running in parallel threads do not race for the same port.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// How many times to ask the kernel for a port not handed out before.
const PORT_ATTEMPTS_MAX: usize = 64;

/// A port on 127.0.0.1 that was free a moment ago and that this process has
/// not handed out before.
pub fn free_port() -> Result<u16> {
    for _ in 0..PORT_ATTEMPTS_MAX {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
        let port = listener.local_addr().context("no local address")?.port();
        let mut seen = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.insert(port) {
            return Ok(port);
        }
    }
    bail!("no fresh free port after {PORT_ATTEMPTS_MAX} attempts")
}

/// A free `127.0.0.1:<port>` address.
pub fn free_addr() -> Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
}
