//! Single instructions the shim needs by name (Intel SDM volume 2): CPUID feature bits,
//! RDRAND, RDSEED, RDTSC, the control registers and EFER, halting and the final jump.

use core::arch::asm;
use core::arch::x86_64::{__cpuid, __cpuid_count, CpuidResult};
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;
use x86_64::instructions::random::RdRand;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr3, Cr3Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

/// What CPUID says about the features the shim uses.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// CPUID.80000001H:EDX.NX [bit 20]: IA32_EFER.NXE and the XD page bit exist.
    pub nx: bool,
    /// CPUID.80000001H:EDX.Page1GB [bit 26]: 1 GiB pages in the PDPT.
    pub page_1g: bool,
    /// CPUID.(EAX=07H,ECX=0):EBX.RDSEED [bit 18].
    pub rdseed: bool,
}

fn leaf(eax: u32) -> Option<CpuidResult> {
    let base = eax & 0x8000_0000;
    // CPUID.0H:EAX (or 80000000H:EAX) is the highest leaf of that range.
    (__cpuid(base).eax >= eax).then(|| __cpuid_count(eax, 0))
}

impl Features {
    pub fn read() -> Features {
        let ext = leaf(0x8000_0001);
        let seven = leaf(7);
        let bit = |r: Option<u32>, n: u32| r.is_some_and(|v| v & (1 << n) != 0);
        Features {
            nx: bit(ext.map(|r| r.edx), 20),
            page_1g: bit(ext.map(|r| r.edx), 26),
            rdseed: bit(seven.map(|r| r.ebx), 18),
        }
    }
}

/// One RDRAND value, where CPUID.01H:ECX.RDRAND [bit 30] says the instruction exists
/// and it succeeds (CF = 1) within the retries the SDM recommends (10).
pub fn rdrand() -> Option<u64> {
    let rng = RdRand::new()?;
    (0..10).find_map(|_| rng.get_u64())
}

/// One RDSEED value, where `features.rdseed`; RDSEED fails (CF = 0) while the entropy
/// source catches up, so it is retried a bounded number of times.
pub fn rdseed(features: &Features) -> Option<u64> {
    if !features.rdseed {
        return None;
    }
    (0..100).find_map(|_| {
        let (value, ok): (u64, u8);
        // SAFETY: CPUID says RDSEED exists; it writes a register and CF only.
        unsafe {
            asm!("rdseed {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok,
                 options(nomem, nostack))
        };
        (ok != 0).then_some(value)
    })
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC reads a counter (CR4.TSD only matters outside ring 0).
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    u64::from(hi) << 32 | u64::from(lo)
}

/// The TSC's frequency in Hz: CPUID.15H (crystal clock times the TSC/crystal ratio)
/// where it names the crystal, else CPUID.16H:EAX (base frequency in MHz), else
/// measured against the PIT stopwatch [`start_pit_stopwatch`] started (once: the figure
/// is kept); 0 if nothing says.
pub fn tsc_frequency() -> u64 {
    static HZ: AtomicU64 = AtomicU64::new(u64::MAX);
    let hz = HZ.load(Ordering::Relaxed);
    if hz != u64::MAX {
        return hz;
    }
    let hz = measure_tsc_frequency();
    HZ.store(hz, Ordering::Relaxed);
    hz
}

fn measure_tsc_frequency() -> u64 {
    if let Some(r) = leaf(0x15).filter(|r| r.eax != 0 && r.ebx != 0 && r.ecx != 0) {
        return u64::from(r.ecx) * u64::from(r.ebx) / u64::from(r.eax);
    }
    match leaf(0x16).map_or(0, |r| u64::from(r.eax & 0xffff)) {
        0 => pit_calibrate(),
        mhz => mhz * 1_000_000,
    }
}

/// The 8254 PIT's input clock, Hz.
const PIT_HZ: u64 = 1_193_182;
/// PIT counts the measurement spans at least: 250 us, one count in 298 (0.34%), enough
/// for boot timings. A boot lasting longer (any that inflates a kernel) measures over
/// all of it; a shorter one waits out the rest.
const PIT_MIN: u16 = (PIT_HZ / 4000) as u16;
/// The TSC when the stopwatch was (re)started; 0 before.
static STOPWATCH_TSC: AtomicU64 = AtomicU64::new(0);

/// PIT channel 2 (the speaker's timer, as Linux's pit_calibrate_tsc uses it) as a
/// stopwatch: gate on, speaker off (port 0x61 bits 0, 1), mode 0 counting down from
/// 0xffff, about 55 ms; OUT2 (port 0x61 bit 5) goes high at terminal count. Started at
/// entry, so that the TSC is measured over the boot itself instead of a busy wait.
pub fn start_pit_stopwatch() {
    let mut nmi_sc = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: the PC's system control port B and PIT channel 2; nothing else uses them,
    // and they touch no memory.
    unsafe {
        let b = nmi_sc.read();
        nmi_sc.write((b & !0x02) | 0x01);
        command.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        channel2.write(0xff);
        channel2.write(0xff);
    }
    STOPWATCH_TSC.store(rdtsc(), Ordering::Relaxed);
}

/// PIT channel 2's count (latched, then read low byte first) and OUT2.
fn pit_count() -> (u16, bool) {
    let mut nmi_sc = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: as in `start_pit_stopwatch`.
    unsafe {
        command.write(0b1000_0000); // counter latch, channel 2
        let low = channel2.read();
        let high = channel2.read();
        (u16::from_le_bytes([low, high]), nmi_sc.read() & 0x20 != 0)
    }
}

/// TSC ticks per second from the stopwatch: over the time since it started, if at
/// least [`PIT_MIN`] counts and it has not run out; else restarted and waited on. 0
/// without a PIT (a bounded wait) or with one that does not count.
fn pit_calibrate() -> u64 {
    if STOPWATCH_TSC.load(Ordering::Relaxed) == 0 || pit_count().1 {
        start_pit_stopwatch();
    }
    let start = STOPWATCH_TSC.load(Ordering::Relaxed);
    loop {
        let (count, out) = pit_count();
        let now = rdtsc();
        let elapsed = 0xffff - count;
        if out {
            // Ran out while waiting: only a PIT 30 times slower than its clock could.
            return 0;
        }
        if elapsed >= PIT_MIN {
            // A PIT that is not there, or not counting, reads as a count at once: a TSC
            // below 100 MHz is taken for that, not for a frequency.
            let hz = now.wrapping_sub(start) * PIT_HZ / u64::from(elapsed);
            return if hz < 100_000_000 { 0 } else { hz };
        }
        if now.wrapping_sub(start) > 1 << 36 {
            return 0;
        }
    }
}

/// IA32_EFER.NXE (where the CPU has it) and CR0.WP: the XD bit takes effect and
/// read-only pages are read-only at ring 0 too. Must precede any table with XD set.
pub fn enable_nx_wp(features: &Features) {
    if features.nx {
        // SAFETY: setting NXE only makes bit 63 of page-table entries meaningful; none
        // of the tables in use sets it.
        unsafe { Efer::update(|f| f.insert(EferFlags::NO_EXECUTE_ENABLE)) };
    }
    // SAFETY: CR0.WP only stops ring-0 writes to read-only pages; the shim writes none.
    unsafe { Cr0::update(|f| f.insert(Cr0Flags::WRITE_PROTECT)) };
}

/// SSE state on, as the SDM's "Initialization of the SSE Extensions" (volume 3A)
/// asks: CR0.EM clear (no x87 emulation: SSE instructions would fault #UD), CR0.MP
/// set, CR4.OSFXSR (FXSAVE/FXRSTOR save the XMM registers: without it SSE faults #UD)
/// and CR4.OSXMMEXCPT (SIMD floating-point errors raise #XM, not #UD); and CR0.TS
/// clear, or the first SSE instruction faults #NM. Loaders leave these as they please
/// (SeaBIOS and GRUB: off; a Linux kexec: on).
pub fn enable_sse() {
    // SAFETY: the soft-float code the compiler emits never touches XMM or x87 state,
    // so the shim relies on none of these bits; they only let SSE instructions run.
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR);
        });
        Cr4::update(|f| f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE));
    }
}

/// Loads CR3 (and so flushes the non-global TLB entries).
///
/// # Safety
/// `pml4` is a 4 KiB-aligned PML4 whose tables map the code, stack and data in use at
/// their current addresses.
pub unsafe fn load_cr3(pml4: u64) {
    let frame = PhysFrame::containing_address(PhysAddr::new(pml4));
    // SAFETY: as the caller promises.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

/// Stops here for good: the shim has said why on the console.
pub fn halt() -> ! {
    loop {
        // SAFETY: with interrupts off, hlt waits for an NMI or reset; nothing else runs.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

extern "C" {
    fn shim_enter_payload(entry: u64, info: u64, boot_params: u64, bottom: u64, top: u64) -> !;
    static __stack_bottom: u8;
    static __stack_top: u8;
}

/// Jumps to the payload (handoff.S): rdi = boot-info block, rsi = boot_params, both
/// physical, with the shim's stack and the other general registers wiped.
///
/// # Safety
/// `entry` is mapped executable and the payload there expects this handoff; nothing
/// on the shim's stack is needed any more.
pub unsafe fn jump(entry: u64, info: u64, boot_params: u64) -> ! {
    let bottom = core::ptr::addr_of!(__stack_bottom) as u64;
    let top = core::ptr::addr_of!(__stack_top) as u64;
    // SAFETY: as the caller promises; the routine never returns.
    unsafe { shim_enter_payload(entry, info, boot_params, bottom, top) }
}
