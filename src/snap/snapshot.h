/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Snapshot save and restore of a whole VM (the orchestrator: snap/snapshot.c holds the order).
 */
#ifndef KHYVE_SNAPSHOT_H
#define KHYVE_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct config;

/* Progress of a long save: bytes of guest memory done out of total.  May be NULL. */
typedef void (*snap_progress_fn)(void *opaque, uint64_t done, uint64_t total);

struct snap_save_opts {
	bool suspend; /* the VM ends after a successful save */
	snap_progress_fn progress;
	void *progress_opaque;
	/*
	 * At most this many bytes of guest memory written to the file per second (0: no
	 * limit), as QEMU's max-bandwidth: a checkpoint need not take all of the host's
	 * storage.  The guest stays paused for longer (this is not a live checkpoint).
	 */
	uint64_t max_rate;
	/*
	 * An incremental checkpoint (snap/chain.h): only the pages written since the parent was
	 * taken.  The parent is the last checkpoint of this VM or the snapshot it was restored
	 * from; @parent, if given, must name that file.
	 */
	bool incremental;
	const char *parent;
};

struct snap_result {
	uint64_t paused_ns;   /* how long the guest's vCPUs were stopped */
	uint64_t total_ns;    /* the whole request */
	uint64_t bytes;	      /* bytes written to the file (data, not holes) */
	uint64_t mem_pages;   /* guest pages stored */
	uint64_t zero_pages;  /* touched pages that were all zero, stored as holes */
	uint64_t fault_pages; /* live: pages saved first because the guest was writing them */
	/* Live: where the pause went (stop vCPUs and devices, save their state, finish arming). */
	uint64_t pause_stop_ns, pause_state_ns, pause_arm_ns;
	uint64_t arm_pages;	/* live: pages written since the pre-arm, protected in the pause */
	uint64_t prearm_ns;	/* live: protecting RAM before the pause, while the guest ran */
	uint64_t prearm_rounds; /* live: protection rounds before the pause (1-3) */
	uint64_t prearm_pages;	/* live: pages re-protected by the rounds after the first */
	uint64_t prearm_faults; /* live: guest writes let go before the pause */
	/* Live: "write-protect" (snap/live.h) or "dirty-log" (pre-copy, snap/livecopy.h). */
	const char *method;
	uint64_t rounds;	/* dirty-log: pre-copy rounds, the final pause's included */
	uint64_t precopy_pages; /* dirty-log: pages written while the guest ran (again too) */
	uint64_t final_pages;	/* dirty-log: pages written in the final pause */
	uint64_t pause_mem_ns;	/* dirty-log: writing those */
	const char *converged;	/* dirty-log: why the rounds stopped (snap/precopy.h) */
	uint64_t reread_bytes;	/* dirty-log: read back to make the memory map's checksums */
	bool incremental;	/* written as an incremental snapshot of @parent */
	char parent[4096];
	char note[256]; /* why an incremental request wrote a full snapshot, or "" */
};

/*
 * Save the running VM to @path: pause vCPUs, pause devices, save devices, vCPUs, VM state,
 * metadata and memory, write atomically (temporary file, fsync, rename), resume.  Runs on the
 * event-loop thread (the control socket calls it from there).  On any error the VM resumes
 * untouched, a previous file at @path is left as it was, and @err says what happened.
 * With opts->suspend, success ends the VM (vm_request_exit(VM_EXIT_SUSPENDED)) instead.
 */
int snap_save(struct vm *vm, const char *path, const struct snap_save_opts *opts,
	      struct snap_result *res, char *err, size_t errlen);

/*
 * Live checkpoint to @path: the VM pauses only while vCPU, device and VM state are saved and
 * its memory is write-protected (snap/live.h), then runs while a writer thread saves memory;
 * or, for a VM restored from a snapshot (its RAM maps that file, which userfaultfd cannot
 * write-protect), memory is pre-copied into the file while it runs and it pauses at the end
 * for the last dirty pages and its state (snap/livecopy.h).  Either way the file holds the
 * state of the pause instant.  Returns 0 when the writer runs; @done then gets the result on
 * the event-loop thread (paused_ns is the guest's pause, method which way).  Otherwise the VM
 * runs on untouched and @err says why (a paused VM is checkpointed with snap_save).  @pol:
 * when the pre-copy rounds stop (max_downtime_ns, max_rounds; NULL: snap_livecopy_policy), not
 * used by write protection.  Runs on the event-loop thread.
 */
typedef void (*snap_live_done_fn)(void *opaque, int ret, const struct snap_result *res,
				  const char *err);
struct mig_policy;
int snap_save_live(struct vm *vm, const char *path, const struct mig_policy *pol,
		   snap_live_done_fn done, void *opaque, char *err, size_t errlen);
/*
 * Why @vm cannot be checkpointed live (a paused VM), NULL if it can: the control socket then
 * checkpoints it stop-the-world and says why.
 */
const char *snap_live_refusal(const struct vm *vm);
/* The VM is ending: stop a live checkpoint in progress (its @done gets -ECANCELED). */
void snap_save_live_abort(struct vm *vm);

/*
 * Migration (snap/migrate.c): pause the running VM and save it into @w, a streaming writer
 * (snap_writer_open_sink), as snap_save saves into a file: the same sections in the same
 * order, disks fsynced and recorded but never copied (the other side opens the same images).
 * Memory: all of it through the snapshot's saver, or with @mem only what @mem writes (the
 * pages still dirty after pre-copy); the memory map then lists the regions and no extents.
 * On success the VM stays paused and the caller ends it or resumes it (snap_resume_vm); on
 * failure it runs again.  Runs on the event-loop thread.
 */
struct snap_writer;
typedef int (*snap_stream_mem_fn)(void *opaque, struct snap_result *res, char *err, size_t errlen);
int snap_save_stream(struct vm *vm, struct snap_writer *w, snap_stream_mem_fn mem, void *mem_opaque,
		     const struct snap_save_opts *opts, struct snap_result *res, char *err,
		     size_t errlen);

/*
 * Build a VM from snapshot @path: validate the whole file, merge the saved configuration with
 * @cfg (command-line options must match, except backend paths), create the machine, load
 * every state, ready to start.  Returns 1 if @dump_config printed the merged configuration.
 */
int snap_restore(struct vm *vm, struct config *cfg, const char *path, bool dump_config, char *err,
		 size_t errlen);

/* The VM is going away: stop the dirty-page tracking incremental checkpoints use. */
void snap_incr_free(struct vm *vm);

/* Pause and resume the guest (vCPUs and devices) for the control socket. */
int snap_pause_vm(struct vm *vm, char *err, size_t errlen);
int snap_resume_vm(struct vm *vm, char *err, size_t errlen);

#endif
