/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Migration of a running VM to another khyve over TCP (snap/migrate.c, doc/migration.md).
 *
 * The source (khyvectl --migrate=ADDR:PORT) pauses the guest and streams its snapshot: the
 * same sections, in the same order, and the same guest memory as a snapshot file holds, in
 * frames of a small protocol.  The destination (khyve -R ADDR:PORT) writes them into a
 * snapshot in memory (a memfd) and restores that exactly as `khyve -r` restores a file: every
 * compatibility check of a restore (configuration, CPU, disks, device state) runs there while
 * the source is paused, not stopped.  Then:
 *
 *	source                          destination
 *	HELLO, SECTION..., MEM...,      -> receives into the memfd
 *	AUTH, END                       -> restores; REFUSE "why" on any failure, then exits
 *	                                <- READY
 *	GO (the source never resumes    -> the guest runs here, then
 *	    on its own from here)       <- RUNNING; the source exits 0
 *
 * Anything before GO that fails (a refusal, a dropped connection, a timeout) resumes the
 * source.  After GO the destination answers RUNNING once its vCPU threads are made (then they run), or REFUSE when it
 * cannot run the guest (GO unreadable, its start failed): the source then resumes.  When
 * neither comes (the connection dropped, the destination died) the source cannot know
 * whether the guest runs there, so it stays paused and says so; the operator resumes it or
 * stops it (QEMU's source waits in "postmigrate" alike).  The guest is never lost, and
 * never runs on both sides.  Disks are shared storage: both sides open the same images, which are fsynced and
 * recorded (snap/disks.h) but never copied.
 *
 * Frames: a 24-byte header, then the payload; all integers little endian.
 *	magic:u32 "KHMG"  type:u32  length:u64 (payload bytes)  checksum:u64 (XXH3-64 of payload)
 * Payloads:
 *	HELLO    version:u32 flags:u32 mem_size:u64
 *	SECTION  type:u32 version:u32 id:48 bytes (NUL-terminated), then the section's bytes
 *	MEM      offset:u64 (in the memory area), then whole pages (at most SNAP_EXTENT_MAX)
 *	ZERO     offset:u64 length:u64: pages that are all zero now (sent before, then cleared)
 *	AUTH     a MAC of the metadata and disks sections with the host key (snap/trust.h)
 *	ROUND    round:u32 zero:u32 pages:u64: a pre-copy round ended (live, before any SECTION)
 *	END, READY, GO, RUNNING: empty.  REFUSE: a message, at most MIG_MAX_MSG bytes.
 * Live migration (HELLO flag MIG_F_LIVE, snap/precopy.h): MEM frames of pre-copy rounds, each
 * round closed by ROUND, come first while the source runs; then the source pauses and sends
 * the stream as above (its MEM frames hold the pages written since the last round).
 * The receiver takes nothing on trust: every length is bounded before anything is read or
 * allocated, every offset is checked against the memory size of HELLO, sections are those of
 * a snapshot, and the restore validates the result as it validates any file.
 */
#ifndef KHYVE_SNAP_MIGRATE_H
#define KHYVE_SNAP_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "snap/format.h"
#include "snap/snapshot.h"

struct vm;
struct config;

#define MIG_MAGIC 0x474d484bU /* "KHMG" */
#define MIG_VERSION 2	      /* 2: RUNNING after GO */
#define MIG_HDR 24
#define MIG_SEC_HDR (4 + 4 + 48)
#define MIG_MAX_MSG 1024
#define MIG_MAX_MEM (1ULL << 40)     /* guest memory a destination accepts */
#define MIG_MAX_STATE (256ULL << 20) /* all sections together */

enum mig_type {
	MIG_HELLO = 1,
	MIG_SECTION = 2,
	MIG_MEM = 3,
	MIG_ZERO = 4,
	MIG_AUTH = 5,
	MIG_END = 6,
	MIG_READY = 7,
	MIG_REFUSE = 8,
	MIG_GO = 9,
	MIG_ROUND = 10,
	MIG_RUNNING = 11,
	MIG_TYPE_LAST = MIG_RUNNING,
};

#define MIG_F_LIVE 1U	    /* HELLO flags: pre-copy rounds come before the state */
#define MIG_MAX_ROUNDS 1000 /* ROUND frames a destination accepts */

struct mig_frame {
	uint32_t type;
	uint64_t length, checksum;
};

/* Code a frame header for @payload (@len bytes) into @out. */
void mig_frame_encode(uint8_t out[MIG_HDR], uint32_t type, const void *payload, uint64_t len);
/*
 * Decode a header: -EPROTO with @err when the magic is wrong, the type unknown, or the length
 * more than a frame of that type may have (checked before any payload is read).
 */
int mig_frame_decode(const uint8_t in[MIG_HDR], struct mig_frame *f, char *err, size_t errlen);

/* ---- receiving (the destination) ---- */

struct mig_in {
	int fd;		  /* the memfd the snapshot is written into */
	uint64_t max_mem; /* the largest guest memory HELLO may announce (MIG_MAX_MEM) */
	bool hello, ended;
	uint32_t flags;
	uint64_t mem_size, npages, state_bytes, frames, mem_bytes;
	uint32_t rounds; /* ROUND frames so far */
	uint8_t *mem;	 /* the memory area of @fd, mapped at the first ROUND, or NULL */
	struct snap_writer w;
	uint64_t *pages;      /* bitmap: pages received with data */
	uint64_t unit_pages;  /* pages per extent at most: 64 to 512, a power of two */
	uint64_t *changed;    /* bitmap: units changed since their checksum was taken */
	uint64_t *sums;	      /* per unit: its extent's checksum */
	struct snap_file map; /* regions, from the source's memory map section */
	bool have_map;
	uint8_t mac[SNAP_MAC_BYTES];
	bool have_mac;
	void *disks; /* a copy of the disks section, which the MAC covers */
	uint64_t disks_len;
};

/* An empty receiver writing into @fd (a memfd or any regular file, truncated to fit). */
void mig_in_init(struct mig_in *m, int fd);
/* One frame whose payload checksum is already verified; -EPROTO/-EINVAL with @err. */
int mig_in_frame(struct mig_in *m, const struct mig_frame *f, const uint8_t *payload, char *err,
		 size_t errlen);
/* After END: the memory map and the section table; the file can then be opened. */
int mig_in_finish(struct mig_in *m, char *err, size_t errlen);
/* Is the MAC of AUTH one this user's host key made?  (After END, before mig_in_finish.) */
bool mig_in_authentic(struct mig_in *m, const struct config *cfg);
void mig_in_free(struct mig_in *m);

/* Read frames from @sock into @m until END (or an error, said in @err). */
int mig_recv(int sock, struct mig_in *m, char *err, size_t errlen);

/*
 * khyve -R ADDR:PORT: listen, take one VM, restore it into @vm with @cfg as a restore of the
 * received snapshot.  0 with the VM ready to run (then migrate_incoming_go before it starts);
 * on failure the source is told why and resumes.
 */
int migrate_incoming(struct vm *vm, struct config *cfg, const char *addr, char *err, size_t errlen);
/*
 * The VM is ready here: READY to the source, wait for its GO.  0 when nothing is incoming.
 * On failure the source is told (REFUSE) and resumes; this copy must not run.
 */
int migrate_incoming_go(char *err, size_t errlen);
/* After migrate_incoming_go: the source waits for migrate_incoming_running. */
bool migrate_incoming_pending(void);
/*
 * The guest runs here (after migrate_incoming_go, its vCPU threads made): RUNNING to the
 * source, which lets go.
 */
void migrate_incoming_running(void);
/* The guest runs: free what receiving kept (the memory it checksummed, its bitmaps). */
void migrate_incoming_cleanup(void);
/* Something failed between the restore and RUNNING: the source is told and resumes. */
void migrate_incoming_refuse(const char *why);

/* ---- sending (the source) ---- */

struct migrate_result {
	unsigned rounds;
	uint64_t bytes; /* payload bytes sent */
	uint64_t mem_pages, zero_pages;
	uint64_t total_ns;    /* the whole request */
	uint64_t downtime_ns; /* the guest paused until the destination said it runs it */
	/* Live: pages sent while the guest ran, in the final pause, and where the pause went. */
	uint64_t precopy_pages, final_pages;
	uint64_t stop_ns, state_ns, mem_ns,
		handover_ns;   /* pause, state, last pages, READY to RUNNING */
	const char *converged; /* why the pre-copy rounds stopped (snap/precopy.h) */
	unsigned throttle_pct; /* the highest auto-converge throttle of the rounds */
};

/*
 * Send the VM to the khyve listening at @addr ("IPv4:PORT" or "[IPv6]:PORT").  On success
 * the VM ends here (vm_request_exit(VM_EXIT_SUSPENDED), as after a suspend).  On any failure
 * it runs on as before and @err says what happened.  Runs on the event-loop thread.
 */
int migrate_send(struct vm *vm, const char *addr, const struct snap_save_opts *opts,
		 struct migrate_result *res, char *err, size_t errlen);

/* ---- shared with the live sender (snap/precopy.c) ---- */

/* The source's side of a connection. */
struct mig_out {
	struct vm *vm;
	int sock;
	uint64_t bytes;
	void *disks; /* a copy of the disks section, for the MAC */
	uint64_t disks_len;
};

/* Connect to @addr and send HELLO with @flags; o->sock is the socket (-1 on failure). */
int mig_out_open(struct mig_out *o, struct vm *vm, const char *addr, uint32_t flags, char *err,
		 size_t errlen);
void mig_out_close(struct mig_out *o);
/* A frame whose payload is @a then @b (either may be empty). */
int mig_send_frame(int fd, uint32_t type, const void *a, size_t alen, const void *b, size_t blen);
/* A header for a frame whose payload is @a then @b. */
void mig_frame_encode2(uint8_t out[MIG_HDR], uint32_t type, const void *a, uint64_t alen,
		       const void *b, uint64_t blen);
/* Write all of @iov (@n entries, modified). */
int mig_writev_full(int fd, struct iovec *iov, int n);
/*
 * The stop-and-copy: pause the VM, send its state, then what @mem sends (NULL: all memory),
 * END, wait for READY, GO.  0 with the guest handed over (the VM ends here); on failure it
 * runs again and @err says why.  On the event-loop thread.
 */
int mig_out_final(struct mig_out *o, snap_stream_mem_fn mem, void *mem_opaque,
		  const struct snap_save_opts *opts, struct migrate_result *res, char *err,
		  size_t errlen);

/* "HOST:PORT" into a socket address; -EINVAL with @err when it is not numeric or complete. */
struct sockaddr_storage;
int migrate_parse_addr(const char *addr, struct sockaddr_storage *ss, unsigned *sslen, char *err,
		       size_t errlen);

#endif
