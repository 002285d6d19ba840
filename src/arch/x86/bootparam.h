/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Structures the boot protocols define, written from their documentation:
 *  - Linux/x86 boot protocol (Documentation/arch/x86/boot.rst and zero-page.rst): the setup
 *    header inside a bzImage and the boot_params ("zero page") a loader hands the kernel;
 *  - Xen's PVH boot ABI (docs/misc/pvh.pandoc, public/arch-x86/hvm/start_info.h layout):
 *    hvm_start_info and its memory map and module list;
 *  - the Multiboot Specification version 0.6.96: header and multiboot information.
 * All little-endian, packed, with every offset checked at compile time.
 */
#ifndef KHYVE_BOOTPARAM_H
#define KHYVE_BOOTPARAM_H

#include <stddef.h>
#include <stdint.h>

#define BP_PACKED __attribute__((packed))

/* ---- Linux ---- */

#define SETUP_HDR_OFFSET 0x1F1	   /* in the bzImage file and in boot_params */
#define SETUP_HDR_MAGIC 0x53726448 /* "HdrS" at 0x202 */
#define SETUP_BOOT_FLAG 0xAA55
#define SETUP_SECTS_DEFAULT 4 /* setup_sects == 0 means 4 */

/* loadflags */
#define LOADED_HIGH (1u << 0)
#define KASLR_FLAG (1u << 1)
#define QUIET_FLAG (1u << 5)
#define KEEP_SEGMENTS (1u << 6)
#define CAN_USE_HEAP (1u << 7)

/* xloadflags (protocol 2.12+) */
#define XLF_KERNEL_64 (1u << 0) /* 64-bit entry at load address + 0x200 */
#define XLF_CAN_BE_LOADED_ABOVE_4G (1u << 1)

#define LOADER_TYPE_UNDEFINED 0xFF

struct setup_header {
	uint8_t setup_sects; /* 0x1F1 */
	uint16_t root_flags;
	uint32_t syssize; /* protected-mode code size, 16-byte units (2.04+) */
	uint16_t ram_size;
	uint16_t vid_mode;
	uint16_t root_dev;
	uint16_t boot_flag; /* 0x1FE: 0xAA55 */
	uint16_t jump;	    /* 0x200: the second byte + 0x202 is the header's end */
	uint32_t header;    /* 0x202: "HdrS" */
	uint16_t version;   /* 0x206: protocol, major << 8 | minor */
	uint32_t realmode_swtch;
	uint16_t start_sys_seg;
	uint16_t kernel_version;
	uint8_t type_of_loader; /* 0x210 */
	uint8_t loadflags;
	uint16_t setup_move_size;
	uint32_t code32_start;	/* 0x214 */
	uint32_t ramdisk_image; /* 0x218 */
	uint32_t ramdisk_size;
	uint32_t bootsect_kludge;
	uint16_t heap_end_ptr; /* 0x224 */
	uint8_t ext_loader_ver;
	uint8_t ext_loader_type;
	uint32_t cmd_line_ptr;	   /* 0x228 */
	uint32_t initrd_addr_max;  /* 0x22C: highest byte the initrd may occupy (2.03+) */
	uint32_t kernel_alignment; /* 0x230 (2.05+) */
	uint8_t relocatable_kernel;
	uint8_t min_alignment;	   /* log2 (2.10+) */
	uint16_t xloadflags;	   /* 0x236 (2.12+) */
	uint32_t cmdline_size;	   /* 0x238: without the NUL (2.06+) */
	uint32_t hardware_subarch; /* 0x23C */
	uint64_t hardware_subarch_data;
	uint32_t payload_offset; /* 0x248 */
	uint32_t payload_length;
	uint64_t setup_data;   /* 0x250 */
	uint64_t pref_address; /* 0x258 (2.10+) */
	uint32_t init_size;    /* 0x260: memory the kernel needs from its load address */
	uint32_t handover_offset;
	uint32_t kernel_info_offset; /* 0x268 (2.15+) */
} BP_PACKED;

struct boot_e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} BP_PACKED;

#define BOOT_E820_MAX 128

struct boot_params {
	uint8_t screen_info[0x40];   /* 0x000 */
	uint8_t apm_bios_info[0x14]; /* 0x040 */
	uint8_t pad0[4];
	uint64_t tboot_addr;	 /* 0x058 */
	uint8_t ist_info[0x10];	 /* 0x060 */
	uint64_t acpi_rsdp_addr; /* 0x070 */
	uint8_t pad1[8];
	uint8_t hd0_info[0x10]; /* 0x080 */
	uint8_t hd1_info[0x10];
	uint8_t sys_desc_table[0x10];  /* 0x0A0 */
	uint8_t olpc_ofw_header[0x10]; /* 0x0B0 */
	uint32_t ext_ramdisk_image;    /* 0x0C0 */
	uint32_t ext_ramdisk_size;
	uint32_t ext_cmd_line_ptr; /* 0x0C8 */
	uint8_t pad2[0x13C - 0x0CC];
	uint32_t cc_blob_address; /* 0x13C */
	uint8_t edid_info[0x80];  /* 0x140 */
	uint8_t efi_info[0x20];	  /* 0x1C0 */
	uint32_t alt_mem_k;	  /* 0x1E0 */
	uint32_t scratch;
	uint8_t e820_entries; /* 0x1E8 */
	uint8_t eddbuf_entries;
	uint8_t edd_mbr_sig_buf_entries;
	uint8_t kbd_status;
	uint8_t secure_boot;
	uint8_t pad3[2];
	uint8_t sentinel; /* 0x1EF */
	uint8_t pad4;
	struct setup_header hdr; /* 0x1F1 */
	uint8_t pad5[0x290 - 0x1F1 - sizeof(struct setup_header)];
	uint32_t edd_mbr_sig_buffer[16];		  /* 0x290 */
	struct boot_e820_entry e820_table[BOOT_E820_MAX]; /* 0x2D0 */
	uint8_t pad6[0x1000 - 0x2D0 - BOOT_E820_MAX * sizeof(struct boot_e820_entry)];
} BP_PACKED;

_Static_assert(offsetof(struct setup_header, header) == 0x202 - SETUP_HDR_OFFSET, "HdrS");
_Static_assert(offsetof(struct setup_header, type_of_loader) == 0x210 - SETUP_HDR_OFFSET, "");
_Static_assert(offsetof(struct setup_header, cmd_line_ptr) == 0x228 - SETUP_HDR_OFFSET, "");
_Static_assert(offsetof(struct setup_header, xloadflags) == 0x236 - SETUP_HDR_OFFSET, "");
_Static_assert(offsetof(struct setup_header, pref_address) == 0x258 - SETUP_HDR_OFFSET, "");
_Static_assert(sizeof(struct setup_header) == 0x26C - SETUP_HDR_OFFSET, "setup_header");
_Static_assert(offsetof(struct boot_params, acpi_rsdp_addr) == 0x070, "");
_Static_assert(offsetof(struct boot_params, ext_ramdisk_image) == 0x0C0, "");
_Static_assert(offsetof(struct boot_params, cc_blob_address) == 0x13C, "");
_Static_assert(offsetof(struct boot_params, e820_entries) == 0x1E8, "");
_Static_assert(offsetof(struct boot_params, sentinel) == 0x1EF, "");
_Static_assert(offsetof(struct boot_params, hdr) == SETUP_HDR_OFFSET, "");
_Static_assert(offsetof(struct boot_params, e820_table) == 0x2D0, "");
_Static_assert(sizeof(struct boot_params) == 0x1000, "zero page");

/* ---- PVH ---- */

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578

struct hvm_start_info {
	uint32_t magic;
	uint32_t version; /* 1: has the memory map */
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr; /* version 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
} BP_PACKED;

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
} BP_PACKED;

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type; /* e820 types */
	uint32_t reserved;
} BP_PACKED;

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry");

/* ---- Multiboot (v1) ---- */

#define MB_HEADER_MAGIC 0x1BADB002
#define MB_BOOT_MAGIC 0x2BADB002 /* in EAX at entry */
#define MB_SEARCH_LEN 8192	 /* the header is in the first 8 KiB */
#define MB_SEARCH_ALIGN 4

/* Header flags: bits 0-15 are requirements a loader must meet or refuse the kernel. */
#define MB_PAGE_ALIGN (1u << 0)	 /* modules on 4 KiB boundaries */
#define MB_MEMORY_INFO (1u << 1) /* mem_* and mmap_* needed */
#define MB_VIDEO_MODE (1u << 2)
#define MB_AOUT_KLUDGE (1u << 16) /* load addresses in the header */
#define MB_REQUIRED_MASK 0xFFFFu

struct mb_header {
	uint32_t magic;
	uint32_t flags;
	uint32_t checksum; /* magic + flags + checksum == 0 */
	/* MB_AOUT_KLUDGE */
	uint32_t header_addr;
	uint32_t load_addr;
	uint32_t load_end_addr; /* 0: to the end of the file */
	uint32_t bss_end_addr;	/* 0: no bss */
	uint32_t entry_addr;
} BP_PACKED;

/* multiboot info flags: which fields are valid */
#define MBI_MEMORY (1u << 0)
#define MBI_BOOTDEV (1u << 1)
#define MBI_CMDLINE (1u << 2)
#define MBI_MODS (1u << 3)
#define MBI_MMAP (1u << 6)
#define MBI_LOADER_NAME (1u << 9)

struct mb_info {
	uint32_t flags;
	uint32_t mem_lower; /* KiB from 0 */
	uint32_t mem_upper; /* KiB from 1 MiB to the first hole */
	uint32_t boot_device;
	uint32_t cmdline;
	uint32_t mods_count;
	uint32_t mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length; /* bytes */
	uint32_t mmap_addr;
	uint32_t drives_length;
	uint32_t drives_addr;
	uint32_t config_table;
	uint32_t boot_loader_name;
	uint32_t apm_table;
	uint32_t vbe_control_info;
	uint32_t vbe_mode_info;
	uint16_t vbe_mode;
	uint16_t vbe_interface_seg;
	uint16_t vbe_interface_off;
	uint16_t vbe_interface_len;
	uint64_t framebuffer_addr;
	uint32_t framebuffer_pitch;
	uint32_t framebuffer_width;
	uint32_t framebuffer_height;
	uint8_t framebuffer_bpp;
	uint8_t framebuffer_type;
	uint8_t color_info[6];
} BP_PACKED;

struct mb_module {
	uint32_t mod_start;
	uint32_t mod_end; /* first byte after the module */
	uint32_t string;
	uint32_t reserved;
} BP_PACKED;

/* The size field counts the bytes after itself, so a walker steps by size + 4. */
struct mb_mmap_entry {
	uint32_t size;
	uint64_t base_addr;
	uint64_t length;
	uint32_t type;
} BP_PACKED;

_Static_assert(sizeof(struct mb_header) == 32, "multiboot header");
_Static_assert(offsetof(struct mb_info, mmap_length) == 44, "");
_Static_assert(offsetof(struct mb_info, boot_loader_name) == 64, "");
_Static_assert(offsetof(struct mb_info, framebuffer_addr) == 88, "");
_Static_assert(sizeof(struct mb_info) == 116, "multiboot info");
_Static_assert(sizeof(struct mb_module) == 16, "");
_Static_assert(sizeof(struct mb_mmap_entry) == 24, "");

#endif
