/*
 * EL1 exception vectors (ARM ARM D1.10.2: 16 entries of 0x80 bytes, 2 KiB aligned).
 * Nothing here is expected to run: every exception is a bug or bad hardware, so each
 * entry passes its index to `exception`, which prints one line and halts. The payload
 * inherits them until it installs its own VBAR_EL1.
 */
    .section .text.vectors, "ax"
    .balign 2048
    .global exception_vectors
exception_vectors:
    .irp index, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    mov     x0, #\index
    b       take_exception
    .endr

take_exception:
    mrs     x1, esr_el1             // ESR_EL1: exception class and syndrome
    mrs     x2, elr_el1             // ELR_EL1: the faulting instruction
    mrs     x3, far_el1             // FAR_EL1: the faulting address, for aborts
    adrp    x9, __stack_top         // a known-good stack, whatever sp was
    add     x9, x9, :lo12:__stack_top
    mov     sp, x9
    b       exception
