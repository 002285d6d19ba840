// SPDX-License-Identifier: BSD-2-Clause
/*
 * kvm_floor: the least work any KVM-based monitor must do before a guest with @mem bytes of RAM
 * and @cpus vCPUs could run, timed from the start of main() as khyve's debug.timing is.
 *
 * It builds an empty VM shaped like khyve's (doc/platform.md): in-kernel irqchip and PIT, RAM
 * below 3 GiB and, beyond that, above 4 GiB, one memory slot per region, and the vCPUs with
 * their kvm_run areas mapped.  It loads nothing and runs nothing, so a restore that takes this
 * long is as fast as the kernel lets it be.  bench/snapshot.py compares khyve's restore to it.
 *
 * usage: kvm_floor MEM CPUS     (MEM in bytes, or with a K/M/G suffix)
 * prints: floor_ms <milliseconds>
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define LOWMEM_LIMIT	(3ULL << 30)	/* RAM below the PCI hole */
#define HIGHMEM_BASE	(4ULL << 30)	/* the rest of RAM, above 4 GiB */
#define MAX_CPUS	255

struct region {
	uint64_t gpa;
	uint64_t size;
	void *hva;
};

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static int fail(const char *what)
{
	fprintf(stderr, "kvm_floor: %s: %s\n", what, strerror(errno));
	return 1;
}

/* "512M" → 536870912; 0 when the text is not a size. */
static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 0);

	switch (*end) {
	case 'G': case 'g':
		v <<= 10;
		/* fall through */
	case 'M': case 'm':
		v <<= 10;
		/* fall through */
	case 'K': case 'k':
		v <<= 10;
		end++;
		break;
	}
	return *end ? 0 : v;
}

/* Maps one region as khyve does: private, anonymous, no swap reservation, nothing touched. */
static int map_region(struct region *r, uint64_t gpa, uint64_t size)
{
	r->gpa = gpa;
	r->size = size;
	r->hva = mmap(NULL, size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return r->hva == MAP_FAILED ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct kvm_pit_config pit = { .flags = 0 };
	struct region mem[2];
	struct timespec t0;
	uint64_t ram, low;
	unsigned int nmem = 0, cpus, i;
	int kvm, vm, run_size, fd;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (argc != 3 || !(ram = parse_size(argv[1])) || (ram & 0xfff) ||
	    !(cpus = (unsigned int)atoi(argv[2])) || cpus > MAX_CPUS) {
		fprintf(stderr, "usage: kvm_floor MEM[K|M|G] CPUS\n");
		return 2;
	}

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail("/dev/kvm");
	if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		return fail("KVM_GET_API_VERSION");
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size <= 0)
		return fail("KVM_GET_VCPU_MMAP_SIZE");
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return fail("KVM_CREATE_VM");
	/* As khyve: needed on Intel before vCPUs run in real mode, cheap elsewhere. */
	ioctl(vm, KVM_SET_TSS_ADDR, 0xFFFBD000UL);
	if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
		return fail("KVM_CREATE_IRQCHIP");
	if (ioctl(vm, KVM_CREATE_PIT2, &pit) < 0)
		return fail("KVM_CREATE_PIT2");

	low = ram < LOWMEM_LIMIT ? ram : LOWMEM_LIMIT;
	if (map_region(&mem[nmem++], 0, low))
		return fail("mmap");
	if (ram > low && map_region(&mem[nmem++], HIGHMEM_BASE, ram - low))
		return fail("mmap");
	for (i = 0; i < nmem; i++) {
		struct kvm_userspace_memory_region kr = {
			.slot = i,
			.guest_phys_addr = mem[i].gpa,
			.memory_size = mem[i].size,
			.userspace_addr = (uintptr_t)mem[i].hva,
		};

		if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &kr) < 0)
			return fail("KVM_SET_USER_MEMORY_REGION");
	}

	for (i = 0; i < cpus; i++) {
		fd = ioctl(vm, KVM_CREATE_VCPU, i);
		if (fd < 0)
			return fail("KVM_CREATE_VCPU");
		if (mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) ==
		    MAP_FAILED)
			return fail("mmap of kvm_run");
	}

	printf("floor_ms %.3f\n", ms_since(&t0));
	/* Exit without tearing down: the kernel frees the VM, and that is not part of the floor. */
	return 0;
}
