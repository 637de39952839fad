/* SHA-256 blocks with the Intel SHA extensions (SHA256RNDS2, SHA256MSG1, SHA256MSG2;
 * SDM volume 2), in the sequence Intel published with them: S. Gulley, V. Gopal,
 * K. Yap, W. Feghali, J. Guilford, G. Wolrich, "Intel SHA Extensions: New
 * Instructions Supporting the Secure Hash Algorithm on Intel Architecture
 * Processors", Intel white paper, July 2013 (the SHA-256 code in its appendix).
 *
 *   void shim_sha256_ni_blocks(uint32_t state[8], const uint8_t blocks[][64], size_t n)
 *
 * System V: %rdi = the state, a..h as FIPS 180-4 numbers them; %rsi = the blocks;
 * %rdx = how many. Clobbers %rax, %rsi, %rdx, %xmm0-%xmm10 and the flags; uses no
 * stack and touches no memory but the state, the blocks and its constants.
 * Needs SSSE3 (PSHUFB, PALIGNR), SSE4.1 (PBLENDW) and SHA, with SSE enabled
 * (CR4.OSFXSR; CR0.EM and CR0.TS clear).
 *
 * SHA256RNDS2 does two rounds. It keeps the working variables as two halves, ABEF
 * and CDGH (A in the top dword), and takes the two rounds' W[t] + K[t] from the low
 * quadword of %xmm0, its implicit operand. With `sha256rnds2 %src, %dst`, %src
 * holds ABEF and %dst CDGH, and %dst receives the new ABEF: the old ABEF is then
 * the new CDGH, so two in a row with the operands swapped do four rounds and leave
 * each half where it was.
 *
 *   %xmm0        W + K for the rounds at hand
 *   %xmm1 %xmm2  ABEF, CDGH
 *   %xmm3-%xmm6  the message schedule, four words each, in rotation
 *   %xmm7        scratch
 *   %xmm8        the byte-swap mask (the message is big-endian)
 *   %xmm9 %xmm10 ABEF, CDGH at the start of the block
 */

/* Rounds 4q .. 4q+3. \cur holds W[4q..4q+3], \prev W[4q-4..4q-1] and \next
 * W[4q-12..4q-9], which this quad turns into W[4q+4..4q+7] (FIPS 180-4 6.2.2
 * step 1: W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16]). SHA256MSG1 put
 * W[t-16] + s0(W[t-15]) there two quads before; here the W[t-7] terms are added
 * and SHA256MSG2 adds the s1 terms. */
.macro shim_sha256ni_quad q, cur, prev, next
.if \q < 4
    movdqu      \q*16(%rsi), \cur
    pshufb      %xmm8, \cur
.endif
    movdqa      \cur, %xmm0
    paddd       \q*16(%rax), %xmm0
    sha256rnds2 %xmm1, %xmm2                /* rounds 4q, 4q+1 */
.if \q >= 3 && \q <= 14
    movdqa      \cur, %xmm7
    palignr     $4, \prev, %xmm7            /* W[4q-3..4q] */
    paddd       %xmm7, \next
    sha256msg2  \cur, \next                 /* W[4q+4..4q+7] */
.endif
    pshufd      $0x0e, %xmm0, %xmm0         /* the next two W + K down */
    sha256rnds2 %xmm2, %xmm1                /* rounds 4q+2, 4q+3 */
.if \q >= 1 && \q <= 12
    sha256msg1  \cur, \prev                 /* W[t-16] + s0(W[t-15]), t = 4q+12.. */
.endif
.endm

    .pushsection .text.shim_sha256_ni, "ax", @progbits
    .globl  shim_sha256_ni_blocks
    .type   shim_sha256_ni_blocks, @function
    .balign 16
shim_sha256_ni_blocks:
    test    %rdx, %rdx
    jz      2f
    shl     $6, %rdx
    add     %rsi, %rdx                      /* the end of the blocks */

    /* a..h in memory (DCBA, HGFE from the top dword down) to ABEF, CDGH. */
    movdqu  0(%rdi), %xmm1
    movdqu  16(%rdi), %xmm2
    pshufd  $0xb1, %xmm1, %xmm1             /* CDAB */
    pshufd  $0x1b, %xmm2, %xmm2             /* EFGH */
    movdqa  %xmm1, %xmm7
    palignr $8, %xmm2, %xmm1                /* ABEF */
    pblendw $0xf0, %xmm7, %xmm2             /* CDGH */

    movdqa  .Lshim_sha256_bswap(%rip), %xmm8
    lea     shim_sha256_x86_k(%rip), %rax

1:  movdqa  %xmm1, %xmm9
    movdqa  %xmm2, %xmm10
    shim_sha256ni_quad  0, %xmm3, %xmm6, %xmm4
    shim_sha256ni_quad  1, %xmm4, %xmm3, %xmm5
    shim_sha256ni_quad  2, %xmm5, %xmm4, %xmm6
    shim_sha256ni_quad  3, %xmm6, %xmm5, %xmm3
    shim_sha256ni_quad  4, %xmm3, %xmm6, %xmm4
    shim_sha256ni_quad  5, %xmm4, %xmm3, %xmm5
    shim_sha256ni_quad  6, %xmm5, %xmm4, %xmm6
    shim_sha256ni_quad  7, %xmm6, %xmm5, %xmm3
    shim_sha256ni_quad  8, %xmm3, %xmm6, %xmm4
    shim_sha256ni_quad  9, %xmm4, %xmm3, %xmm5
    shim_sha256ni_quad 10, %xmm5, %xmm4, %xmm6
    shim_sha256ni_quad 11, %xmm6, %xmm5, %xmm3
    shim_sha256ni_quad 12, %xmm3, %xmm6, %xmm4
    shim_sha256ni_quad 13, %xmm4, %xmm3, %xmm5
    shim_sha256ni_quad 14, %xmm5, %xmm4, %xmm6
    shim_sha256ni_quad 15, %xmm6, %xmm5, %xmm3
    paddd   %xmm9, %xmm1                    /* FIPS 180-4 6.2.2 step 4 */
    paddd   %xmm10, %xmm2
    add     $64, %rsi
    cmp     %rdx, %rsi
    jne     1b

    /* ABEF, CDGH back to a..h. */
    pshufd  $0x1b, %xmm1, %xmm1             /* FEBA */
    pshufd  $0xb1, %xmm2, %xmm2             /* DCHG */
    movdqa  %xmm1, %xmm7
    pblendw $0xf0, %xmm2, %xmm1             /* DCBA */
    palignr $8, %xmm7, %xmm2                /* HGFE */
    movdqu  %xmm1, 0(%rdi)
    movdqu  %xmm2, 16(%rdi)
2:  ret
    .size   shim_sha256_ni_blocks, . - shim_sha256_ni_blocks
    .popsection

.purgem shim_sha256ni_quad

    /* 16-byte aligned: PADDD and MOVDQA take them as memory operands. The constants
     * serve sha256_sse2.S too. */
    .pushsection .rodata.shim_sha256_ni, "a", @progbits
    .balign 64
    .globl  shim_sha256_x86_k
    .hidden shim_sha256_x86_k
shim_sha256_x86_k:                          /* FIPS 180-4 4.2.2 */
    .long   0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5
    .long   0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5
    .long   0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3
    .long   0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174
    .long   0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc
    .long   0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da
    .long   0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7
    .long   0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967
    .long   0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13
    .long   0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85
    .long   0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3
    .long   0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070
    .long   0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5
    .long   0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3
    .long   0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208
    .long   0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
.Lshim_sha256_bswap:                        /* PSHUFB: each dword's bytes reversed */
    .byte   3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12
    .popsection
