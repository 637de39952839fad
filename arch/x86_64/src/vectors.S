/*
 * Stubs for the 32 CPU exception vectors (Intel SDM vol. 3A, 6.3.1): nothing here is
 * expected to run, so each stub makes the frame uniform (a 0 where the CPU pushes no
 * error code), adds its vector number and goes to `exception`, which prints one line
 * and halts. exceptions.rs builds the IDT from `exception_stubs`.
 */
    .section .text.vectors, "ax"
    .balign 16
    .global exception_stubs
exception_stubs:
    .irp vector, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
    .balign 16
    /* #DF(8), #TS(10), #NP(11), #SS(12), #GP(13), #PF(14), #AC(17), #CP(21),
       #VC(29) and #SX(30) push an error code; the others do not. */
    .if (\vector == 8) || (\vector >= 10 && \vector <= 14) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
    .else
    pushq   $0
    .endif
    pushq   $\vector
    jmp     take_exception
    .endr

take_exception:
    movq    0(%rsp), %rdi           /* vector */
    movq    8(%rsp), %rsi           /* error code */
    movq    16(%rsp), %rdx          /* RIP of the faulting instruction */
    movq    %cr2, %rcx              /* CR2: the faulting address, for #PF */
    andq    $-16, %rsp              /* the ABI's alignment for the call */
    call    exception
    ud2
