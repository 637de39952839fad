//! The IDT: every CPU exception reaches `exception` through the stubs in vectors.S and
//! ends in one `shim: error:` line and a halt, instead of a silent triple fault.
//! Interrupts stay masked; only the 32 exception vectors are present.

use x86_64::instructions::tables::lidt;
use x86_64::registers::segmentation::{Segment, CS};
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

use crate::{console, cpu, say};

extern "C" {
    /// 32 stubs, 16 bytes apart (vectors.S).
    static exception_stubs: u8;
}

/// 32 gate descriptors of 16 bytes (two u64 each).
static mut IDT: [u64; 64] = [0; 64];

/// Builds the IDT with 64-bit interrupt gates (type 0xE, present, DPL 0) to the stubs
/// and loads it.
pub fn install() {
    let stubs = core::ptr::addr_of!(exception_stubs) as u64;
    let selector = u64::from(CS::get_reg().0);
    // SAFETY: runs once, early, with interrupts off: nothing else uses IDT yet.
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    for (vector, gate) in idt.chunks_exact_mut(2).enumerate() {
        let handler = stubs + 16 * vector as u64;
        // Offset 15:0, segment selector, IST 0, type 0xE | P (0x8E), offset 31:16;
        // then offset 63:32.
        gate[0] =
            (handler & 0xffff) | (selector << 16) | (0x8e << 40) | ((handler >> 16) & 0xffff) << 48;
        gate[1] = handler >> 32;
    }
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of_val(idt) - 1) as u16,
        base: VirtAddr::new(idt.as_ptr() as u64),
    };
    // SAFETY: the table is static, complete for vectors 0-31, and its gates point at
    // the stubs in our own (identity-mapped, executable) text.
    unsafe { lidt(&pointer) };
}

/// Called by the stubs; never returns.
#[no_mangle]
extern "C" fn exception(vector: u64, error: u64, rip: u64, cr2: u64) -> ! {
    const NAMES: [&str; 22] = [
        "#DE",
        "#DB",
        "NMI",
        "#BP",
        "#OF",
        "#BR",
        "#UD",
        "#NM",
        "#DF",
        "coprocessor",
        "#TS",
        "#NP",
        "#SS",
        "#GP",
        "#PF",
        "reserved",
        "#MF",
        "#AC",
        "#MC",
        "#XM",
        "#VE",
        "#CP",
    ];
    let name = NAMES.get(vector as usize).copied().unwrap_or("exception");
    say!(
        "error: CPU exception {name} (vector {vector}) error={error:#x} rip={rip:#x} cr2={cr2:#x}"
    );
    console::flush();
    cpu::halt()
}
