//! `cargo xtask qemu`: builds the image and boots it in QEMU, directly (`-kernel`) or
//! through U-Boot's `booti` driven over QEMU's stdin, streaming the console, with a
//! timeout per boot; judges each boot by what the shim and the payload printed.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::arch::Target;
use crate::console::{parse_line, Console, Event, Placed};
use crate::image::{self, BuildArgs};
use crate::{announce, deps};
use crate::{grub, kexec};

/// How long the runner lets QEMU go on after a line that decides the boot...
const GRACE: Duration = Duration::from_secs(2);
/// ...and after `payload: ok`, for the payload to power the machine off.
const POWEROFF_GRACE: Duration = Duration::from_secs(10);
/// What U-Boot prints while it counts down to its default boot.
const AUTOBOOT: &str = "Hit any key to stop autoboot";
/// U-Boot's prompt, alone on the unfinished last line.
const PROMPT: &str = "=> ";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Loader {
    /// QEMU's own arm64 Image loader: `-kernel shim.img -append ...`.
    Direct,
    /// U-Boot as firmware: the image is preloaded and started with `booti`.
    UBoot,
    /// x86_64: GRUB from a BIOS rescue ISO boots the image with `linux` (32-bit entry).
    Grub,
    /// x86_64: a Debian Linux guest runs kexec-tools on the image (64-bit entry).
    Kexec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Expect {
    /// The payload reports `payload: ok` and powers QEMU off.
    Ok,
    /// The shim reports `shim: payload digest mismatch` and no payload runs.
    DigestMismatch,
    /// The shim stops with a `shim: error: ...` line and no payload runs.
    ShimError,
}

#[derive(Args, Debug)]
pub struct QemuArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    #[arg(long, value_enum, default_value = "direct")]
    pub loader: Loader,
    /// Guest memory, as QEMU's -m takes it.
    #[arg(long, default_value = "1G")]
    pub mem: String,
    #[arg(long, default_value_t = 1)]
    pub smp: u32,
    /// Start the guest at EL2 (virtualization=on).
    #[arg(long)]
    pub el2: bool,
    /// The kernel command line the shim sees.
    #[arg(long, default_value = "shim.verbose", allow_hyphen_values = true)]
    pub append: String,
    /// How many times to boot the same image.
    #[arg(long, default_value_t = 1)]
    pub boots: u32,
    /// Seconds each boot may take before QEMU is killed and the boot failed.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// What a passing boot shows [default: ok, or digest-mismatch with --corrupt-payload].
    #[arg(long, value_enum)]
    pub expect: Option<Expect>,
    /// Boot this ready-made image instead of building one.
    #[arg(long, value_name = "IMG", conflicts_with_all = ["payload", "corrupt_payload"])]
    pub image: Option<PathBuf>,
}

pub fn run(args: &QemuArgs) -> Result<()> {
    let target = args.build.arch.target();
    if args.el2 && target.el2_option.is_empty() {
        bail!("--el2 is for aarch64 only");
    }
    if args.loader == Loader::UBoot && target.firmware.boot_cmd.is_empty() {
        bail!("--loader u-boot is for aarch64 only");
    }
    if matches!(args.loader, Loader::Grub | Loader::Kexec) && target.name != "x86_64" {
        bail!("--loader grub and --loader kexec are for x86_64 only");
    }
    deps::ensure_qemu(target)?;
    let image = match &args.image {
        Some(image) => image.clone(),
        None => image::build(&args.build)?,
    };
    let machine = Machine {
        target,
        loader: args.loader,
        mem: &args.mem,
        smp: args.smp,
        el2: args.el2,
        append: &args.append,
    };
    let expect = args.expect.unwrap_or(if args.build.corrupt_payload {
        Expect::DigestMismatch
    } else {
        Expect::Ok
    });
    let summary = boot_many(
        &machine,
        &image,
        expect,
        args.boots,
        Duration::from_secs(args.timeout),
    )?;
    println!("{}", summary.line());
    if summary.failed > 0 {
        bail!("{} of {} boots failed", summary.failed, args.boots);
    }
    Ok(())
}

/// One QEMU configuration.
pub struct Machine<'a> {
    pub target: &'a Target,
    pub loader: Loader,
    pub mem: &'a str,
    pub smp: u32,
    pub el2: bool,
    pub append: &'a str,
}

impl Machine<'_> {
    /// The QEMU command line that boots `image`.
    fn command(&self, image: &Path) -> Result<Command> {
        let t = self.target;
        let mut cmd = Command::new(t.qemu);
        let mut machine = t.machine.to_string();
        if self.el2 {
            machine = format!("{machine},{}", t.el2_option);
        }
        cmd.args(["-machine", &machine, "-cpu", t.cpu, "-m", self.mem])
            .args(["-smp", &self.smp.to_string()])
            .args(t.qemu_args)
            // The console is the serial port on stdio; no monitor, no window. A guest
            // reset ends QEMU like a power-off does.
            .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
            .arg("-no-reboot");
        match self.loader {
            Loader::Direct => {
                cmd.arg("-kernel").arg(image).args(["-append", self.append]);
            }
            Loader::UBoot => {
                // Commas in a QEMU option value are escaped by doubling them.
                let file = image.to_string_lossy().replace(',', ",,");
                cmd.args(["-bios", t.firmware.bios]).args([
                    "-device",
                    &format!(
                        "loader,file={file},addr={:#x},force-raw=on",
                        t.firmware.load_addr
                    ),
                ]);
            }
            Loader::Grub => {
                let iso = grub::iso(image, self.append)?;
                cmd.arg("-cdrom").arg(iso).args(["-boot", "d"]);
            }
            Loader::Kexec => {
                let guest = kexec::guest(image, self.append)?;
                cmd.arg("-kernel").arg(&guest.kernel);
                cmd.arg("-initrd").arg(&guest.initrd);
                cmd.args(["-append", kexec::GUEST_APPEND]);
            }
        }
        Ok(cmd)
    }

    /// The U-Boot commands that boot the preloaded image, one per prompt.
    fn uboot_commands(&self) -> VecDeque<String> {
        let fw = &self.target.firmware;
        let bootargs = if self.append.is_empty() {
            "setenv bootargs".to_string()
        } else {
            format!("setenv bootargs \"{}\"", self.append)
        };
        let boot = fw
            .boot_cmd
            .replace("{addr}", &format!("{:#x}", fw.load_addr));
        VecDeque::from([bootargs, boot])
    }
}

/// How a boot's QEMU ended.
#[derive(Debug)]
pub enum End {
    /// QEMU exited by itself (the guest powered off or reset).
    Exited(ExitStatus),
    /// The runner stopped QEMU after the deciding line and a grace period.
    Stopped,
    /// The per-boot timeout ran out and QEMU was killed.
    TimedOut,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Exited(status) => write!(f, "QEMU exited: {status}"),
            End::Stopped => f.write_str("stopped by the runner"),
            End::TimedOut => f.write_str("timed out"),
        }
    }
}

/// What one boot showed.
#[derive(Debug)]
pub struct Boot {
    pub placed: Option<Placed>,
    /// `(va, pa)` from `payload: ok`.
    pub payload_ok: Option<(u64, u64)>,
    pub payload_fail: Option<String>,
    pub payload_lines: usize,
    pub digest_mismatch: bool,
    /// The first `shim: error: ...` line, without `shim: `.
    pub shim_error: Option<String>,
    pub shim_lines: Vec<String>,
    pub end: End,
}

impl Boot {
    /// A boot that has shown nothing yet.
    fn new(end: End) -> Self {
        Boot {
            placed: None,
            payload_ok: None,
            payload_fail: None,
            payload_lines: 0,
            digest_mismatch: false,
            shim_error: None,
            shim_lines: Vec::new(),
            end,
        }
    }

    /// `Ok` if the boot showed what `expect` asks for, else why not.
    pub fn judge(&self, expect: Expect) -> std::result::Result<(), String> {
        match expect {
            Expect::Ok => {
                if let Some(why) = &self.payload_fail {
                    return Err(format!("payload: FAIL {why}"));
                }
                if self.digest_mismatch {
                    return Err("the shim refused the payload's digest".into());
                }
                if self.payload_ok.is_none() {
                    return Err(match self.shim_lines.last() {
                        Some(last) => {
                            format!(
                                "no `payload: ok` line ({}); last shim line: {last}",
                                self.end
                            )
                        }
                        None => format!("no `payload: ok` line and no shim line ({})", self.end),
                    });
                }
                match self.end {
                    End::Exited(_) => Ok(()),
                    End::Stopped => Err("QEMU did not exit after `payload: ok`".into()),
                    End::TimedOut => Err("timed out: QEMU did not exit after `payload: ok`".into()),
                }
            }
            Expect::DigestMismatch => {
                if self.payload_lines > 0 {
                    Err("a payload ran although its digest was wrong".into())
                } else if !self.digest_mismatch {
                    Err(format!(
                        "no `shim: payload digest mismatch` line ({})",
                        self.end
                    ))
                } else {
                    Ok(())
                }
            }
            Expect::ShimError => match (&self.shim_error, self.payload_lines) {
                (_, 1..) => Err("a payload ran although the shim should have stopped".into()),
                (None, _) => Err(format!("no `shim: error:` line ({})", self.end)),
                (Some(_), _) => Ok(()),
            },
        }
    }

    fn note(&mut self, event: Event) {
        if let Event::Shim(text) | Event::DigestMismatch(text) = &event {
            if text.starts_with("error:") && self.shim_error.is_none() {
                self.shim_error = Some(text.clone());
            }
        }
        match event {
            Event::PayloadOk { va, pa, .. } => {
                self.payload_lines += 1;
                self.payload_ok.get_or_insert((va, pa));
            }
            Event::PayloadFail(why) => {
                self.payload_lines += 1;
                self.payload_fail.get_or_insert(why);
            }
            Event::Payload(_) => self.payload_lines += 1,
            Event::ShimPlaced(placed) => {
                self.shim_lines
                    .push(format!("placed pa={:#x} va={:#x}", placed.pa, placed.va));
                self.placed.get_or_insert(placed);
            }
            Event::DigestMismatch(text) => {
                self.digest_mismatch = true;
                self.shim_lines.push(text);
            }
            Event::Shim(text) => self.shim_lines.push(text),
        }
    }

    /// Whether the console has shown enough to decide the boot: if so, how long QEMU
    /// may go on to exit by itself before the runner stops it.
    fn decided(&self, expect: Expect) -> Option<Duration> {
        // The shim halts after a `shim: error: ...` or `shim: panic: ...` line.
        let shim_panicked = self
            .shim_lines
            .iter()
            .any(|l| l.starts_with("panic") || l.starts_with("error:"));
        let settled = match expect {
            Expect::Ok => self.payload_fail.is_some() || self.digest_mismatch || shim_panicked,
            Expect::DigestMismatch => self.digest_mismatch || self.payload_lines > 0,
            Expect::ShimError => self.shim_error.is_some() || self.payload_lines > 0,
        };
        if settled {
            Some(GRACE)
        } else if self.payload_ok.is_some() {
            Some(POWEROFF_GRACE)
        } else {
            None
        }
    }
}

/// Boots `image` `boots` times and judges every boot.
pub fn boot_many(
    machine: &Machine,
    image: &Path,
    expect: Expect,
    boots: u32,
    timeout: Duration,
) -> Result<Summary> {
    let mut summary = Summary::default();
    for n in 1..=boots {
        eprintln!("xtask: boot {n}/{boots}");
        let result = boot(machine, image, expect, timeout)?;
        let verdict = result.judge(expect);
        let placement = match (&result.payload_ok, &result.placed) {
            (Some((va, pa)), _) => format!(" pa={pa:#x} va={va:#x}"),
            (None, Some(p)) => format!(" (shim placed pa={:#x} va={:#x})", p.pa, p.va),
            (None, None) => String::new(),
        };
        match &verdict {
            Ok(()) => eprintln!("xtask: boot {n}/{boots}: pass{placement}"),
            Err(why) => eprintln!("xtask: boot {n}/{boots}: FAIL{placement}: {why}"),
        }
        summary.add(&result, verdict.is_ok());
    }
    Ok(summary)
}

/// The tally of several boots.
#[derive(Debug, Default)]
pub struct Summary {
    pub passed: u32,
    pub failed: u32,
    /// Distinct `(pa, va)` from `payload: ok` lines, and distinct `pa` and `va`.
    pub pairs: BTreeSet<(u64, u64)>,
    pub pas: BTreeSet<u64>,
    pub vas: BTreeSet<u64>,
    /// Every boot's `shim: error:` line.
    pub errors: Vec<String>,
}

impl Summary {
    fn add(&mut self, boot: &Boot, pass: bool) {
        if pass {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        self.errors.extend(boot.shim_error.clone());
        if let Some((va, pa)) = boot.payload_ok {
            self.pairs.insert((pa, va));
            self.pas.insert(pa);
            self.vas.insert(va);
        }
    }

    pub fn line(&self) -> String {
        format!(
            "boots: {} passed, {} failed; {} distinct (pa,va) pairs, {} distinct pa, {} distinct va",
            self.passed,
            self.failed,
            self.pairs.len(),
            self.pas.len(),
            self.vas.len()
        )
    }
}

/// Boots once: starts QEMU, streams its console to stdout, drives U-Boot if it is the
/// loader, and stops QEMU on timeout or once the boot is decided.
pub fn boot(machine: &Machine, image: &Path, expect: Expect, timeout: Duration) -> Result<Boot> {
    let mut cmd = machine.command(image)?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    announce(&cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", machine.target.qemu))?;
    let result = drive(machine, expect, timeout, &mut child);
    // Whatever happened, leave no QEMU behind.
    if !matches!(child.try_wait(), Ok(Some(_))) {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

fn drive(machine: &Machine, expect: Expect, timeout: Duration, child: &mut Child) -> Result<Boot> {
    let mut stdin = child.stdin.take().context("QEMU has no stdin pipe")?;
    let mut stdout = child.stdout.take().context("QEMU has no stdout pipe")?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + timeout;
    let mut console = Console::default();
    let mut uboot = (machine.loader == Loader::UBoot).then(|| UBoot::new(machine.uboot_commands()));
    // Until QEMU is seen to exit or is stopped early, the boot counts as timed out.
    let mut boot = Boot::new(End::TimedOut);
    let mut stop_at: Option<Instant> = None;
    let mut out = std::io::stdout();

    // Read until QEMU closes its stdout, the boot times out, or it is decided.
    let mut eof = false;
    while !eof {
        let now = Instant::now();
        let until = stop_at.map_or(deadline, |s| s.min(deadline));
        if now >= until {
            break;
        }
        match rx.recv_timeout(until - now) {
            Ok(chunk) => {
                out.write_all(&chunk)?;
                out.flush()?;
                for line in console.push(&chunk) {
                    if let Some(event) = parse_line(&line) {
                        boot.note(event);
                    }
                }
                if let Some(uboot) = &mut uboot {
                    uboot.step(&console, &mut stdin)?;
                }
                if let (None, Some(grace)) = (stop_at, boot.decided(expect)) {
                    stop_at = Some(Instant::now() + grace);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => eof = true,
        }
    }
    if let Some(line) = console.finish() {
        if let Some(event) = parse_line(&line) {
            boot.note(event);
        }
    }

    // Its stdout closed: QEMU is exiting; give it until the deadline to do so.
    if eof {
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                boot.end = End::Exited(status);
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    } else if let Some(status) = child.try_wait()? {
        boot.end = End::Exited(status);
    }
    if matches!(boot.end, End::TimedOut) {
        let timed_out = Instant::now() >= deadline;
        let _ = child.kill();
        let _ = child.wait();
        if timed_out {
            eprintln!(
                "\nxtask: timed out after {}s, killed QEMU",
                timeout.as_secs()
            );
        } else {
            boot.end = End::Stopped;
            eprintln!("\nxtask: boot decided, stopped QEMU");
        }
    }
    drop(rx);
    let _ = reader.join();
    if let End::Exited(status) = &boot.end {
        eprintln!("\nxtask: QEMU exited: {status}");
    }
    Ok(boot)
}

/// Drives U-Boot's console: interrupts autoboot, then types one command per prompt.
struct UBoot {
    commands: VecDeque<String>,
    interrupted: bool,
    /// Stream position when the runner last typed: a prompt must come after it.
    typed_at: usize,
}

impl UBoot {
    fn new(commands: VecDeque<String>) -> Self {
        UBoot {
            commands,
            interrupted: false,
            typed_at: 0,
        }
    }

    fn step(&mut self, console: &Console, stdin: &mut ChildStdin) -> Result<()> {
        if !self.interrupted {
            // The countdown line stays unfinished until it reaches 0.
            if console.partial().contains(AUTOBOOT) {
                eprintln!("\nxtask: interrupting U-Boot's autoboot");
                self.type_line(console, stdin, "")?;
                self.interrupted = true;
            }
            return Ok(());
        }
        if console.partial() == PROMPT && console.received() > self.typed_at {
            if let Some(command) = self.commands.pop_front() {
                self.type_line(console, stdin, &command)?;
            }
        }
        Ok(())
    }

    fn type_line(&mut self, console: &Console, stdin: &mut ChildStdin, line: &str) -> Result<()> {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .context("writing to QEMU's stdin")?;
        self.typed_at = console.received();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::AARCH64;

    fn machine(loader: Loader, el2: bool) -> Machine<'static> {
        Machine {
            target: &AARCH64,
            loader,
            mem: "1G",
            smp: 2,
            el2,
            append: "shim.verbose nokaslr",
        }
    }

    #[test]
    fn direct_command_line() {
        let cmd = machine(Loader::Direct, true)
            .command(Path::new("/t/shim.img"))
            .unwrap();
        assert_eq!(
            crate::display(&cmd),
            "qemu-system-aarch64 -machine virt,virtualization=on -cpu max -m 1G -smp 2 \
             -display none -serial stdio -monitor none -no-reboot -kernel /t/shim.img \
             -append 'shim.verbose nokaslr'"
        );
    }

    #[test]
    fn uboot_command_line_and_script() {
        let m = machine(Loader::UBoot, false);
        let cmd = m.command(Path::new("/t,x/shim.img")).unwrap();
        let text = crate::display(&cmd);
        assert!(text.starts_with("qemu-system-aarch64 -machine virt -cpu max"));
        assert!(text.ends_with(
            "-bios /usr/lib/u-boot/qemu_arm64/u-boot.bin \
             -device loader,file=/t,,x/shim.img,addr=0x40400000,force-raw=on"
        ));
        assert_eq!(
            m.uboot_commands(),
            [
                "setenv bootargs \"shim.verbose nokaslr\"",
                "booti 0x40400000 - ${fdtcontroladdr}"
            ]
        );
    }

    fn boot_of(lines: &[&str], end: End) -> Boot {
        let mut boot = Boot::new(end);
        for line in lines {
            if let Some(e) = parse_line(line) {
                boot.note(e);
            }
        }
        boot
    }

    fn exited() -> End {
        use std::os::unix::process::ExitStatusExt;
        End::Exited(ExitStatus::from_raw(0))
    }

    #[test]
    fn judging_ok() {
        let ok = [
            "shim: placed pa=0x48000000 va=0xffff800000000000 slots=9 entropy=3 sources=rndr",
            "payload: ok va=0xffff800000000000 pa=0x48000000 ptrs=3 sources=0x4 bits=3",
        ];
        let boot = boot_of(&ok, exited());
        assert_eq!(boot.judge(Expect::Ok), Ok(()));
        assert_eq!(boot.payload_ok, Some((0xffff_8000_0000_0000, 0x4800_0000)));
        assert_eq!(boot.placed.as_ref().map(|p| p.slots), Some(Some(9)));
        assert!(boot.judge(Expect::DigestMismatch).is_err());
        assert!(boot_of(&ok, End::TimedOut).judge(Expect::Ok).is_err());
        assert!(boot_of(&ok, End::Stopped).judge(Expect::Ok).is_err());
        assert!(boot_of(&["payload: FAIL bad"], exited())
            .judge(Expect::Ok)
            .is_err());
        assert!(boot_of(&["shim: no memory"], exited())
            .judge(Expect::Ok)
            .is_err());
    }

    #[test]
    fn judging_digest_mismatch() {
        let refused = boot_of(&["shim: payload digest mismatch"], End::Stopped);
        assert_eq!(refused.judge(Expect::DigestMismatch), Ok(()));
        assert_eq!(refused.decided(Expect::DigestMismatch), Some(GRACE));
        assert!(refused.judge(Expect::Ok).is_err());
        let ran = boot_of(
            &["shim: payload digest mismatch", "payload: ok va=0x1 pa=0x2"],
            exited(),
        );
        assert!(ran.judge(Expect::DigestMismatch).is_err());
        assert!(boot_of(&[], End::TimedOut)
            .judge(Expect::DigestMismatch)
            .is_err());
    }

    #[test]
    fn summary_counts_distinct_placements() {
        let mut s = Summary::default();
        for (va, pa) in [(1, 10), (2, 10), (1, 10), (3, 30)] {
            let line = format!("payload: ok va={va:#x} pa={pa:#x}");
            s.add(&boot_of(&[&line], exited()), true);
        }
        s.add(&boot_of(&[], End::TimedOut), false);
        assert_eq!((s.passed, s.failed), (4, 1));
        assert_eq!((s.pairs.len(), s.pas.len(), s.vas.len()), (3, 2, 3));
    }
}
