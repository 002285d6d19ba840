/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The virtual machine: KVM handles, guest memory, the two buses, the event loop, the device
 * list and the vCPUs.  Devices talk to the VM only through this header.
 */
#ifndef KHYVE_VM_H
#define KHYVE_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/topology.h"
#include "bus.h"
#include "config.h"
#include "dev/dev.h"
#include "evloop.h"

#define GiB (1ULL << 30)
#define MiB (1ULL << 20)
#define KiB (1ULL << 10)

/* Guest physical layout: doc/platform.md is the reference. */
#define LOWMEM_LIMIT (3 * GiB)
#define HIGHMEM_BASE (4 * GiB)
#define PCI_MMIO32_BASE 0xC0000000ULL
#define PCI_MMIO32_SIZE 0x20000000ULL
#define PCI_ECAM_BASE 0xE0000000ULL
#define PCI_ECAM_SIZE 0x00100000ULL
#define IOAPIC_BASE 0xFEC00000ULL
#define HPET_BASE 0xFED00000ULL
#define LAPIC_BASE 0xFEE00000ULL
#define ACPI_TABLES_BASE 0xE0000ULL
#define EBDA_BASE 0x9FC00ULL
/* KVM's private pages for real mode on Intel (one page, then three for the TSS). */
#define VM_IDENTITY_MAP_ADDR 0xFEFFC000ULL
#define VM_TSS_ADDR 0xFEFFD000ULL

/* ISA IRQs and ports. */
#define IRQ_PIT 0
#define IRQ_COM2_4 3
#define IRQ_COM1_3 4
#define IRQ_RTC 8
#define IRQ_SCI 9
#define PM1A_EVT_PORT 0x400
#define PM1A_CNT_PORT 0x404
#define PM_TMR_PORT 0x408
#define RESET_PORT 0xCF9
#define SLP_TYP_S5 5

/* How the VM ended; these are bhyve's exit statuses. */
enum vm_exit_status {
	VM_EXIT_REBOOT = 0,
	VM_EXIT_POWEROFF = 1,
	VM_EXIT_HALT = 2,
	VM_EXIT_TRIPLEFAULT = 3,
	VM_EXIT_ERROR = 4,
	VM_EXIT_SUSPENDED = 0x100, /* saved by --suspend; khyve exits 0 */
};

struct mem_region {
	uint64_t gpa, size;
	void *hva;
	unsigned slot;
};

struct vcpu;
struct ctl;
struct console;

/*
 * A disk image a device writes (virtio-blk).  The snapshot makes it durable (fsync) with every
 * checkpoint, and with snapshot.disks=clone stores a copy beside the snapshot and records the
 * copy's path under @cfg_key in the snapshot's configuration.
 */
struct vm_disk {
	int fd;
	char path[4096];
	char cfg_key[64]; /* "pci.0.3.0.path" */
	char id[48];	  /* device instance id */
	struct vm_disk *next;
};
struct mem_backing;
struct snap_prefetch;
struct bootrom;
struct dirty_tracker;
struct snap_incr;
struct gdbstub;
struct mig_live;

struct vm {
	int kvm_fd, vm_fd;
	int run_size; /* mmap size of struct kvm_run */
	struct config *cfg;
	const char *name;

	struct mem_region mem[2]; /* below the PCI hole, above 4 GiB */
	unsigned nmem;
	uint64_t ram_size;

	unsigned ncpus;
	struct cpu_topo topo; /* sockets, cores, threads: what CPUID tells the guest */
	bool strictio;	      /* -e: an unemulated I/O port stops the VM */
	struct vcpu **vcpus;
	struct cpuid_mask cpuid_mask;	/* cpu.features: what vCPUs are not told of */
	struct cpuid_mask cpuid_unkept; /* ... and what of it KVM showed them anyway */

	struct bus pio, mmio;
	/* KVM's coalesced MMIO ring (bus.h), mapped on its own, and the timer that drains it. */
	struct kvm_coalesced_mmio_ring *cring;
	size_t cring_size;
	struct vtimer ctick;
	struct evloop ev;
	struct dev *devs, **devs_tail;
	struct vm_disk *disks;
	struct bootrom *bootrom; /* -l bootrom: the ROM and the BIOS area (dev/pc/bootrom.h) */

	/* Interrupt delivery: KVM by default, a recorder in unit tests. */
	void (*set_irq)(struct vm *vm, unsigned gsi, int level);
	int (*send_msi)(struct vm *vm, uint64_t addr, uint32_t data);

	struct ctl *ctl;	      /* control socket server */
	struct console *console;      /* display/input backend, backend/console.h */
	uint32_t devmem_slots;	      /* vm_devmem_map's slots in use */
	uint64_t hole_gpa, hole_size; /* vm_mem_hole */
	bool memslots_set;
	bool vga; /* legacy VGA ports decoded (fbuf vga=io|on): the FADT says so */
	/*
	 * The HPET is in legacy replacement mode: its timers 0 and 1 own IRQ 0 and IRQ 8, and the
	 * chipset cuts off the RTC's interrupt (IA-PC HPET 1.0a, 2.3.9.2.2).  Set by the HPET.
	 */
	atomic_bool hpet_legacy;
	/* A restored VM's background prefetch (snap/prefetch.h), or NULL. */
	struct snap_prefetch *prefetch;
	struct mem_backing *backing; /* snapshot file a restored VM's RAM maps, or NULL */
	bool paused;		     /* guest paused by a control request */
	bool poweroff_pending;	     /* SIGTERM while paused: the power button at resume */
	struct live_save *live;	     /* a live checkpoint being written (snap/snapshot.c) */
	struct mig_live *migration;  /* a live migration under way (snap/precopy.c) */
	bool migration_final;	     /* ... in its final pause, which snap_save_stream makes */
	/* Auto-converge (vcpus_throttle): the vCPUs sleep this share of their time, in percent. */
	unsigned throttle_pct;
	struct vtimer throttle_timer; /* starts each slice's sleep (loop thread) */
	struct dirty_tracker *dirty;  /* dirty-page tracking of RAM (snap/dirty.h), or NULL */
	struct snap_incr *incr;	      /* what an incremental checkpoint builds on (snapshot.c) */
	uint64_t start_ns;	      /* CLOCK_MONOTONIC when the VM started running */
	int sigfd;		      /* signals khyve handles (main.c), or -1 */
	struct gdbstub *gdb;	      /* -G: the debugger's stub (gdb/gdbstub.h), or NULL */

	/* Set once by whoever ends the VM (power off, reset, triple fault, suspend, error). */
	atomic_int exit_status; /* -1 while running */
	pthread_mutex_t exit_lock;
	pthread_cond_t exit_cond;
};

/* A VM with buses, event loop and a no-op irq sink but no KVM: for unit tests. */
void vm_init_bare(struct vm *vm, bool manual_clock);

int vm_create(struct vm *vm, struct config *cfg, char *err, size_t errlen);
void vm_destroy(struct vm *vm);
int vm_add_memory(struct vm *vm, uint64_t ram_size);
/*
 * mmap(@flags, @fd, @off) of @size bytes of guest RAM at a 2 MiB-aligned address, without
 * transparent huge pages (snapshots track and save guest RAM per 4 KiB page).
 */
void *vm_map_aligned(size_t size, int flags, int fd, off_t off);
/*
 * khyve -R (snap/migrate.c): make the KVM VM and register guest RAM of @ram_size, mapped
 * privately from @fd at @mem_offset in the layout a restore maps, while the memory arrives.
 * The next vm_create takes that VM, and vm_premade_map hands out a region's mapping if
 * region @idx of the restore is exactly that one (else NULL: the caller maps it).
 */
int vm_premake(uint64_t ram_size, int fd, uint64_t mem_offset);
void *vm_premade_map(unsigned idx, uint64_t gpa, size_t size, int fd, off_t off);
/* Free what was made ahead and not taken (any time; a no-op when nothing is left). */
void vm_premade_drop(void);
/* Hand every region to KVM (after vm_add_memory or a restore mapped them). */
int vm_set_memslots(struct vm *vm);
/*
 * Take [@gpa, @gpa + @size) out of guest RAM's slots so MMIO handlers decode it (the VGA
 * window at 0xA0000); the RAM behind it stays (snapshots keep it) but the guest no longer
 * reaches it.  One hole per VM; done at device creation, before or after vm_set_memslots.
 */
int vm_mem_hole(struct vm *vm, uint64_t gpa, uint64_t size);
/* The KVM slot of the RAM above the hole. */
#define VM_SLOT_HOLE_HIGH 15

/*
 * Device memory: host memory a device shows the guest at @gpa (a framebuffer BAR), as a KVM
 * memory slot of its own, so the guest reaches it without exits.  With @log_dirty, KVM records
 * the pages the guest writes; vm_devmem_dirty() hands them out (one bit per 4 KiB page, set
 * bits cleared as they are read).  vm_devmem_map returns the slot or -errno (-ENODEV without
 * KVM: the caller keeps trapping the accesses).
 */
int vm_devmem_map(struct vm *vm, uint64_t gpa, uint64_t size, void *hva, bool log_dirty);
void vm_devmem_unmap(struct vm *vm, int slot);
int vm_devmem_dirty(struct vm *vm, int slot, uint64_t *bitmap);

/* Guest-physical to host pointer for [gpa, gpa+len); NULL unless wholly inside guest RAM. */
void *vm_gpa(struct vm *vm, uint64_t gpa, uint64_t len);

/*
 * Coalesced MMIO (bus.h): with -o mmio.coalesce=on (default) and KVM_CAP_COALESCED_MMIO, map
 * KVM's ring through vCPU @vcpu_fd (the first vCPU's; the ring is one per VM) and give it to
 * the MMIO bus.  Without the capability, or with off, nothing happens and devices' zones are
 * refused: every write exits.  0, or -errno with @err (a bad value, or the mapping failed).
 */
int vm_coalesce_setup(struct vm *vm, int vcpu_fd, char *err, size_t errlen);
/*
 * Give @ring (@max entries; unit tests pass one of their own) to the MMIO bus and start the
 * timer that drains it every VM_COALESCE_TICK_NS, so the writes of a guest that makes no exit
 * for a while (polling memory, or halted in the kernel) still land.
 */
#define VM_COALESCE_TICK_NS (10 * 1000 * 1000ULL)
int vm_coalesce_attach(struct vm *vm, struct kvm_coalesced_mmio_ring *ring, unsigned max);

void vm_add_dev(struct vm *vm, struct dev *d);
/* Register a disk image for snapshots (the device keeps owning @disk and its fd). */
void vm_add_disk(struct vm *vm, struct vm_disk *disk);
struct dev *vm_find_dev(struct vm *vm, const char *id);

/*
 * Drive interrupt line @gsi: ISA IRQ 0-15 (IRQ0 reaches IOAPIC pin 2, GSI 2 is pin 2 only),
 * IOAPIC pins 16-23 (see vm_set_gsi_routing in vm.c and doc/platform.md).
 */
static inline void vm_set_irq(struct vm *vm, unsigned gsi, int level)
{
	vm->set_irq(vm, gsi, level);
}

static inline void vm_pulse_irq(struct vm *vm, unsigned gsi)
{
	vm->set_irq(vm, gsi, 1);
	vm->set_irq(vm, gsi, 0);
}

/* Ask the VM to end with @status; the first request wins.  Safe from any thread. */
void vm_request_exit(struct vm *vm, int status);
/* Block until some thread called vm_request_exit; returns the status. */
int vm_wait_exit(struct vm *vm);

#endif
