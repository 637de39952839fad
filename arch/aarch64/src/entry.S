/*
 * The arm64 Image header and the first instructions. Runs with the MMU off, at EL2 or
 * EL1, from wherever the loader put us: only PC-relative addressing until our own
 * relocations are applied, and only aligned accesses (all memory is Device-nGnRnE).
 * Documentation/arch/arm64/booting.rst: x0 = FDT, x1..x3 = 0 (x1 = image offset in
 * Ard Biesheuvel's 2015 RFC), DAIF masked, MMU off.
 */

    .section .head, "ax"
    .global _start
_start:
    b       primary_entry           // code0: branch to the entry
    .long   0                       // code1
    .quad   0                       // text_offset: load at a 2 MiB-aligned base
    .quad   __image_end - _start    // image_size: xtask rewrites it to the packed length
    .quad   0xa                     // flags: bit 0 = 0 LE, bits 1-2 = 1 4K pages,
                                    //        bit 3 = 1 anywhere in physical memory
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic 0x644d5241
    .long   0                       // res5: no PE/COFF header

    /* 0x40: the board's early UART, which xtask writes for the board it packs for
     * (shim-boards' console): the one line an incomplete image prints goes there. */
    .global early_uart
early_uart:
    .quad   0                       // base: the UART's physical address, 0 for none
    .long   0                       // kind: 1 PL011, 2 8250/16550 (MMIO), 3 i.MX
    .byte   0                       // 16550: register shift
    .byte   0                       // 16550: register width, 1 or 4 bytes
    .short  0

/* Stores the 16 bytes of q\v to every 16 of [\from, \to), both 64-byte aligned: two
 * 32-byte pairs a loop. With the MMU off all is Device memory: no DC ZVA, and every
 * store is its own write, so the widest aligned ones are the fewest. */
.macro fill64 from, to, v
    cmp     \from, \to
    b.hs    2f
1:  stp     q\v, q\v, [\from], #32
    stp     q\v, q\v, [\from], #32
    cmp     \from, \to
    b.lo    1b
2:
.endm

    .section .text.entry, "ax"
primary_entry:
    mrs     x23, cntpct_el0         // x23 = the counter at entry, where `total` starts
    mov     x19, x0                 // x19 = FDT physical address
    mov     x20, x1                 // x20 = image offset from the loader, or 0
    adrp    x21, _start             // x21 = where we run (linked at 0)
    add     x21, x21, :lo12:_start
    mrs     x22, CurrentEL
    lsr     x22, x22, #2            // x22 = the exception level we were entered at

    cmp     x22, #2
    b.ne    el1_entry

    /* EL2: set up a plain EL1 and drop to it, leaving vectors that answer its hypervisor
     * calls (vectors.S) on a stack of their own. */
    adrp    x9, exception_vectors
    add     x9, x9, :lo12:exception_vectors
    msr     vbar_el2, x9
    msr     spsel, #1
    adrp    x9, el2_stack_top
    add     x9, x9, :lo12:el2_stack_top
    mov     sp, x9
    mrs     x9, midr_el1            // EL1 reads of MIDR/MPIDR return these
    msr     vpidr_el2, x9
    mrs     x9, mpidr_el1
    msr     vmpidr_el2, x9
    mov     x9, #(1 << 31)          // HCR_EL2.RW = 1: EL1 is AArch64; E2H, TGE, traps off
    msr     hcr_el2, x9
    mov     x9, #3                  // CNTHCTL_EL2.EL1PCTEN | EL1PCEN: EL1 uses the counter
    msr     cnthctl_el2, x9
    msr     cntvoff_el2, xzr        // CNTVOFF_EL2 = 0: virtual count = physical count
    mov     x9, #0x33ff             // CPTR_EL2: RES1 bits [13:12], [9:0]; TFP = 0
    mrs     x10, hcr_el2            // HCR_EL2.E2H reads 1 where it is RES1 (no FEAT_E2H0):
    tbz     x10, #34, 1f            //   then CPTR_EL2 has the CPACR_EL1 layout instead:
    mov     x9, #(3 << 20)          //   FPEN = 0b11, FP/SIMD not trapped
1:  msr     cptr_el2, x9
    mrs     x9, id_aa64pfr0_el1     // A GICv3 system register interface (PFR0.GIC != 0):
    ubfx    x9, x9, #24, #4         //   let EL1 use it, as Linux's init_el2_state does
    cbz     x9, 2f
    mrs     x9, s3_4_c12_c9_5       // ICC_SRE_EL2
    mov     x10, #0x9               //   SRE (bit 0) and Enable (bit 3)
    orr     x9, x9, x10
    msr     s3_4_c12_c9_5, x9
    isb
2:
    movz    x9, #0x0800             // SCTLR_EL1: RES1 bits (29, 28, 23, 22, 20, 11);
    movk    x9, #0x30d0, lsl #16    //   M = C = I = 0: MMU and caches off, little-endian
    msr     sctlr_el1, x9
    mov     x9, #0x3c5              // SPSR_EL2: D, A, I, F masked; M[3:0] = 0b0101 EL1h
    msr     spsr_el2, x9
    adr     x9, el1_entry
    msr     elr_el2, x9
    eret

el1_entry:
    mov     x9, #(3 << 20)          // CPACR_EL1.FPEN = 0b11: FP/SIMD not trapped
    msr     cpacr_el1, x9
    adrp    x9, exception_vectors   // VBAR_EL1: our vectors (vectors.S), PC-relative
    add     x9, x9, :lo12:exception_vectors
    msr     vbar_el1, x9
    isb

    /* The whole image is here: its last loaded word is the tail magic ("!SHIMEND",
     * linker.ld's .tail). */
    adrp    x9, __image_tail
    ldr     x9, [x9, :lo12:__image_tail]
    movz    x10, #0x5321
    movk    x10, #0x4948, lsl #16
    movk    x10, #0x454d, lsl #32
    movk    x10, #0x444e, lsl #48
    cmp     x9, x10
    b.ne    truncated

    /* Apply our R_AARCH64_RELATIVE relocations: *(base + r_offset) = base + r_addend,
     * each in the data (from __data_start), never in text or read-only data: the cache
     * lines the shim invalidates before the MMU goes on are the data's. */
    adrp    x9, __rela_start
    add     x9, x9, :lo12:__rela_start
    adrp    x10, __rela_end
    add     x10, x10, :lo12:__rela_end
    adrp    x14, __image_end
    add     x14, x14, :lo12:__image_end
    sub     x14, x14, x21
    sub     x14, x14, #8            // x14 = the last offset a quad may be written at
    adrp    x15, __data_start
    add     x15, x15, :lo12:__data_start
    sub     x15, x15, x21           // x15 = the first
1:  cmp     x9, x10
    b.hs    2f
    ldp     x11, x12, [x9]          // r_offset, r_info
    ldr     x13, [x9, #16]          // r_addend
    add     x9, x9, #24
    cmp     x12, #1027              // R_AARCH64_RELATIVE, symbol 0
    b.ne    bad_reloc
    cmp     x11, x14
    b.hi    bad_reloc
    cmp     x11, x15
    b.lo    bad_reloc
    add     x13, x13, x21
    str     x13, [x21, x11]
    b       1b

    /* Zero .bss (64-byte aligned at both ends), then take our stack. */
2:  adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
    movi    v0.2d, #0
    fill64  x9, x10, 0
    /* Paint the stack (STACK_PAINT in stack.rs) so its high-water mark can be read. */
    movz    x11, #0x4e54
    movk    x11, #0x4149, lsl #16
    movk    x11, #0x4b50, lsl #32
    movk    x11, #0x5354, lsl #48
    adrp    x9, __stack_bottom
    add     x9, x9, :lo12:__stack_bottom
    adrp    x10, __stack_top
    add     x10, x10, :lo12:__stack_top
    dup     v0.2d, x11
    fill64  x9, x10, 0
    mov     sp, x10

    mov     x0, x19
    mov     x1, x20
    mov     x2, x21
    mov     x3, x22
    mov     x4, x23
    bl      shim_main               // never returns

    /* An incomplete image or a bad relocation: nothing is safe to run. One line goes
     * to the board's early UART, if xtask named one, and the CPU parks. */
truncated:
    adrp    x14, truncated_msg
    add     x14, x14, :lo12:truncated_msg
    b       early_fail
bad_reloc:
    adrp    x14, bad_reloc_msg
    add     x14, x14, :lo12:bad_reloc_msg
early_fail:                         // x14 = NUL-terminated line
    adr     x9, early_uart
    ldr     x10, [x9]               // base
    ldr     w11, [x9, #8]           // kind
    ldrb    w12, [x9, #12]          // 16550 register shift
    ldrb    w13, [x9, #13]          // 16550 register width
    cbz     x10, park
    mov     x17, #5                 // 16550: the line status register's offset
    lsl     x17, x17, x12
next_char:
    ldrb    w15, [x14], #1
    cbz     w15, park
    mov     x16, #0x100000          // a bounded wait: a stuck UART must not hang us
    cmp     w11, #1
    b.eq    pl011
    cmp     w11, #2
    b.eq    ns16550
    cmp     w11, #3
    b.eq    imx
    b       park
pl011:                              // FR (0x18) bit 5 TXFF; DR at 0
    ldr     w18, [x10, #0x18]
    tbz     w18, #5, 1f
    subs    x16, x16, #1
    b.ne    pl011
1:  str     w15, [x10]
    b       next_char
ns16550:                            // LSR bit 5 THRE; THR at 0
    cmp     w13, #4
    b.eq    2f
    ldrb    w18, [x10, x17]
    b       3f
2:  ldr     w18, [x10, x17]
3:  tbnz    w18, #5, 4f
    subs    x16, x16, #1
    b.ne    ns16550
4:  cmp     w13, #4
    b.eq    5f
    strb    w15, [x10]
    b       next_char
5:  str     w15, [x10]
    b       next_char
imx:                                // UTS (0xb4) bit 4 TXFULL; UTXD at 0x40
    ldr     w18, [x10, #0xb4]
    tbz     w18, #4, 6f
    subs    x16, x16, #1
    b.ne    imx
6:  str     w15, [x10, #0x40]
    b       next_char
park:
    wfe
    b       park

    /* The lines stay beside the code that prints them, at the start of the image: a
     * cut anywhere later leaves them whole. */
truncated_msg:
    .asciz  "shim: error: the shim's image is incomplete (the loader read only part of it)\r\n"
bad_reloc_msg:
    .asciz  "shim: error: the shim's own relocations are corrupt (a damaged image)\r\n"
