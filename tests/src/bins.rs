//! Finding the executables the tests run.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};

/// The directory holding the workspace's binaries: the test executable lives
/// in `target/<profile>/deps/`, the binaries in `target/<profile>/`.
pub fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the test executable's path")?;
    let mut dir =
        exe.parent().map(Path::to_path_buf).ok_or_else(|| anyhow!("test executable has no parent"))?;
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// The path of a workspace binary, e.g. `mpp-hub`, checked to exist.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let path = target_dir()?.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "binary {} is missing: run `cargo build --workspace --bins` first (tests/run-all.sh does)",
            path.display()
        );
    }
    Ok(path)
}

/// The service binaries the deployment files run besides `mpp-hub`: the
/// front office and the agencies.
pub const SERVICE_BINARIES: [&str; 8] = [
    "mpp-frontoffice",
    "mpp-dukcapil",
    "mpp-imigrasi",
    "mpp-bpn",
    "mpp-pln",
    "mpp-pdam",
    "mpp-bank",
    "mpp-dpmptsp",
];

/// The nats-server executable (`$MPP_NATS_SERVER`, else on `PATH`).
pub use mpp_test_support::nats::nats_server_exe as nats_server;

/// Runs `mpp-hub audit ARGS` (log level `warn`), checks it succeeded; its
/// stdout.
pub fn hub_audit(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(workspace_bin("mpp-hub")?)
        .arg("audit")
        .args(args)
        .env("MPP_LOG", "warn")
        .output()
        .context("running mpp-hub audit")?;
    ensure!(out.status.success(), "mpp-hub audit {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
