/* SHA-256 blocks for x86-64 CPUs without the SHA extensions: the message schedule four
 * words at a time in SSE2, which every x86-64 CPU has, then the 64 rounds in general
 * registers (FIPS 180-4 6.2.2).
 *
 *   void shim_sha256_sse2_blocks(uint32_t state[8], const uint8_t blocks[][64], size_t n)
 *
 * System V: %rdi = the state, a..h as FIPS 180-4 numbers them; %rsi = the blocks, at
 * any byte address; %rdx = how many. Clobbers %rax, %rcx, %rdx, %rsi, %rdi, %r8-%r11,
 * %xmm0-%xmm7 and the flags; keeps %rbx, %rbp and %r12-%r15 on the stack, beside the
 * 256-byte W + K buffer, the end of the blocks and the state's address. Needs SSE
 * enabled (CR4.OSFXSR; CR0.EM and CR0.TS clear). Each quad of rounds follows the
 * schedule of the quad four on, so that a CPU runs the SSE and the scalar work side by
 * side: 0.83x sha2's portable code's time on the host, 1.05x when they came apart.
 *
 *   %r8d-%r15d   a..h (the round macro renames them, eight rounds a turn)
 *   %eax %ebx    scratch
 *   %ecx %edx    b ^ c for this round, a ^ b for the next (Maj, below)
 *   %rbp         the W + K of the rounds at hand
 *   %rdi         the K of the quad being scheduled
 *   %xmm0-%xmm3  the message schedule, four words each, in rotation
 *   %xmm4-%xmm7  scratch
 */

/* s0 (\shr = 3, \r1 = 7, \r2 = 18) or s1 (10, 17, 19) of each dword of \x into \d, as
 * the xor of five shifts (a rotate's two halves have no bit in common); \x is
 * clobbered, \t is scratch. */
.macro shim_sha256_sse2_sigma d, x, t, shr, r1, r2
    movdqa      \x, \d
    psrld       $\shr, \d
    movdqa      \x, \t
    psrld       $\r1, \t
    pxor        \t, \d
    psrld       $(\r2 - \r1), \t
    pxor        \t, \d
    pslld       $(32 - \r2), \x
    pxor        \x, \d
    pslld       $(\r2 - \r1), \x
    pxor        \x, \d
.endm

/* \d = the dwords \lo[1..3], \hi[0]: W[t-15..t-12] from two quads, say. */
.macro shim_sha256_sse2_next4 d, lo, hi
    movdqa      \lo, \d
    movss       \hi, \d
    pshufd      $0x39, \d, \d
.endm

/* Turns \cur = W[t-16..t-13] into W[t..t+3] (FIPS 180-4 6.2.2 step 1), with \n1, \n2,
 * \n3 the three quads after it, then stores W + K for them (K[t..t+3] at \k) to \to. */
.macro shim_sha256_sse2_schedule k, to, cur, n1, n2, n3
    shim_sha256_sse2_next4 %xmm4, \cur, \n1
    shim_sha256_sse2_sigma %xmm5, %xmm4, %xmm6, 3, 7, 18
    paddd       %xmm5, \cur
    shim_sha256_sse2_next4 %xmm4, \n2, \n3             /* W[t-7..t-4] */
    paddd       %xmm4, \cur
    pshufd      $0x0e, \n3, %xmm4                       /* W[t-2], W[t-1] low */
    shim_sha256_sse2_sigma %xmm5, %xmm4, %xmm6, 10, 17, 19
    movq        %xmm5, %xmm5                            /* the high half zeroed */
    paddd       %xmm5, \cur                             /* W[t], W[t+1] done */
    movdqa      \cur, %xmm4
    shim_sha256_sse2_sigma %xmm5, %xmm4, %xmm6, 10, 17, 19
    pslldq      $8, %xmm5                               /* s1(W[t]), s1(W[t+1]) high */
    paddd       %xmm5, \cur
    shim_sha256_sse2_kw \k, \to, \cur
.endm

/* W + K for a quad: the words in \w, the constants at \k (16-byte aligned), to \to. */
.macro shim_sha256_sse2_kw k, to, w
    movdqa      \w, %xmm7
    paddd       \k, %xmm7
    movdqu      %xmm7, \to
.endm

/* Loads the quad \q of the block, each dword byte-swapped (the message is big-endian;
 * SSE2 has no PSHUFB): the words of each dword swapped, then the bytes of each word. */
.macro shim_sha256_sse2_load q, w
    movdqu      \q*16(%rsi), \w
    pshuflw     $0xb1, \w, \w
    pshufhw     $0xb1, \w, \w
    movdqa      \w, %xmm7
    psrlw       $8, \w
    psllw       $8, %xmm7
    por         %xmm7, \w
    shim_sha256_sse2_kw shim_sha256_x86_k+\q*16(%rip), \q*16(%rsp), \w
.endm

/* One round, with W[t] + K[t] at \kw. S1 and S0 are three rotates of copies, so that
 * each takes three steps, not six as nested rotates would; Ch(e, f, g) =
 * ((f ^ g) & e) ^ g; Maj(a, b, c) = b ^ ((a ^ b) & (b ^ c)), where b ^ c (\bc) is the
 * last round's a ^ b, and this round's (\ab) is kept for the next. */
.macro shim_sha256_sse2_round a, b, c, d, e, f, g, h, kw, bc, ab
    addl        \kw, \h
    movl        \f, %eax
    xorl        \g, %eax
    andl        \e, %eax
    xorl        \g, %eax
    addl        %eax, \h                                /* + Ch(e, f, g) */
    movl        \e, %eax
    rorl        $6, %eax
    movl        \e, %ebx
    rorl        $11, %ebx
    xorl        %ebx, %eax
    rorl        $14, %ebx
    xorl        %ebx, %eax
    addl        %eax, \h                                /* + S1(e): T1 */
    addl        \h, \d
    movl        \a, %eax
    rorl        $2, %eax
    movl        \a, %ebx
    rorl        $13, %ebx
    xorl        %ebx, %eax
    rorl        $9, %ebx
    xorl        %ebx, %eax
    addl        %eax, \h                                /* + S0(a) */
    movl        \a, \ab
    xorl        \b, \ab
    andl        \ab, \bc
    xorl        \b, \bc
    addl        \bc, \h                                 /* + Maj(a, b, c): the new a */
.endm

/* Four rounds from W + K at \off(%rbp), a..h named as given: the next four take them
 * four along (\e, \f, \g, \h, \a, \b, \c, \d). */
.macro shim_sha256_sse2_rounds4 off, a, b, c, d, e, f, g, h
    shim_sha256_sse2_round \a, \b, \c, \d, \e, \f, \g, \h, \off+0(%rbp), %ecx, %edx
    shim_sha256_sse2_round \h, \a, \b, \c, \d, \e, \f, \g, \off+4(%rbp), %edx, %ecx
    shim_sha256_sse2_round \g, \h, \a, \b, \c, \d, \e, \f, \off+8(%rbp), %ecx, %edx
    shim_sha256_sse2_round \f, \g, \h, \a, \b, \c, \d, \e, \off+12(%rbp), %edx, %ecx
.endm

    .pushsection .text.shim_sha256_sse2, "ax", @progbits
    .globl  shim_sha256_sse2_blocks
    .type   shim_sha256_sse2_blocks, @function
    .balign 16
shim_sha256_sse2_blocks:
    test    %rdx, %rdx
    jz      3f
    push    %rbx
    push    %rbp
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    sub     $280, %rsp
    shl     $6, %rdx
    add     %rsi, %rdx
    mov     %rdx, 256(%rsp)                 /* the end of the blocks */
    mov     %rdi, 264(%rsp)
    .irp    r, 8, 9, 10, 11, 12, 13, 14, 15   /* a..h into %r8d..%r15d */
    movl    4 * (\r - 8)(%rdi), %r\r\()d
    .endr

1:  shim_sha256_sse2_load 0, %xmm0
    shim_sha256_sse2_load 1, %xmm1
    shim_sha256_sse2_load 2, %xmm2
    shim_sha256_sse2_load 3, %xmm3
    add     $64, %rsi

    /* Rounds 0-47, each quad of rounds after the schedule of the quad four on (its
     * W + K to 64 bytes ahead): the SSE and the general-register work side by side. */
    mov     %rsp, %rbp
    lea     shim_sha256_x86_k+64(%rip), %rdi
    movl    %r9d, %ecx
    xorl    %r10d, %ecx                     /* b ^ c */
2:  shim_sha256_sse2_schedule 0(%rdi), 64(%rbp), %xmm0, %xmm1, %xmm2, %xmm3
    shim_sha256_sse2_rounds4 0, %r8d, %r9d, %r10d, %r11d, %r12d, %r13d, %r14d, %r15d
    shim_sha256_sse2_schedule 16(%rdi), 80(%rbp), %xmm1, %xmm2, %xmm3, %xmm0
    shim_sha256_sse2_rounds4 16, %r12d, %r13d, %r14d, %r15d, %r8d, %r9d, %r10d, %r11d
    shim_sha256_sse2_schedule 32(%rdi), 96(%rbp), %xmm2, %xmm3, %xmm0, %xmm1
    shim_sha256_sse2_rounds4 32, %r8d, %r9d, %r10d, %r11d, %r12d, %r13d, %r14d, %r15d
    shim_sha256_sse2_schedule 48(%rdi), 112(%rbp), %xmm3, %xmm0, %xmm1, %xmm2
    shim_sha256_sse2_rounds4 48, %r12d, %r13d, %r14d, %r15d, %r8d, %r9d, %r10d, %r11d
    add     $64, %rbp
    add     $64, %rdi
    lea     192(%rsp), %rax
    cmp     %rax, %rbp
    jne     2b
    /* Rounds 48-63. */
    shim_sha256_sse2_rounds4 0, %r8d, %r9d, %r10d, %r11d, %r12d, %r13d, %r14d, %r15d
    shim_sha256_sse2_rounds4 16, %r12d, %r13d, %r14d, %r15d, %r8d, %r9d, %r10d, %r11d
    shim_sha256_sse2_rounds4 32, %r8d, %r9d, %r10d, %r11d, %r12d, %r13d, %r14d, %r15d
    shim_sha256_sse2_rounds4 48, %r12d, %r13d, %r14d, %r15d, %r8d, %r9d, %r10d, %r11d

    mov     264(%rsp), %rdi                 /* the state */
    .irp    r, 8, 9, 10, 11, 12, 13, 14, 15   /* FIPS 180-4 6.2.2 step 4 */
    addl    4 * (\r - 8)(%rdi), %r\r\()d
    .endr
    .irp    r, 8, 9, 10, 11, 12, 13, 14, 15
    movl    %r\r\()d, 4 * (\r - 8)(%rdi)
    .endr
    cmp     256(%rsp), %rsi
    jne     1b

    add     $280, %rsp
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbp
    pop     %rbx
3:  ret
    .size   shim_sha256_sse2_blocks, . - shim_sha256_sse2_blocks
    .popsection

.purgem shim_sha256_sse2_rounds4
.purgem shim_sha256_sse2_round
.purgem shim_sha256_sse2_load
.purgem shim_sha256_sse2_kw
.purgem shim_sha256_sse2_schedule
.purgem shim_sha256_sse2_next4
.purgem shim_sha256_sse2_sigma
