/*
 * The Image header (Documentation/arch/arm64/booting.rst), then the scan.
 * QEMU virt: RAM from 0x40000000 (the test runs with -m 512M), PL011 at 0x09000000,
 * PSCI through hvc at EL1. The planted seed is built from immediates, so this image
 * holds no copy of it; its own 4 KiB are skipped anyway.
 */
    .set    RAM_BASE, 0x40000000
    .set    RAM_SIZE, 512 << 20
    .set    UART, 0x09000000
    .set    PSCI_SYSTEM_OFF, 0x84000008

    .section .head, "ax"
    .global _start
_start:
    b       scan
    .long   0
    .quad   0                       // text_offset
    .quad   _image_end - _start     // image_size
    .quad   0xa                     // LE, 4K pages, anywhere
    .quad   0, 0, 0
    .ascii  "ARM\x64"
    .long   0

    .text
scan:
    movz    x20, #0x1234            // x20 = 0x5eedc0dea5a51234, x21 = its bytes reversed
    movk    x20, #0xa5a5, lsl #16
    movk    x20, #0xc0de, lsl #32
    movk    x20, #0x5eed, lsl #48
    rev     x21, x20
    and     x9, x20, #0xff          // the first byte in memory of each byte order,
    and     x10, x21, #0xff         // repeated over a word
    movz    x11, #0x0101
    movk    x11, #0x0101, lsl #16
    movk    x11, #0x0101, lsl #32
    movk    x11, #0x0101, lsl #48   // x11 = 0x0101..01
    mul     x22, x9, x11
    mul     x23, x10, x11
    lsl     x12, x11, #7            // x12 = 0x8080..80
    adr     x24, _start             // our own image: skipped
    adr     x25, _image_end
    mov     x26, #RAM_BASE
    mov     x27, #(RAM_BASE + RAM_SIZE)

1:  cmp     x26, x27
    b.hs    clean
    cmp     x26, x24
    b.lo    2f
    cmp     x26, x25
    b.hs    2f
    mov     x26, x25
    b       1b
2:  ldr     x0, [x26]
    /* Does any byte of x0 equal a first byte? (x ^ rep) has a zero byte. */
    eor     x1, x0, x22
    sub     x2, x1, x11
    bic     x2, x2, x1
    eor     x3, x0, x23
    sub     x4, x3, x11
    bic     x4, x4, x3
    orr     x2, x2, x4
    tst     x2, x12
    b.eq    5f
    /* Candidate: compare all 8 byte offsets against both orders. */
    add     x5, x26, #8
    mov     x1, xzr
    cmp     x5, x27
    b.hs    3f
    ldr     x1, [x5]
3:  mov     x6, #0                  // x6 = shift in bits
4:  lsr     x2, x0, x6
    neg     x7, x6
    lsl     x3, x1, x7
    cmp     x6, #0
    csel    x3, xzr, x3, eq         // shift 0: no bits from the next word
    orr     x2, x2, x3
    cmp     x2, x20
    b.eq    found
    cmp     x2, x21
    b.eq    found
    add     x6, x6, #8
    cmp     x6, #64
    b.lo    4b
5:  add     x26, x26, #8
    b       1b

found:
    adr     x0, msg_found
    bl      puts
    add     x0, x26, x6, lsr #3     // the address of the copy
    bl      puthex
    adr     x0, msg_nl
    bl      puts
    b       off

clean:
    adr     x0, msg_clean
    bl      puts
    adr     x0, _start
    bl      puthex
    adr     x0, msg_scanned
    bl      puts

    /* PSCI SYSTEM_OFF: through hvc at EL1 (QEMU virt without EL2), through smc when
     * the shim entered us at EL2 (virtualization=on puts PSCI behind smc). */
off:
    movz    x0, #(PSCI_SYSTEM_OFF & 0xffff)
    movk    x0, #(PSCI_SYSTEM_OFF >> 16), lsl #16
    mrs     x1, CurrentEL
    cmp     x1, #(2 << 2)
    b.eq    5f
    hvc     #0
    b       6f
5:  smc     #0
6:  wfe
    b       6b

/* puts(x0 = NUL-terminated string); clobbers x0-x3. */
puts:
    mov     x3, #UART
7:  ldrb    w1, [x0], #1
    cbz     w1, 9f
8:  ldr     w2, [x3, #0x18]         // UARTFR
    tbnz    w2, #5, 8b              // TXFF
    str     w1, [x3]
    b       7b
9:  ret

/* puthex(x0): 16 hex digits; clobbers x0-x5. */
puthex:
    mov     x3, #UART
    mov     x4, x0
    mov     x5, #64
10: sub     x5, x5, #4
    lsr     x1, x4, x5
    and     x1, x1, #0xf
    cmp     x1, #10
    add     x2, x1, #'0'
    add     x1, x1, #('a' - 10)
    csel    x1, x2, x1, lo
11: ldr     w2, [x3, #0x18]
    tbnz    w2, #5, 11b
    str     w1, [x3]
    cbnz    x5, 10b
    ret

msg_found:
    .asciz  "payload: FAIL residue: the planted seed is at pa=0x"
msg_clean:
    .asciz  "payload: ok va=0x0 pa=0x"
msg_scanned:
    .asciz  " residue-scan=512MiB\n"
msg_nl:
    .asciz  "\n"
    .balign 4
