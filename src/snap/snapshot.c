// SPDX-License-Identifier: BSD-2-Clause
/*
 * The snapshot orchestrator: the order in which a VM is saved and restored.
 *
 * Save (snap_save), on the event-loop thread so no device timer fires meanwhile:
 *   1. pause every vCPU (acknowledged: all are out of KVM_RUN, no exit left unfinished),
 *      then hand the writes KVM buffered (coalesced MMIO, bus.h) to their devices
 *   2. read every clock in one instant: device clock (frozen there for the devices' saves),
 *      kvmclock, each vCPU's TSC, wall-clock time (snap/clocks.h)
 *   3. pause every device (in-flight work drained, output flushed); saving a device may
 *      raise an interrupt, so devices go before vCPU and irqchip state
 *   4. save devices, one section per instance
 *   5. save vCPUs, each on its own thread (IA32_TSC as of step 2)
 *   6. save VM-wide state: PIC, IOAPIC, PIT, and the clocks of step 2
 *   7. the slow part: fsync every disk, or copy it (snapshot.disks=clone); the disks section
 *   8. save metadata, then guest memory (sparse), then the memory map
 *   9. commit the file (fsync, rename) and resume devices and vCPUs, or end the VM (suspend)
 * Any failure resumes the VM as it was and leaves any previous file at the path untouched.
 *
 * Restore (snap_restore) validates the whole file and decodes every vCPU and VM section
 * before a VM exists, then: create the machine from the saved configuration → map memory →
 * each disk checked against the disks section → device clock, held at the saved value →
 * load devices (each validates before it commits, and rebases its counters on that clock) →
 * PIC/IOAPIC/PIT and KVM clock (before any vCPU runs) → vCPUs (cpustate_set follows KVM's
 * ordering rules) → the device clock runs again from the saved value, with the TSCs and
 * kvmclock just set → resume devices (re-arm timers).  Nothing runs until all of it succeeded.
 */
#include "snap/snapshot.h"
#include "snap/target.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86/cpustate.h"
#include "dev/pc/rtc.h"
#include "gdb/gdbstub.h"
#include "keys.h"
#include "log.h"
#include "machine.h"
#include "snap/chain.h"
#include "snap/clocks.h"
#include "snap/dirty.h"
#include "snap/disks.h"
#include "snap/format.h"
#include "snap/live.h"
#include "snap/livecopy.h"
#include "snap/memory.h"
#include "snap/meta.h"
#include "snap/prefetch.h"
#include "snap/trust.h"
#include "sstream.h"
#include "vcpu.h"
#include "vm.h"

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- pausing ---- */

static int live_busy(struct vm *vm, char *err, size_t errlen)
{
	if (vm->migration && !vm->migration_final) {
		snprintf(err, errlen, "a live migration is under way; wait for its reply");
		return -EBUSY;
	}
	if (!vm->live)
		return 0;
	snprintf(err, errlen, "a live checkpoint is being written; wait for its reply");
	return -EBUSY;
}

/* A save (file, live or stream) of the VM as it is now: live_busy, and the debugger's int3s. */
static int save_busy(struct vm *vm, char *err, size_t errlen)
{
	const char *why = gdbstub_save_refusal(vm);

	if (why) {
		snprintf(err, errlen, "%s", why);
		return -EBUSY;
	}
	return live_busy(vm, err, errlen);
}

static void devices_resume(struct vm *vm)
{
	for (struct dev *d = vm->devs; d; d = d->next)
		if (d->ops->resume)
			d->ops->resume(d);
}

static int devices_pause(struct vm *vm, char *err, size_t errlen)
{
	for (struct dev *d = vm->devs; d; d = d->next) {
		int ret = d->ops->pause ? d->ops->pause(d) : 0;

		if (ret) {
			snprintf(err, errlen, "pausing device %s: %s", d->id, strerror(-ret));
			/* Resume the ones already paused: the VM goes on as it was. */
			for (struct dev *e = vm->devs; e != d; e = e->next)
				if (e->ops->resume)
					e->ops->resume(e);
			return ret;
		}
	}
	return 0;
}

/*
 * vCPUs, then (with @clk) every clock in one instant right after they stopped, then devices,
 * whose draining may take a while.
 */
static int pause_vm(struct vm *vm, struct snap_clocks *clk, char *err, size_t errlen)
{
	int ret;

	if (vm->paused) {
		snprintf(err, errlen, "the VM is already paused");
		return -EALREADY;
	}
	/* For good (snap/prefetch.h): a pause is for a checkpoint, a migration or an operator. */
	snap_prefetch_vm_stop(vm);
	vcpus_pause(vm);
	/*
	 * The guest's last coalesced writes are still in KVM's ring: a device saved now would
	 * lose them (a receive buffer given back, a filter set), and after a restore the ring
	 * is a new, empty one.  No vCPU runs, so none comes after this.
	 */
	bus_coalesce_drain(&vm->mmio);
	ret = clk ? snap_clocks_sample(vm, clk, err, errlen) : 0;
	if (!ret) {
		ret = devices_pause(vm, err, errlen);
		if (ret && clk)
			snap_clocks_release(vm, clk);
	}
	if (ret) {
		vcpus_resume(vm);
		return ret;
	}
	vm->paused = true;
	return 0;
}

int snap_pause_vm(struct vm *vm, char *err, size_t errlen)
{
	int ret = live_busy(vm, err, errlen);

	return ret ? ret : pause_vm(vm, NULL, err, errlen);
}

int snap_resume_vm(struct vm *vm, char *err, size_t errlen)
{
	if (!vm->paused) {
		snprintf(err, errlen, "the VM is not paused");
		return -EALREADY;
	}
	devices_resume(vm);
	vcpus_resume(vm);
	vm->paused = false;
	return 0;
}

/* ---- incremental checkpoints (snap/chain.h) ---- */

/*
 * What the next incremental checkpoint builds on (vm->incr): the last checkpoint taken or the
 * snapshot restored from, and a dirty-page client (snap/dirty.h) made at that instant, with
 * the VM paused, so its fetch returns exactly the pages written since.  Every save to a file
 * fetches (a full one too: it becomes the new parent; a live one: live_incr_take); a failed
 * save gives the pages back.
 */
struct snap_incr {
	struct dirty_client *dirty; /* NULL: not tracking (see dirty_err) */
	int dirty_err;
	bool valid;	     /* @path is a parent for the next incremental checkpoint */
	char path[PATH_MAX]; /* absolute */
	uint8_t id[SNAP_ID_BYTES];
};

/* One save's part: what it writes, and the pages it fetched. */
struct incr_plan {
	bool incremental;
	struct snap_parent parent;
	uint64_t *bitmap; /* fetched while paused, or NULL */
	size_t npages;
};

void snap_incr_free(struct vm *vm)
{
	if (!vm->incr)
		return;
	if (vm->incr->dirty)
		dirty_client_free(vm->incr->dirty);
	free(vm->incr);
	vm->incr = NULL;
}

static struct snap_incr *incr_get(struct vm *vm)
{
	if (!vm->incr)
		vm->incr = calloc(1, sizeof(*vm->incr));
	return vm->incr;
}

/* Start tracking at a checkpoint or restore instant (the VM is paused, or not yet run). */
static void incr_track(struct vm *vm, struct snap_incr *in)
{
	if (in->dirty)
		return;
	in->dirty_err = dirty_client_new(vm, &in->dirty);
	if (in->dirty_err)
		in->dirty = NULL;
}

/* The parent an incremental checkpoint to @path may have: checked before the guest pauses. */
static int incr_check(struct vm *vm, const char *path, const struct snap_save_opts *opts,
		      struct incr_plan *plan, struct snap_result *res, char *err, size_t errlen)
{
	struct snap_incr *in = vm->incr;
	char want[PATH_MAX], dir[PATH_MAX], pdir[PATH_MAX], ferr[512];
	char pbase[PATH_MAX], base[PATH_MAX];
	struct snap_file f;
	uint8_t id[SNAP_ID_BYTES];
	int ret;

	memset(plan, 0, sizeof(*plan));
	if (!opts || (!opts->incremental && !opts->parent))
		return 0;
	if (!in || !in->valid) {
		snprintf(err, errlen,
			 "checkpoint: an incremental checkpoint needs a parent, and this VM has "
			 "none: take a full checkpoint first (the parent is the last checkpoint, "
			 "live or not, or the snapshot the VM was restored from)");
		return -EINVAL;
	}
	if (opts->parent && (!realpath(opts->parent, want) || strcmp(want, in->path))) {
		snprintf(err, errlen,
			 "checkpoint: parent %s is not this VM's last checkpoint or restored "
			 "snapshot (%s): only the pages written since then are known",
			 opts->parent, in->path);
		return -EINVAL;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	snprintf(base, sizeof(base), "%s", path);
	snprintf(pdir, sizeof(pdir), "%s", in->path);
	snprintf(pbase, sizeof(pbase), "%s", in->path);
	if (!realpath(dirname(dir), want) || strcmp(want, dirname(pdir))) {
		snprintf(err, errlen,
			 "checkpoint: an incremental snapshot goes in the directory of its parent "
			 "%s (a snapshot names its parent by file name only)",
			 in->path);
		return -EINVAL;
	}
	if (!strcmp(basename(base), basename(pbase))) {
		snprintf(err, errlen,
			 "checkpoint: %s is its own parent: an incremental checkpoint cannot "
			 "replace the file it builds on",
			 path);
		return -EINVAL;
	}
	if (!in->dirty) {
		snprintf(res->note, sizeof(res->note),
			 "dirty-page tracking is not available (%s): wrote a full snapshot",
			 strerror(-in->dirty_err));
		return 0;
	}
	/* Still the file it was: replaced or rewritten since, it is no parent. */
	ret = snap_file_open(&f, in->path, false, ferr, sizeof(ferr));
	if (ret) {
		snprintf(err, errlen, "checkpoint: the parent %s", ferr);
		return ret;
	}
	ret = snap_file_identity(&f, id);
	plan->parent.depth = f.has_parent ? f.parent.depth + 1 : 1;
	snap_file_close(&f);
	if (!ret && memcmp(id, in->id, sizeof(id))) {
		snprintf(err, errlen,
			 "checkpoint: the parent %s has changed since it was taken: take a full "
			 "checkpoint",
			 in->path);
		return -ESTALE;
	}
	if (ret)
		return ret;
	if (plan->parent.depth >= SNAP_CHAIN_MAX) {
		snprintf(res->note, sizeof(res->note),
			 "the chain has %u links, the most there may be: wrote a full snapshot",
			 SNAP_CHAIN_MAX);
		return 0;
	}
	snprintf(plan->parent.name, sizeof(plan->parent.name), "%s", basename(pbase));
	memcpy(plan->parent.id, in->id, SNAP_ID_BYTES);
	plan->incremental = true;
	return 0;
}

/*
 * With the VM paused: the pages written since the last checkpoint or restore.  If tracking
 * broke, nothing is known: the save is a full one and tracking starts again after it.
 */
static int incr_fetch(struct vm *vm, struct incr_plan *plan, struct snap_result *res)
{
	struct snap_incr *in = vm->incr;
	int ret;

	if (!in || !in->dirty)
		return 0;
	plan->npages = dirty_npages(vm);
	plan->bitmap = calloc(dirty_words(plan->npages) ? dirty_words(plan->npages) : 1, 8);
	if (!plan->bitmap)
		return -ENOMEM;
	ret = dirty_client_fetch(in->dirty, plan->bitmap, plan->npages);
	if (!ret)
		return 0;
	free(plan->bitmap);
	plan->bitmap = NULL;
	dirty_client_free(in->dirty);
	in->dirty = NULL;
	in->dirty_err = ret;
	if (plan->incremental)
		snprintf(res->note, sizeof(res->note),
			 "dirty-page tracking failed (%s): wrote a full snapshot", strerror(-ret));
	plan->incremental = false;
	return 0;
}

/* Still paused, after the save (@ret): the new parent, or the fetched pages given back. */
static void incr_end(struct vm *vm, struct incr_plan *plan, int ret, const struct snap_writer *w,
		     const char *path, bool suspend, struct snap_result *res)
{
	struct snap_incr *in = vm->incr;

	if (ret) {
		if (in && in->dirty && plan->bitmap)
			dirty_client_unfetch(in->dirty, plan->bitmap, plan->npages);
	} else if (!suspend && (in = incr_get(vm))) {
		in->valid = realpath(path, in->path) != NULL;
		memcpy(in->id, w->id, SNAP_ID_BYTES);
		incr_track(vm, in);
	}
	if (!ret && plan->incremental) {
		res->incremental = true;
		snprintf(res->parent, sizeof(res->parent), "%s", plan->parent.name);
	}
	free(plan->bitmap);
	plan->bitmap = NULL;
}

static int write_chain(struct snap_writer *w, struct snap_parent *p, char *err, size_t errlen)
{
	struct sstream s;
	int ret;

	ss_init_save(&s);
	snap_parent_io(&s, p);
	ret = ss_error(&s);
	if (!ret)
		ret = snap_writer_section(w, SNAP_SEC_CHAIN, "chain", 1, s.buf, s.len);
	ss_free(&s);
	if (ret)
		snprintf(err, errlen, "saving the chain section: %s", strerror(-ret));
	return ret;
}

/* ---- saving ---- */

static int save_devices(struct vm *vm, struct snap_writer *w, char *err, size_t errlen)
{
	for (struct dev *d = vm->devs; d; d = d->next) {
		struct sstream s;
		int ret;

		ss_init_save(&s);
		ret = d->ops->save(d, &s);
		if (!ret)
			ret = ss_error(&s);
		if (ret) {
			/* The device says why (its stream's message), the id is said here once. */
			snprintf(err, errlen, "saving device %s: %s", d->id,
				 s.msg[0] ? s.msg : strerror(-ret));
			ss_free(&s);
			return ret;
		}
		ret = snap_writer_section(w, SNAP_SEC_DEV, d->id, d->ops->version, s.buf, s.len);
		ss_free(&s);
		if (ret) {
			snprintf(err, errlen, "saving device %s: %s", d->id, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

struct vcpu_save {
	struct snap_writer *w;
	const struct snap_clocks *clk;
};

/* Runs on the vCPU's own thread. */
static int vcpu_save_one(struct vcpu *v, void *arg)
{
	const struct vcpu_save *vs = arg;
	struct snap_writer *w = vs->w;
	struct cpustate cs;
	struct sstream s;
	char id[16];
	int ret;

	ret = cpustate_get(v, &cs);
	/* The TSC as of the instant the other clocks were read (snap/clocks.h). */
	if (!ret && v->id < vs->clk->ncpus)
		ret = cpustate_set_tsc(&cs, vs->clk->tsc[v->id]);
	if (ret)
		goto out;
	ss_init_save(&s);
	cpustate_io(&s, &cs);
	ret = ss_error(&s);
	snprintf(id, sizeof(id), "cpu%u", v->id);
	if (!ret)
		ret = snap_writer_section(w, SNAP_SEC_VCPU, id, CPUSTATE_VERSION, s.buf, s.len);
	ss_free(&s);
out:
	cpustate_free(&cs);
	return ret;
}

static int save_vcpus(struct vm *vm, struct snap_writer *w, const struct snap_clocks *clk,
		      char *err, size_t errlen)
{
	struct vcpu_save vs = { .w = w, .clk = clk };

	for (unsigned i = 0; i < vm->ncpus; i++) {
		int ret = vcpu_run_on(vm->vcpus[i], vcpu_save_one, &vs);

		if (ret) {
			snprintf(err, errlen, "saving vCPU %u: %s", i, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int save_vmstate(struct vm *vm, struct snap_writer *w, const struct snap_clocks *clk,
			char *err, size_t errlen)
{
	struct vmstate st;
	struct sstream s;
	int ret = vmstate_get(vm->vm_fd, &st);

	if (ret) {
		snprintf(err, errlen, "reading VM state from KVM: %s", strerror(-ret));
		return ret;
	}
	/* The clocks as of the instant the vCPUs stopped, not of now (snap/clocks.h). */
	st.clock = clk->kvmclock;
	st.vclock = clk->vclock;
	st.realtime_ns = clk->realtime_ns;
	ss_init_save(&s);
	vmstate_io(&s, &st);
	ret = ss_error(&s);
	if (!ret)
		ret = snap_writer_section(w, SNAP_SEC_VM, "vm", VMSTATE_VERSION, s.buf, s.len);
	ss_free(&s);
	if (ret)
		snprintf(err, errlen, "saving VM state: %s", strerror(-ret));
	return ret;
}

static int save_meta(struct vm *vm, const struct config *cfg, struct snap_writer *w, char *err,
		     size_t errlen)
{
	char *json = snap_meta_build(vm, cfg);
	int ret;

	if (!json)
		return -ENOMEM;
	ret = snap_writer_section(w, SNAP_SEC_META, "meta", 1, json, strlen(json));
	free(json);
	if (ret)
		snprintf(err, errlen, "saving metadata: %s", strerror(-ret));
	return ret;
}

static int write_memmap(struct snap_writer *w, struct snap_file *map, char *err, size_t errlen)
{
	struct sstream s;
	int ret;

	ss_init_save(&s);
	snap_memmap_io(&s, map);
	ret = ss_error(&s);
	if (!ret)
		ret = snap_writer_section(w, SNAP_SEC_MEMMAP, "memory", 1, s.buf, s.len);
	ss_free(&s);
	if (ret)
		snprintf(err, errlen, "saving the memory map: %s", strerror(-ret));
	return ret;
}

static int save_memory(struct vm *vm, struct snap_writer *w, const struct snap_save_opts *opts,
		       struct incr_plan *plan, struct snap_result *res, char *err, size_t errlen)
{
	struct snap_file map;
	int ret;

	memset(&map, 0, sizeof(map));
	if (plan && plan->incremental)
		ret = snap_memory_save_dirty(vm, w, plan->bitmap, &map, opts, res, err, errlen);
	else
		ret = snap_memory_save(vm, w, vm->backing, &map, opts, res, err, errlen);
	if (!ret)
		ret = write_memmap(w, &map, err, errlen);
	free(map.extents);
	return ret;
}

/*
 * The disks recorded in the file a save is about to replace, if there is one and this host's
 * khyve wrote it for this user: the disk copies it lists get deleted, so a file someone else
 * put at the path must not choose what is deleted (and snap_disks_commit deletes only what
 * that khyve made, still as it made it, and not in use).
 */
static bool old_snapshot_disks(const struct config *cfg, const char *path, struct snap_disks *old)
{
	struct snap_keyref ref;
	struct snap_file f;
	char err[512];
	bool ok;

	memset(old, 0, sizeof(*old));
	if (snap_key_locate(cfg, &ref, err, sizeof(err)) ||
	    snap_file_open(&f, path, false, err, sizeof(err)))
		return false;
	ok = snap_authenticate(&f, &ref, err, sizeof(err)) == SNAP_AUTH_VALID &&
	     !snap_disks_read(&f, old, err, sizeof(err));
	snap_file_close(&f);
	return ok;
}

/*
 * Host paths other than disks (snap_disks_save does those) made absolute in the saved
 * configuration, so a restore started in another directory finds the same files: console logs
 * and sockets (lpc.comN.path file:/unix:), the control socket, the kernel and initrd.
 */
struct abs_paths {
	struct config fixed, *target;
	int ret;
};

static void abs_path_key(const char *key, const char *value, void *opaque)
{
	static const char *const prefixes[] = { "file:", "unix:" };
	struct abs_paths *a = opaque;
	const char *p = value, *prefix = "";
	char abs[4096 + 8], full[sizeof(abs) + 8];
	unsigned n;
	int end = 0;

	if (sscanf(key, "lpc.com%u.path%n", &n, &end) == 1 && end && !key[end]) {
		for (size_t i = 0; i < 2; i++)
			if (!strncmp(value, prefixes[i], 5))
				prefix = prefixes[i];
		if (!*prefix)
			return;
		p = value + 5;
	} else if (strcmp(key, "boot.kernel") && strcmp(key, "boot.initrd") &&
		   (strcmp(key, "ctl.socket") || !strcmp(value, "off"))) {
		return;
	}
	if (!*p || *p == '/' || a->ret)
		return;
	a->ret = snap_abs_path(p, abs, sizeof(abs));
	if (!a->ret)
		a->ret = snprintf(full, sizeof(full), "%s%s", prefix, abs) >= (int)sizeof(full)
				 ? -ENAMETOOLONG
				 : config_set(&a->fixed, key, full);
}

static void set_key(const char *key, const char *value, void *opaque)
{
	struct abs_paths *a = opaque;

	if (!a->ret)
		a->ret = config_set(a->target, key, value);
}

static int save_abs_paths(struct config *meta_cfg)
{
	struct abs_paths a = { .target = meta_cfg };

	config_init(&a.fixed);
	config_foreach(meta_cfg, "", abs_path_key, &a);
	if (!a.ret)
		config_foreach(&a.fixed, "", set_key, &a);
	config_free(&a.fixed);
	return a.ret;
}

/* Everything but guest memory, the VM paused: devices, vCPUs, VM state, disks, metadata. */
static int save_state(struct vm *vm, struct snap_writer *w, const struct snap_clocks *clk,
		      struct snap_disks *sd, char *err, size_t errlen)
{
	/* A stream (migration) never copies disks: the other side opens the same images. */
	const char *disks = w->sink ? "sync"
				    : config_get_default(vm->cfg, "snapshot.disks", "sync");
	struct config meta_cfg;
	int ret;

	config_init(&meta_cfg);
	ret = config_copy(&meta_cfg, vm->cfg);
	if (!ret) {
		ret = save_abs_paths(&meta_cfg);
		if (ret)
			snprintf(err, errlen, "making host paths absolute: %s", strerror(-ret));
	}
	if (!ret)
		ret = save_devices(vm, w, err, errlen);
	if (!ret)
		ret = save_vcpus(vm, w, clk, err, errlen);
	if (!ret)
		ret = save_vmstate(vm, w, clk, err, errlen);
	/*
	 * The slow part last, when every piece of state is read: devices are drained, so what
	 * the guest wrote to its disks is all in the images.
	 */
	if (!ret)
		ret = snap_disks_save(vm, w->path[0] ? w->path : "migration",
				      !strcmp(disks, "clone"), &meta_cfg, sd, err, errlen);
	if (!ret) {
		ret = snap_disks_write(sd, w);
		if (ret)
			snprintf(err, errlen, "saving the disks section: %s", strerror(-ret));
	}
	if (!ret)
		ret = save_meta(vm, &meta_cfg, w, err, errlen);
	config_free(&meta_cfg);
	return ret;
}

/* After memory (@ret: how that went): commit the file, and keep or drop the disk copies. */
static int save_finish(struct vm *vm, struct snap_writer *w, struct snap_disks *sd, int ret,
		       char *err, size_t errlen)
{
	struct snap_disks old;
	bool have_old = !ret && old_snapshot_disks(vm->cfg, w->path, &old);

	if (!ret)
		ret = snap_writer_commit(w, err, errlen);
	if (ret)
		snap_disks_abort(sd);
	else
		snap_disks_commit(sd, vm, w->path, have_old ? &old : NULL);
	if (have_old)
		snap_disks_free(&old);
	return ret;
}

static int save_all(struct vm *vm, struct snap_writer *w, const struct snap_clocks *clk,
		    const struct snap_save_opts *opts, struct incr_plan *plan,
		    struct snap_result *res, char *err, size_t errlen)
{
	struct snap_disks sd = { 0 };
	int ret = save_state(vm, w, clk, &sd, err, errlen);

	if (!ret)
		ret = incr_fetch(vm, plan, res);
	if (!ret && plan->incremental)
		ret = write_chain(w, &plan->parent, err, errlen);
	if (!ret)
		ret = save_memory(vm, w, opts, plan, res, err, errlen);
	return save_finish(vm, w, &sd, ret, err, errlen);
}

/* The file is authenticated with this user's host key (snap/trust.h), made on first use. */
static int save_key(struct vm *vm, struct snap_writer *w, char *err, size_t errlen)
{
	uint8_t key[SNAP_KEY_BYTES];
	struct snap_keyref ref;
	int ret;

	ret = snap_key_locate(vm->cfg, &ref, err, errlen);
	if (!ret)
		ret = snap_key_load(&ref, true, key, err, errlen);
	if (ret)
		return ret;
	snap_writer_set_key(w, key);
	memset(key, 0, sizeof(key));
	return 0;
}

/* The file a save writes, before the guest pauses: a target that cannot work costs it nothing. */
static int save_open(struct vm *vm, const char *path, struct snap_writer *w, char *err,
		     size_t errlen)
{
	bool direct = true;
	int ret;

	/* The value was checked when the VM was built (machine.c). */
	if (vm->cfg && config_get_bool(vm->cfg, "snapshot.direct", true, &direct))
		direct = true;
	ret = snap_target_check(vm, path, err, errlen);
	if (!ret)
		ret = snap_writer_open(w, path, snap_memory_size(vm), err, errlen);
	if (ret)
		return ret;
	if (direct)
		snap_writer_direct(w);
	ret = save_key(vm, w, err, errlen);
	if (ret)
		snap_writer_abort(w);
	return ret;
}

int snap_save(struct vm *vm, const char *path, const struct snap_save_opts *opts,
	      struct snap_result *res, char *err, size_t errlen)
{
	uint64_t t0 = now_ns(CLOCK_MONOTONIC), tp;
	bool was_paused = vm->paused;
	struct incr_plan plan;
	struct snap_clocks clk;
	struct snap_writer w;
	int ret;

	memset(res, 0, sizeof(*res));
	memset(&plan, 0, sizeof(plan));
	if (errlen)
		err[0] = '\0';
	ret = save_busy(vm, err, errlen);
	if (!ret)
		ret = incr_check(vm, path, opts, &plan, res, err, errlen);
	if (!ret)
		ret = save_open(vm, path, &w, err, errlen);
	if (ret)
		goto out;
	/* A VM paused by a request has stopped long ago: its clocks are read now. */
	ret = was_paused ? snap_clocks_sample(vm, &clk, err, errlen)
			 : pause_vm(vm, &clk, err, errlen);
	if (ret) {
		snap_writer_abort(&w);
		goto out;
	}
	tp = now_ns(CLOCK_MONOTONIC);
	ret = save_all(vm, &w, &clk, opts, &plan, res, err, errlen);
	snap_clocks_release(vm, &clk);
	incr_end(vm, &plan, ret, &w, path, opts && opts->suspend, res);
	if (ret)
		snap_writer_abort(&w);
	else
		res->bytes = w.bytes;
	if (!ret && opts && opts->suspend) {
		/* The guest never runs again here; it continues wherever the file is restored. */
		vm_request_exit(vm, VM_EXIT_SUSPENDED);
	} else if (!was_paused) {
		snap_resume_vm(vm, err, errlen);
	}
	res->paused_ns = now_ns(CLOCK_MONOTONIC) - tp;
	res->total_ns = now_ns(CLOCK_MONOTONIC) - t0;
	log_debug("checkpoint %s: %s, %llu bytes, guest paused %.3f ms, %.3f ms in all", path,
		  ret ? "failed" : "written", (unsigned long long)res->bytes, res->paused_ns / 1e6,
		  res->total_ns / 1e6);
out:
	/* A step that ran out of memory only returns -ENOMEM: say so. */
	if (ret && errlen && !err[0])
		snprintf(err, errlen, "checkpoint to %s: %s", path, strerror(-ret));
	return ret;
}

/* ---- streams (migration, snap/migrate.h) ---- */

int snap_save_stream(struct vm *vm, struct snap_writer *w, snap_stream_mem_fn mem, void *mem_opaque,
		     const struct snap_save_opts *opts, struct snap_result *res, char *err,
		     size_t errlen)
{
	struct snap_disks sd = { 0 };
	struct snap_clocks clk;
	struct snap_file map;
	uint64_t off = 0, t0 = now_ns(CLOCK_MONOTONIC);
	int ret;

	if (errlen)
		err[0] = '\0';
	ret = save_busy(vm, err, errlen);
	if (!ret)
		ret = pause_vm(vm, &clk, err, errlen);
	if (ret) {
		if (errlen && !err[0])
			snprintf(err, errlen, "pausing the VM: %s", strerror(-ret));
		return ret;
	}
	res->pause_stop_ns = now_ns(CLOCK_MONOTONIC) - t0;
	ret = save_state(vm, w, &clk, &sd, err, errlen);
	snap_clocks_release(vm, &clk);
	if (!ret && !mem) {
		ret = save_memory(vm, w, opts, NULL, res, err, errlen);
	} else if (!ret) {
		/* The caller sends what memory is left; the map says only where the regions are. */
		memset(&map, 0, sizeof(map));
		map.nregions = vm->nmem;
		for (unsigned i = 0; i < vm->nmem; i++) {
			map.regions[i] = (struct snap_region){ vm->mem[i].gpa, vm->mem[i].size,
							       w->mem_offset + off };
			off += vm->mem[i].size;
		}
		ret = mem(mem_opaque, res, err, errlen);
		if (!ret)
			ret = write_memmap(w, &map, err, errlen);
	}
	/* Nothing was copied (a stream keeps disks as they are): nothing to remove either way. */
	snap_disks_free(&sd);
	/* A step that ran out of memory only returns -ENOMEM: say so, as snap_save does. */
	if (ret && errlen && !err[0])
		snprintf(err, errlen, "saving the VM: %s", strerror(-ret));
	if (ret) {
		char ignore[64];

		snap_resume_vm(vm, ignore, sizeof(ignore));
	}
	return ret;
}

/* ---- live checkpoints (snap/live.h) ---- */

/*
 * A live checkpoint in progress.  The event-loop thread starts it (snap_save_live) and ends it
 * (live_end); in between the writer thread of snap/live.c saves memory and then, in
 * live_written, commits the file and signals @evfd.  Nothing else touches it.
 */
struct live_save {
	struct vm *vm;
	struct snap_writer w;
	struct snap_disks sd;
	struct snap_live *l;	  /* write-protect (snap/live.h), or */
	struct snap_livecopy *lc; /* dirty-log pre-copy (snap/livecopy.h) */
	bool final_done, written; /* lc: the final pause is over; the file is done with */
	snap_live_done_fn done;
	void *opaque;
	struct snap_result res;
	uint64_t t0;
	int evfd, ret;
	bool dirty_lent; /* dirty tracking handed RAM to the live checkpoint (snap/dirty.h) */
	/* The pages written since the last parent, taken for this one (live_incr_take). */
	uint64_t *incr_bitmap;
	size_t incr_npages;
	bool incr_fresh; /* vm->incr's client was made for this checkpoint */
	int incr_err;	 /* vm->incr's dirty_err before that */
	char err[512];
};

/*
 * A live checkpoint is the parent of the next incremental one once its file is written, as a
 * non-live one is (snap/chain.h).  Its tracking instant is taken here: the pages written since
 * the last parent are fetched, so the client records from now on; if the checkpoint fails,
 * they are given back and the last parent stays one, with nothing lost (live_incr_end).
 *   - Dirty-log pre-copy (a restored VM) takes it in the final pause, the instant the file
 *     holds: its own dirty-page client runs beside this one, which then records exactly the
 *     pages written since, the device threads' included (snap/dirty.h).
 *   - Write protection takes it before RAM is lent to snap/live.c (live_pause), a little
 *     before the pause: dirty_resume counts every page present as written when RAM comes
 *     back, so the next incremental holds whatever was written since the pause (and more:
 *     about as much as a full one, see snap/dirty.c).
 * Not tracking yet: a client is made now, and goes again if the checkpoint fails (a parent
 * from before it, if any, has no tracking and must not get one that started late).  Fetching
 * is never needed for correctness (a page fetched too late only makes the next one larger):
 * if the bitmap cannot be had, nothing is taken.
 */
static void live_incr_note(struct live_save *ls, int ret)
{
	if (!ls->res.note[0])
		snprintf(ls->res.note, sizeof(ls->res.note),
			 "dirty-page tracking failed (%s): the next incremental checkpoint will be "
			 "a full one",
			 strerror(-ret));
}

static void live_incr_take(struct live_save *ls)
{
	struct vm *vm = ls->vm;
	struct snap_incr *in = incr_get(vm);
	int ret;

	if (!in)
		return;
	if (!in->dirty) {
		ls->incr_err = in->dirty_err;
		incr_track(vm, in);
		ls->incr_fresh = in->dirty != NULL;
		if (!in->dirty && in->dirty_err != -EOPNOTSUPP)
			live_incr_note(ls, in->dirty_err);
		return;
	}
	ls->incr_npages = dirty_npages(vm);
	ls->incr_bitmap = calloc(dirty_words(ls->incr_npages) ? dirty_words(ls->incr_npages) : 1,
				 8);
	if (!ls->incr_bitmap)
		return;
	ret = dirty_client_fetch(in->dirty, ls->incr_bitmap, ls->incr_npages);
	if (!ret)
		return;
	/* Tracking broke: nothing is known, for the last parent either (as incr_fetch). */
	live_incr_note(ls, ret);
	free(ls->incr_bitmap);
	ls->incr_bitmap = NULL;
	dirty_client_free(in->dirty);
	in->dirty = NULL;
	in->dirty_err = ret;
}

/* The live checkpoint's userfaultfd has let go of RAM: dirty tracking takes it back. */
static void live_dirty_back(struct live_save *ls)
{
	int ret = ls->dirty_lent ? dirty_resume(ls->vm) : 0;

	if (ret)
		live_incr_note(ls, ret);
	ls->dirty_lent = false;
}

/* On the loop thread, the checkpoint over (@ok: its file is at its path): a parent or not. */
static void live_incr_end(struct live_save *ls, bool ok)
{
	struct snap_incr *in = ls->vm->incr;

	if (in && ok) {
		in->valid = realpath(ls->w.path, in->path) != NULL;
		/* What the file carries: the writer's id is its snap_file_identity after commit. */
		memcpy(in->id, ls->w.id, SNAP_ID_BYTES);
	} else if (in && ls->incr_fresh) {
		dirty_client_free(in->dirty);
		in->dirty = NULL;
		in->dirty_err = ls->incr_err;
	} else if (in && in->dirty && ls->incr_bitmap) {
		dirty_client_unfetch(in->dirty, ls->incr_bitmap, ls->incr_npages);
	}
	ls->incr_fresh = false;
	free(ls->incr_bitmap);
	ls->incr_bitmap = NULL;
}

/* On the writer thread, every page saved (or the save failed): memory map, commit, signal. */
static void live_written(void *opaque)
{
	struct live_save *ls = opaque;
	struct snap_file map;
	uint64_t one = 1;
	int ret;

	memset(&map, 0, sizeof(map));
	ret = ls->lc ? snap_livecopy_result(ls->lc, &map, &ls->res, ls->err, sizeof(ls->err))
		     : snap_live_result(ls->l, &map, &ls->res, ls->err, sizeof(ls->err));
	if (!ret)
		ret = write_memmap(&ls->w, &map, ls->err, sizeof(ls->err));
	free(map.extents);
	ret = save_finish(ls->vm, &ls->w, &ls->sd, ret, ls->err, sizeof(ls->err));
	if (ret)
		snap_writer_abort(&ls->w);
	else
		ls->res.bytes = ls->w.bytes;
	ls->ret = ret;
	ls->written = true;
	ls->res.total_ns = now_ns(CLOCK_MONOTONIC) - ls->t0;
	if (write(ls->evfd, &one, sizeof(one)) != sizeof(one)) {
		/* An eventfd counter cannot overflow from one write: nothing to handle. */
	}
}

/* On the loop thread: the writer is done (or told to stop), the requester gets the result. */
static void live_end(struct live_save *ls)
{
	struct vm *vm = ls->vm;

	vm->live = NULL;
	evloop_del_fd(&vm->ev, ls->evfd);
	snap_live_free(ls->l);
	/* Joins its thread and ends its dirty-page client: the guest is not tracked for it. */
	snap_livecopy_free(ls->lc);
	ls->lc = NULL;
	live_dirty_back(ls);
	live_incr_end(ls, !ls->ret && ls->written);
	/* Ended before its file was committed or dropped (a failed or stopped pre-copy). */
	if (!ls->written) {
		snap_disks_abort(&ls->sd);
		snap_writer_abort(&ls->w);
	}
	close(ls->evfd);
	ls->done(ls->opaque, ls->ret, &ls->res, ls->err);
	free(ls);
}

/*
 * The pause of a live checkpoint: vCPUs, clocks, devices as for any checkpoint; everything but
 * memory saved; then @mem, what this kind of live checkpoint does with memory in the pause
 * (its time in *@mem_ns); the guest runs again.
 */
static int live_pause_save(struct vm *vm, struct live_save *ls,
			   int (*mem)(struct live_save *, char *, size_t), uint64_t *mem_ns,
			   char *err, size_t errlen)
{
	struct snap_clocks clk;
	uint64_t tp, ts, ta;
	int ret;

	tp = now_ns(CLOCK_MONOTONIC);
	ret = pause_vm(vm, &clk, err, errlen);
	if (ret)
		return ret;
	ts = now_ns(CLOCK_MONOTONIC);
	ret = save_state(vm, &ls->w, &clk, &ls->sd, err, errlen);
	ta = now_ns(CLOCK_MONOTONIC);
	if (!ret)
		ret = mem(ls, err, errlen);
	snap_clocks_release(vm, &clk);
	snap_resume_vm(vm, err, errlen);
	ls->res.paused_ns = now_ns(CLOCK_MONOTONIC) - tp;
	ls->res.pause_stop_ns = ts - tp;
	ls->res.pause_state_ns = ta - ts;
	*mem_ns = now_ns(CLOCK_MONOTONIC) - ta;
	return ret;
}

/* Dirty-log pre-copy (snap/livecopy.h), in the final pause: the pages still dirty written. */
static int copy_final(struct live_save *ls, char *err, size_t errlen)
{
	int ret = snap_livecopy_final(ls->lc, &ls->res, err, errlen);

	if (!ret)
		live_incr_take(ls);
	return ret;
}

static int copy_pause(struct vm *vm, struct live_save *ls, char *err, size_t errlen)
{
	return live_pause_save(vm, ls, copy_final, &ls->res.pause_mem_ns, err, errlen);
}

/* On the loop thread: the rounds ended (the thread waits); the final pause, or the failure. */
static void copy_rounds_done(struct live_save *ls)
{
	char err[sizeof(ls->err)] = "";
	int ret;

	ls->final_done = true;
	ret = snap_livecopy_rounds_result(ls->lc, err, sizeof(err));
	if (!ret)
		ret = copy_pause(ls->vm, ls, err, sizeof(err));
	if (!ret) {
		snap_livecopy_continue(ls->lc);
		return;
	}
	ls->ret = ret;
	snprintf(ls->err, sizeof(ls->err), "%s", err[0] ? err : strerror(-ret));
	live_end(ls);
}

/* On the pre-copy thread: its rounds ended, the loop thread takes over (live_complete). */
static void copy_signal(void *opaque)
{
	struct live_save *ls = opaque;
	uint64_t one = 1;

	if (write(ls->evfd, &one, sizeof(one)) != sizeof(one)) {
		/* An eventfd counter cannot overflow from one write: nothing to handle. */
	}
}

static void live_complete(void *opaque, uint32_t events)
{
	struct live_save *ls = opaque;
	uint64_t n;

	if (read(ls->evfd, &n, sizeof(n)) != sizeof(n) || ls->vm->live != ls)
		return;
	if (ls->lc && !ls->final_done && !ls->written)
		copy_rounds_done(ls);
	else
		live_end(ls);
}

static void live_abort_fn(void *opaque)
{
	struct vm *vm = opaque;
	struct live_save *ls = vm->live;

	if (!ls)
		return;
	if (ls->lc) {
		snap_livecopy_cancel(ls->lc);
		snap_livecopy_free(ls->lc); /* joins: live_written has run, or never will */
		ls->lc = NULL;
	} else {
		snap_live_cancel(ls->l);
		snap_live_free(ls->l); /* joins: live_written has run */
		ls->l = NULL;
	}
	if (ls->ret || !ls->written) {
		ls->ret = -ECANCELED;
		snprintf(ls->err, sizeof(ls->err),
			 "the VM ended before the live checkpoint was written");
	}
	live_end(ls);
}

void snap_save_live_abort(struct vm *vm)
{
	evloop_call(&vm->ev, live_abort_fn, vm);
}

/* Write protection (snap/live.h), in the pause: completed for the pages written since. */
static int live_arm(struct live_save *ls, char *err, size_t errlen)
{
	return snap_live_arm(ls->l, err, errlen);
}

/*
 * RAM write-protected while the guest still runs (snap_live_prearm); the pause: vCPUs, clocks,
 * devices as for any checkpoint; everything but memory saved; the protection completed for
 * pages written since (snap_live_arm); the guest runs again.  Then the writer thread.
 */
static int live_pause(struct vm *vm, struct live_save *ls, char *err, size_t errlen)
{
	int ret;

	/* Before RAM is lent: the fetch reads the asynchronous protection (live_incr_take). */
	live_incr_take(ls);
	/* A range has one userfaultfd: dirty tracking lends RAM for the while (snap/dirty.h). */
	if (dirty_tracking(vm)) {
		ls->dirty_lent = true;
		ret = dirty_suspend(vm);
		if (ret)
			live_incr_note(ls, ret);
	}
	ret = snap_live_prearm(vm, &ls->w, &ls->l, err, errlen);
	if (ret)
		return ret;
	return live_pause_save(vm, ls, live_arm, &ls->res.pause_arm_ns, err, errlen);
}

const char *snap_live_refusal(const struct vm *vm)
{
	if (vm->paused)
		return "the VM is paused";
	return NULL;
}

/*
 * A VM restored from a snapshot: its RAM is a private mapping of that file, and this kernel's
 * synchronous userfaultfd write-protects anonymous, shmem and hugetlbfs memory only.  So its
 * memory is pre-copied into the file with the dirty log while it runs (snap/livecopy.h), and
 * it pauses at the end, for the last dirty pages and its state.
 */
static int copy_start(struct vm *vm, struct live_save *ls, const struct mig_policy *p, char *err,
		      size_t errlen)
{
	struct mig_policy pol = p ? *p : snap_livecopy_policy();
	int ret;

	ls->res.method = "dirty-log";
	ret = snap_livecopy_new(vm, &ls->w, &pol, &ls->lc, err, errlen);
	if (!ret)
		ret = evloop_add_fd(&vm->ev, ls->evfd, EPOLLIN, live_complete, ls);
	if (!ret) {
		vm->live = ls;
		ret = snap_livecopy_start(ls->lc, copy_signal, live_written, ls);
		if (ret) {
			vm->live = NULL;
			evloop_del_fd(&vm->ev, ls->evfd);
		}
	}
	if (!ret)
		return 0;
	if (!err[0])
		snprintf(err, errlen, "starting the live checkpoint: %s", strerror(-ret));
	snap_livecopy_free(ls->lc);
	snap_writer_abort(&ls->w);
	close(ls->evfd);
	free(ls);
	return ret;
}

int snap_save_live(struct vm *vm, const char *path, const struct mig_policy *pol,
		   snap_live_done_fn done, void *opaque, char *err, size_t errlen)
{
	struct live_save *ls;
	int ret;

	ret = save_busy(vm, err, errlen);
	if (ret)
		return ret;
	/* Its pre-copy rounds and the prefetch would only compete for the same pages. */
	snap_prefetch_vm_stop(vm);
	if (snap_live_refusal(vm)) {
		snprintf(err, errlen, "%s: checkpoint it without --live", snap_live_refusal(vm));
		return vm->paused ? -EALREADY : -EOPNOTSUPP;
	}
	ls = calloc(1, sizeof(*ls));
	if (!ls) {
		snprintf(err, errlen, "starting the live checkpoint: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	ls->vm = vm;
	ls->done = done;
	ls->opaque = opaque;
	ls->t0 = now_ns(CLOCK_MONOTONIC);
	ls->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ls->evfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		free(ls);
		return ret;
	}
	ret = save_open(vm, path, &ls->w, err, errlen);
	if (ret)
		goto fail_fd;
	if (vm->backing)
		return copy_start(vm, ls, pol, err, errlen);
	ls->res.method = "write-protect";
	ret = live_pause(vm, ls, err, errlen);
	if (!ret)
		ret = evloop_add_fd(&vm->ev, ls->evfd, EPOLLIN, live_complete, ls);
	if (!ret) {
		vm->live = ls;
		ret = snap_live_start(ls->l, live_written, ls);
		if (ret) {
			vm->live = NULL;
			evloop_del_fd(&vm->ev, ls->evfd);
		}
	}
	if (!ret)
		return 0;
	/* The guest runs already; it must not wait on a page, and the file goes. */
	snap_live_free(ls->l);
	live_dirty_back(ls);
	live_incr_end(ls, false);
	snap_disks_abort(&ls->sd);
	snap_writer_abort(&ls->w);
fail_fd:
	/* A step that ran out of memory only returns -ENOMEM: say so. */
	if (errlen && !err[0])
		snprintf(err, errlen, "starting the live checkpoint: %s", strerror(-ret));
	close(ls->evfd);
	free(ls);
	return ret;
}

/* ---- restoring ---- */

/* Keys a restore may change: host resources and session settings, not what the guest sees. */
static bool key_replaceable(const char *key)
{
	return snap_key_class(key) != SNAP_CFG_GUEST;
}

struct merge {
	struct config *saved;
	char *err;
	size_t errlen;
	int ret;
};

static void merge_key(const char *key, const char *value, void *opaque)
{
	struct merge *m = opaque;
	const char *old;

	if (m->ret)
		return;
	if (key_replaceable(key)) {
		m->ret = config_set(m->saved, key, value);
		return;
	}
	old = config_get(m->saved, key);
	if (!old) {
		snprintf(m->err, m->errlen, "option %s=%s is not in the snapshot's configuration",
			 key, value);
		m->ret = -EINVAL;
	} else if (strcmp(old, value)) {
		snprintf(m->err, m->errlen, "option %s=%s does not match the snapshot (%s=%s)", key,
			 value, key, old);
		m->ret = -EINVAL;
	}
}

struct restore {
	struct snap_file f;	 /* the tip of the chain, or the one file */
	struct snap_chain chain; /* its links and page index (snap/chain.h) */
	const char *path;
	struct config saved;
	unsigned ncpus;
	struct cpustate *cpus;
	struct vmstate vmst;
	bool catchup, verify_memory;
	enum snap_prefetch_mode prefetch;
	bool disk_changed_ok; /* snapshot.disk_changed=accept */
};

static int restore_decode(struct restore *r, const char *path, char *err, size_t errlen)
{
	const struct snap_section *sec;
	struct sstream s;
	void *buf;
	int ret;

	r->cpus = calloc(r->ncpus, sizeof(*r->cpus));
	if (!r->cpus)
		return -ENOMEM;
	for (unsigned i = 0; i <= r->ncpus; i++) {
		char id[16];

		snprintf(id, sizeof(id), "cpu%u", i);
		sec = i < r->ncpus ? snap_file_find(&r->f, SNAP_SEC_VCPU, id)
				   : snap_file_find(&r->f, SNAP_SEC_VM, "vm");
		if (!sec) {
			snprintf(err, errlen, "snapshot %s: no state for %s", path,
				 i < r->ncpus ? id : "the VM");
			return -EINVAL;
		}
		ret = snap_file_read(&r->f, sec, &buf);
		if (ret) {
			snprintf(err, errlen, "snapshot %s: reading section %s: %s", path, sec->id,
				 strerror(-ret));
			return ret;
		}
		ss_init_load(&s, buf, sec->length);
		if (i < r->ncpus)
			cpustate_load(&s, &r->cpus[i], sec->version);
		else
			vmstate_load(&s, &r->vmst, sec->version);
		ret = ss_finish(&s);
		free(buf);
		if (ret) {
			snprintf(err, errlen, "snapshot %s: section %s: %s", path, sec->id, s.msg);
			return ret;
		}
	}
	return 0;
}

/*
 * Host resources (snap/trust.h) come from the file only if it is authenticated or the user
 * vouches for it; otherwise from the command line, and the restore stops here, naming the
 * options to add, while any device lacks one.
 */
static int restore_trust(struct restore *r, const struct config *cmdline, enum snap_trust trust,
			 const char *path, char *err, size_t errlen)
{
	char why[600] = "", missing[1600], p[256];
	struct snap_keyref ref;
	bool trusted = trust == SNAP_TRUST_FILE;
	int n;

	if (trust == SNAP_TRUST_AUTO) {
		if (snap_key_locate(cmdline, &ref, why, sizeof(why)))
			trusted = false;
		else
			trusted = snap_authenticate(&r->f, &ref, why, sizeof(why)) ==
				  SNAP_AUTH_VALID;
	} else if (trust == SNAP_TRUST_NONE) {
		snprintf(why, sizeof(why), "snapshot.trust=none");
	}
	n = snap_trust_filter(&r->saved, cmdline, trusted, missing, sizeof(missing));
	if (n < 0)
		return n;
	if (!n)
		return 0;
	snap_sanitize(path, p, sizeof(p));
	snprintf(err, errlen,
		 "snapshot %s is not authenticated (%s), so khyve uses no host resource it "
		 "names: add %s to the command line (or -o snapshot.trust=file for a file you "
		 "trust; khyvectl snapshot info shows what it names)",
		 p, why, missing);
	return -EPERM;
}

static int restore_prepare(struct restore *r, struct config *cfg, const char *path, char *err,
			   size_t errlen)
{
	struct merge m = { .saved = &r->saved, .err = err, .errlen = errlen };
	enum snap_trust trust;
	const char *v;
	int ret;

	v = config_get_default(cfg, "snapshot.verify", "full");
	if (strcmp(v, "full") && strcmp(v, "fast")) {
		snprintf(err, errlen, "snapshot.verify=%s: expected full or fast", v);
		return -EINVAL;
	}
	r->verify_memory = !strcmp(v, "full");
	v = config_get_default(cfg, "snapshot.time", "frozen");
	if (strcmp(v, "frozen") && strcmp(v, "catchup")) {
		snprintf(err, errlen, "snapshot.time=%s: expected frozen or catchup", v);
		return -EINVAL;
	}
	r->catchup = !strcmp(v, "catchup");
	v = config_get_default(cfg, "snapshot.disk_changed", "refuse");
	if (strcmp(v, "refuse") && strcmp(v, "accept")) {
		snprintf(err, errlen, "snapshot.disk_changed=%s: expected refuse or accept", v);
		return -EINVAL;
	}
	r->disk_changed_ok = !strcmp(v, "accept");
	v = config_get_default(cfg, "snapshot.prefetch", SNAP_PREFETCH_DEFAULT);
	if (snap_prefetch_parse(v, &r->prefetch)) {
		snprintf(err, errlen, "snapshot.prefetch=%s: expected off, willneed, read or write",
			 v);
		return -EINVAL;
	}
	ret = snap_trust_mode(cfg, &trust, err, errlen);
	if (ret)
		return ret;
	ret = snap_file_open(&r->f, path, r->verify_memory, err, errlen);
	if (ret)
		return ret;
	r->path = path;
	ret = snap_chain_open(&r->chain, &r->f, path, r->verify_memory, err, errlen);
	if (ret)
		return ret;
	config_init(&r->saved);
	ret = snap_meta_config(r->f.meta_json, &r->saved, err, errlen);
	if (!ret)
		ret = snap_meta_check(r->f.meta_json, &r->saved, &r->f, err, errlen);
	if (!ret)
		ret = restore_trust(r, cfg, trust, path, err, errlen);
	/* A typo on the command line, with the snapshot's devices to say whose option it is. */
	if (!ret)
		ret = config_check_keys(cfg, &r->saved, err, errlen);
	if (ret)
		return ret;
	config_foreach(cfg, "", merge_key, &m);
	if (m.ret)
		return m.ret;
	ret = machine_check_config(&r->saved, true, err, errlen);
	if (ret)
		return ret;
	r->ncpus = (unsigned)strtoul(config_get_default(&r->saved, "cpus", "1"), NULL, 10);
	return restore_decode(r, path, err, errlen);
}

static int restore_devices(struct vm *vm, struct restore *r, char *err, size_t errlen)
{
	for (unsigned i = 0; i < r->f.nsections; i++) {
		const struct snap_section *sec = &r->f.sections[i];

		if (sec->type == SNAP_SEC_DEV && !vm_find_dev(vm, sec->id)) {
			snprintf(err, errlen,
				 "the snapshot holds state for device %s, which this "
				 "configuration does not have",
				 sec->id);
			return -EINVAL;
		}
	}
	for (struct dev *d = vm->devs; d; d = d->next) {
		const struct snap_section *sec = snap_file_find(&r->f, SNAP_SEC_DEV, d->id);
		struct sstream s;
		void *buf;
		int ret;

		if (!sec) {
			snprintf(err, errlen, "the snapshot has no state for device %s", d->id);
			return -EINVAL;
		}
		/* State versions start at 1: a 0 is never something a khyve wrote. */
		if (!sec->version || sec->version > d->ops->version) {
			snprintf(err, errlen, "section %s version %u is %s (%u)", d->id,
				 sec->version,
				 sec->version ? "newer than this khyve supports"
					      : "not a valid state version",
				 d->ops->version);
			return -EINVAL;
		}
		ret = snap_file_read(&r->f, sec, &buf);
		if (ret) {
			snprintf(err, errlen, "reading the state of device %s: %s", d->id,
				 strerror(-ret));
			return ret;
		}
		ss_init_load(&s, buf, sec->length);
		ret = d->ops->load(d, &s, sec->version);
		if (!ret)
			ret = ss_error(&s);
		free(buf);
		if (ret) {
			snprintf(err, errlen, "device %s: %s", d->id,
				 s.msg[0] ? s.msg : strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/*
 * Where the restored memory has data, for the next full save (snap/memory.h): the file's
 * extents, or for a chain the pages any link holds, in the memory area's offsets.
 */
static int restore_backing(struct vm *vm, struct restore *r)
{
	struct mem_backing *b = calloc(1, sizeof(*b));
	int ret = 0;

	if (!b)
		return -ENOMEM;
	b->fd = dup(r->f.fd);
	if (r->chain.nlinks > 1) {
		ret = snap_chain_data_extents(&r->chain, &b->extents, &b->nextents);
	} else {
		b->nextents = r->f.nextents;
		b->extents = calloc(r->f.nextents ? r->f.nextents : 1, sizeof(*b->extents));
		if (b->extents)
			memcpy(b->extents, r->f.extents, r->f.nextents * sizeof(*b->extents));
	}
	if (b->fd < 0 || ret || (!b->extents && b->nextents)) {
		if (b->fd >= 0)
			close(b->fd);
		free(b->extents);
		free(b);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < r->f.nregions; i++)
		b->region_file_offset[i] = r->f.regions[i].file_offset;
	vm->backing = b;
	return 0;
}

/*
 * The restored file is the parent of the next incremental checkpoint, and tracking starts
 * before anything can write guest memory: devices resume and vCPUs run only later.  A kernel
 * that cannot track only makes those checkpoints full ones.
 */
static int restore_incr(struct vm *vm, struct restore *r)
{
	struct snap_incr *in = incr_get(vm);

	if (!in)
		return -ENOMEM;
	in->valid = realpath(r->path, in->path) != NULL && !snap_file_identity(&r->f, in->id);
	/*
	 * No parent (a migration's memfd has no path): nothing to track for, and write-protecting
	 * RAM would only add to the downtime.  A full checkpoint starts tracking.
	 */
	if (in->valid)
		incr_track(vm, in);
	return 0;
}

/*
 * kvmclock (and with catch-up the RTC) as the restore wants them.  @jump: how far the TSC has
 * run from its saved value by now (restore_tsc_since): the device clock moves by as much
 * (restore_machine), and so does kvmclock here, so that the guest's clocks agree with each
 * other, also where KVM could not set the TSC and time did not stay frozen.
 */
static int restore_time(struct vm *vm, struct restore *r, uint64_t jump, char *err, size_t errlen)
{
	struct dev *rtc = vm_find_dev(vm, "rtc");
	uint64_t shift = jump;

	if (r->catchup) {
		/* Wall-clock time catches up: kvmclock and the RTC move by the time away. */
		uint64_t now = now_ns(CLOCK_REALTIME);
		uint64_t away = now > r->vmst.realtime_ns ? now - r->vmst.realtime_ns : 0;

		if (away > shift)
			shift = away;
		/* The RTC counts on the device clock, which already moves by @jump. */
		if (rtc)
			rtc_advance_wallclock(rtc, (shift - jump) / 1000000000ULL);
	}
	r->vmst.clock.clock += shift;
	return vmstate_set(vm->vm_fd, &r->vmst, err, errlen);
}

/*
 * How far vCPU 0's TSC has run from its saved value, as of host time *@at (snap/clocks.h):
 * the time since it was set, or, where KVM cannot set it, since the save.
 */
static uint64_t restore_tsc_since(struct vm *vm, struct restore *r, uint64_t *at)
{
	uint64_t saved;
	int64_t since;

	*at = now_ns(CLOCK_MONOTONIC);
	if (cpustate_tsc(&r->cpus[0], &saved))
		return 0;
	since = snap_tsc_since_ns(vm->vcpus[0], saved, at);
	if (since < -20 * 1000000LL)
		log_warn("this host's KVM cannot set the guest's TSC, and it is %lld ms "
			 "behind "
			 "the snapshot's: the guest's TSC goes back in time",
			 (long long)(-since / 1000000));
	return since > 0 ? (uint64_t)since : 0;
}

/* @since as of host time @at, taken on to now. */
static uint64_t since_now(uint64_t since, uint64_t at)
{
	uint64_t now = now_ns(CLOCK_MONOTONIC);

	return since + (now > at ? now - at : 0);
}

static int restore_machine(struct vm *vm, struct restore *r, char *err, size_t errlen)
{
	uint64_t since = 0, at = 0;
	int ret;

	/*
	 * The disks are open at their final paths (the command line's or an authenticated
	 * file's): each must be the disk the saved memory goes with.
	 */
	ret = snap_disks_verify(vm, &r->f, r->disk_changed_ok, err, errlen);
	if (!ret)
		ret = cpustate_check(&r->cpus[0], vm->vcpus[0]->fd, err, errlen);
	if (!ret)
		ret = snap_memory_map_chain(vm, &r->chain, err, errlen);
	if (!ret)
		ret = restore_backing(vm, r);
	if (!ret)
		ret = restore_incr(vm, r);
	if (ret)
		return ret;
	/*
	 * Device time first: devices rebase their counters on the clock as they load.  It stays
	 * at the saved value until the TSCs and kvmclock are set too, then all of them start
	 * from the saved instant together (snap/clocks.h).
	 */
	vclock_set(&vm->ev, r->vmst.vclock);
	vclock_freeze(&vm->ev);
	ret = restore_devices(vm, r, err, errlen);
	for (unsigned i = 0; !ret && i < vm->ncpus; i++)
		ret = cpustate_set(vm->vcpus[i], &r->cpus[i], err, errlen);
	if (!ret)
		since = restore_tsc_since(vm, r, &at);
	/* KVM_SET_CLOCK after the MSRs (kvmclock's own among them), before any vCPU runs. */
	if (!ret)
		ret = restore_time(vm, r, since_now(since, at), err, errlen);
	vclock_set(&vm->ev, r->vmst.vclock + (ret ? 0 : since_now(since, at)));
	vclock_thaw(&vm->ev);
	if (!ret)
		devices_resume(vm);
	/*
	 * After tracking is armed (restore_incr), so a populate keeps the write protection of a
	 * page it maps (snap/prefetch.h); off the vCPU threads, which start after this.
	 */
	if (!ret && snap_prefetch_vm(vm, r->prefetch))
		log_warn("snapshot.prefetch=%s: could not start; pages come in as the guest "
			 "touches them",
			 snap_prefetch_name(r->prefetch));
	return ret;
}

static void restore_free(struct restore *r)
{
	for (unsigned i = 0; r->cpus && i < r->ncpus; i++)
		cpustate_free(&r->cpus[i]);
	free(r->cpus);
	if (r->chain.nlinks)
		snap_chain_close(&r->chain);
	snap_file_close(&r->f);
}

int snap_restore(struct vm *vm, struct config *cfg, const char *path, bool dump_config, char *err,
		 size_t errlen)
{
	uint64_t t0 = now_ns(CLOCK_MONOTONIC);
	struct restore r;
	int ret;

	memset(&r, 0, sizeof(r));
	r.f.fd = -1;
	if (errlen)
		err[0] = '\0';
	config_init(&r.saved);
	ret = restore_prepare(&r, cfg, path, err, errlen);
	if (ret)
		goto out;
	log_debug("restore %s: file checked in %.3f ms", path,
		  (now_ns(CLOCK_MONOTONIC) - t0) / 1e6);
	if (dump_config) {
		config_dump(&r.saved, stdout);
		ret = 1;
		goto out;
	}
	/* From here the merged configuration is the VM's. */
	config_free(cfg);
	*cfg = r.saved;
	config_init(&r.saved);
	ret = machine_create(vm, cfg, true, err, errlen);
	if (ret)
		goto out;
	log_debug("restore %s: machine built at %.3f ms", path,
		  (now_ns(CLOCK_MONOTONIC) - t0) / 1e6);
	ret = restore_machine(vm, &r, err, errlen);
	if (ret)
		machine_destroy(vm);
	else
		log_debug("restore %s: memory, devices and vCPUs set at %.3f ms", path,
			  (now_ns(CLOCK_MONOTONIC) - t0) / 1e6);
out:
	/* A step that ran out of memory only returns -ENOMEM: say so. */
	if (ret < 0 && errlen && !err[0])
		snprintf(err, errlen, "restoring from %s: %s", path, strerror(-ret));
	config_free(&r.saved);
	restore_free(&r);
	return ret;
}
