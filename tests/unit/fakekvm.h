/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The VM-wide state a KVM played by a test (fi_ioctl_fake, tests/faultinj.h) hands out, for
 * the fake-KVM tests of the save side (test_snapshot_fakekvm_faults,
 * test_migrate_fakekvm_faults): the VM's clock reads @clock, its irqchips (the one asked
 * for, by chip_id) and its PIT are all zero.
 */
#ifndef KHYVE_TESTS_FAKEKVM_H
#define KHYVE_TESTS_FAKEKVM_H

#include <errno.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <string.h>

/* Answer @req on the VM's descriptor: 0 for the state above, -1 (ENOTTY) for anything else. */
static inline int fakekvm_vm_get(unsigned long req, void *arg, uint64_t clock)
{
	switch (req) {
	case KVM_GET_CLOCK: {
		struct kvm_clock_data *c = arg;

		memset(c, 0, sizeof(*c));
		c->clock = clock;
		return 0;
	}
	case KVM_GET_IRQCHIP: {
		struct kvm_irqchip *chip = arg;
		uint32_t id = chip->chip_id;

		memset(chip, 0, sizeof(*chip));
		chip->chip_id = id;
		return 0;
	}
	case KVM_GET_PIT2:
		memset(arg, 0, sizeof(struct kvm_pit_state2));
		return 0;
	default:
		errno = ENOTTY;
		return -1;
	}
}

#endif
