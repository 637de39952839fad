/*
 * The protected-mode part's entries (Documentation/arch/x86/boot.rst, "32-bit boot
 * protocol" and "64-bit boot protocol"). Runs from wherever the loader put us, before
 * our own relocations are applied: only %ebp-relative (32-bit) or RIP-relative (64-bit)
 * addressing, no absolute address, and nothing outside our image but boot_params.
 */

    .set BP_scratch, 0x1e4          /* boot_params.scratch: 4 bytes the kernel may use */
    .set KERNEL_CS, 0x10            /* gdt64 below: 64-bit code */
    .set KERNEL_DS, 0x18            /* gdt64 below: flat data */
    .set MSR_EFER, 0xc0000080       /* IA32_EFER */
    .set EFER_LME, 1 << 8           /* IA32_EFER.LME: long mode enable */
    .set CR0_PE, 1 << 0             /* CR0.PE: protected mode */
    .set CR0_PG, 1 << 31            /* CR0.PG: paging */
    .set CR4_PAE, 1 << 5            /* CR4.PAE: 64-bit page-table entries */
    .set CR4_LA57, 1 << 12          /* CR4.LA57: 5-level paging */
    .set BOOT_CS32, 0x08            /* gdt64 below: 32-bit code, to leave long mode */
    .set PTE_PW, 0x3                /* P | R/W */
    .set PDE_PW_PS, 0x83            /* P | R/W | PS: a 2 MiB page */
    .set R_X86_64_RELATIVE, 8
    .set ZERO_PAGE_SIZE, 4096
    .set IMAGE_TAIL, 0x444e454d49485321     /* "!SHIMEND": linker.ld's .tail */
    .set COM1, 0x3f8                /* the console's port (uart16550.rs) */
    .set LSR_THRE, 0x20             /* line status: transmit holding register empty */

    .section .head, "awx"
    .code32
    .global _start
/*
 * Offset 0, code32_start: the 32-bit entry. Protected mode, paging off, flat 4 GiB
 * segments (CS 0x10, DS/ES/SS 0x18 by convention), interrupts off, %esi = boot_params.
 */
_start:
    jmp     startup_32              /* 2 bytes: the header below is data */

    .org    0x08
    .ascii  "SHIMX64\0"             /* magic: xtask finds the header by it */
    .org    0x10
    .quad   __image_end - _start    /* image size: xtask rewrites it to the packed length */

startup_32:
    cld
    cli
    /* Where are we? call/pop needs a stack: borrow boot_params.scratch, as Linux's
     * compressed head_64.S does. */
    leal    (BP_scratch + 4)(%esi), %esp
    call    .Lhere
.Lhere:
    popl    %ebp
    subl    $(.Lhere - _start), %ebp    /* %ebp = load address */
    movl    (entry_tsc - _start)(%ebp), %eax    /* the TSC at entry, where `total` */
    orl     (entry_tsc + 4 - _start)(%ebp), %eax    /* starts, unless startup_64 read it */
    jnz     1f
    rdtsc
    movl    %eax, (entry_tsc - _start)(%ebp)
    movl    %edx, (entry_tsc + 4 - _start)(%ebp)
1:
    leal    (__stack_top - _start)(%ebp), %esp

    /* The early identity map of [0, 4 GiB) with 2 MiB pages: PML4[0] -> PDPT,
     * PDPT[0..4] -> four PDs, PD entries i -> i * 2 MiB. */
    leal    (__early_pgt - _start)(%ebp), %edi
    xorl    %eax, %eax
    movl    $(6 * 4096 / 4), %ecx
    rep stosl
    leal    (__early_pgt - _start + 0x1000 + PTE_PW)(%ebp), %eax
    movl    %eax, (__early_pgt - _start)(%ebp)      /* PML4[0] = PDPT | P | RW */
    leal    (__early_pgt - _start + 0x2000 + PTE_PW)(%ebp), %eax
    leal    (__early_pgt - _start + 0x1000)(%ebp), %edi
    movl    $4, %ecx
2:  movl    %eax, (%edi)                            /* PDPT[i] = PD i | P | RW */
    addl    $0x1000, %eax
    addl    $8, %edi
    loop    2b
    leal    (__early_pgt - _start + 0x2000)(%ebp), %edi
    movl    $PDE_PW_PS, %eax
    movl    $2048, %ecx
3:  movl    %eax, (%edi)                            /* PD entry = i * 2 MiB | P | RW | PS */
    addl    $0x200000, %eax
    addl    $8, %edi
    loop    3b

    /* Long mode (SDM 3A 10.8.5): CR4.PAE (4-level: LA57 clear), CR3, IA32_EFER.LME,
     * then CR0.PG. */
    movl    %cr4, %eax
    andl    $~CR4_LA57, %eax
    orl     $CR4_PAE, %eax
    movl    %eax, %cr4
    leal    (__early_pgt - _start)(%ebp), %eax
    movl    %eax, %cr3                              /* CR3 = early PML4 */
    movl    $MSR_EFER, %ecx
    rdmsr
    orl     $EFER_LME, %eax
    wrmsr

    /* Our GDT, its 6-byte pseudo-descriptor built on the stack. */
    leal    (gdt64 - _start)(%ebp), %eax
    pushl   %eax                                    /* base */
    pushw   $(gdt64_end - gdt64 - 1)                /* limit */
    lgdt    (%esp)
    addl    $6, %esp

    /* Paging on (compatibility mode), then a far return into the 64-bit segment. */
    pushl   $KERNEL_CS
    leal    (startup_64 - _start)(%ebp), %eax
    pushl   %eax
    movl    %cr0, %eax
    orl     $(CR0_PG | CR0_PE), %eax
    movl    %eax, %cr0
    lret

    .balign 8
gdt64:
    .quad   0                       /* null */
    .quad   0x00cf9a000000ffff      /* 0x08 BOOT_CS32: 32-bit code, base 0, 4 GiB */
    .quad   0x00af9a000000ffff      /* 0x10 KERNEL_CS: code, present, DPL 0, L = 1 */
    .quad   0x00cf92000000ffff      /* 0x18 KERNEL_DS: data, present, writable, 4 GiB */
gdt64_end:
    .balign 8
    .word   0
gdt64_desc:                         /* for the 64-bit lgdt: limit, then a 64-bit base */
    .word   gdt64_end - gdt64 - 1
    .quad   0                       /* base: written at run time */

/*
 * Offset 0x200: the 64-bit entry (kexec, and our own startup_32). Long mode, an
 * identity map covering the image, boot_params and the command line, %rsi =
 * boot_params, interrupts off.
 */
    .org    0x200
    .code64
    .global startup_64
startup_64:
    cld
    cli
    leaq    _start(%rip), %rbx      /* %rbx = load address */
    cmpq    $0, entry_tsc(%rip)     /* the TSC at entry, unless startup_32 read it */
    jne     1f
    rdtsc
    movl    %eax, entry_tsc(%rip)
    movl    %edx, (entry_tsc + 4)(%rip)
1:

    /* Our own GDT and segments: the loader's GDT may lie where the payload goes. */
    leaq    gdt64(%rip), %rax
    movq    %rax, (gdt64_desc + 2)(%rip)
    lgdt    gdt64_desc(%rip)
    leaq    __stack_top(%rip), %rsp
    pushq   $KERNEL_CS
    leaq    .Lreloaded(%rip), %rax
    pushq   %rax
    lretq                           /* CS = KERNEL_CS */
.Lreloaded:
    movl    $KERNEL_DS, %eax
    movl    %eax, %ds
    movl    %eax, %es
    movl    %eax, %ss
    movl    %eax, %fs
    movl    %eax, %gs

    /* 5-level paging from the loader (CR4.LA57: a kernel that ran with it, kexec'ing
     * us): the shim and its payload use 4 levels. LA57 changes only outside long mode,
     * so below 4 GiB we go back through startup_32: compatibility mode, paging off
     * (the code is identity-mapped), and startup_32 clears LA57 and builds 4-level
     * tables. Above 4 GiB that cannot be done: Rust reports it (%r12 = 1). */
    xorl    %r12d, %r12d
    movq    %cr4, %rax
    testl   $CR4_LA57, %eax
    jz      .Lfour_level
    movl    $1, %r12d
    leaq    __image_end(%rip), %rax
    shrq    $32, %rax
    jnz     .Lfour_level
    leaq    ZERO_PAGE_SIZE(%rsi), %rax
    shrq    $32, %rax
    jnz     .Lfour_level
    pushq   $BOOT_CS32
    leaq    .Lcompat(%rip), %rax
    pushq   %rax
    lretq                           /* CS = BOOT_CS32: compatibility mode */
    .code32
.Lcompat:
    movl    %cr0, %eax
    andl    $~CR0_PG, %eax
    movl    %eax, %cr0              /* CR0.PG = 0: IA32_EFER.LMA clears */
    jmp     startup_32              /* %esi = boot_params */
    .code64

.Lfour_level:
    /* The whole image is here: its last loaded word is the tail magic. */
    movabsq $IMAGE_TAIL, %rax
    cmpq    %rax, __image_tail(%rip)
    jne     truncated

    /* Apply our R_X86_64_RELATIVE relocations: *(base + r_offset) = base + r_addend,
     * each inside the image. */
    leaq    __rela_start(%rip), %rcx
    leaq    __rela_end(%rip), %rdx
    leaq    (__image_end - 8)(%rip), %r8
    subq    %rbx, %r8               /* %r8 = the last offset a quad may be written at */
2:  cmpq    %rdx, %rcx
    jae     3f
    movq    (%rcx), %rax            /* r_offset */
    cmpq    $R_X86_64_RELATIVE, 8(%rcx)     /* r_info: the type, symbol 0 */
    jne     bad_reloc
    cmpq    %r8, %rax
    ja      bad_reloc
    movq    16(%rcx), %rdi          /* r_addend */
    addq    %rbx, %rdi
    movq    %rdi, (%rbx, %rax)
    addq    $24, %rcx
    jmp     2b

    /* Zero .bss, then call Rust with the stack 16-byte aligned. */
3:  leaq    __bss_start(%rip), %rdi
    leaq    __bss_end(%rip), %rcx
    subq    %rdi, %rcx
    shrq    $3, %rcx                /* 16-byte aligned at both ends (linker.ld) */
    xorl    %eax, %eax
    rep stosq
    /* Paint the stack below what is in use (STACK_PAINT in stack.rs) so its high-water
     * mark can be read. */
    leaq    __stack_bottom(%rip), %rdi
    leaq    -256(%rsp), %rcx
    andq    $-8, %rcx
    subq    %rdi, %rcx
    shrq    $3, %rcx
    movabsq $0x53544b5041494e54, %rax
    rep stosq
    movq    %rsi, %rdi              /* boot_params */
    movq    %rbx, %rsi              /* load address */
    movq    %r12, %rdx              /* 1: entered with LA57 above 4 GiB */
    movq    entry_tsc(%rip), %rcx   /* the TSC at entry */
    call    shim_main               /* never returns */

    /* Before relocation no Rust can run (its tables hold absolute addresses): the
     * line goes straight to COM1, then the CPU parks. */
truncated:
    leaq    .Ltruncated_msg(%rip), %rsi
    jmp     early_fail
bad_reloc:
    leaq    .Lbad_reloc_msg(%rip), %rsi
early_fail:                         /* %rsi = NUL-terminated line */
    cli
.Lputc:
    movzbl  (%rsi), %ecx
    testl   %ecx, %ecx
    jz      .Lpark
    movl    $(COM1 + 5), %edx       /* line status register */
    movl    $0x100000, %edi         /* a bounded wait: a stuck UART must not hang us here */
.Lwait:
    inb     %dx, %al
    testb   $LSR_THRE, %al
    jnz     .Lsend
    decl    %edi
    jnz     .Lwait
.Lsend:
    movl    $COM1, %edx
    movl    %ecx, %eax
    outb    %al, %dx
    incq    %rsi
    jmp     .Lputc
.Lpark:
    hlt
    jmp     .Lpark

.Ltruncated_msg:
    .asciz  "shim: error: the shim's image is incomplete (the loader read only part of it)\r\n"
.Lbad_reloc_msg:
    .asciz  "shim: error: the shim's own relocations are corrupt (a damaged image)\r\n"

/* The TSC at the first entry, startup_32 or startup_64 (read once: the 5-level path
 * passes through both). In .data, which entry.S does not zero. */
    .pushsection .data.entry_tsc, "aw"
    .balign 8
entry_tsc:
    .quad   0
    .popsection
