//! The locked-down NATS configs the tests run, made by the deployment's own
//! generators (`deploy/nats/gen-secure.sh`, one server;
//! `deploy/nats/cluster/gen-cluster.sh`, a cluster's nodes), and the logins
//! those generators make: each user's NKey seed and the CA of the servers'
//! certificates.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use crate::nats::NatsUser;
use crate::services::{AgencyOptions, HubOptions};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the generator `script` (a path below the repository's root) with
/// output directory `out` and `args`, with the workspace's `mpp-registrar`
/// to make the keys and the harness's nats-server to check the configs.
pub fn run_generator(script: &str, out: &Path, args: &[String]) -> Result<()> {
    let script = repo_root().join(script);
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(&script).arg(out).args(args).env("MPP_REGISTRAR", crate::bins::workspace_bin("mpp-registrar")?);
    if let Ok(exe) = crate::bins::nats_server() {
        cmd.env("MPP_NATS_SERVER", exe);
    }
    let output = cmd.output().with_context(|| format!("running {}", script.display()))?;
    ensure!(
        output.status.success(),
        "{} failed: {}{}",
        script.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The logins a generator wrote into its output directory: `creds/<user>.nk`
/// and `tls/ca.pem`.
#[derive(Debug, Clone)]
pub struct Logins {
    dir: PathBuf,
}

impl Logins {
    /// The logins in the generator's output directory `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned() }
    }

    /// The CA every client checks the servers' certificates against.
    pub fn tls_ca(&self) -> PathBuf {
        self.dir.join("tls").join("ca.pem")
    }

    /// The seed file the generator keeps for `user`.
    pub fn seed_file(&self, user: &str) -> PathBuf {
        self.dir.join("creds").join(format!("{user}.nk"))
    }

    /// `user` logging in with its NKey seed, over TLS checked against the CA.
    pub fn user(&self, user: &str) -> Result<NatsUser> {
        let file = self.seed_file(user);
        let seed = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        ensure!(seed.trim().starts_with("SU"), "{} holds no NKey user seed", file.display());
        Ok(NatsUser {
            user: user.to_owned(),
            nkey_seed: seed.trim().to_owned(),
            tls_ca_file: Some(self.tls_ca()),
        })
    }

    /// Writes a fresh NKey for `user` where the generator keeps it (it keeps
    /// an existing one): the login.
    pub fn write_nkey(&self, user: &str) -> Result<NatsUser> {
        let (seed, public) = mpp_edge::nats::generate_nkey();
        let file = self.seed_file(user);
        std::fs::create_dir_all(self.dir.join("creds"))?;
        std::fs::write(&file, format!("{seed}\n"))?;
        std::fs::write(file.with_extension("nk.pub"), format!("{public}\n"))?;
        Ok(NatsUser { user: user.to_owned(), nkey_seed: seed, tls_ca_file: Some(self.tls_ca()) })
    }

    /// A hub replica logging in as `user` over TLS, reading through the
    /// durable consumer `consumer` (the hub's default when `None`).
    pub fn hub_options(&self, user: &str, consumer: Option<&str>) -> HubOptions {
        HubOptions {
            nats_login: Some((user.to_owned(), self.seed_file(user))),
            nats_tls_ca_file: Some(self.tls_ca()),
            consumer_name: consumer.map(str::to_owned),
            ..HubOptions::default()
        }
    }

    /// An agency service of region `region` logging in as `user` (over TLS
    /// when `tls`), which may not create the stream (`--skip-stream-setup`).
    pub fn agency_options(&self, user: &str, region: &str, tls: bool) -> AgencyOptions {
        let mut options = AgencyOptions::region(region);
        options.extra_args = vec![
            "--nats-user".to_owned(),
            user.to_owned(),
            "--nats-nkey-file".to_owned(),
            self.seed_file(user).display().to_string(),
        ];
        if tls {
            options.extra_args.extend(["--nats-tls-ca-file".to_owned(), self.tls_ca().display().to_string()]);
        }
        options.extra_args.push("--skip-stream-setup".to_owned());
        // The companion front office that opens its walk-in citizens' cases
        // logs in as the front office's user, where the configuration has
        // one (deploy/nats/secure.conf: `frontoffice`).
        let front = "frontoffice";
        if self.seed_file(front).exists() {
            options.companion_args = vec![
                "--nats-user".to_owned(),
                front.to_owned(),
                "--nats-nkey-file".to_owned(),
                self.seed_file(front).display().to_string(),
                "--skip-stream-setup".to_owned(),
            ];
            if tls {
                options
                    .companion_args
                    .extend(["--nats-tls-ca-file".to_owned(), self.tls_ca().display().to_string()]);
            }
        }
        options
    }
}
