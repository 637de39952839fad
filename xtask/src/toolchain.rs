//! The pinned toolchain: what rust-toolchain.toml asks for (channel, targets,
//! components) and the rustup commands that add what is missing.
//!
//! `rustup toolchain install` run from inside cargo (as xtask is) honours the
//! RUSTUP_TOOLCHAIN that cargo's proxy set, so it installs no targets or components
//! for a toolchain that already exists. Here every command names the channel and the
//! targets and components explicitly, so it works wherever it runs.

use std::fs;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use crate::{capture, exec, workspace_root};

/// The `[toolchain]` table of rust-toolchain.toml.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pinned {
    pub channel: String,
    pub targets: Vec<String>,
    pub components: Vec<String>,
    pub profile: Option<String>,
}

/// A value of the small part of TOML that rust-toolchain.toml uses.
#[derive(Debug, PartialEq, Eq)]
enum Value {
    Str(String),
    List(Vec<String>),
}

/// Reads rust-toolchain.toml's `[toolchain]` table: `key = "string"` and
/// `key = ["a", "b"]` (arrays may span lines), `#` comments. Other tables and keys are
/// skipped; a value of any other kind in `[toolchain]` is an error naming its key.
pub fn parse(text: &str) -> Result<Pinned> {
    let mut pinned = Pinned::default();
    let mut in_toolchain = false;
    let mut chars = text.chars().peekable();
    let mut seen_channel = false;
    loop {
        skip_blank(&mut chars);
        let Some(&c) = chars.peek() else { break };
        if c == '[' {
            let line: String = take_line(&mut chars);
            // `[name]`, perhaps followed by a comment.
            let name = line
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .trim();
            in_toolchain = name == "toolchain";
            continue;
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|&c| c != '=' && c != '\n'))
            .collect::<String>()
            .trim()
            .to_string();
        if chars.next_if_eq(&'=').is_none() {
            bail!("rust-toolchain.toml: `{key}` has no `=`");
        }
        let ours = matches!(
            key.as_str(),
            "channel" | "profile" | "targets" | "components"
        );
        if !in_toolchain || !ours {
            take_line(&mut chars);
            continue;
        }
        let value =
            parse_value(&mut chars).with_context(|| format!("rust-toolchain.toml: `{key}`"))?;
        match (key.as_str(), value) {
            ("channel", Value::Str(s)) => {
                pinned.channel = s;
                seen_channel = true;
            }
            ("profile", Value::Str(s)) => pinned.profile = Some(s),
            ("targets", Value::List(l)) => pinned.targets = l,
            ("components", Value::List(l)) => pinned.components = l,
            ("channel" | "profile", _) => bail!("rust-toolchain.toml: `{key}` must be a string"),
            _ => bail!("rust-toolchain.toml: `{key}` must be an array"),
        }
    }
    if !seen_channel || pinned.channel.is_empty() {
        bail!("rust-toolchain.toml has no [toolchain] channel");
    }
    Ok(pinned)
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// Skips whitespace, newlines and comments.
fn skip_blank(chars: &mut Chars<'_>) {
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek() == Some(&'#') {
            take_line(chars);
        } else {
            return;
        }
    }
}

fn take_line(chars: &mut Chars<'_>) -> String {
    let line = std::iter::from_fn(|| chars.next_if(|&c| c != '\n')).collect();
    chars.next();
    line
}

fn parse_string(chars: &mut Chars<'_>) -> Result<String> {
    let quote = chars.next().context("a string was expected")?;
    let mut s = String::new();
    loop {
        match chars.next() {
            Some(c) if c == quote => return Ok(s),
            Some('\\') if quote == '"' => match chars.next() {
                Some('n') => s.push('\n'),
                Some('t') => s.push('\t'),
                Some(c @ ('"' | '\\')) => s.push(c),
                other => bail!("unsupported escape \\{}", other.unwrap_or(' ')),
            },
            Some('\n') | None => bail!("unterminated string"),
            Some(c) => s.push(c),
        }
    }
}

fn parse_value(chars: &mut Chars<'_>) -> Result<Value> {
    while chars.next_if(|&c| c == ' ' || c == '\t').is_some() {}
    let value = match chars.peek() {
        Some('"' | '\'') => Value::Str(parse_string(chars)?),
        Some('[') => {
            chars.next();
            let mut list = Vec::new();
            loop {
                skip_blank(chars);
                match chars.peek() {
                    Some(']') => {
                        chars.next();
                        break;
                    }
                    Some('"' | '\'') => list.push(parse_string(chars)?),
                    _ => bail!("an array of strings was expected"),
                }
                skip_blank(chars);
                match chars.next() {
                    Some(',') => {}
                    Some(']') => break,
                    _ => bail!("`,` or `]` was expected in the array"),
                }
            }
            Value::List(list)
        }
        _ => bail!("a string or an array of strings was expected"),
    };
    // The rest of the line may hold only a comment.
    while chars.next_if(|&c| c == ' ' || c == '\t').is_some() {}
    match chars.peek() {
        None | Some('\n' | '\r' | '#') => {
            take_line(chars);
            Ok(value)
        }
        Some(c) => bail!("unexpected `{c}` after the value"),
    }
}

/// The entries of `wanted` that `installed` (rustup's `list --installed` output, one
/// name a line) lacks. Components are listed with the host triple appended
/// (`llvm-tools-x86_64-unknown-linux-gnu`) unless they are target-independent
/// (`rust-src`); the host comes from the `rustc-<host>` line. A `-preview` alias
/// (`llvm-tools-preview`) counts as its plain name.
pub fn missing(wanted: &[String], installed: &str) -> Vec<String> {
    let lines: Vec<&str> = installed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let host = lines.iter().find_map(|l| l.strip_prefix("rustc-"));
    wanted
        .iter()
        .filter(|want| {
            let name = want.strip_suffix("-preview").unwrap_or(want);
            !lines.iter().any(|&line| {
                line == name
                    || line == want.as_str()
                    || host.is_some_and(|h| line == format!("{name}-{h}"))
            })
        })
        .cloned()
        .collect()
}

/// The rustup commands (arguments after `rustup`) that make `pinned` complete, given
/// the installed targets and components (`None`: the toolchain itself is missing).
pub fn plan(pinned: &Pinned, installed: Option<(&str, &str)>) -> Vec<Vec<String>> {
    let ch = pinned.channel.clone();
    let Some((targets, components)) = installed else {
        let mut install = vec!["toolchain".into(), "install".into(), ch];
        if let Some(profile) = &pinned.profile {
            install.extend(["--profile".into(), profile.clone()]);
        }
        for c in &pinned.components {
            install.extend(["--component".into(), c.clone()]);
        }
        for t in &pinned.targets {
            install.extend(["--target".into(), t.clone()]);
        }
        return vec![install];
    };
    let mut steps = Vec::new();
    let targets = missing(&pinned.targets, targets);
    if !targets.is_empty() {
        let mut add = vec![
            "target".into(),
            "add".into(),
            "--toolchain".into(),
            ch.clone(),
        ];
        add.extend(targets);
        steps.push(add);
    }
    let components = missing(&pinned.components, components);
    if !components.is_empty() {
        let mut add = vec!["component".into(), "add".into(), "--toolchain".into(), ch];
        add.extend(components);
        steps.push(add);
    }
    steps
}

fn rustup(args: &[&str]) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(workspace_root()).args(args);
    cmd
}

/// Installs whatever rust-toolchain.toml names and is missing, once per run.
pub fn ensure() -> Result<()> {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    let path = workspace_root().join("rust-toolchain.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let pinned = parse(&text)?;
    let ch = pinned.channel.as_str();
    let targets = capture(&mut rustup(&[
        "target",
        "list",
        "--installed",
        "--toolchain",
        ch,
    ]));
    let targets = match targets {
        Ok(t) => Some(t),
        Err(_) if crate::deps::on_path("rustup").is_none() => {
            eprintln!(
                "xtask: no rustup; assuming the toolchain {ch} has its targets and components"
            );
            let _ = DONE.set(());
            return Ok(());
        }
        Err(_) => None,
    };
    let installed = match targets {
        Some(t) => {
            let c = capture(&mut rustup(&[
                "component",
                "list",
                "--installed",
                "--toolchain",
                ch,
            ]))?;
            Some((t, c))
        }
        None => None,
    };
    let steps = plan(
        &pinned,
        installed.as_ref().map(|(t, c)| (t.as_str(), c.as_str())),
    );
    if !steps.is_empty() {
        eprintln!(
            "xtask: the {ch} toolchain lacks targets or components rust-toolchain.toml lists"
        );
    }
    for step in &steps {
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        exec(&mut rustup(&args))?;
    }
    if !steps.is_empty() {
        let t = capture(&mut rustup(&[
            "target",
            "list",
            "--installed",
            "--toolchain",
            ch,
        ]))?;
        let c = capture(&mut rustup(&[
            "component",
            "list",
            "--installed",
            "--toolchain",
            ch,
        ]))?;
        let left = plan(&pinned, Some((&t, &c)));
        if !left.is_empty() {
            bail!("still missing after rustup: {:?}", left);
        }
    }
    let _ = DONE.set(());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = r#"[toolchain]
channel = "1.95.0"
targets = ["aarch64-unknown-none", "x86_64-unknown-none"]
components = ["rust-src", "llvm-tools", "rustfmt", "clippy"]
profile = "minimal"
"#;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_repository_file() {
        let text = std::fs::read_to_string(workspace_root().join("rust-toolchain.toml")).unwrap();
        let p = parse(&text).unwrap();
        assert!(!p.channel.is_empty());
        assert!(p.targets.contains(&"aarch64-unknown-none".to_string()));
        assert!(p.components.contains(&"llvm-tools".to_string()));
        assert_eq!(
            parse(OURS).unwrap(),
            Pinned {
                channel: "1.95.0".into(),
                targets: strings(&["aarch64-unknown-none", "x86_64-unknown-none"]),
                components: strings(&["rust-src", "llvm-tools", "rustfmt", "clippy"]),
                profile: Some("minimal".into()),
            }
        );
    }

    #[test]
    fn parses_comments_multiline_arrays_and_other_tables() {
        let text = "# pinned\n[other]\nchannel = \"nope\"\n\n[toolchain] # here\nchannel = 'nightly-2025-01-01' # date\n\
                    targets = [\n  \"a\", # first\n  'b',\n]\ncomponents = []\nbeta = true\n";
        let p = parse(text).unwrap();
        assert_eq!(p.channel, "nightly-2025-01-01");
        assert_eq!(p.targets, strings(&["a", "b"]));
        assert!(p.components.is_empty());
        assert_eq!(p.profile, None);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(parse("[toolchain]\ntargets = [\"a\"]\n")
            .unwrap_err()
            .to_string()
            .contains("no [toolchain] channel"));
        assert!(parse("[toolchain]\nchannel = [\"a\"]\n").is_err());
        assert!(parse("[toolchain]\nchannel = \"1.0\nx\"\n").is_err());
        assert!(parse("[toolchain]\ntargets = [\"a\" \"b\"]\nchannel=\"1\"\n").is_err());
        assert!(parse("[toolchain]\nchannel\n").is_err());
    }

    const COMPONENTS: &str = "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\n\
        rust-src\nrust-std-x86_64-unknown-linux-gnu\nrustc-x86_64-unknown-linux-gnu\n\
        rustfmt-x86_64-unknown-linux-gnu\n";

    #[test]
    fn finds_what_is_missing() {
        let p = parse(OURS).unwrap();
        assert_eq!(missing(&p.components, COMPONENTS), ["llvm-tools"]);
        let with = format!("{COMPONENTS}llvm-tools-x86_64-unknown-linux-gnu\n");
        assert!(missing(&p.components, &with).is_empty());
        assert!(missing(&strings(&["llvm-tools-preview"]), &with).is_empty());
        // rust-std of the host is not rust-src, nor is the host's rustc "rust".
        assert_eq!(missing(&strings(&["rust"]), COMPONENTS), ["rust"]);
        assert_eq!(
            missing(
                &p.targets,
                "x86_64-unknown-linux-gnu\nx86_64-unknown-none\n"
            ),
            ["aarch64-unknown-none"]
        );
    }

    #[test]
    fn plans_explicit_rustup_commands() {
        let p = parse(OURS).unwrap();
        let steps = plan(&p, Some(("x86_64-unknown-linux-gnu\n", COMPONENTS)));
        assert_eq!(
            steps,
            [
                strings(&[
                    "target",
                    "add",
                    "--toolchain",
                    "1.95.0",
                    "aarch64-unknown-none",
                    "x86_64-unknown-none"
                ]),
                strings(&["component", "add", "--toolchain", "1.95.0", "llvm-tools"]),
            ]
        );
        let all_targets = "aarch64-unknown-none\nx86_64-unknown-linux-gnu\nx86_64-unknown-none\n";
        let all = format!("{COMPONENTS}llvm-tools-x86_64-unknown-linux-gnu\n");
        assert!(plan(&p, Some((all_targets, &all))).is_empty());
        // No toolchain at all: one install naming everything.
        assert_eq!(
            plan(&p, None),
            [strings(&[
                "toolchain",
                "install",
                "1.95.0",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
                "--component",
                "llvm-tools",
                "--component",
                "rustfmt",
                "--component",
                "clippy",
                "--target",
                "aarch64-unknown-none",
                "--target",
                "x86_64-unknown-none"
            ])]
        );
    }
}
