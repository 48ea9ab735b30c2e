//! Needs PyYAML, systemd-analyze and kubectl: `tests/run-all.sh` puts
//! PyYAML into the project's `.venv` (used through `MPP_PYTHON`) and installs
//! systemd where it can; kubectl (no Debian package) is used when present,
//! and without it the kustomize build prints one line saying it was skipped.
//!
//! The deployment files under `deploy/`, checked with the tools that run
//! here without a cluster or a container daemon:
//!
//! - every YAML file parses (python3 with PyYAML; the test fails when it
//!   cannot run), and the Kubernetes objects are
//!   complete: probes, resource limits, persistent volumes, secrets mounted
//!   as files; `kubectl kustomize deploy/k8s` builds offline (`kubectl apply
//!   --dry-run=client` needs an API server, so it is not run);
//! - every NATS configuration passes `nats-server -t` and syncs always;
//!   every one has users and TLS but the named exceptions, and Kubernetes
//!   restricts the NATS ports with NetworkPolicies;
//! - the systemd units pass `systemd-analyze verify` (with the ExecStart
//!   paths pointed at the built binaries: the units name the install paths);
//! - the witness (`mpp-witness`) is deployed by every kind of file (unit,
//!   Compose service, StatefulSet with a NetworkPolicy letting only the hub
//!   and monitoring reach it), and each kind names the witness's key to the
//!   hub;
//! - every flag and `MPP_*` variable the files pass to a binary appears in
//!   that binary's `--help` (so the files cannot drift from the code);
//! - the container build files are multi-stage and identical.
//!
//! Not run here: `docker build` (no daemon), a real cluster.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use mpp_tests::bins::SERVICE_BINARIES;
use serde_json::Value;

/// The repository's `deploy/` (the tests crate sits at `<root>/tests`; the
/// target directory may be anywhere, e.g. `CARGO_TARGET_DIR`).
fn deploy_dir() -> Result<PathBuf> {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("no workspace above the tests crate")?;
    Ok(root.join("deploy"))
}

/// Files under `dir` (recursively) whose name ends with one of `exts`.
fn files(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if exts.iter().any(|x| p.to_string_lossy().ends_with(x)) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every document of a YAML file, as JSON (through python3 + PyYAML).
fn yaml_docs(path: &Path) -> Result<Vec<Value>> {
    // The project's virtual environment (tests/run-all.sh), else python3.
    let python = std::env::var("MPP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, json, yaml\nprint(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
        ])
        .arg(path)
        .output()
        .context("running python3 (with PyYAML) to parse YAML")?;
    if !out.status.success() {
        bail!("{} does not parse as YAML: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    }
    match serde_json::from_slice(&out.stdout)? {
        Value::Array(docs) => Ok(docs),
        other => bail!("unexpected parser output {other}"),
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// One invocation found in a deployment file: binary, arguments, `MPP_*`
/// variables set for it, and where it was found.
#[derive(Debug, Clone)]
struct Invocation {
    binary: String,
    args: Vec<String>,
    env: Vec<String>,
    origin: String,
}

fn pod_invocations(doc: &Value, origin: &str, out: &mut Vec<Invocation>) {
    let containers = &doc["spec"]["template"]["spec"]["containers"];
    for c in containers.as_array().into_iter().flatten() {
        let args = strs(&c["args"]);
        let Some((bin, rest)) = args.split_first() else { continue };
        if !bin.starts_with("mpp-") {
            continue;
        }
        let env =
            c["env"].as_array().into_iter().flatten().filter_map(|e| e["name"].as_str()).map(str::to_owned);
        out.push(Invocation {
            binary: bin.clone(),
            args: rest.to_vec(),
            env: env.filter(|n| n.starts_with("MPP_")).collect(),
            origin: origin.to_owned(),
        });
    }
}

fn compose_invocations(doc: &Value, origin: &str, out: &mut Vec<Invocation>) {
    for (name, svc) in doc["services"].as_object().into_iter().flatten() {
        let cmd = strs(&svc["command"]);
        let Some((bin, rest)) = cmd.split_first() else { continue };
        if !bin.starts_with("mpp-") {
            continue;
        }
        let env = svc["environment"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        out.push(Invocation {
            binary: bin.clone(),
            args: rest.to_vec(),
            env,
            origin: format!("{origin} service {name}"),
        });
    }
}

/// `ExecStart=` of a unit, continuation lines joined, split on whitespace.
fn exec_start(text: &str) -> Option<Vec<String>> {
    let joined = text.replace("\\\n", " ");
    let line = joined.lines().find_map(|l| l.trim().strip_prefix("ExecStart="))?;
    let line = line
        .strip_prefix("/bin/sh -c '")
        .map_or(line, |l| l.trim_start_matches("exec ").trim_end_matches('\''));
    Some(line.split_whitespace().map(str::to_owned).collect())
}

fn unit_invocations(path: &Path, out: &mut Vec<Invocation>) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    let Some(words) = exec_start(&text) else { return Ok(()) };
    let Some((exe, rest)) = words.split_first() else { return Ok(()) };
    let bin = exe.rsplit('/').next().unwrap_or(exe);
    // Variables named in the unit's comments as settings for the binary.
    let env: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("#").map(str::trim))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .chain(
            text.lines()
                .filter_map(|l| l.strip_prefix("Environment="))
                .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_owned())),
        )
        .filter(|k| k.starts_with("MPP_") && k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    let bins: Vec<String> = if bin == "mpp-%i" {
        SERVICE_BINARIES.iter().map(|s| (*s).to_owned()).collect()
    } else if bin.starts_with("mpp-") {
        vec![bin.to_owned()]
    } else {
        return Ok(());
    };
    for b in bins {
        out.push(Invocation {
            binary: b,
            args: rest.iter().map(|a| a.replace("%i", "x")).collect(),
            env: env.clone(),
            origin: path.display().to_string(),
        });
    }
    Ok(())
}

/// `--help` of a binary (for `mpp-hub` and `mpp-witness`, of the subcommand
/// the arguments name).
fn help(binary: &str, args: &[String]) -> Result<String> {
    let exe = mpp_tests::bins::workspace_bin(binary)?;
    let mut cmd_args: Vec<String> = Vec::new();
    if binary == "mpp-hub" || binary == "mpp-witness" {
        cmd_args.extend(args.iter().take_while(|a| !a.starts_with('-')).cloned());
    }
    cmd_args.push("--help".to_owned());
    let out = Command::new(&exe).args(&cmd_args).output()?;
    ensure!(out.status.success(), "{binary} {cmd_args:?} failed");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn flags(args: &[String]) -> BTreeSet<String> {
    args.iter().filter(|a| a.starts_with("--")).map(|a| a.split('=').next().unwrap_or(a).to_owned()).collect()
}

/// Needs PyYAML (`MPP_PYTHON`); kubectl when present (else one SKIPPED line).
#[test]
fn every_yaml_file_parses_and_the_kubernetes_objects_are_complete() -> Result<()> {
    let deploy = deploy_dir()?;
    let yamls = files(&deploy, &[".yaml", ".yml"])?;
    ensure!(yamls.len() >= 6, "too few YAML files under {}: {yamls:?}", deploy.display());
    for y in &yamls {
        yaml_docs(y)?;
    }
    // The parser does refuse broken YAML.
    let tmp = tempfile::tempdir()?;
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "a: [1, 2\nb: {")?;
    ensure!(yaml_docs(&bad).is_err(), "broken YAML must not parse");

    let mut docs = Vec::new();
    for y in files(&deploy.join("k8s"), &[".yaml"])? {
        if y.ends_with("kustomization.yaml") {
            continue;
        }
        docs.extend(yaml_docs(&y)?.into_iter().map(|d| (y.display().to_string(), d)));
    }
    let mut workloads = Vec::new();
    for (file, d) in &docs {
        for field in ["apiVersion", "kind"] {
            ensure!(d[field].is_string(), "{file}: an object without {field}");
        }
        ensure!(d["metadata"]["name"].is_string(), "{file}: an object without metadata.name");
        let kind = d["kind"].as_str().unwrap_or("");
        if kind != "StatefulSet" && kind != "Deployment" {
            continue;
        }
        let name = d["metadata"]["name"].as_str().unwrap_or("").to_owned();
        workloads.push((kind.to_owned(), name.clone()));
        let spec = &d["spec"]["template"]["spec"];
        for c in spec["containers"].as_array().context("containers")? {
            for probe in ["livenessProbe", "readinessProbe"] {
                ensure!(c[probe].is_object(), "{file} {name}: container without {probe}");
                // A probe naming a port must name one the container declares.
                if let Some(port) = c[probe]["httpGet"]["port"].as_str() {
                    let declared =
                        c["ports"].as_array().into_iter().flatten().any(|p| p["name"].as_str() == Some(port));
                    ensure!(declared, "{file} {name}: {probe} on undeclared port {port:?}");
                }
            }
            for r in ["cpu", "memory"] {
                ensure!(c["resources"]["limits"][r].is_string(), "{file} {name}: no {r} limit");
                ensure!(c["resources"]["requests"][r].is_string(), "{file} {name}: no {r} request");
            }
        }
        let uses_secret = spec["volumes"].as_array().into_iter().flatten().any(|v| v["secret"].is_object());
        let persistent = d["spec"]["volumeClaimTemplates"].is_array()
            || spec["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| v["persistentVolumeClaim"].is_object());
        ensure!(
            persistent,
            "{file} {name}: no persistent volume (hub log, NATS store and outboxes must survive)"
        );
        if name != "mpp-nats" {
            ensure!(uses_secret, "{file} {name}: secrets must be mounted as files");
        }
        if kind == "Deployment" {
            ensure!(
                d["spec"]["strategy"]["type"] == "Recreate",
                "{file} {name}: one outbox writer at a time"
            );
        }
    }
    // The stream is created at 3 replicas by a Job, never at 1 by a service.
    let stream_job = docs.iter().any(|(_, d)| d["kind"] == "Job" && d.to_string().contains("--replicas 3"));
    ensure!(stream_job, "no Job creating MPP_EVENTS at 3 replicas");
    let has = |k: &str, n: &str| workloads.iter().any(|(kind, name)| kind == k && name == n);
    ensure!(
        has("StatefulSet", "mpp-nats") && has("StatefulSet", "mpp-hub") && has("StatefulSet", "mpp-witness"),
        "workloads: {workloads:?}"
    );
    for b in SERVICE_BINARIES {
        ensure!(has("Deployment", b), "no Deployment {b}: {workloads:?}");
    }

    // kustomize builds offline, where kubectl is installed (Debian has no
    // package of it; the project cannot fetch it from its own registries).
    let out = match Command::new("kubectl").args(["kustomize"]).arg(deploy.join("k8s")).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("SKIPPED kubectl kustomize deploy/k8s: kubectl is not installed (the other checks ran)");
            return Ok(());
        }
        Err(e) => return Err(e).context("running kubectl kustomize"),
    };
    ensure!(out.status.success(), "kubectl kustomize deploy/k8s: {}", String::from_utf8_lossy(&out.stderr));
    let built = tmp.path().join("built.yaml");
    std::fs::write(&built, &out.stdout)?;
    let built = yaml_docs(&built)?;
    ensure!(built.iter().all(|d| d["metadata"]["namespace"] == "mpp" || d["kind"] == "Namespace"));
    ensure!(
        built.len() == docs.len() - 1,
        "kustomize built {} objects of {} (all but the example secret)",
        built.len(),
        docs.len()
    );
    Ok(())
}

/// Values for the `$VAR` references of a NATS config (the Compose and
/// Kubernetes configs take NKey public keys and TLS file paths from the
/// environment): the TLS files given for `*_CERT_FILE`, `*_KEY_FILE` and
/// `*_CA_FILE`, a fresh NKey user public key for `NATS_NKEY_*`, a
/// placeholder for every other name.
fn config_env(text: &str, cert: &str, key: &str, ca: &str) -> Vec<(String, String)> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for part in line.split('$').skip(1) {
            let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `$JS.API...` and `$POD_NAME`-like names only: subjects start
            // with "$JS." inside quotes, which are not references.
            if !name.is_empty() && name != "JS" && name.chars().all(|c| !c.is_ascii_lowercase()) {
                names.insert(name);
            }
        }
    }
    names
        .into_iter()
        .map(|n| {
            let v = if n.ends_with("_CERT_FILE") {
                cert.to_owned()
            } else if n.ends_with("_KEY_FILE") {
                key.to_owned()
            } else if n.ends_with("_CA_FILE") {
                ca.to_owned()
            } else if n.starts_with("NATS_NKEY_") {
                mpp_edge::nats::generate_nkey().1
            } else {
                format!("p-placeholder-{}", n.to_ascii_lowercase())
            };
            (n, v)
        })
        .collect()
}

fn nats_check(conf: &Path, env: &[(&str, &str)]) -> Result<()> {
    let text = std::fs::read_to_string(conf)?;
    ensure!(text.contains("sync_interval: always"), "{}: JetStream must sync always", conf.display());
    let mut cmd = Command::new(mpp_tests::bins::nats_server()?);
    cmd.arg("-t").arg("-c").arg(conf);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    ensure!(
        out.status.success(),
        "nats-server -t -c {}: {}{}",
        conf.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A server certificate and key made by deploy/nats/gen-secure.sh (its
/// throw-away CA) under `dir`: their paths.
fn throwaway_certificate(dir: &Path) -> Result<(String, String)> {
    let out = dir.join("gen-secure");
    mpp_tests::natsgen::run_generator("deploy/nats/gen-secure.sh", &out, &[])?;
    let tls = out.join("tls");
    Ok((tls.join("server.pem").display().to_string(), tls.join("server.key").display().to_string()))
}

#[test]
fn every_nats_config_passes_nats_server_t() -> Result<()> {
    let deploy = deploy_dir()?;
    let tmp = tempfile::tempdir()?;
    // A certificate and key for the templates' TLS fields.
    let (cert, key) = throwaway_certificate(tmp.path())?;
    let ca = Path::new(&cert).with_file_name("ca.pem").display().to_string();
    let env_for = |text: &str| config_env(text, &cert, &key, &ca);
    let mut checked = 0;
    for conf in files(&deploy, &[".conf"])? {
        let text = std::fs::read_to_string(&conf)?;
        if text.contains('@') {
            // A template (secure.conf): fill every @PLACEHOLDER@.
            let mut filled = String::new();
            for (i, part) in text.split('@').enumerate() {
                let value = if i % 2 == 0 {
                    part.to_owned()
                } else {
                    match part {
                        "STORE_DIR" => "/tmp/mpp-nats-check".to_owned(),
                        "LISTEN" => "127.0.0.1:4222".to_owned(),
                        "HTTP" => "127.0.0.1:8222".to_owned(),
                        "TLS_CERT" => cert.clone(),
                        "TLS_KEY" => key.clone(),
                        // An NKey field needs a real public key.
                        p if p.starts_with("NKEY_") => mpp_edge::nats::generate_nkey().1,
                        _ => "placeholder-value".to_owned(),
                    }
                };
                filled.push_str(&value);
            }
            let p = tmp.path().join(conf.file_name().context("name")?);
            std::fs::write(&p, filled)?;
            nats_check(&p, &[])?;
        } else {
            let env = env_for(&text);
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            nats_check(&conf, &env)?;
        }
        checked += 1;
    }
    // The cluster node template, filled by its generator (as the e2e
    // cluster harness does) for the default three nodes.
    let cluster = tmp.path().join("cluster");
    mpp_tests::natsgen::run_generator("deploy/nats/cluster/gen-cluster.sh", &cluster, &[])?;
    for node in ["mpp-nats-1", "mpp-nats-2", "mpp-nats-3"] {
        nats_check(&cluster.join(format!("{node}.conf")), &[])?;
        checked += 1;
    }
    // The Kubernetes ConfigMap's config.
    for d in yaml_docs(&deploy.join("k8s/nats.yaml"))? {
        if let Some(conf) = d["data"]["nats.conf"].as_str() {
            let p = tmp.path().join("k8s-nats.conf");
            std::fs::write(&p, conf)?;
            let mut env = env_for(conf);
            env.retain(|(k, _)| k != "POD_NAME");
            env.push(("POD_NAME".to_owned(), "mpp-nats-0".to_owned()));
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            nats_check(&p, &env)?;
            checked += 1;
        }
    }
    ensure!(checked >= 5, "only {checked} NATS configs checked");
    // nats-server -t does refuse a broken config.
    let bad = tmp.path().join("bad.conf");
    std::fs::write(&bad, "jetstream { sync_interval: always\n listen: [\n")?;
    ensure!(nats_check(&bad, &[]).is_err(), "a broken NATS config must fail nats-server -t");
    Ok(())
}

/// NATS configurations without users or TLS, each with why. The test fails
/// when one of them is locked down (take it off the list) and when any
/// other config is open.
const OPEN_NATS_CONFIGS: [(&str, &str); 1] =
    [("nats/local.conf", "the local stack's default mode, on 127.0.0.1 only (up.sh --secure-nats locks it)")];

/// A NATS config's text without its comment lines.
fn config_code(conf: &str) -> String {
    conf.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n")
}

/// Whether a NATS config text is locked down: every user an NKey (no
/// password anywhere), TLS on the client port and, when it has routes,
/// mutually verified TLS on them (a CA to check the other nodes against).
fn locked_down(conf: &str) -> bool {
    let code = config_code(conf);
    let (client, cluster) = match code.find("cluster {") {
        Some(at) => code.split_at(at),
        None => (code.as_str(), ""),
    };
    let routes_tls = cluster.is_empty() || {
        let before_routes = &cluster[..cluster.find("routes").unwrap_or(cluster.len())];
        before_routes.contains("tls {") && before_routes.contains("ca_file")
    };
    let users = code.matches("permissions:").count();
    code.contains("authorization {")
        && users > 0
        && code.matches("nkey:").count() == users
        && !code.contains("password")
        && !code.contains("user:")
        && client.contains("tls {")
        && routes_tls
}

#[test]
fn every_nats_config_has_users_and_tls_but_the_named_exceptions() -> Result<()> {
    let deploy = deploy_dir()?;
    let mut configs: Vec<(String, String)> = Vec::new();
    for conf in files(&deploy, &[".conf", ".template"])? {
        let name = conf.strip_prefix(&deploy)?.display().to_string();
        configs.push((name, std::fs::read_to_string(&conf)?));
    }
    for d in yaml_docs(&deploy.join("k8s/nats.yaml"))? {
        if let Some(conf) = d["data"]["nats.conf"].as_str() {
            configs.push(("k8s/nats.yaml".to_owned(), conf.to_owned()));
        }
    }
    ensure!(configs.iter().any(|(n, _)| n == "nats/secure.conf"), "no nats/secure.conf among {configs:?}");
    for (name, text) in &configs {
        match OPEN_NATS_CONFIGS.iter().find(|(open, _)| open == name) {
            Some((_, why)) => {
                ensure!(!locked_down(text), "{name} is locked down now: take it off OPEN_NATS_CONFIGS");
                println!("open NATS config {name}: {why}");
            }
            None => ensure!(locked_down(text), "{name}: a NATS config without users (authorization) or TLS"),
        }
    }
    for (open, _) in OPEN_NATS_CONFIGS {
        ensure!(configs.iter().any(|(n, _)| n == open), "{open} is gone: take it off OPEN_NATS_CONFIGS");
    }
    Ok(())
}

/// The user an NKey line names: `"@NKEY_<user>@"` in secure.conf's
/// template, `"{{NKEY_<user>}}"` in the cluster node template,
/// `$NATS_NKEY_<USER>` (from the environment) in the Compose and
/// Kubernetes configs, where `_` stands for `-`.
fn nkey_user(value: &str) -> Result<String> {
    let value = value.trim();
    if let Some(name) = value.strip_prefix("\"@NKEY_") {
        return Ok(name.split('@').next().unwrap_or("").to_owned());
    }
    if let Some(name) = value.strip_prefix("\"{{NKEY_") {
        return Ok(name.split('}').next().unwrap_or("").to_owned());
    }
    if let Some(name) = value.strip_prefix("$NATS_NKEY_") {
        let name: String = name.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        return Ok(name.to_ascii_lowercase().replace('_', "-"));
    }
    bail!("an NKey that names no user: {value:?}")
}

/// Each NKey user's `permissions` block of a NATS config, whitespace and
/// comment lines removed, by user name (in the order of the config).
fn user_permissions(conf: &str) -> Result<Vec<(String, String)>> {
    let code = config_code(conf);
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("nkey:") {
        let after = &rest[at + "nkey:".len()..];
        let name = nkey_user(after.lines().next().unwrap_or(""))?;
        let perm = after.find("permissions:").context("a user without permissions")?;
        let block = &after[perm..];
        let open = block.find('{').context("permissions without a block")?;
        let mut depth = 0usize;
        let mut end = None;
        for (i, c) in block[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(open + i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.context("unbalanced permissions block")?;
        let text: String = block[open..end].chars().filter(|c| !c.is_whitespace()).collect();
        out.push((name, text));
        rest = &after[perm + end..];
    }
    Ok(out)
}

/// The participants' NATS users (and tokens files): the front office and
/// the seven agencies.
const PARTICIPANTS: [&str; 8] =
    ["frontoffice", "dukcapil", "imigrasi", "bpn", "pln", "pdam", "bank", "dpmptsp"];

#[test]
fn the_locked_down_configs_grant_what_secure_conf_grants() -> Result<()> {
    let deploy = deploy_dir()?;
    let secure = user_permissions(&std::fs::read_to_string(deploy.join("nats/secure.conf"))?)?;
    let reference = |user: &str| secure.iter().find(|(u, _)| u == user).map(|(_, p)| p.clone());
    let hub = reference("hub").context("secure.conf has no user hub")?;
    let mut configs = vec![(
        "compose/nats.conf".to_owned(),
        std::fs::read_to_string(deploy.join("compose/nats.conf"))?,
        vec!["hub"],
    )];
    for d in yaml_docs(&deploy.join("k8s/nats.yaml"))? {
        if let Some(conf) = d["data"]["nats.conf"].as_str() {
            configs.push(("k8s/nats.yaml".to_owned(), conf.to_owned(), vec!["mpp-hub-0", "mpp-hub-1"]));
        }
    }
    ensure!(configs.len() == 2, "the Kubernetes NATS config is missing");
    configs.push((
        "nats/cluster/node.conf.template".to_owned(),
        std::fs::read_to_string(deploy.join("nats/cluster/node.conf.template"))?,
        vec!["hub", "hub-2"],
    ));
    for (name, conf, hubs) in &configs {
        let users = user_permissions(conf)?;
        for p in PARTICIPANTS.iter().chain(hubs.iter()) {
            ensure!(users.iter().any(|(u, _)| u == p), "{name}: no NATS user {p}");
        }
        for (user, perms) in &users {
            let want = match (reference(user), user.as_str()) {
                (Some(p), _) => p,
                // A hub replica named after its pod (and consumer): the
                // "hub" block of secure.conf with its names.
                (None, u) if u.starts_with("mpp-hub-") => hub
                    .replace("_INBOX.hub.", &format!("_INBOX.{u}."))
                    .replace("MPP_EVENTS.mpp-hub", &format!("MPP_EVENTS.{u}")),
                // The Kubernetes stream Job and the cluster template's
                // bootstrap user: stream info and create only.
                (None, "stream-setup") => {
                    let publish = perms.split("subscribe").next().unwrap_or("");
                    ensure!(
                        ["mpp.events", "CONSUMER", "DELETE", "UPDATE", "PURGE", ">", "*"]
                            .iter()
                            .all(|s| !publish.contains(s)),
                        "{name}: stream-setup may do more than create the stream: {perms}"
                    );
                    continue;
                }
                (None, u) => bail!("{name}: user {u} is not in secure.conf"),
            };
            ensure!(
                perms == &want,
                "{name}: user {user} is granted\n{perms}\nbut secure.conf grants\n{want}"
            );
        }
        ensure!(locked_down(conf), "{name}: not locked down (NKeys only, TLS on client and route ports)");
    }
    // The comparison does notice a change.
    let mut changed = std::fs::read_to_string(deploy.join("compose/nats.conf"))?;
    changed = changed.replacen("mpp.events.bank.>", "mpp.events.>", 1);
    let bank = user_permissions(&changed)?.into_iter().find(|(u, _)| u == "bank").context("bank")?;
    ensure!(Some(bank.1) != reference("bank"), "a widened permission went unnoticed");
    Ok(())
}

/// Secrets that more than one participant may have, and why. Anything else
/// mounted into two participants' workloads (or a participant's and the
/// hub's) fails the test below.
const SHARED_SECRETS: [(&str, &str); 2] = [
    (
        "pin-pepper",
        "the province's PIN pepper: the front office, the only service that issues PINs \
         (agencies' walk-in citizens' cases are opened there), makes the PIN verifiers the hub \
         checks with it; one value per province by design (docs/DESIGN.md)",
    ),
    ("tls-ca.pem", "the CA certificate: public, every client trusts it (NATS and gRPC)"),
];

/// Secret names mounted into more than one of `mounts`' workloads but not
/// in [`SHARED_SECRETS`], each with the workloads.
fn shared_secrets(mounts: &[(String, BTreeSet<String>)]) -> Vec<String> {
    let mut problems = Vec::new();
    let all: BTreeSet<&String> = mounts.iter().flat_map(|(_, s)| s).collect();
    for secret in all {
        let holders: Vec<&str> =
            mounts.iter().filter(|(_, s)| s.contains(secret)).map(|(w, _)| w.as_str()).collect();
        if holders.len() > 1 && !SHARED_SECRETS.iter().any(|(name, _)| name == secret) {
            problems.push(format!("{secret} is mounted into {holders:?}"));
        }
    }
    problems
}

/// The participants' and the hub's secrets, each participant's own tokens
/// file and NATS NKey seed, as Kubernetes and Compose mount them. The NATS
/// server (given every public key) and the stream Job are not
/// participants.
#[test]
fn no_secret_is_mounted_into_two_participants() -> Result<()> {
    let deploy = deploy_dir()?;
    let is_workload = |w: &str| w == "hub" || PARTICIPANTS.contains(&w);
    // Kubernetes: the keys of every secret volume and secretKeyRef.
    let mut k8s: Vec<(String, BTreeSet<String>)> = Vec::new();
    for y in files(&deploy.join("k8s"), &[".yaml"])? {
        for d in yaml_docs(&y)? {
            let name = d["metadata"]["name"].as_str().unwrap_or("").trim_start_matches("mpp-").to_owned();
            let spec = &d["spec"]["template"]["spec"];
            if !is_workload(&name) || spec.is_null() {
                continue;
            }
            let mut keys = BTreeSet::new();
            for v in spec["volumes"].as_array().into_iter().flatten() {
                for item in v["secret"]["items"].as_array().into_iter().flatten() {
                    keys.insert(item["key"].as_str().context("an item without key")?.to_owned());
                }
                ensure!(
                    v["secret"].is_null() || v["secret"]["items"].is_array(),
                    "{name}: a secret volume without items mounts every key"
                );
            }
            let containers = spec["containers"].as_array().into_iter().flatten();
            for c in containers.chain(spec["initContainers"].as_array().into_iter().flatten()) {
                for e in c["env"].as_array().into_iter().flatten() {
                    if let Some(k) = e["valueFrom"]["secretKeyRef"]["key"].as_str() {
                        keys.insert(k.to_owned());
                    }
                }
            }
            k8s.push((name, keys));
        }
    }
    // Compose: each service's secrets by source, and its env files.
    let mut compose: Vec<(String, BTreeSet<String>)> = Vec::new();
    let doc = yaml_docs(&deploy.join("compose/compose.yaml"))?.remove(0);
    for (name, svc) in doc["services"].as_object().context("services")? {
        if !is_workload(name) {
            continue;
        }
        let mut keys = BTreeSet::new();
        for s in svc["secrets"].as_array().into_iter().flatten() {
            let source = s.as_str().or_else(|| s["source"].as_str()).context("a secret without source")?;
            let file = doc["secrets"][source]["file"].as_str().context("a secret without file")?;
            keys.insert(file.rsplit('/').next().unwrap_or(file).to_owned());
        }
        ensure!(svc["env_file"].is_null(), "{name}: an env file holds secrets of the NATS server only");
        compose.push((name.clone(), keys));
    }
    for (what, mounts) in [("deploy/k8s", &k8s), ("deploy/compose", &compose)] {
        ensure!(mounts.len() == PARTICIPANTS.len() + 1, "{what}: workloads {mounts:?}");
        let problems = shared_secrets(mounts);
        ensure!(problems.is_empty(), "{what}: secrets shared by participants:\n{}", problems.join("\n"));
        for p in PARTICIPANTS {
            let keys = &mounts.iter().find(|(w, _)| w == p).context("participant")?.1;
            for own in [format!("tokens-{p}"), format!("nats-nkey-{p}"), format!("tls-key-{p}")] {
                ensure!(keys.contains(&own), "{what}: {p} does not mount {own} ({keys:?})");
            }
            // Only the front office (and the hub) holds the PIN pepper; an
            // agency holds its own token at the front office instead.
            if p != "frontoffice" {
                ensure!(!keys.contains("pin-pepper"), "{what}: agency {p} mounts the PIN pepper");
                let own = format!("front-office-token-{p}");
                ensure!(keys.contains(&own), "{what}: {p} does not mount {own} ({keys:?})");
            }
        }
        for (secret, why) in SHARED_SECRETS {
            println!("{what}: {secret} shared on purpose: {why}");
        }
    }
    // The check does catch a shared tokens file.
    let shared = vec![
        ("dukcapil".to_owned(), BTreeSet::from(["tokens".to_owned(), "pin-pepper".to_owned()])),
        ("bank".to_owned(), BTreeSet::from(["tokens".to_owned(), "pin-pepper".to_owned()])),
    ];
    ensure!(shared_secrets(&shared).len() == 1, "a shared tokens file went unnoticed");
    Ok(())
}

#[test]
fn kubernetes_lets_only_its_pods_reach_the_nats_ports() -> Result<()> {
    let deploy = deploy_dir()?;
    let kustomization = std::fs::read_to_string(deploy.join("k8s/kustomization.yaml"))?;
    ensure!(
        kustomization.contains("network-policies.yaml"),
        "kustomization.yaml does not include network-policies.yaml"
    );
    let policies: Vec<Value> = yaml_docs(&deploy.join("k8s/network-policies.yaml"))?
        .into_iter()
        .filter(|d| d["kind"] == "NetworkPolicy")
        .collect();
    // Clients: the hub and every participant (the pods are named like the
    // binaries), and the stream set-up Job.
    let clients: Vec<&str> = std::iter::once("mpp-hub").chain(SERVICE_BINARIES).collect();
    for (port, expect) in [(4222, "clients"), (6222, "nats"), (8222, "monitoring")] {
        let found: Vec<&Value> = policies
            .iter()
            .filter(|p| {
                p["spec"]["ingress"].as_array().is_some_and(|rules| {
                    rules
                        .iter()
                        .all(|r| r["ports"].as_array().is_some_and(|ps| ps.iter().all(|x| x["port"] == port)))
                })
            })
            .collect();
        ensure!(found.len() == 1, "want one NetworkPolicy for port {port} alone, found {}", found.len());
        let p = found[0];
        ensure!(p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "mpp-nats", "{p}");
        ensure!(p["spec"]["policyTypes"].to_string().contains("Ingress"), "{p}: not an ingress policy");
        let from = &p["spec"]["ingress"][0]["from"];
        ensure!(from.as_array().is_some_and(|f| f.len() == 1), "{p}: one peer selector expected");
        let selector = &from[0]["podSelector"];
        ensure!(from[0]["namespaceSelector"].is_null() && from[0]["ipBlock"].is_null(), "{p}: pods only");
        match expect {
            "clients" => {
                let allowed = strs(&selector["matchExpressions"][0]["values"]);
                for c in &clients {
                    ensure!(allowed.iter().any(|a| a == c), "port 4222: {c} may not connect ({allowed:?})");
                }
                for a in &allowed {
                    ensure!(
                        clients.contains(&a.as_str()) || a == "mpp-nats-stream",
                        "port 4222: {a} is neither hub nor participant"
                    );
                }
            }
            "nats" => ensure!(selector["matchLabels"]["app.kubernetes.io/name"] == "mpp-nats", "{p}"),
            _ => ensure!(selector["matchLabels"]["app.kubernetes.io/component"] == "monitoring", "{p}"),
        }
    }
    Ok(())
}

#[test]
fn kubernetes_lets_only_the_hub_and_monitoring_reach_the_witness() -> Result<()> {
    let policies: Vec<Value> = yaml_docs(&deploy_dir()?.join("k8s/network-policies.yaml"))?
        .into_iter()
        .filter(|d| d["kind"] == "NetworkPolicy")
        .filter(|d| d["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "mpp-witness")
        .collect();
    ensure!(policies.len() == 1, "want one NetworkPolicy selecting mpp-witness, found {}", policies.len());
    let p = &policies[0];
    ensure!(p["spec"]["policyTypes"] == serde_json::json!(["Ingress"]), "{p}: not an ingress policy");
    let rules = p["spec"]["ingress"].as_array().context("ingress")?;
    ensure!(rules.len() == 1, "{p}: one rule expected");
    ensure!(
        rules[0]["ports"] == serde_json::json!([{"protocol": "TCP", "port": 8090}]),
        "{p}: port 8090 only"
    );
    let mut peers: Vec<String> = Vec::new();
    for from in rules[0]["from"].as_array().context("from")? {
        ensure!(from["namespaceSelector"].is_null() && from["ipBlock"].is_null(), "{p}: pods only");
        let labels = from["podSelector"]["matchLabels"].as_object().context("matchLabels")?;
        peers.extend(labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))));
    }
    peers.sort();
    ensure!(
        peers == ["app.kubernetes.io/component=monitoring", "app.kubernetes.io/name=mpp-hub"],
        "the witness is reachable from {peers:?}"
    );
    // The Service's port is the one the policy opens.
    let svc = yaml_docs(&deploy_dir()?.join("k8s/witness.yaml"))?
        .into_iter()
        .find(|d| d["kind"] == "Service")
        .context("no Service in witness.yaml")?;
    ensure!(svc["spec"]["ports"][0]["port"] == 8090, "{svc}");
    Ok(())
}

/// Needs systemd-analyze (else one SKIPPED line).
#[test]
fn the_systemd_units_pass_systemd_analyze_verify() -> Result<()> {
    let units = deploy_dir()?.join("systemd");
    let tmp = tempfile::tempdir()?;
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin)?;
    #[cfg(unix)]
    {
        for b in SERVICE_BINARIES.iter().chain(["mpp-hub", "mpp-witness"].iter()) {
            std::os::unix::fs::symlink(mpp_tests::bins::workspace_bin(b)?, bin.join(b))?;
        }
        std::os::unix::fs::symlink(mpp_tests::bins::nats_server()?, bin.join("nats-server"))?;
    }
    let mut names = Vec::new();
    for u in files(&units, &[".service", ".timer"])? {
        let text = std::fs::read_to_string(&u)?.replace("/usr/local/bin/", &format!("{}/", bin.display()));
        let name = u.file_name().context("name")?.to_string_lossy().into_owned();
        // A template is verified through one instance.
        let name = name.replace("@.", "@dukcapil.");
        std::fs::write(tmp.path().join(&name), text)?;
        names.push(name);
    }
    ensure!(names.len() >= 6 && names.iter().any(|n| n == "mpp-witness.service"), "units: {names:?}");
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        println!("SKIPPED systemd-analyze verify: systemd-analyze is not installed (tests/run-all.sh installs it as root)");
        return Ok(());
    }
    let verify = |names: &[String]| -> Result<(bool, String)> {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .args(names.iter().map(|n| format!("./{n}")))
            .current_dir(tmp.path())
            .output()
            .context("running systemd-analyze")?;
        Ok((out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned()))
    };
    let (ok, err) = verify(&names)?;
    ensure!(ok && err.trim().is_empty(), "systemd-analyze verify {names:?}: {err}");
    // It does refuse a unit with an unknown key and a missing binary.
    std::fs::write(tmp.path().join("bad.service"), "[Service]\nExecStart=/nonexistent/mpp-x\nBogus=1\n")?;
    let (ok, err) = verify(&["bad.service".to_owned()])?;
    ensure!(!ok && err.contains("Bogus"), "a bad unit passed: {err}");
    Ok(())
}

/// Every invocation of an `mpp-*` binary in the Kubernetes, Compose and
/// systemd files.
fn invocations() -> Result<Vec<Invocation>> {
    let deploy = deploy_dir()?;
    let mut inv = Vec::new();
    for y in files(&deploy.join("k8s"), &[".yaml"])? {
        for d in yaml_docs(&y)? {
            pod_invocations(&d, &y.display().to_string(), &mut inv);
        }
    }
    for y in files(&deploy.join("compose"), &[".yaml"])? {
        for d in yaml_docs(&y)? {
            compose_invocations(&d, &y.display().to_string(), &mut inv);
        }
    }
    for u in files(&deploy.join("systemd"), &[".service"])? {
        unit_invocations(&u, &mut inv)?;
    }
    Ok(inv)
}

/// Whether an invocation sets `flag` or its variable `env`.
fn sets(i: &Invocation, flag: &str, env: &str) -> bool {
    i.args.iter().any(|a| a == flag || a.starts_with(&format!("{flag}="))) || i.env.iter().any(|e| e == env)
}

/// Every process that connects to NATS in the deployment files (the hub
/// and every participant's service, in Kubernetes, Compose and systemd)
/// logs in with its own NKey seed file and checks the server's certificate
/// against a CA; no file gives a NATS password any more.
#[test]
fn every_nats_client_logs_in_with_an_nkey_over_tls() -> Result<()> {
    let inv = invocations()?;
    let clients: Vec<&Invocation> = inv
        .iter()
        .filter(|i| {
            SERVICE_BINARIES.contains(&i.binary.as_str())
                || (i.binary == "mpp-hub" && i.args.first().is_some_and(|a| a == "serve"))
        })
        .collect();
    let mut problems = Vec::new();
    for i in &clients {
        let what = format!("{}: {}", i.origin, i.binary);
        for (flag, env) in [
            ("--nats-user", "MPP_NATS_USER"),
            ("--nats-nkey-file", "MPP_NATS_NKEY_FILE"),
            ("--nats-tls-ca-file", "MPP_NATS_TLS_CA_FILE"),
        ] {
            if !sets(i, flag, env) {
                problems.push(format!("{what} sets neither {flag} nor {env}"));
            }
        }
        if sets(i, "--nats-password-file", "MPP_NATS_PASSWORD_FILE") {
            problems.push(format!("{what} logs in with a NATS password"));
        }
    }
    ensure!(problems.is_empty(), "NATS logins:\n{}", problems.join("\n"));
    // Each kind of file runs the hub and all eight participants.
    for origin in ["deploy/k8s/", "deploy/compose/", "deploy/systemd/"] {
        let n = clients.iter().filter(|i| i.origin.contains(origin)).count();
        // The hub and every participant.
        ensure!(n > SERVICE_BINARIES.len(), "{origin}: only {n} NATS clients found");
    }
    for f in files(&deploy_dir()?, &[".yaml", ".sh", ".service", ".conf", ".template"])? {
        let text = std::fs::read_to_string(&f)?;
        ensure!(
            !text.contains("nats-password") && !text.contains("NATS_PASSWORD"),
            "{} still names a NATS password",
            f.display()
        );
    }
    Ok(())
}

#[test]
fn every_flag_in_the_deployment_files_exists_in_the_binaries() -> Result<()> {
    let inv = invocations()?;
    let binaries: BTreeSet<&str> = inv.iter().map(|i| i.binary.as_str()).collect();
    ensure!(
        ["mpp-hub", "mpp-witness"].iter().chain(SERVICE_BINARIES.iter()).all(|b| binaries.contains(b)),
        "{binaries:?}"
    );
    // The witness is run by every kind of deployment file, and the hub is
    // told of witnesses in each.
    for (kind, origin) in
        [("k8s", "deploy/k8s/"), ("compose", "deploy/compose/"), ("systemd", "deploy/systemd/")]
    {
        ensure!(
            inv.iter().any(|i| i.binary == "mpp-witness" && i.origin.contains(origin)),
            "no mpp-witness in the {kind} files"
        );
        let hub_told = inv.iter().any(|i| {
            i.binary == "mpp-hub"
                && i.origin.contains(origin)
                && (i.env.iter().any(|e| e == "MPP_WITNESS_KEYS")
                    || i.args.iter().any(|a| a == "--witness-key"))
        });
        ensure!(hub_told, "the hub's {kind} files name no witness key");
    }
    let mut problems = Vec::new();
    let mut checked = 0;
    for i in &inv {
        let h = help(&i.binary, &i.args)?;
        for f in flags(&i.args) {
            checked += 1;
            if !h.contains(&format!("{f} ")) && !h.contains(&format!("{f}\n")) {
                problems.push(format!("{}: {} has no flag {f}", i.origin, i.binary));
            }
        }
        for e in &i.env {
            checked += 1;
            if !h.contains(&format!("env: {e}=")) {
                problems.push(format!("{}: {} reads no variable {e}", i.origin, i.binary));
            }
        }
    }
    ensure!(problems.is_empty(), "flags drifted:\n{}", problems.join("\n"));
    ensure!(checked > 100, "only {checked} flags checked");
    // The check does catch a flag that does not exist.
    let h = help("mpp-hub", &["serve".to_owned()])?;
    ensure!(h.contains("--operator-tokens-file ") && !h.contains("--no-such-flag"));
    Ok(())
}

#[test]
fn the_container_build_files_are_multi_stage_and_identical() -> Result<()> {
    let dir = deploy_dir()?.join("container");
    let a = std::fs::read_to_string(dir.join("Containerfile"))?;
    let b = std::fs::read_to_string(dir.join("Dockerfile"))?;
    ensure!(a == b, "Containerfile and Dockerfile differ");
    let stages = a.lines().filter(|l| l.starts_with("FROM ")).count();
    ensure!(stages >= 2, "{stages} stages");
    ensure!(a.contains("--locked") && a.contains("USER 10001"));
    for bin in SERVICE_BINARIES.iter().chain(["mpp-hub"].iter()) {
        ensure!(a.contains(bin), "the image lacks {bin}");
    }
    Ok(())
}

/// The Kubernetes files carry the Prometheus rules as a ConfigMap whose data
/// is deploy/prometheus/mpp-rules.yaml byte for byte, and kustomize
/// includes it.
#[test]
fn the_prometheus_rules_configmap_is_the_rules_file() -> Result<()> {
    let dir = deploy_dir()?;
    let rules = std::fs::read_to_string(dir.join("prometheus/mpp-rules.yaml"))?;
    let docs = yaml_docs(&dir.join("k8s/prometheus-rules.yaml"))?;
    ensure!(docs.len() == 1, "one ConfigMap expected, found {} documents", docs.len());
    let map = &docs[0];
    ensure!(map["kind"] == "ConfigMap" && map["metadata"]["name"] == "mpp-prometheus-rules", "{map}");
    ensure!(
        map["data"]["mpp-rules.yaml"].as_str() == Some(rules.as_str()),
        "deploy/k8s/prometheus-rules.yaml differs from deploy/prometheus/mpp-rules.yaml: regenerate it with \
         python3 deploy/prometheus/configmap.py > deploy/k8s/prometheus-rules.yaml"
    );
    let kustomization = std::fs::read_to_string(dir.join("k8s/kustomization.yaml"))?;
    ensure!(kustomization.contains("- prometheus-rules.yaml"), "kustomization.yaml leaves the rules out");
    Ok(())
}
