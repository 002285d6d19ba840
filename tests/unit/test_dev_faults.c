// SPDX-License-Identifier: BSD-2-Clause
/*
 * Devices created on a host that runs out of memory (tests/faultinj.h): with the Nth malloc
 * or calloc of a device's creation failing, for N = 1, 2, ... until creation no longer meets
 * the fault, every attempt is refused with a message, leaves the slot free for a later
 * device and leaks nothing (ASan's leak check runs on this binary in asan-unit).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "dev/pci/pci.h"
#include "faultinj.h"
#include "vm.h"

/* More attempts than any device makes allocations: the sweep must end before this. */
#define SWEEP_MAX 64

extern const struct pci_emul pci_emul_virtio_rnd;

static void no_irq(struct vm *vm, unsigned gsi, int level)
{
}

static int no_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	return 0;
}

/*
 * Add @e in slot 4 of a fresh VM with the @nth call of @c failing; returns whether the fault
 * was met.  A refused device says why and frees its slot; one that met no fault is created.
 */
static bool add_with_fault(const struct pci_emul *e, enum fi_call c, unsigned nth)
{
	struct vm vm;
	struct pci_dev *pd;
	char err[256] = "";
	bool hit;

	vm_init_bare(&vm, true);
	vm.set_irq = no_irq;
	vm.send_msi = no_msi;
	assert_int_equal(vm_add_memory(&vm, 1 << 20), 0);
	assert_int_equal(pci_setup(&vm, err, sizeof(err)), 0);
	fi_reset();
	fi_fail(c, nth, 0);
	pd = pci_dev_add(&vm, 4, 0, e, err, sizeof(err));
	hit = fi_hits(c) > 0;
	fi_reset();
	if (!hit) {
		assert_non_null(pd);
	} else if (!pd) {
		assert_string_not_equal(err, "");
		assert_false(pci_slot_used(&vm, 4, 0));
	}
	vm_destroy(&vm);
	return hit;
}

static void sweep(const struct pci_emul *e, enum fi_call c)
{
	unsigned n = 1;

	while (n < SWEEP_MAX && add_with_fault(e, c, n))
		n++;
	assert_true(n < SWEEP_MAX);
}

static void test_virtio_rnd_oom(void **state)
{
	sweep(&pci_emul_virtio_rnd, FI_MALLOC);
	sweep(&pci_emul_virtio_rnd, FI_CALLOC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_virtio_rnd_oom),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
