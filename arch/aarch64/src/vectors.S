/*
 * The exception vectors (ARM ARM D1.10.2: 16 entries of 0x80 bytes, 2 KiB aligned),
 * one table for VBAR_EL1 and, when the shim was entered at EL2, VBAR_EL2.
 * - At EL1 nothing here is expected to run: every exception is a bug or bad hardware,
 *   so each entry passes its index to `exception`, which prints one line and halts.
 *   The payload inherits them until it installs its own VBAR_EL1.
 * - At EL2 the only exception that can come is a hypervisor call from EL1 (HCR_EL2
 *   routes nothing else here): entry 8, lower EL AArch64 synchronous. Any other entry
 *   taken at EL2 is a bug in entry.S and parks.
 * The table's 2 KiB alignment comes from linker.ld, which puts it where the padding
 * costs least.
 */
    .section .text.vectors, "ax"
    .balign 0x80
    .global exception_vectors
exception_vectors:
    .irp index, 0, 1, 2, 3, 4, 5, 6, 7
    .balign 0x80
    mov     x0, #\index
    b       take_exception
    .endr
    .balign 0x80
    stp     x9, x10, [sp, #-32]!    // 8: lower EL, AArch64, synchronous
    mrs     x9, CurrentEL
    cmp     x9, #(2 << 2)
    b.eq    el2_sync_lower
    mov     x0, #8
    b       take_exception
    .irp index, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    mov     x0, #\index
    b       take_exception
    .endr

take_exception:
    mrs     x9, CurrentEL
    cmp     x9, #(2 << 2)
    b.eq    el2_halt
    mrs     x1, esr_el1             // ESR_EL1: exception class and syndrome
    mrs     x2, elr_el1             // ELR_EL1: the faulting instruction
    mrs     x3, far_el1             // FAR_EL1: the faulting address, for aborts
    adrp    x9, __stack_top         // a known-good stack, whatever sp was
    add     x9, x9, :lo12:__stack_top
    mov     sp, x9
    b       exception

/*
 * The hypervisor call at EL2, entered with x9 and x10 pushed:
 * - x0 = SHIM_HVC_ENTER, made from shim_enter_linux (ELR_EL2 = shim_hvc_return) while
 *   shim_el2_armed is set: disarm, and enter the kernel at EL2 with x0 = FDT (x2),
 *   x1 = x2 = x3 = 0, at x1, MMU off, DAIF masked (as the exception left them).
 * - any other call (a payload's PSCI probe, say) returns x0 = -1, SMCCC's
 *   NOT_SUPPORTED, preserving every other register (SMCCC v1.1).
 * Runs with the EL2 MMU off, on its own small stack (el2_stack, set by entry.S).
 */
    .set    SHIM_HVC_ENTER, 0xc6005348
    .set    EC_HVC64, 0x16

el2_sync_lower:
    stp     x11, x12, [sp, #16]
    mrs     x9, esr_el2
    lsr     x9, x9, #26             // ESR_EL2.EC
    cmp     x9, #EC_HVC64
    b.ne    el2_refuse
    movz    x9, #(SHIM_HVC_ENTER & 0xffff)
    movk    x9, #(SHIM_HVC_ENTER >> 16), lsl #16
    cmp     x0, x9
    b.ne    el2_refuse
    adrp    x9, shim_el2_armed
    add     x9, x9, :lo12:shim_el2_armed
    ldr     x10, [x9]
    cbz     x10, el2_refuse
    mrs     x10, elr_el2
    adrp    x11, shim_hvc_return
    add     x11, x11, :lo12:shim_hvc_return
    cmp     x10, x11
    b.ne    el2_refuse
    str     xzr, [x9]
    mov     x9, x1
    mov     x0, x2
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    mov     x10, xzr
    mov     x11, xzr
    mov     x12, xzr
    br      x9

el2_refuse:
    ldp     x11, x12, [sp, #16]
    ldp     x9, x10, [sp], #32
    movn    x0, #0                  // -1: NOT_SUPPORTED
    eret

el2_halt:
    wfe
    b       el2_halt

    .section .bss.el2_stack, "aw", %nobits
    .balign 16
el2_stack:
    .space  256
    .global el2_stack_top
el2_stack_top:
