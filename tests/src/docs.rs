//! Docs generated from the running code (`docs/CONFIGURATION.md`,
//! `docs/METRICS.md`): one check that the file on disk is what the code
//! says, rewritten instead under `MPP_BLESS=1`.

use anyhow::{ensure, Context, Result};

/// Compares `docs/<name>` with `want`; with `MPP_BLESS=1` writes `want`
/// there instead. `source` names what the file is generated from and
/// `test` the e2e test filter that regenerates it.
pub fn check_generated(name: &str, want: &str, source: &str, test: &str) -> Result<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs").join(name);
    if std::env::var("MPP_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, want).with_context(|| format!("writing {}", path.display()))?;
        return Ok(());
    }
    let got = std::fs::read_to_string(&path).with_context(|| format!("{} is missing", path.display()))?;
    ensure!(
        got == want,
        "{} is out of date with {source}; run `MPP_BLESS=1 cargo test -p mpp-tests --test e2e {test}`",
        path.display()
    );
    Ok(())
}
