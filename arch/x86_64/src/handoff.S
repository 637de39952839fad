/*
 * Leaving the shim for an ELF payload. The shim's secrets (the entropy mixer, the
 * placement key, the firmware seed's copies) lived only on its stack and in registers:
 * both are cleared before the jump.
 *
 * shim_enter_payload(entry, info, boot_params, stack_bottom, stack_top), System V:
 * rdi, rsi, rdx, rcx, r8. Never returns; wipes the stack it runs on, and the XMM
 * registers where SSE is on (the SHA-256 code leaves the words it hashed there).
 */
    .section .text.handoff, "ax"
    .code64
    .global shim_enter_payload
shim_enter_payload:
    cli
    mov     %rdi, %r9               /* r9 = entry */
    mov     %rsi, %r10              /* r10 = boot info */
    mov     %rdx, %r11              /* r11 = boot_params */
    mov     %rcx, %rdi              /* wipe [stack_bottom, stack_top) */
    mov     %r8, %rcx
    sub     %rdi, %rcx
    shr     $3, %rcx
    xor     %eax, %eax
    cld
    rep stosq
    mov     %cr4, %rax
    bt      $9, %rax                /* CR4.OSFXSR: SSE enabled */
    jnc     1f
    .irp    r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    pxor    %xmm\r, %xmm\r
    .endr
1:  mov     %r10, %rdi              /* the payload ABI: rdi = boot info, rsi = boot_params */
    mov     %r11, %rsi
    xor     %eax, %eax
    xor     %ebx, %ebx
    xor     %ecx, %ecx
    xor     %edx, %edx
    xor     %ebp, %ebp
    xor     %r8d, %r8d
    xor     %r10d, %r10d
    xor     %r11d, %r11d
    xor     %r12d, %r12d
    xor     %r13d, %r13d
    xor     %r14d, %r14d
    xor     %r15d, %r15d
    jmp     *%r9
