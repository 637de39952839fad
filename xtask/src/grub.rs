//! The GRUB loader for x86_64 boot tests: a BIOS (i386-pc) rescue ISO made by
//! grub-mkrescue whose grub.cfg boots the shim with `linux`, GRUB's 32-bit entry.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use crate::{deps, exec, target_dir};

/// Builds `target/xtask/grub/shim.iso` booting `image` with `append` (and `initrd`,
/// with GRUB's `initrd` command).
pub fn iso(image: &Path, append: &str, initrd: Option<&Path>) -> Result<PathBuf> {
    deps::ensure_host_packages(&[
        ("grub-common", "/usr/bin/grub-mkrescue"),
        ("grub-pc-bin", "/usr/lib/grub/i386-pc/linux.mod"),
        ("xorriso", "/usr/bin/xorriso"),
        ("mtools", "/usr/bin/mformat"),
    ])?;
    let dir = target_dir().join("xtask").join("grub");
    let root = dir.join("iso");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("boot/grub"))?;
    fs::copy(image, root.join("boot/shim.img"))?;
    let words = kernel_words(append);
    if words.iter().any(|w| w.contains([' ', '"', '\'', '\\'])) {
        eprintln!(
            "xtask: note: GRUB re-quotes command-line words holding spaces, quotes or \
             backslashes when it hands them to the kernel (grub_create_loader_cmdline)"
        );
    }
    if let Some(initrd) = initrd {
        fs::copy(initrd, root.join("boot/initrd.img"))?;
    }
    fs::write(
        root.join("boot/grub/grub.cfg"),
        config(append, initrd.is_some())?,
    )?;
    let iso = dir.join("shim.iso");
    exec(
        Command::new("grub-mkrescue")
            .args(["-d", "/usr/lib/grub/i386-pc", "-o"])
            .arg(&iso)
            .arg(&root),
    )?;
    Ok(iso)
}

/// grub.cfg: no menu delay, one entry that boots the shim with `append`. GRUB's own
/// output stays on the (absent) VGA console, so the serial console shows only the shim
/// and the payload.
pub fn config(append: &str, initrd: bool) -> Result<String> {
    let mut linux = String::from("linux /boot/shim.img");
    for word in kernel_words(append) {
        linux.push(' ');
        linux.push_str(&grub_word(&word)?);
    }
    if initrd {
        linux.push_str("\n    initrd /boot/initrd.img");
    }
    Ok(format!(
        "set timeout=0\nset default=0\nmenuentry shim {{\n    {linux}\n    boot\n}}\n"
    ))
}

/// The command line split as Linux splits it (lib/cmdline.c `next_arg`): at blanks
/// outside double quotes, the quotes kept in the word (`a="b c"` is one word).
pub fn kernel_words(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in cmdline.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c.is_ascii_whitespace() && !quoted {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// One word in GRUB's script syntax, so that GRUB's argument is exactly `word`: bare
/// when it holds only characters GRUB's lexer takes literally, else in single quotes
/// (nothing inside them is special: no `$` expansion, no backslash escape), a single
/// quote itself written as `'\''`. A newline cannot be given to `linux` this way.
pub fn grub_word(word: &str) -> Result<String> {
    if word.contains(['\n', '\r']) {
        bail!("a command line with a line break cannot go into grub.cfg: {word:?}");
    }
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c));
    if plain {
        return Ok(word.to_string());
    }
    Ok(format!("'{}'", word.replace('\'', r"'\''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GRUB's lexer for one line of words (grub-core/script/yylex.l): blanks separate
    /// words; a backslash outside quotes takes the next character literally; single
    /// quotes take everything literally; double quotes allow `\\`, `\"`, `\$` escapes
    /// and `$var`; `$var` expands outside quotes. Variables are all empty here, so an
    /// expansion shows as a lost `$`.
    fn grub_argv(line: &str) -> Vec<String> {
        let mut argv = Vec::new();
        let mut word: Option<String> = None;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                ' ' | '\t' => {
                    argv.extend(word.take());
                }
                '\\' => word.get_or_insert_default().extend(chars.next()),
                '\'' => {
                    let w = word.get_or_insert_default();
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                        w.push(c);
                    }
                }
                '"' => {
                    let w = word.get_or_insert_default();
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => break,
                            '\\' if matches!(chars.peek(), Some('\\' | '"' | '$')) => {
                                w.extend(chars.next())
                            }
                            '$' => while chars.next_if(|c| c.is_alphanumeric()).is_some() {},
                            c => w.push(c),
                        }
                    }
                }
                '$' => {
                    word.get_or_insert_default();
                    while chars.next_if(|c| c.is_alphanumeric()).is_some() {}
                }
                c => word.get_or_insert_default().push(c),
            }
        }
        argv.extend(word);
        argv
    }

    fn linux_line(cfg: &str) -> &str {
        cfg.lines()
            .find_map(|l| l.trim().strip_prefix("linux "))
            .unwrap()
    }

    #[test]
    fn words_reach_grub_exactly() {
        for append in [
            "shim.verbose",
            "shim.verbose nokaslr  console=ttyS0",
            "a=\"with spaces\" b",
            "root=$root x=${prefix}/y",
            r"path=C:\dir\ back\\slash",
            "it's o'clock 'quoted'",
            "mixed=\"it's $HOME\\n\" end",
            "",
        ] {
            let cfg = config(append, false).unwrap();
            let argv = grub_argv(linux_line(&cfg));
            let mut want = vec!["/boot/shim.img".to_string()];
            want.extend(kernel_words(append));
            assert_eq!(argv, want, "{append:?} -> {cfg}");
        }
    }

    #[test]
    fn an_initrd_follows_the_linux_line() {
        let cfg = config("console=ttyS0", true).unwrap();
        assert!(cfg.contains(
            "    linux /boot/shim.img console=ttyS0\n    initrd /boot/initrd.img\n    boot\n"
        ));
        assert!(!config("console=ttyS0", false).unwrap().contains("initrd"));
    }

    #[test]
    fn plain_words_stay_bare_and_the_rest_is_single_quoted() {
        let cfg = config("shim.verbose memmap=256M@0x40000000", false).unwrap();
        assert!(cfg.contains("    linux /boot/shim.img shim.verbose memmap=256M@0x40000000\n"));
        assert_eq!(grub_word("$root").unwrap(), "'$root'");
        assert_eq!(grub_word(r"a\b").unwrap(), r"'a\b'");
        assert_eq!(grub_word("it's").unwrap(), r"'it'\''s'");
        assert_eq!(grub_word("a=\"b c\"").unwrap(), "'a=\"b c\"'");
        assert!(grub_word("a\nb").is_err());
        assert!(
            config("x\ny", false).is_ok(),
            "a newline between words is a blank"
        );
    }

    #[test]
    fn splits_as_linux_does() {
        assert_eq!(
            kernel_words(" a  b=\"c d\" \"e f\"g\th "),
            ["a", "b=\"c d\"", "\"e f\"g", "h"]
        );
        assert!(kernel_words("   ").is_empty());
    }
}
