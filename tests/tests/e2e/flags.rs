//! Every flag of every binary and subcommand has its `MPP_*` environment
//! variable, as `--help` shows it (`[env: MPP_…]`), so that a container or a
//! systemd unit can configure any of them without a command line; and every
//! binary has the one logging flag.
//!
//! The binaries' `--help` is read as a user would; subcommands are followed
//! from the `Commands:` section, so a new subcommand or flag is covered
//! without touching this test.

use std::process::Command;

use anyhow::{ensure, Context, Result};
use mpp_tests::bins::workspace_bin;

/// Every binary the project ships or runs (the agencies by name).
fn binaries() -> Vec<&'static str> {
    let tools = ["mpp-sim", "mpp-bench", "mpp-faults", "mpp-witness", "mpp-registrar"];
    std::iter::once("mpp-hub").chain(mpp_tests::bins::SERVICE_BINARIES).chain(tools).collect()
}

/// Subcommands nested deeper than this are not followed (a bound on the
/// walk; the deepest today is `mpp-hub audit verify`, depth 2).
const SUBCOMMAND_DEPTH_MAX: usize = 4;

/// Flags that are about the command line itself, not configuration.
const NOT_CONFIGURATION: [&str; 2] = ["--help", "--version"];

/// The variables `mpp-hub serve` shares with its audit and admin
/// subcommands, because they mean the same to both.
const SHARED_WITH_SERVE: [&str; 2] = ["MPP_LOG_FORMAT", "MPP_CALENDARS_DIR"];

/// One flag as `--help` shows it.
#[derive(Debug)]
struct Flag {
    /// The command line that shows it, e.g. `mpp-hub audit verify`.
    command: String,
    /// The flag, e.g. `--data-dir`.
    name: String,
    /// Its environment variable, if the help names one.
    env: Option<String>,
    /// Its default, if the help names one.
    default: Option<String>,
    /// The first paragraph of its description.
    meaning: String,
}

fn help(binary: &str, path: &[String]) -> Result<String> {
    let exe = workspace_bin(binary)?;
    let out = Command::new(&exe)
        .args(path)
        .arg("--help")
        .env_remove("MPP_LOG_FORMAT")
        .output()
        .with_context(|| format!("running {} {} --help", exe.display(), path.join(" ")))?;
    ensure!(
        out.status.success(),
        "{binary} {} --help failed: {}",
        path.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The names under `Commands:` (without clap's own `help`).
fn subcommands(text: &str) -> Vec<String> {
    let Some(start) = text.find("\nCommands:\n") else { return Vec::new() };
    text[start + "\nCommands:\n".len()..]
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The flags of one help text: each option block starts with an indented
/// `-x, --name` or `--name`; its `[env: NAME=…]` may be on any line of the
/// block.
fn flags(command: &str, text: &str) -> Vec<Flag> {
    let mut out: Vec<Flag> = Vec::new();
    // Whether the current flag's first paragraph has ended.
    let mut paragraph_done = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let starts_option = (2..=6).contains(&indent)
            && (trimmed.starts_with("--") || (trimmed.starts_with('-') && trimmed[2..].starts_with(", --")));
        if starts_option {
            let name_start = trimmed.find("--").unwrap_or(0);
            let name: String = trimmed[name_start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            // Short help puts the description on the flag's own line.
            let rest = trimmed[name_start + name.len()..].trim_start();
            let rest = if rest.starts_with('<') { rest.split_once('>').map_or("", |(_, r)| r) } else { rest };
            let meaning = strip_brackets(rest.trim());
            paragraph_done = false;
            out.push(Flag { command: command.to_owned(), name, env: None, default: None, meaning });
        }
        let Some(flag) = out.last_mut() else { continue };
        if let Some(at) = line.find("[env: ") {
            let env: String = line[at + "[env: ".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            flag.env.get_or_insert(env);
        }
        if let Some(at) = line.find("[default: ") {
            let value = &line[at + "[default: ".len()..];
            flag.default.get_or_insert(value[..value.find(']').unwrap_or(value.len())].to_owned());
        }
        if starts_option {
            continue;
        }
        if trimmed.is_empty() {
            paragraph_done |= !flag.meaning.is_empty();
        } else if !paragraph_done && indent > 6 && !trimmed.starts_with('[') {
            let text = strip_brackets(trimmed);
            flag.meaning = if flag.meaning.is_empty() { text } else { format!("{} {text}", flag.meaning) };
        }
    }
    out
}

/// `text` without clap's trailing `[env: …]`, `[default: …]` and
/// `[possible values: …]` notes.
fn strip_brackets(text: &str) -> String {
    let mut t = text.to_owned();
    for note in ["[env: ", "[default: ", "[possible values: "] {
        if let Some(at) = t.find(note) {
            t.truncate(at);
        }
    }
    t.trim().to_owned()
}

fn walk(binary: &str, path: &mut Vec<String>, found: &mut Vec<Flag>) -> Result<()> {
    let text = help(binary, path)?;
    let command =
        std::iter::once(binary.to_owned()).chain(path.iter().cloned()).collect::<Vec<_>>().join(" ");
    found.extend(flags(&command, &text));
    if path.len() < SUBCOMMAND_DEPTH_MAX {
        for sub in subcommands(&text) {
            path.push(sub);
            walk(binary, path, found)?;
            path.pop();
        }
    }
    Ok(())
}

#[test]
fn every_flag_of_every_binary_has_its_mpp_variable() -> Result<()> {
    let mut found = Vec::new();
    for binary in binaries() {
        walk(binary, &mut Vec::new(), &mut found)?;
    }
    let config: Vec<&Flag> = found.iter().filter(|f| !NOT_CONFIGURATION.contains(&f.name.as_str())).collect();
    ensure!(config.len() > 200, "only {} flags found: is the help parser broken? {found:?}", config.len());
    let missing: Vec<String> = config
        .iter()
        .filter(|f| !f.env.as_deref().is_some_and(|e| e.starts_with("MPP_")))
        .map(|f| format!("{} {} (env: {:?})", f.command, f.name, f.env))
        .collect();
    ensure!(missing.is_empty(), "{} flags without an MPP_* variable:\n{}", missing.len(), missing.join("\n"));
    // The logging contract: every binary takes --log-format (MPP_LOG_FORMAT),
    // except mpp-faults, which runs the others and logs nothing itself.
    for binary in binaries().into_iter().filter(|b| *b != "mpp-faults") {
        ensure!(
            config.iter().any(|f| f.command == *binary
                && f.name == "--log-format"
                && f.env.as_deref() == Some("MPP_LOG_FORMAT")),
            "{binary} has no --log-format [env: MPP_LOG_FORMAT]"
        );
    }
    // A shell or container configured for `mpp-hub serve` (MPP_DATA_DIR, …)
    // must not change what an operator's audit or admin command does: they
    // share only variables that mean the same thing to both.
    let serve: Vec<&str> =
        config.iter().filter(|f| f.command == "mpp-hub serve").filter_map(|f| f.env.as_deref()).collect();
    let shared: Vec<String> = config
        .iter()
        .filter(|f| f.command.starts_with("mpp-hub audit") || f.command.starts_with("mpp-hub admin"))
        .filter_map(|f| {
            f.env.as_deref().filter(|e| serve.contains(e)).map(|e| format!("{} {} ({e})", f.command, f.name))
        })
        .filter(|s| !SHARED_WITH_SERVE.iter().any(|ok| s.ends_with(&format!("({ok})"))))
        .collect();
    ensure!(shared.is_empty(), "audit/admin flags reading mpp-hub serve's variables:\n{}", shared.join("\n"));
    println!("{} flags of {} binaries, each with its MPP_* variable", config.len(), binaries().len());
    mpp_tests::docs::check_generated(
        "CONFIGURATION.md",
        &render_configuration(&config),
        "the binaries' --help",
        "flags",
    )
}

/// `docs/CONFIGURATION.md`: every flag of every binary, from `--help`.
fn render_configuration(flags: &[&Flag]) -> String {
    let mut out = String::from(
        "# Configuration: every flag and its variable\n\
         \n\
         <!-- Generated by tests/tests/e2e/flags.rs from each binary's --help; do not edit by hand.\n\
         \x20    Regenerate with: MPP_BLESS=1 cargo test -p mpp-tests --test e2e flags -->\n\
         \n\
         Every flag can be given as its environment variable instead (a flag on the command line\n\
         wins). `--log-format` (`MPP_LOG_FORMAT`) is global: every subcommand takes it. Logs go to\n\
         stderr, filtered by `MPP_LOG` (docs/OPERATIONS.md, \"Readiness and logs\").\n",
    );
    let mut command = "";
    for f in flags {
        if f.command != command {
            command = &f.command;
            out.push_str(&format!(
                "\n## `{command}`\n\n| flag | variable | default | meaning |\n|---|---|---|---|\n"
            ));
        }
        let cell = |s: &str| s.replace('|', "\\|");
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            f.name,
            f.env.as_deref().unwrap_or(""),
            f.default.as_deref().map(|d| format!("`{}`", cell(d))).unwrap_or_default(),
            cell(&f.meaning)
        ));
    }
    out
}

#[test]
fn the_help_parser_sees_a_flag_without_a_variable() {
    let text = "Usage: x [OPTIONS]\n\nOptions:\n      --with <W>  A flag [env: MPP_WITH=]\n      --without <W>\n          \
                A flag on two lines\n  -h, --help  Print help\n\nCommands:\n  serve  Serve\n  help  Print this\n";
    let found = flags("x", text);
    let names: Vec<(&str, Option<&str>)> =
        found.iter().map(|f| (f.name.as_str(), f.env.as_deref())).collect();
    assert_eq!(names, [("--with", Some("MPP_WITH")), ("--without", None), ("--help", None)]);
    assert_eq!(subcommands(text), ["serve"]);
}
