/*
 * The bzImage's real-mode setup part (Documentation/arch/x86/boot.rst): boot sector,
 * setup header, and the 16-bit code a real-mode loader (QEMU -kernel, GRUB linux16)
 * enters at (seg + 0x20):0, with %ds = %es = %ss = seg, interrupts off. Lives in the
 * non-allocated .setup section, so it is linked nowhere: only differences of labels in
 * this section appear, and it runs wherever the loader put it. xtask dumps the section,
 * writes the header fields (shim_common::bootparams::SetupHeader) and puts it in front.
 *
 * In real mode the setup part's first 4 KiB are boot_params (the zero page): we fill its
 * e820 table from the BIOS, then enter the 32-bit protocol at code32_start.
 */

    .set BP_e820_entries, 0x1e8     /* boot_params.e820_entries (u8) */
    .set BP_e820_table, 0x2d0       /* boot_params.e820_table[128], 20 bytes each */
    .set E820_MAX_ENTRIES, 128
    .set E820_ENTRY_SIZE, 20
    .set SMAP, 0x534d4150           /* "SMAP": INT 15h AX=E820h signature */
    .set HDR_loadflags, 0x211       /* setup_header.loadflags */
    .set HDR_code32_start, 0x214    /* setup_header.code32_start */
    .set HDR_heap_end_ptr, 0x224    /* setup_header.heap_end_ptr */
    .set CAN_USE_HEAP, 0x80         /* loadflags bit 7: heap_end_ptr is valid */
    .set BOOT_CS, 0x10              /* boot.rst's 32-bit protocol: __BOOT_CS */
    .set BOOT_DS, 0x18              /* and __BOOT_DS */
    .set CR0_PE, 1

    .section .setup, "", @progbits
    .code16
setup_start:
    /* 0x000-0x1f0: the boot sector, all zero: in real mode it is the zero page's head. */
    .org    0x200
    /* setup_header.jump: a 2-byte jmp to just past the header. The header fields around
     * it (0x1f1-0x26b) are zero here; xtask writes them. */
    jmp     entry16
    .org    0x202
    .org    0x26c                   /* end of the setup header; boot_params padding */
entry16:
    jmp     start16

    /* The rest of the zero page (e820 table, EDD buffers) must stay zero. */
    .org    0x1000
start16:
    cli
    cld
    movw    %cs, %ax
    subw    $0x20, %ax              /* the setup segment: we were entered at seg + 0x20 */
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    /* A stack: the top of the heap the loader gave us (heap_end_ptr + 0x200), else
     * 1 KiB past our own end, as Linux's header.S does. */
    movw    $(setup_end - setup_start + 0x400), %sp
    testb   $CAN_USE_HEAP, HDR_loadflags
    jz      2f
    movw    HDR_heap_end_ptr, %sp
    addw    $0x200, %sp
2:  /* Normalize CS to the setup segment, so label offsets are offsets from it. */
    pushw   %ds
    pushw   $(3f - setup_start)
    lretw
3:
    /* The memory map (arch/x86/boot/memory.c, detect_memory_e820): INT 15h AX=E820h,
     * one 20-byte entry per call straight into boot_params.e820_table, until %ebx = 0,
     * CF set, or 128 entries. A bad signature mid-walk discards the whole map. */
    movb    $0, BP_e820_entries
    movw    $BP_e820_table, %di
    xorl    %ebx, %ebx              /* continuation: 0 = from the start */
4:  movl    $0xe820, %eax
    movl    $SMAP, %edx
    movl    $E820_ENTRY_SIZE, %ecx
    pushw   %di
    pushw   %ds
    int     $0x15                   /* ES:DI = the next table entry */
    popw    %ds
    popw    %di
    jc      6f                      /* CF: past the end (some BIOSes end so) */
    cmpl    $SMAP, %eax
    jne     5f
    incb    BP_e820_entries
    addw    $E820_ENTRY_SIZE, %di
    testl   %ebx, %ebx
    jz      6f
    cmpb    $E820_MAX_ENTRIES, BP_e820_entries
    jb      4b
    jmp     6f
5:  movb    $0, BP_e820_entries     /* no "SMAP": the map is not to be trusted */
6:
    /* A20 through the fast gate (port 0x92 bit 1); bit 0 would reset the machine. */
    inb     $0x92, %al
    testb   $0x02, %al
    jnz     7f
    orb     $0x02, %al
    andb    $0xfe, %al
    outb    %al, $0x92
7:
    /* The 32-bit protocol: flat GDT, %esi = boot_params (the setup part's start). */
    xorl    %esi, %esi
    movw    %ds, %si
    shll    $4, %esi                /* %esi = linear address of the setup part */
    leal    (gdt32 - setup_start)(%esi), %eax
    movl    %eax, (gdt32_desc - setup_start + 2)    /* GDTR base */
    leal    (pm32 - setup_start)(%esi), %eax
    movl    %eax, (pm32_ptr - setup_start)          /* far pointer offset */
    movzwl  %sp, %esp
    testl   %esp, %esp
    jnz     8f
    movl    $0x10000, %esp          /* %sp = 0: the top of the 64 KiB segment */
8:  addl    %esi, %esp              /* the same stack, as a linear address */
    lgdtl   (gdt32_desc - setup_start)
    lidtl   (null_idt - setup_start)                /* an NMI now shuts down, cleanly */
    movl    %cr0, %eax
    orl     $CR0_PE, %eax
    movl    %eax, %cr0              /* CR0.PE: protected mode */
    ljmpl   *(pm32_ptr - setup_start)               /* SDM 3A 10.9.1: a far jump next */

    .code32
pm32:
    movl    $BOOT_DS, %eax
    movl    %eax, %ds
    movl    %eax, %es
    movl    %eax, %fs
    movl    %eax, %gs
    movl    %eax, %ss
    movl    HDR_code32_start(%esi), %eax
    xorl    %ebx, %ebx              /* boot.rst: %ebp, %edi, %ebx must be zero */
    xorl    %ebp, %ebp
    xorl    %edi, %edi
    jmpl    *%eax                   /* code32_start, %esi = boot_params */

    .balign 8
gdt32:
    .quad   0                       /* null */
    .quad   0                       /* 0x08: unused */
    .quad   0x00cf9a000000ffff      /* 0x10 BOOT_CS: 32-bit code, base 0, 4 GiB */
    .quad   0x00cf92000000ffff      /* 0x18 BOOT_DS: data, base 0, 4 GiB, writable */
gdt32_end:
    .balign 4
    .word   0
gdt32_desc:
    .word   gdt32_end - gdt32 - 1   /* GDTR limit */
    .long   0                       /* GDTR base: written at run time */
    .word   0
null_idt:
    .word   0                       /* IDTR limit 0: no gates */
    .long   0
    .balign 4
pm32_ptr:
    .long   0                       /* offset: pm32, written at run time */
    .word   BOOT_CS
setup_end:

    .code64
    .text
