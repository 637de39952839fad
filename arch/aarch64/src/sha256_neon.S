/*
 * SHA-256 blocks for arm64 CPUs without the SHA-256 instructions (the Raspberry Pi 4's
 * Cortex-A72): the message schedule four words at a time in Advanced SIMD, then the 64
 * rounds in general registers (FIPS 180-4 6.2.2), the plan of Linux's sha256_block_neon:
 * 24.9 instructions a byte (QEMU -icount), where sha2's unrolled portable Rust took 29.5.
 *
 *   void shim_sha256_neon_blocks(uint32_t state[8], const uint8_t blocks[][64], size_t n)
 *
 * AAPCS64: x0 = the state, a..h as FIPS 180-4 numbers them; x1 = the blocks, at any
 * byte address; x2 = how many. Clobbers x1-x17, v0-v7 and v16-v31; keeps x19 on the
 * stack beside the 256-byte W + K buffer. The handoff wipes both, and the registers.
 *
 *   w4-w11     a..h (the round macro renames them, eight rounds a turn)
 *   w12 w13    scratch
 *   w14 w15    b ^ c for this round, a ^ b for the next (Maj, below)
 *   w16 w17    W[t] + K[t] for two rounds
 *   x3         the next W + K to read; x19 where they end
 *   v0-v3      the message schedule, four words each, in rotation
 *   v4-v7      scratch
 *   v16-v31    the 64 round constants, four to a register
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
 * \n3 the three quads after it, then stores W + K for them at [sp, #16 * \q]. */
.macro shim_sha256_schedule q, k, cur, n1, n2, n3
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
    add         v7.4s, \cur\().4s, \k\().4s
    str         q7, [sp, #16 * \q]
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

/* Eight rounds, their W + K from x3 on: the names are back where they started after. */
.macro shim_sha256_rounds8
    ldp     w16, w17, [x3], #8
    shim_sha256_round w4, w5, w6, w7, w8, w9, w10, w11, w16, w14, w15
    shim_sha256_round w11, w4, w5, w6, w7, w8, w9, w10, w17, w15, w14
    ldp     w16, w17, [x3], #8
    shim_sha256_round w10, w11, w4, w5, w6, w7, w8, w9, w16, w14, w15
    shim_sha256_round w9, w10, w11, w4, w5, w6, w7, w8, w17, w15, w14
    ldp     w16, w17, [x3], #8
    shim_sha256_round w8, w9, w10, w11, w4, w5, w6, w7, w16, w14, w15
    shim_sha256_round w7, w8, w9, w10, w11, w4, w5, w6, w17, w15, w14
    ldp     w16, w17, [x3], #8
    shim_sha256_round w6, w7, w8, w9, w10, w11, w4, w5, w16, w14, w15
    shim_sha256_round w5, w6, w7, w8, w9, w10, w11, w4, w17, w15, w14
.endm

    .pushsection .text.shim_sha256_neon, "ax", %progbits
    .globl  shim_sha256_neon_blocks
    .type   shim_sha256_neon_blocks, %function
    .balign 16
shim_sha256_neon_blocks:
    cbz     x2, 3f
    sub     sp, sp, #272
    str     x19, [sp, #256]
    add     x19, sp, #256
    adrp    x3, shim_sha256_k
    add     x3, x3, :lo12:shim_sha256_k
    ld1     {v16.4s-v19.4s}, [x3], #64
    ld1     {v20.4s-v23.4s}, [x3], #64
    ld1     {v24.4s-v27.4s}, [x3], #64
    ld1     {v28.4s-v31.4s}, [x3]
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
    add     v4.4s, v0.4s, v16.4s
    add     v5.4s, v1.4s, v17.4s
    add     v6.4s, v2.4s, v18.4s
    add     v7.4s, v3.4s, v19.4s
    st1     {v4.4s-v7.4s}, [sp]
    shim_sha256_schedule  4, v20, v0, v1, v2, v3
    shim_sha256_schedule  5, v21, v1, v2, v3, v0
    shim_sha256_schedule  6, v22, v2, v3, v0, v1
    shim_sha256_schedule  7, v23, v3, v0, v1, v2
    shim_sha256_schedule  8, v24, v0, v1, v2, v3
    shim_sha256_schedule  9, v25, v1, v2, v3, v0
    shim_sha256_schedule 10, v26, v2, v3, v0, v1
    shim_sha256_schedule 11, v27, v3, v0, v1, v2
    shim_sha256_schedule 12, v28, v0, v1, v2, v3
    shim_sha256_schedule 13, v29, v1, v2, v3, v0
    shim_sha256_schedule 14, v30, v2, v3, v0, v1
    shim_sha256_schedule 15, v31, v3, v0, v1, v2

    mov     x3, sp
    eor     w14, w5, w6                     // b ^ c
2:  shim_sha256_rounds8                     /* sixteen rounds a turn */
    shim_sha256_rounds8
    cmp     x3, x19
    b.ne    2b

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
    ldr     x19, [sp, #256]
    add     sp, sp, #272
3:
    ret
    .size   shim_sha256_neon_blocks, . - shim_sha256_neon_blocks
    .popsection
