/*
 * Leaving the shim. Nothing here returns, and nothing uses the stack: the first step
 * of each path wipes it. Secrets (firmware seeds, the mixer, the placement key) lived
 * only on that stack and in registers, so both are cleared before the jump.
 *
 * shim_enter_payload(entry, x0, x1, stack_bottom, stack_top): an ELF payload, at EL1
 * with the MMU and caches on (the payload ABI in the README).
 *
 * shim_enter_linux(entry, fdt, at_el2, stack_bottom, stack_top): a Linux Image as
 * Documentation/arch/arm64/booting.rst asks: MMU and D-cache off, x0 = FDT,
 * x1 = x2 = x3 = 0, DAIF masked, at EL2 when the loader entered the shim at EL2
 * (through the one hypervisor call vectors.S accepts there), else at EL1.
 * The caller has cleaned the Image and the device tree to the PoC.
 */

/* 0xc600_5348: an SMCCC fast call in the hypervisor service range ("SH"). */
    .set    SHIM_HVC_ENTER, 0xc6005348

/* Zeroes [\from, \to), both 4 KiB aligned (linker.ld's stack), with the caches as they
 * are: a DC ZVA block at a time (DCZID_EL0: 4 << BS bytes, at most 2 KiB, so never past
 * either end), or 64 bytes a step where DCZID_EL0.DZP prohibits DC ZVA. */
.macro wipe from, to, tmp, step
    mov     \tmp, \from
    mrs     \step, dczid_el0
    tbnz    \step, #4, 3f           // DZP
    and     \step, \step, #0xf
    mov     \tmp, #4
    lsl     \step, \tmp, \step      // the block size in bytes
    mov     \tmp, \from
1:  cmp     \tmp, \to
    b.hs    4f
    dc      zva, \tmp
    add     \tmp, \tmp, \step
    b       1b
3:  cmp     \tmp, \to
    b.hs    4f
    stp     xzr, xzr, [\tmp]
    stp     xzr, xzr, [\tmp, #16]
    stp     xzr, xzr, [\tmp, #32]
    stp     xzr, xzr, [\tmp, #48]
    add     \tmp, \tmp, #64
    b       3b
4:
.endm

/* Zeroes the general registers x4..x8 and x10..x30 and every SIMD register. */
.macro clear_registers
    .irp    r, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30
    mov     x\r, xzr
    .endr
    .irp    r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
    movi    d\r, #0                 // a D write zeroes the whole V register
    .endr
.endm

    .section .text.handoff, "ax"
    .global shim_enter_payload
shim_enter_payload:
    msr     daifset, #0xf
    wipe    x3, x4, x9, x10
    mov     x9, x0
    mov     x0, x1
    mov     x1, x2
    mov     x2, xzr
    mov     x3, xzr
    clear_registers
    br      x9

    .global shim_enter_linux
shim_enter_linux:
    msr     daifset, #0xf
    wipe    x3, x4, x9, x10
    /* Clean and invalidate the wiped stack to the PoC: with the MMU off, the kernel
     * reads memory, not the zeros still in the cache. */
    mrs     x10, ctr_el0
    ubfx    x10, x10, #16, #4       // CTR_EL0.DminLine: log2(words) of a line
    mov     x11, #4
    lsl     x11, x11, x10           // x11 = line size in bytes
    sub     x12, x11, #1
    bic     x9, x3, x12
3:  cmp     x9, x4
    b.hs    4f
    dc      civac, x9
    add     x9, x9, x11
    b       3b
4:  dsb     sy

    /* MMU and caches off: SCTLR_EL1 as at reset, its RES1 bits only. */
    movz    x9, #0x0800
    movk    x9, #0x30d0, lsl #16
    msr     sctlr_el1, x9
    isb
    ic      iallu
    /* Undo the rest of the shim's EL1 state. */
    msr     ttbr0_el1, xzr
    msr     ttbr1_el1, xzr
    msr     tcr_el1, xzr
    msr     mair_el1, xzr
    msr     vbar_el1, xzr
    tlbi    vmalle1
    dsb     nsh
    isb
    cbnz    x2, 5f

    mov     x9, x0
    mov     x0, x1
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    clear_registers
    br      x9

    /* EL2: arm the one hypervisor call the EL2 vectors accept, then make it. The store
     * goes to memory (MMU off); the line is invalidated so no stale copy survives. */
5:  adrp    x9, shim_el2_armed
    add     x9, x9, :lo12:shim_el2_armed
    mov     x10, #1
    str     x10, [x9]
    dc      civac, x9
    dsb     sy
    mov     x2, x1                  // x2 = FDT
    mov     x1, x0                  // x1 = entry
    movz    x0, #(SHIM_HVC_ENTER & 0xffff)
    movk    x0, #(SHIM_HVC_ENTER >> 16), lsl #16
    mov     x3, xzr
    clear_registers
    hvc     #0
    .global shim_hvc_return
shim_hvc_return:
    /* Refused: nothing sane is left to do, and the console is the kernel's now. */
6:  wfe
    b       6b

    .section .data.el2, "aw"
    .balign 64
    .global shim_el2_armed
shim_el2_armed:
    .quad   0
    .balign 64
