/*
 * SHA-256 blocks with the ARMv8 Cryptographic Extension (SHA256H, SHA256H2, SHA256SU0,
 * SHA256SU1; Arm ARM C7.2). Assembly because LLVM's code from the same intrinsics
 * hashed Debian's 27 MB Image in 3.8x the instructions of this (159 vs 42 ms under
 * QEMU -icount); 6.5x under +strict-align, where every NEON load of a byte slice
 * became sixteen LDRB and an ORR chain.
 *
 *   void shim_sha256_armv8_blocks(uint32_t state[8], const uint8_t blocks[][64], size_t n)
 *
 * AAPCS64: x0 = the state, a..h as FIPS 180-4 numbers them; x1 = the blocks; x2 = how
 * many. Clobbers x1-x3, v0-v7 and v16-v31; saves and restores d8 and d9 (callee-saved),
 * its only use of the stack. LD1 checks alignment to the element only, so the blocks
 * may lie at any byte address.
 *
 *   v0 v1      ABCD, EFGH
 *   v2 v3      ABCD, EFGH at the start of the block
 *   v4-v7      the message schedule, four words each, in rotation
 *   v8         W + K for the quad at hand
 *   v9         ABCD before the quad (SHA256H2 needs it after SHA256H replaced v0)
 *   v16-v31    the 64 round constants, four to a register
 */

/* Rounds 4q .. 4q+3 with W[4q..4q+3] in \cur and its constants in \k. For q < 12 it
 * then turns \cur into W[4q+16..4q+19] (FIPS 180-4 6.2.2 step 1): SHA256SU0 adds
 * s0 of the next words (\n1), SHA256SU1 adds W[t-7] (\n2, \n3) and s1. */
.macro shim_sha256_quad q, k, cur, n1, n2, n3
    add         v8.4s, \cur\().4s, \k\().4s
    mov         v9.16b, v0.16b
    sha256h     q0, q1, v8.4s
    sha256h2    q1, q9, v8.4s
.if \q < 12
    sha256su0   \cur\().4s, \n1\().4s
    sha256su1   \cur\().4s, \n2\().4s, \n3\().4s
.endif
.endm

    .arch_extension sha2
    .pushsection .text.shim_sha256_armv8, "ax", %progbits
    .globl  shim_sha256_armv8_blocks
    .type   shim_sha256_armv8_blocks, %function
    .balign 16
shim_sha256_armv8_blocks:
    cbz     x2, 2f
    stp     d8, d9, [sp, #-16]!
    adrp    x3, shim_sha256_k
    add     x3, x3, :lo12:shim_sha256_k
    ld1     {v16.4s-v19.4s}, [x3], #64
    ld1     {v20.4s-v23.4s}, [x3], #64
    ld1     {v24.4s-v27.4s}, [x3], #64
    ld1     {v28.4s-v31.4s}, [x3]
    ld1     {v0.4s, v1.4s}, [x0]
1:
    ld1     {v4.16b-v7.16b}, [x1], #64
    rev32   v4.16b, v4.16b              /* the message is big-endian */
    rev32   v5.16b, v5.16b
    rev32   v6.16b, v6.16b
    rev32   v7.16b, v7.16b
    mov     v2.16b, v0.16b
    mov     v3.16b, v1.16b
    shim_sha256_quad  0, v16, v4, v5, v6, v7
    shim_sha256_quad  1, v17, v5, v6, v7, v4
    shim_sha256_quad  2, v18, v6, v7, v4, v5
    shim_sha256_quad  3, v19, v7, v4, v5, v6
    shim_sha256_quad  4, v20, v4, v5, v6, v7
    shim_sha256_quad  5, v21, v5, v6, v7, v4
    shim_sha256_quad  6, v22, v6, v7, v4, v5
    shim_sha256_quad  7, v23, v7, v4, v5, v6
    shim_sha256_quad  8, v24, v4, v5, v6, v7
    shim_sha256_quad  9, v25, v5, v6, v7, v4
    shim_sha256_quad 10, v26, v6, v7, v4, v5
    shim_sha256_quad 11, v27, v7, v4, v5, v6
    shim_sha256_quad 12, v28, v4, v5, v6, v7
    shim_sha256_quad 13, v29, v5, v6, v7, v4
    shim_sha256_quad 14, v30, v6, v7, v4, v5
    shim_sha256_quad 15, v31, v7, v4, v5, v6
    add     v0.4s, v0.4s, v2.4s
    add     v1.4s, v1.4s, v3.4s
    subs    x2, x2, #1
    b.ne    1b
    st1     {v0.4s, v1.4s}, [x0]
    ldp     d8, d9, [sp], #16
2:
    ret
    .size   shim_sha256_armv8_blocks, . - shim_sha256_armv8_blocks
    .popsection

/* FIPS 180-4 4.2.2: the round constants. */
    .pushsection .rodata.shim_sha256_k, "a", %progbits
    .balign 16
shim_sha256_k:
    .word   0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5
    .word   0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174
    .word   0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da
    .word   0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967
    .word   0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85
    .word   0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070
    .word   0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3
    .word   0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
    .size   shim_sha256_k, . - shim_sha256_k
    .popsection
