/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Live checkpoints: guest memory saved while the guest runs again (snap/live.c).
 *
 * The guest is paused only to save vCPU, device and VM state and to finish write-protecting
 * its RAM with userfaultfd (snap_live_arm: the bulk was protected just before the pause by
 * snap_live_prearm, only pages written since are protected in the pause); then it runs, and a writer thread (snap_live_start) saves
 * every page that was there at the pause.  A guest write to a page not saved yet (from a vCPU,
 * from a device thread, from KVM itself) waits in the kernel until the writer has saved that
 * page first; a saved page is writable again.  The file so holds memory as of the pause
 * instant, whatever the guest does meanwhile, and the pause does not depend on how fast the
 * guest dirties memory.  The file format and the restore are those of any snapshot.
 */
#ifndef KHYVE_SNAP_LIVE_H
#define KHYVE_SNAP_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "snap/format.h"
#include "snap/snapshot.h"

struct vm;
struct snap_live;

/* The writer thread's nice value while it saves (from 0, the vCPUs'). */
#define SNAP_LIVE_WRITER_NICE (-10)
/*
 * Called by a live checkpoint's writer thread (this one's, and snap/livecopy.c's) when it
 * starts saving: it runs at SNAP_LIVE_WRITER_NICE where it may (root, or RLIMIT_NICE).
 */
void snap_live_writer_priority(void);

/*
 * Before the pause, the VM running: register its RAM with userfaultfd and write-protect it (in
 * up to 3 rounds, each re-protecting what the guest wrote during the one before); a writer
 * thread makes the pages the guest writes meanwhile writable again.  Needs anonymous guest RAM
 * (not the private file mapping of a restored VM, which userfaultfd cannot write-protect).
 * On failure the VM runs on untouched.
 */
int snap_live_prearm(struct vm *vm, struct snap_writer *w, struct snap_live **out, char *err,
		     size_t errlen);
/*
 * While the VM is paused: from now on the writer makes no page writable before saving it, and
 * every page written since snap_live_prearm protected it is protected again.  Then the
 * protected pages are exactly the guest's memory at this instant.
 */
int snap_live_arm(struct snap_live *l, char *err, size_t errlen);
/* After the VM runs again: the writer thread saves every page; then @done(@opaque) runs on it. */
int snap_live_start(struct snap_live *l, void (*done)(void *opaque), void *opaque);
/* Make a running writer stop early (its result is then -ECANCELED). */
void snap_live_cancel(struct snap_live *l);
/*
 * From @done, once every page is saved: the writer's result (@err says what failed); on
 * success @map's regions and extents (sorted; the caller frees extents) and @res's counts.
 */
int snap_live_result(struct snap_live *l, struct snap_file *map, struct snap_result *res, char *err,
		     size_t errlen);
/* Stop or join the writer, drop any protection left, free @l (any time after prearm). */
void snap_live_free(struct snap_live *l);
/* Open the userfaultfd now and keep it, for live checkpoints after khyve gave up root. */
void snap_live_keep_uffd(void);

#endif
