/*
 * SHA-256 blocks for arm64 CPUs without the SHA-256 instructions (the Raspberry Pi 4's
 * Cortex-A72), the plan of Linux's sha256_block_neon: the 64 rounds in general registers
 * (FIPS 180-4 6.2.2), each quad of them after the Advanced SIMD message schedule of the
 * quad four on, so an out-of-order core runs the two side by side. llvm-mca's Cortex-A72
 * model (cargo xtask mca): 590 cycles a block; 932 with the whole schedule first.
 *
 *   void shim_sha256_neon_blocks(uint32_t state[8], const uint8_t blocks[][64], size_t n)
 *
 * AAPCS64: x0 = the state, a..h as FIPS 180-4 numbers them; x1 = the blocks, at any
 * byte address; x2 = how many. Clobbers x1-x17 and v0-v7; keeps x19 and x20 on the
 * stack beside the 256-byte W + K buffer. The handoff wipes both, and the registers.
 *
 *   w4-w11     a..h (the round macros rename them, four rounds a turn)
 *   w12 w13    scratch
 *   w14 w15    b ^ c for this round, a ^ b for the next (Maj, below)
 *   w16 w17    W[t] + K[t] for two rounds
 *   x3         the next W + K to read; x19 where the scheduled quads end
 *   x20        the next round constants to read
 *   v0-v3      the message schedule, four words each, in rotation
 *   v4-v7      scratch
 */

/* s0 (3, 7, 18) or s1 (10, 17, 19) of each 32-bit lane of \x into \d, with \t
 * scratch: \w = 4s, \b = 16b for four lanes; 2s, 8b for the low two (a 64-bit write
 * zeroes the high half of \d). A rotate is a right shift and a left insert. */
.macro shim_sha256_sigma w, b, d, x, t, shr, ror1, ror2
    ushr        \d\().\w, \x\().\w, #\ror1
    sli         \d\().\w, \x\().\w, #32 - \ror1
    ushr        \t\().\w, \x\().\w, #\ror2
    sli         \t\().\w, \x\().\w, #32 - \ror2
    eor         \d\().\b, \d\().\b, \t\().\b
    ushr        \t\().\w, \x\().\w, #\shr
    eor         \d\().\b, \d\().\b, \t\().\b
.endm

/* Turns \cur = W[t-16..t-13] into W[t..t+3] (FIPS 180-4 6.2.2 step 1), with \n1, \n2,
 * \n3 the three quads after it, and stores W + K for them 64 bytes past x3 (the quad
 * four on from the one the next rounds read); the constants come from x20 on. */
.macro shim_sha256_schedule cur, n1, n2, n3
    ld1         {v7.4s}, [x20], #16
    ext         v4.16b, \cur\().16b, \n1\().16b, #4     // W[t-15..t-12]
    shim_sha256_sigma 4s, 16b, v5, v4, v6, 3, 7, 18
    add         \cur\().4s, \cur\().4s, v5.4s
    ext         v4.16b, \n2\().16b, \n3\().16b, #4      // W[t-7..t-4]
    add         \cur\().4s, \cur\().4s, v4.4s
    ext         v4.16b, \n3\().16b, \n3\().16b, #8      // W[t-2], W[t-1] low
    shim_sha256_sigma 2s, 8b, v5, v4, v6, 10, 17, 19
    add         \cur\().4s, \cur\().4s, v5.4s           // W[t], W[t+1] done
    shim_sha256_sigma 2s, 8b, v5, \cur, v6, 10, 17, 19
    ext         v5.16b, v5.16b, v5.16b, #8              // s1(W[t]), s1(W[t+1]) high
    add         \cur\().4s, \cur\().4s, v5.4s
    add         v7.4s, \cur\().4s, v7.4s
    str         q7, [x3, #64]
.endm

/* One round, with \kw = W[t] + K[t]. Ch(e, f, g) = (e & f) + (g & ~e), the two having
 * no bit in common; Maj(a, b, c) = b ^ ((a ^ b) & (b ^ c)), where b ^ c (\bc) is the
 * last round's a ^ b, and this round's (\ab) is kept for the next. */
.macro shim_sha256_round a, b, c, d, e, f, g, h, kw, bc, ab
    add         \h, \h, \kw
    ror         w12, \e, #6
    eor         w12, w12, \e, ror #11
    eor         w12, w12, \e, ror #25                   // S1(e)
    bic         w13, \g, \e
    add         \h, \h, w12
    and         w12, \e, \f
    add         \h, \h, w13
    add         \h, \h, w12                             // T1
    ror         w12, \a, #2
    add         \d, \d, \h
    eor         w12, w12, \a, ror #13
    eor         \ab, \a, \b
    eor         w12, w12, \a, ror #22                   // S0(a)
    and         \bc, \bc, \ab
    add         \h, \h, w12
    eor         \bc, \bc, \b                            // Maj(a, b, c)
    add         \h, \h, \bc                             // T1 + T2: the new a
.endm

/* Four rounds, their W + K from x3 on, with a..h in \a..\h; the next four take
 * them four names on (\e..\h, \a..\d), and the names are back after eight. */
.macro shim_sha256_rounds4 a, b, c, d, e, f, g, h
    ldp     w16, w17, [x3], #8
    shim_sha256_round \a, \b, \c, \d, \e, \f, \g, \h, w16, w14, w15
    shim_sha256_round \h, \a, \b, \c, \d, \e, \f, \g, w17, w15, w14
    ldp     w16, w17, [x3], #8
    shim_sha256_round \g, \h, \a, \b, \c, \d, \e, \f, w16, w14, w15
    shim_sha256_round \f, \g, \h, \a, \b, \c, \d, \e, w17, w15, w14
.endm

    .pushsection .text.shim_sha256_neon, "ax", %progbits
    .globl  shim_sha256_neon_blocks
    .type   shim_sha256_neon_blocks, %function
    .balign 16
shim_sha256_neon_blocks:
    cbz     x2, 3f
    sub     sp, sp, #272
    stp     x19, x20, [sp, #256]
    add     x19, sp, #192
    ldp     w4, w5, [x0]
    ldp     w6, w7, [x0, #8]
    ldp     w8, w9, [x0, #16]
    ldp     w10, w11, [x0, #24]
1:
    ld1     {v0.16b-v3.16b}, [x1], #64
    rev32   v0.16b, v0.16b                  // the message is big-endian
    rev32   v1.16b, v1.16b
    rev32   v2.16b, v2.16b
    rev32   v3.16b, v3.16b
    adrp    x20, shim_sha256_k
    add     x20, x20, :lo12:shim_sha256_k
    ld1     {v4.4s-v7.4s}, [x20], #64
    add     v4.4s, v0.4s, v4.4s
    add     v5.4s, v1.4s, v5.4s
    add     v6.4s, v2.4s, v6.4s
    add     v7.4s, v3.4s, v7.4s
    st1     {v4.4s-v7.4s}, [sp]             // W + K for rounds 0-15

    mov     x3, sp
    eor     w14, w5, w6                     // b ^ c
2:  shim_sha256_schedule v0, v1, v2, v3     /* rounds 0-47 in three turns */
    shim_sha256_rounds4 w4, w5, w6, w7, w8, w9, w10, w11
    shim_sha256_schedule v1, v2, v3, v0
    shim_sha256_rounds4 w8, w9, w10, w11, w4, w5, w6, w7
    shim_sha256_schedule v2, v3, v0, v1
    shim_sha256_rounds4 w4, w5, w6, w7, w8, w9, w10, w11
    shim_sha256_schedule v3, v0, v1, v2
    shim_sha256_rounds4 w8, w9, w10, w11, w4, w5, w6, w7
    cmp     x3, x19
    b.ne    2b
    shim_sha256_rounds4 w4, w5, w6, w7, w8, w9, w10, w11    /* rounds 48-63: W + K all stored */
    shim_sha256_rounds4 w8, w9, w10, w11, w4, w5, w6, w7
    shim_sha256_rounds4 w4, w5, w6, w7, w8, w9, w10, w11
    shim_sha256_rounds4 w8, w9, w10, w11, w4, w5, w6, w7

    ldp     w12, w13, [x0]                  // add the block's result to the state
    ldp     w14, w15, [x0, #8]
    add     w4, w4, w12
    add     w5, w5, w13
    add     w6, w6, w14
    add     w7, w7, w15
    ldp     w12, w13, [x0, #16]
    ldp     w14, w15, [x0, #24]
    add     w8, w8, w12
    add     w9, w9, w13
    add     w10, w10, w14
    add     w11, w11, w15
    stp     w4, w5, [x0]
    stp     w6, w7, [x0, #8]
    stp     w8, w9, [x0, #16]
    stp     w10, w11, [x0, #24]
    subs    x2, x2, #1
    b.ne    1b
    ldp     x19, x20, [sp, #256]
    add     sp, sp, #272
3:
    ret
    .size   shim_sha256_neon_blocks, . - shim_sha256_neon_blocks
    .popsection
