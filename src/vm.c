// SPDX-License-Identifier: BSD-2-Clause
/* The VM: KVM handles, guest memory, devices, interrupt delivery, how the VM ends. */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dev/pc/bootrom.h"
#include "snap/dirty.h"
#include "snap/memory.h"
#include "snap/prefetch.h"
#include "vcpu.h"

static void vm_irq_noop(struct vm *vm, unsigned gsi, int level)
{
}

static int vm_msi_noop(struct vm *vm, uint64_t addr, uint32_t data)
{
	return 0;
}

static void vm_irq_kvm(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level };

	ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq);
}

static int vm_msi_kvm(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = {
		.address_lo = (uint32_t)addr,
		.address_hi = (uint32_t)(addr >> 32),
		.data = data,
	};

	return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0 ? -errno : 0;
}

/*
 * Interrupt lines as a PC wires them.  vm_set_irq(n) takes a KVM GSI: for n < 16 it is ISA IRQ
 * n, which reaches PIC pin n and IOAPIC pin n, except IRQ0 (PIT, HPET legacy timer 0), which
 * reaches IOAPIC pin 2 as on every PC (the MADT says so with an override).  GSI 2, the PIC
 * cascade, is routed nowhere (no device raises it), as QEMU does: KVM finds the GSI of an
 * IOAPIC pin's EOI by the last route to that pin, and a GSI 2 route to pin 2 would hide
 * GSI 0 from the in-kernel PIT, whose reinjection of ticks the vCPU could not take (a busy
 * host, interrupts held off) waits for the EOI of the last one: such ticks were lost.
 * GSIs 16-23 are IOAPIC pins (PCI INTx, HPET).  KVM's default table would send the
 * in-kernel PIT's IRQ0 to IOAPIC pin 0.
 */
static int vm_set_gsi_routing(struct vm *vm)
{
	struct kvm_irq_routing *r;
	unsigned n = 0;
	int ret = 0;

	r = calloc(1, sizeof(*r) + 48 * sizeof(r->entries[0]));
	if (!r)
		return -ENOMEM;
	for (unsigned gsi = 0; gsi < 24; gsi++) {
		if (gsi < 16 && gsi != 2) {
			r->entries[n].gsi = gsi;
			r->entries[n].type = KVM_IRQ_ROUTING_IRQCHIP;
			r->entries[n].u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
								  : KVM_IRQCHIP_PIC_SLAVE;
			r->entries[n].u.irqchip.pin = gsi % 8;
			n++;
		}
		if (gsi == 2)
			continue;
		r->entries[n].gsi = gsi;
		r->entries[n].type = KVM_IRQ_ROUTING_IRQCHIP;
		r->entries[n].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		r->entries[n].u.irqchip.pin = gsi == 0 ? 2 : gsi;
		n++;
	}
	r->nr = n;
	if (ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r) < 0)
		ret = -errno;
	free(r);
	return ret;
}

/*
 * bhyve's -w (x86.strictmsr=false): accesses to MSRs KVM does not know read 0 and ignore
 * writes instead of raising #GP.  KVM hands those accesses to us (vcpu.c) when asked to.
 */
static int vm_setup_msr_policy(struct vm *vm, char *err, size_t errlen)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_USER_SPACE_MSR,
		.args[0] = KVM_MSR_EXIT_REASON_UNKNOWN,
	};
	bool strict;

	if (config_get_bool(vm->cfg, "x86.strictmsr", true, &strict)) {
		snprintf(err, errlen, "x86.strictmsr: expected true or false");
		return -EINVAL;
	}
	if (strict)
		return 0;
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
		snprintf(err, errlen, "-w: this KVM cannot hand unknown MSRs to khyve: %s",
			 strerror(errno));
		return -errno;
	}
	return 0;
}

/* cpu.features: CPU features the guest is not told about (arch/x86/cpuid.h). */
static int vm_setup_cpuid_policy(struct vm *vm, char *err, size_t errlen)
{
	return cpuid_mask_parse(config_get(vm->cfg, "cpu.features"), &vm->cpuid_mask, err, errlen);
}

static void vm_common_init(struct vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->sigfd = -1;
	bus_init(&vm->pio);
	bus_init(&vm->mmio);
	vm->devs_tail = &vm->devs;
	vm->set_irq = vm_irq_noop;
	vm->send_msi = vm_msi_noop;
	atomic_init(&vm->exit_status, -1);
	pthread_mutex_init(&vm->exit_lock, NULL);
	pthread_cond_init(&vm->exit_cond, NULL);
}

void vm_init_bare(struct vm *vm, bool manual_clock)
{
	vm_common_init(vm);
	if (manual_clock)
		evloop_init_manual(&vm->ev, 1000000000ULL);
	else
		evloop_init(&vm->ev);
}

/*
 * A VM made ahead (vm_premake): khyve -R, during a live migration's pre-copy rounds, creates
 * the KVM VM and registers guest RAM (a private mapping of the memfd the memory arrives in)
 * before the state comes, so that the restore in the downtime finds them made: here
 * KVM_SET_USER_MEMORY_REGION alone took 5 ms, and KVM_CREATE_VM and the slots 8-20 ms on a
 * loaded host.  vm_create and vm_premade_map adopt them if the restore wants exactly that;
 * anything else is made as always, and vm_premade_drop frees what was not adopted.
 */
static struct {
	int kvm_fd, vm_fd; /* -1: none */
	unsigned nregions;
	struct {
		uint64_t gpa, size;
		off_t off;
		void *hva; /* NULL once adopted */
	} r[2];
	dev_t dev;
	ino_t ino;
	/* The slots registered: kept after adoption, for vm_set_memslots to check. */
	struct vm *owner;
	unsigned nslots;
	struct {
		uint64_t gpa, size;
		void *hva;
	} slot[2];
} premade = { .kvm_fd = -1, .vm_fd = -1 };

void vm_premade_drop(void)
{
	for (unsigned i = 0; i < premade.nregions; i++)
		if (premade.r[i].hva)
			munmap(premade.r[i].hva, premade.r[i].size);
	if (premade.vm_fd >= 0)
		close(premade.vm_fd);
	if (premade.kvm_fd >= 0)
		close(premade.kvm_fd);
	if (!premade.owner) {
		memset(&premade, 0, sizeof(premade));
		premade.kvm_fd = premade.vm_fd = -1;
	} else {
		/* The slots stay the owner's to check; nothing else is left here. */
		memset(premade.r, 0, sizeof(premade.r));
		premade.nregions = 0;
		premade.kvm_fd = premade.vm_fd = -1;
	}
}

int vm_premake(uint64_t ram_size, int fd, uint64_t mem_offset)
{
	uint64_t low = ram_size < LOWMEM_LIMIT ? ram_size : LOWMEM_LIMIT;
	struct stat st;
	int ret = 0;

	premade.owner = NULL;
	premade.nslots = 0;
	vm_premade_drop();
	if (fstat(fd, &st))
		return -errno;
	premade.dev = st.st_dev;
	premade.ino = st.st_ino;
	premade.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (premade.kvm_fd >= 0)
		premade.vm_fd = ioctl(premade.kvm_fd, KVM_CREATE_VM, 0);
	if (premade.vm_fd < 0) {
		ret = -errno;
		goto fail;
	}
	/* The layout a restore of this memory size maps (snap_memory_map_chain checks it). */
	premade.r[0].gpa = 0;
	premade.r[0].size = low;
	premade.r[1].gpa = HIGHMEM_BASE;
	premade.r[1].size = ram_size - low;
	premade.nregions = ram_size > low ? 2 : 1;
	for (unsigned i = 0; i < premade.nregions && !ret; i++) {
		struct kvm_userspace_memory_region kr = { .slot = i };

		premade.r[i].off = (off_t)(mem_offset + (i ? low : 0));
		premade.r[i].hva = vm_map_aligned(premade.r[i].size, MAP_PRIVATE, fd,
						  premade.r[i].off);
		if (premade.r[i].hva == MAP_FAILED) {
			premade.r[i].hva = NULL;
			ret = -errno;
			break;
		}
		kr.guest_phys_addr = premade.r[i].gpa;
		kr.memory_size = premade.r[i].size;
		kr.userspace_addr = (uintptr_t)premade.r[i].hva;
		if (ioctl(premade.vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0)
			ret = -errno;
		else
			premade.slot[premade.nslots++] = (typeof(premade.slot[0])){
				premade.r[i].gpa, premade.r[i].size, premade.r[i].hva
			};
	}
	if (!ret) {
		/* The vCPUs made in the downtime find KVM's CPUID list asked already. */
		struct kvm_cpuid2 *c = calloc(1,
					      sizeof(*c) + VCPU_CPUID_MAX * sizeof(c->entries[0]));

		if (c)
			vcpu_supported_cpuid(premade.kvm_fd, c, VCPU_CPUID_MAX);
		free(c);
		return 0;
	}
fail:
	vm_premade_drop();
	return ret;
}

void *vm_premade_map(unsigned idx, uint64_t gpa, size_t size, int fd, off_t off)
{
	struct stat st;
	void *hva;

	if (idx >= premade.nregions || !premade.r[idx].hva || premade.r[idx].gpa != gpa ||
	    premade.r[idx].size != size || premade.r[idx].off != off || fstat(fd, &st) ||
	    st.st_dev != premade.dev || st.st_ino != premade.ino)
		return NULL;
	hva = premade.r[idx].hva;
	premade.r[idx].hva = NULL;
	return hva;
}

int vm_create(struct vm *vm, struct config *cfg, char *err, size_t errlen)
{
	int ret;

	vm_common_init(vm);
	vm->cfg = cfg;
	vm->name = config_get_default(cfg, "name", "vm");
	ret = evloop_init(&vm->ev);
	if (ret) {
		snprintf(err, errlen, "cannot create the event loop: %s", strerror(-ret));
		return ret;
	}
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "/dev/kvm: %s", strerror(errno));
		return ret;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		snprintf(err, errlen, "/dev/kvm: unsupported KVM API version");
		return -ENOTSUP;
	}
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	/* A VM made ahead (khyve -R) is this one; its slots are checked when memory is mapped. */
	vm->vm_fd = premade.vm_fd >= 0 ? premade.vm_fd : ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (premade.vm_fd >= 0)
		premade.owner = vm;
	premade.vm_fd = -1;
	if (vm->vm_fd < 0 || vm->run_size <= 0) {
		ret = -errno;
		snprintf(err, errlen, "KVM_CREATE_VM: %s", strerror(errno));
		return ret;
	}
	/*
	 * Needed on Intel for real mode; harmless elsewhere.  Both live in the hole below 4 GiB,
	 * under the 16 MiB a boot ROM may take (where QEMU puts them too).
	 */
	uint64_t ident = VM_IDENTITY_MAP_ADDR;

	ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident);
	ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)VM_TSS_ADDR);
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		ret = -errno;
		snprintf(err, errlen, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return ret;
	}
	ret = vm_set_gsi_routing(vm);
	if (ret) {
		snprintf(err, errlen, "KVM_SET_GSI_ROUTING: %s", strerror(-ret));
		return ret;
	}
	struct kvm_pit_config pit = { .flags = 0 };

	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		ret = -errno;
		snprintf(err, errlen, "KVM_CREATE_PIT2: %s", strerror(errno));
		return ret;
	}
	ret = vm_setup_msr_policy(vm, err, errlen);
	if (ret)
		return ret;
	ret = vm_setup_cpuid_policy(vm, err, errlen);
	if (ret)
		return ret;
	vm->set_irq = vm_irq_kvm;
	vm->send_msi = vm_msi_kvm;
	return 0;
}

void *vm_map_aligned(size_t size, int flags, int fd, off_t off)
{
	const size_t align = 2 * MiB;
	uint8_t *area, *start;
	void *p;

	/*
	 * Guest RAM at a 2 MiB-aligned host address (and file offset), the layout a backing with
	 * huge pages would need (KVM maps a 2 MiB guest page only over a 2 MiB host page); it
	 * costs nothing.  Reserve room, then map over the aligned part.
	 */
	area = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
		    0);
	if (area == MAP_FAILED)
		return MAP_FAILED;
	start = (uint8_t *)(((uintptr_t)area + align - 1) & ~(uintptr_t)(align - 1));
	p = mmap(start, size, PROT_READ | PROT_WRITE, flags | MAP_FIXED | MAP_NORESERVE, fd, off);
	if (p == MAP_FAILED) {
		int e = errno;

		munmap(area, size + align);
		errno = e;
		return MAP_FAILED;
	}
	if (start > area)
		munmap(area, (size_t)(start - area));
	munmap(start + size, (size_t)(area + size + align - (start + size)));
	/*
	 * No transparent huge pages: everything snapshots do with guest RAM is per 4 KiB page
	 * (the pages a save stores, dirty tracking's pagemap scan, a clone's copied pages), and
	 * a host whose THP setting is "always" (Debian's default) would back, track and save a
	 * whole 2 MiB at a guest's first touch of one page.  Where THP is "madvise" or "never"
	 * this changes nothing.
	 */
	madvise(p, size, MADV_NOHUGEPAGE);
	return p;
}

static int vm_map_region(struct vm *vm, uint64_t gpa, uint64_t size)
{
	struct mem_region *r = &vm->mem[vm->nmem];
	void *hva;

	/* NORESERVE: a guest that never touches its RAM never costs host memory. */
	hva = vm_map_aligned(size, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (hva == MAP_FAILED)
		return -errno;
	r->gpa = gpa;
	r->size = size;
	r->hva = hva;
	r->slot = vm->nmem;
	vm->nmem++;
	return 0;
}

static int vm_set_slot(struct vm *vm, unsigned slot, uint64_t gpa, uint64_t size, void *hva)
{
	struct kvm_userspace_memory_region kr = {
		.slot = slot,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)hva,
	};

	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0 ? -errno : 0;
}

/* Holes in guest RAM's slots: the VGA window (vm_mem_hole) and, with a boot ROM, the BIOS area. */
static unsigned vm_region_holes(const struct vm *vm, const struct mem_region *r, uint64_t *lo,
				uint64_t *hi)
{
	unsigned n = 0;

	if (vm->hole_size && vm->hole_gpa > r->gpa &&
	    vm->hole_gpa + vm->hole_size < r->gpa + r->size) {
		lo[n] = vm->hole_gpa;
		hi[n++] = vm->hole_gpa + vm->hole_size;
	}
	/* The BIOS area 0xC0000-0xFFFFF of the first region is the PAM's (bootrom.c). */
	if (vm->bootrom && r->gpa == 0 && r->size > BIOS_AREA_END) {
		lo[n] = BIOS_AREA_BASE;
		hi[n++] = BIOS_AREA_END;
	}
	return n;
}

/* The slot of the piece of @r that starts at @gpa. */
static unsigned vm_piece_slot(const struct vm *vm, const struct mem_region *r, uint64_t gpa)
{
	if (gpa == r->gpa)
		return r->slot;
	if (vm->bootrom && gpa == BIOS_AREA_END)
		return BOOTROM_SLOT_RAM_HIGH;
	return VM_SLOT_HOLE_HIGH;
}

/* One region as slots: the RAM between its holes (sorted, not overlapping). */
static int vm_set_region(struct vm *vm, const struct mem_region *r)
{
	uint64_t lo[2], hi[2], at = r->gpa, end = r->gpa + r->size;
	unsigned n = vm_region_holes(vm, r, lo, hi);
	int ret = 0;

	for (unsigned i = 0; i <= n && !ret; i++) {
		uint64_t stop = i < n ? lo[i] : end;

		if (stop > at)
			ret = vm_set_slot(vm, vm_piece_slot(vm, r, at), at, stop - at,
					  (uint8_t *)r->hva + (at - r->gpa));
		if (i < n)
			at = hi[i];
	}
	return ret;
}

int vm_set_memslots(struct vm *vm)
{
	int ret = 0;

	/*
	 * Slots made ahead (vm_premake) cover whole regions; where this VM has holes in a region,
	 * KVM cannot shrink that slot in place: it goes first.  Identical slots are set again at
	 * no cost (KVM sees nothing to change).
	 */
	for (unsigned i = 0; premade.owner == vm && i < premade.nslots && !ret; i++) {
		uint64_t lo[2], hi[2];
		bool same = i < vm->nmem && vm->mem[i].slot == i &&
			    vm->mem[i].gpa == premade.slot[i].gpa &&
			    vm->mem[i].size == premade.slot[i].size &&
			    vm->mem[i].hva == premade.slot[i].hva &&
			    !vm_region_holes(vm, &vm->mem[i], lo, hi);

		if (!same)
			ret = vm_set_slot(vm, i, premade.slot[i].gpa, 0, premade.slot[i].hva);
	}
	if (premade.owner == vm)
		premade.owner = NULL;

	for (unsigned i = 0; i < vm->nmem && !ret; i++)
		ret = vm_set_region(vm, &vm->mem[i]);
	if (!ret)
		vm->memslots_set = true;
	return ret ? ret : bootrom_map(vm);
}

int vm_mem_hole(struct vm *vm, uint64_t gpa, uint64_t size)
{
	if (vm->hole_size)
		return -EBUSY;
	if ((gpa | size) & 0xfff || !size)
		return -EINVAL;
	vm->hole_gpa = gpa;
	vm->hole_size = size;
	if (!vm->memslots_set || vm->vm_fd < 0)
		return 0;
	/*
	 * Slots are in place already: KVM cannot shrink one, so the region's first slot is
	 * deleted and the region set again (its other slots keep their place).
	 */
	for (unsigned i = 0; i < vm->nmem; i++) {
		struct mem_region *r = &vm->mem[i];
		int ret;

		if (gpa <= r->gpa || gpa + size >= r->gpa + r->size)
			continue;
		ret = vm_set_slot(vm, r->slot, r->gpa, 0, r->hva);
		return ret ? ret : vm_set_region(vm, r);
	}
	return 0;
}

/* Device memory slots come after every slot guest RAM and firmware may use. */
/* ---- coalesced MMIO ---- */

static void vm_coalesce_tick(void *opaque)
{
	struct vm *vm = opaque;

	bus_coalesce_drain(&vm->mmio);
	vtimer_arm(&vm->ctick, vclock_ns(&vm->ev) + VM_COALESCE_TICK_NS);
}

int vm_coalesce_attach(struct vm *vm, struct kvm_coalesced_mmio_ring *ring, unsigned max)
{
	int ret = bus_coalesce_attach(&vm->mmio, vm->vm_fd, ring, max);

	if (ret)
		return ret;
	vtimer_init(&vm->ctick, &vm->ev, vm_coalesce_tick, vm);
	vtimer_arm(&vm->ctick, vclock_ns(&vm->ev) + VM_COALESCE_TICK_NS);
	return 0;
}

int vm_coalesce_setup(struct vm *vm, int vcpu_fd, char *err, size_t errlen)
{
	long page = sysconf(_SC_PAGESIZE);
	bool on = true;
	int off;
	void *ring;

	if (vm->cfg && config_get_bool(vm->cfg, "mmio.coalesce", true, &on)) {
		snprintf(err, errlen, "mmio.coalesce=%s: expected on or off",
			 config_get(vm->cfg, "mmio.coalesce"));
		return -EINVAL;
	}
	/* The capability's value is the ring's page within the vCPU mapping; 0: none. */
	off = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);
	if (!on || off <= 0 || page <= 0 || (off + 1) * page > vm->run_size)
		return 0;
	/*
	 * A mapping of its own, not the vCPU's: it must outlive the vCPUs, since a backend
	 * thread may still drain while the devices are destroyed (vm_destroy).
	 */
	ring = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd,
		    (off_t)off * page);
	if (ring == MAP_FAILED) {
		int e = errno;

		snprintf(err, errlen, "mapping KVM's coalesced MMIO ring: %s", strerror(e));
		return -e;
	}
	vm->cring = ring;
	vm->cring_size = (size_t)page;
	return vm_coalesce_attach(vm, ring,
				  (unsigned)(((size_t)page -
					      sizeof(struct kvm_coalesced_mmio_ring)) /
					     sizeof(struct kvm_coalesced_mmio)));
}

#define DEVMEM_SLOT_BASE 64
#define DEVMEM_SLOTS 32
static pthread_mutex_t devmem_lock = PTHREAD_MUTEX_INITIALIZER;

int vm_devmem_map(struct vm *vm, uint64_t gpa, uint64_t size, void *hva, bool log_dirty)
{
	struct kvm_userspace_memory_region kr = {
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)hva,
		.flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
	};
	int i, ret = 0;

	if (vm->vm_fd < 0)
		return -ENODEV;
	pthread_mutex_lock(&devmem_lock);
	for (i = 0; i < DEVMEM_SLOTS && (vm->devmem_slots & (1U << i)); i++)
		;
	if (i == DEVMEM_SLOTS) {
		ret = -ENOSPC;
	} else {
		kr.slot = DEVMEM_SLOT_BASE + (unsigned)i;
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0)
			ret = -errno;
		else
			vm->devmem_slots |= 1U << i;
	}
	pthread_mutex_unlock(&devmem_lock);
	return ret ? ret : DEVMEM_SLOT_BASE + i;
}

void vm_devmem_unmap(struct vm *vm, int slot)
{
	struct kvm_userspace_memory_region kr = { .slot = (unsigned)slot };
	int i = slot - DEVMEM_SLOT_BASE;

	if (i < 0 || i >= DEVMEM_SLOTS)
		return;
	pthread_mutex_lock(&devmem_lock);
	if (vm->devmem_slots & (1U << i)) {
		/* Size 0 deletes the slot. */
		ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr);
		vm->devmem_slots &= ~(1U << i);
	}
	pthread_mutex_unlock(&devmem_lock);
}

int vm_devmem_dirty(struct vm *vm, int slot, uint64_t *bitmap)
{
	struct kvm_dirty_log log = { .slot = (unsigned)slot, .dirty_bitmap = bitmap };

	return ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0 ? -errno : 0;
}

int vm_add_memory(struct vm *vm, uint64_t ram_size)
{
	uint64_t low = ram_size < LOWMEM_LIMIT ? ram_size : LOWMEM_LIMIT;
	int ret;

	vm->ram_size = ram_size;
	ret = vm_map_region(vm, 0, low);
	if (!ret && ram_size > low)
		ret = vm_map_region(vm, HIGHMEM_BASE, ram_size - low);
	return ret;
}

void *vm_gpa(struct vm *vm, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < vm->nmem; i++) {
		struct mem_region *r = &vm->mem[i];

		/* Written so that no sum can overflow: the guest chooses gpa and len. */
		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return (uint8_t *)r->hva + (gpa - r->gpa);
	}
	return NULL;
}

void vm_add_dev(struct vm *vm, struct dev *d)
{
	/* A device registers its ports and MMIO ranges while it is made, before it is added. */
	bus_stats_claim(&vm->pio, d->id);
	bus_stats_claim(&vm->mmio, d->id);
	d->next = NULL;
	*vm->devs_tail = d;
	vm->devs_tail = &d->next;
}

void vm_add_disk(struct vm *vm, struct vm_disk *disk)
{
	disk->next = vm->disks;
	vm->disks = disk;
}

struct dev *vm_find_dev(struct vm *vm, const char *id)
{
	for (struct dev *d = vm->devs; d; d = d->next)
		if (!strcmp(d->id, id))
			return d;
	return NULL;
}

void vm_request_exit(struct vm *vm, int status)
{
	int expected = -1;

	pthread_mutex_lock(&vm->exit_lock);
	if (atomic_compare_exchange_strong(&vm->exit_status, &expected, status))
		pthread_cond_broadcast(&vm->exit_cond);
	pthread_mutex_unlock(&vm->exit_lock);
}

int vm_wait_exit(struct vm *vm)
{
	pthread_mutex_lock(&vm->exit_lock);
	while (atomic_load(&vm->exit_status) < 0)
		pthread_cond_wait(&vm->exit_cond, &vm->exit_lock);
	pthread_mutex_unlock(&vm->exit_lock);
	return atomic_load(&vm->exit_status);
}

void vm_destroy(struct vm *vm)
{
	struct dev *d;

	evloop_stop(&vm->ev);
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->vcpus && vm->vcpus[i])
			vcpu_destroy(vm->vcpus[i]);
	free(vm->vcpus);
	vm->vcpus = NULL;
	/* No vCPU buffers writes any more: hand the last ones over, then no drain does more. */
	if (vm->mmio.ring) {
		vtimer_cancel(&vm->ctick);
		bus_coalesce_detach(&vm->mmio);
	}
	/*
	 * Quiesce every device first (worker threads stopped, nothing in flight), then destroy
	 * them newest first: a device may still use one created before it (a PCI function its
	 * bus) while it stops.
	 */
	for (d = vm->devs; d; d = d->next)
		if (d->ops->pause)
			d->ops->pause(d);
	while (vm->devs) {
		struct dev **pp = &vm->devs;

		while ((*pp)->next)
			pp = &(*pp)->next;
		d = *pp;
		*pp = NULL;
		if (d->ops->destroy)
			d->ops->destroy(d);
	}
	vm->devs_tail = &vm->devs;
	evloop_destroy(&vm->ev);
	snap_prefetch_vm_stop(vm); /* before RAM is unmapped */
	dirty_vm_free(vm);
	snap_incr_free(vm);
	if (vm->backing) {
		close(vm->backing->fd);
		free(vm->backing->extents);
		free(vm->backing);
		vm->backing = NULL;
	}
	for (unsigned i = 0; i < vm->nmem; i++)
		munmap(vm->mem[i].hva, vm->mem[i].size);
	vm->nmem = 0;
	if (vm->cring)
		munmap(vm->cring, vm->cring_size);
	vm->cring = NULL;
	if (vm->sigfd >= 0)
		close(vm->sigfd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = vm->sigfd = -1;
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
}
