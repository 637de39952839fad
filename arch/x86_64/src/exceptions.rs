//! The IDT: every CPU exception reaches `exception` through the stubs in vectors.S and
//! ends in one `shim: error:` line and a halt, instead of a silent triple fault.
//! Interrupts stay masked; only the 32 exception vectors are present.

use core::mem::MaybeUninit;

use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::VirtAddr;

use crate::{console, cpu, say};

extern "C" {
    /// 32 stubs, 16 bytes apart (vectors.S).
    static exception_stubs: u8;
}

/// Only the exception entries are filled; vectors 32-255 stay absent. Built at run
/// time: a table of absent gates is not all zeros, and as an initialised static its
/// 4 KiB would be carried in the image.
static mut IDT: MaybeUninit<InterruptDescriptorTable> = MaybeUninit::uninit();

/// Points every architectural exception at its stub (an interrupt gate, present, DPL 0,
/// the current CS, no IST) and loads the table. Reserved vectors stay absent: one
/// raised anyway (or 9, unused since the 486) becomes a #GP, which is reported.
pub fn install() {
    let stubs = core::ptr::addr_of!(exception_stubs) as u64;
    let stub = |vector: u64| VirtAddr::new(stubs + 16 * vector);
    // SAFETY: runs once, early, with interrupts off: nothing else uses IDT yet, and no
    // reference to it outlives this function.
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) }.write(InterruptDescriptorTable::new());
    // SAFETY: each address is the stub vectors.S assembles for that vector, which
    // expects exactly that vector's frame (with or without an error code).
    unsafe {
        idt.divide_error.set_handler_addr(stub(0));
        idt.debug.set_handler_addr(stub(1));
        idt.non_maskable_interrupt.set_handler_addr(stub(2));
        idt.breakpoint.set_handler_addr(stub(3));
        idt.overflow.set_handler_addr(stub(4));
        idt.bound_range_exceeded.set_handler_addr(stub(5));
        idt.invalid_opcode.set_handler_addr(stub(6));
        idt.device_not_available.set_handler_addr(stub(7));
        idt.double_fault.set_handler_addr(stub(8));
        idt.invalid_tss.set_handler_addr(stub(10));
        idt.segment_not_present.set_handler_addr(stub(11));
        idt.stack_segment_fault.set_handler_addr(stub(12));
        idt.general_protection_fault.set_handler_addr(stub(13));
        idt.page_fault.set_handler_addr(stub(14));
        idt.x87_floating_point.set_handler_addr(stub(16));
        idt.alignment_check.set_handler_addr(stub(17));
        idt.machine_check.set_handler_addr(stub(18));
        idt.simd_floating_point.set_handler_addr(stub(19));
        idt.virtualization.set_handler_addr(stub(20));
        idt.cp_protection_exception.set_handler_addr(stub(21));
        idt.hv_injection_exception.set_handler_addr(stub(28));
        idt.vmm_communication_exception.set_handler_addr(stub(29));
        idt.security_exception.set_handler_addr(stub(30));
    }
    // SAFETY: the table is a static that is never written again, and its gates point
    // at the stubs in our own (identity-mapped, executable) text.
    unsafe { idt.load_unsafe() };
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
