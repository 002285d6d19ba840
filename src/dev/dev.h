/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Devices.  Every emulated device embeds a struct dev and fills one ops table that holds its
 * snapshot hooks next to its lifecycle hooks, so a device cannot exist without saying how it is
 * saved.  Snapshot records are keyed by the instance id ("uart@com1", "pci@0.31.0"), never by
 * the device type, so any number of devices of a kind can be saved.
 *
 * Threads: I/O handlers run on vCPU threads, timer and fd callbacks on the VM's event-loop
 * thread; each device guards its state with its own lock.  pause/save/load/resume are called
 * by the snapshot orchestrator on the event-loop thread with every vCPU paused.
 */
#ifndef KHYVE_DEV_H
#define KHYVE_DEV_H

#include <stddef.h>

struct sstream;
struct dev;

struct dev_ops {
	const char *name; /* device type, "uart" */
	unsigned version; /* version of the state this code saves */
	/* Stop background work and drain in-flight I/O (completions written, IRQs raised). */
	int (*pause)(struct dev *d);
	/* Restart background work after pause or load; re-arm timers from the loaded state. */
	int (*resume)(struct dev *d);
	int (*save)(struct dev *d, struct sstream *s);
	/*
	 * Decode into a staging copy, validate, and commit only when everything checked out
	 * (ss_finish() returned 0).  @version is the saved version (<= ops->version).
	 */
	int (*load)(struct dev *d, struct sstream *s, unsigned version);
	void (*destroy)(struct dev *d);
};

struct dev {
	const struct dev_ops *ops;
	char id[48];	  /* instance id, unique in a VM */
	const char *kind; /* what it is when ops->name is a family: "virtio-blk" for "pci" */
	struct dev *next; /* VM's device list, in creation order */
};

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
