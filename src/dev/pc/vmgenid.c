// SPDX-License-Identifier: BSD-2-Clause
/*
 * VM Generation ID: Microsoft's "Virtual Machine Generation ID" (2012), as QEMU's vmgenid and
 * Firecracker provide it.  A 128-bit identifier in guest memory that changes whenever the VM may
 * have been duplicated or sent back in time, so that the guest reseeds its random number
 * generator and renews what must be unique (tokens, nonces, cluster ids).  Linux
 * (drivers/virt/vmgenid.c) and Windows read it.
 *
 * What the guest sees (arch/x86/acpi.c writes it into the DSDT):
 *   Device(\_SB.VGEN): _HID "KHYV0001", _CID and _DDN "VM_Gen_Counter" (the spec's id, which
 *     Linux matches as VM_GEN_COUNTER once ACPICA upper-cases it), and
 *     Method ADDR returning Package { low 32 bits, high 32 bits } of the identifier's
 *     guest-physical address: 16 bytes, 16-byte aligned, inside the ACPI table area (reserved
 *     in the e820 map, so the OS never reuses it);
 *   Device(\_SB.GED0): an ACPI Generic Event Device (ACPI 6.x, 5.6.9, _HID ACPI0013) on ISA
 *     IRQ 5 (edge, active high), whose _EVT does Notify(\_SB.VGEN, 0x80), the spec's
 *     change notification.
 *
 * When it changes: a new random identifier (getrandom) at boot and at every restore, written
 * into guest memory while the restore loads devices (no vCPU runs yet, so the guest never sees
 * the old one after the restore), and the notification pulsed once the VM runs (resume).  A
 * checkpoint that is not restored changes nothing: the running guest keeps its identifier.
 * Restoring one snapshot N times gives N different identifiers.
 *
 * Option: -o vmgenid=on|off.  On by default when khyve writes the ACPI tables (a kernel booted
 * directly); with -l bootrom the firmware lays the tables out where it likes, and vmgenid=on is
 * refused there.  A restore takes the snapshot's setting, and a snapshot made before khyve had
 * this device has none: off, so such files still restore.
 *
 * Threads: load and resume run on the event-loop thread with the vCPUs paused; nothing else.
 * Snapshot (version 1): the identifier's address, checked on load to be 16 bytes of guest RAM,
 * aligned.  The identifier itself is guest memory, saved with it.
 */
#include "dev/pc/vmgenid.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "config.h"
#include "dev/dev.h"
#include "sstream.h"
#include "vm.h"

struct vmgenid {
	struct dev dev;
	struct vm *vm;
	uint64_t gpa; /* the identifier's address, 0 until the ACPI tables set it */
	bool notify;  /* a restore changed it: tell the guest when it runs */
};

static int vmgenid_renew(struct vmgenid *g)
{
	uint8_t *p = vm_gpa(g->vm, g->gpa, VMGENID_SIZE);
	uint8_t id[VMGENID_SIZE];
	ssize_t n;

	if (!p)
		return -EFAULT;
	n = getrandom(id, sizeof(id), 0);
	if (n < 0)
		return -errno;
	/* A short read sets no errno: whatever it holds is some earlier call's. */
	if (n != (ssize_t)sizeof(id))
		return -EIO;
	memcpy(p, id, sizeof(id));
	return 0;
}

int vmgenid_set_addr(struct dev *d, uint64_t gpa)
{
	struct vmgenid *g = container_of(d, struct vmgenid, dev);

	g->gpa = gpa;
	return vmgenid_renew(g);
}

static int vmgenid_save(struct dev *d, struct sstream *s)
{
	struct vmgenid *g = container_of(d, struct vmgenid, dev);

	ss_u64(s, &g->gpa);
	return ss_error(s);
}

static int vmgenid_load(struct dev *d, struct sstream *s, unsigned version)
{
	struct vmgenid *g = container_of(d, struct vmgenid, dev);
	uint64_t gpa = 0;
	int ret;

	ss_u64(s, &gpa);
	/* The file chooses the address: 16 bytes of guest RAM, aligned, or nothing is written. */
	if (!ss_error(s) && (gpa % VMGENID_ALIGN || !vm_gpa(g->vm, gpa, VMGENID_SIZE)))
		ss_fail(s, -EINVAL, "vmgenid: address 0x%llx is not 16 aligned bytes of guest RAM",
			(unsigned long long)gpa);
	ret = ss_finish(s);
	if (ret)
		return ret;
	g->gpa = gpa;
	/* This is a restore: a new identifier before any vCPU runs, the Notify once they do. */
	ret = vmgenid_renew(g);
	if (!ret)
		g->notify = true;
	return ret;
}

static int vmgenid_resume(struct dev *d)
{
	struct vmgenid *g = container_of(d, struct vmgenid, dev);

	if (!g->notify)
		return 0;
	g->notify = false;
	/* An edge on the GED's interrupt: its _EVT notifies \_SB.VGEN. */
	vm_set_irq(g->vm, VMGENID_IRQ, 1);
	vm_set_irq(g->vm, VMGENID_IRQ, 0);
	return 0;
}

static void vmgenid_destroy(struct dev *d)
{
	free(container_of(d, struct vmgenid, dev));
}

static const struct dev_ops vmgenid_ops = {
	.name = "vmgenid",
	.version = 1,
	.resume = vmgenid_resume,
	.save = vmgenid_save,
	.load = vmgenid_load,
	.destroy = vmgenid_destroy,
};

int vmgenid_create(struct vm *vm, bool restoring, char *err, size_t errlen)
{
	bool tables = !vm->bootrom, on;
	struct vmgenid *g;
	int ret;

	/* A snapshot without the key was made before the device existed: it has none. */
	ret = config_get_bool(vm->cfg, "vmgenid", !restoring && tables, &on);
	if (ret) {
		snprintf(err, errlen, "vmgenid=%s: expected on or off",
			 config_get(vm->cfg, "vmgenid"));
		return ret;
	}
	if (on && !tables) {
		snprintf(err, errlen,
			 "vmgenid=on needs khyve's own ACPI tables (a kernel booted with "
			 "-o boot.kernel=), not -l bootrom");
		return -EINVAL;
	}
	/* Recorded, so a restore of this VM's snapshots has the device too. */
	ret = config_set(vm->cfg, "vmgenid", on ? "on" : "off");
	if (ret || !on)
		return ret;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->dev.ops = &vmgenid_ops;
	snprintf(g->dev.id, sizeof(g->dev.id), "vmgenid");
	g->vm = vm;
	vm_add_dev(vm, &g->dev);
	return 0;
}
