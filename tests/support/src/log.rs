//! What a test binary logs, captured, so that a test can check that no
//! secret or personal value is ever logged.
//!
//! One global subscriber per test binary: a thread-scoped one misses the
//! events of a server's tasks on other threads, and events whose callsites
//! another test thread registered first.

use std::sync::{Arc, Mutex, OnceLock};

/// Starts capturing everything this test binary logs at `level` and below
/// (idempotent: the level of the first call holds for the whole binary).
pub fn capture(level: tracing::Level) {
    captured(level);
}

/// Everything captured so far, as text (empty before [`capture`]).
pub fn captured_text() -> String {
    let log = LOG.get().map(|buf| buf.lock().unwrap_or_else(|e| e.into_inner()).clone()).unwrap_or_default();
    String::from_utf8_lossy(&log).into_owned()
}

static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

fn captured(level: tracing::Level) -> &'static Arc<Mutex<Vec<u8>>> {
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("install the test subscriber");
        buf
    })
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
