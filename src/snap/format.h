/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The snapshot file format (doc/snapshot-format.md is the reference).
 *
 *   page 0      header: magic, format version, khyve version, section table location and
 *               checksum, memory area location, header checksum, then the authentication
 *               block (scheme and MAC, see snap/trust.h); every other byte of the page is zero
 *   2 MiB       guest memory (below)
 *   ...         sections: typed records (meta, vm, vcpu, dev, memmap), each with an instance
 *               id, a version, offset, length and XXH3-64 checksum in the table
 *               guest memory: each RAM region at a page-aligned offset, sparse (never-touched
 *               and all-zero pages are holes); the memmap section lists the data extents and
 *               their checksums
 *
 * All integers little endian.  Readers validate everything before using anything.
 */
#ifndef KHYVE_FORMAT_H
#define KHYVE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sstream;

#define SNAP_MAGIC "KHYVSNAP"
/*
 * 2 added the chain section (an incremental snapshot names its parent); a reader takes 1 and 2,
 * and a version 1 file is read as it always was.
 */
#define SNAP_FORMAT_VERSION 2
#define SNAP_FORMAT_MIN_VERSION 1
#define SNAP_PAGE 4096ULL
/* The memory area starts 2 MiB in, so a restored guest's RAM can be mapped with huge pages. */
#define SNAP_MEM_ALIGN (2ULL << 20)
#define SNAP_DIRECT_ALIGN 4096ULL /* what snap_writer_direct writes need */
#define SNAP_MAX_SECTIONS 4096
#define SNAP_MAX_SECTION_SIZE (64ULL << 20)
#define SNAP_MAX_META (1ULL << 20)   /* the metadata is a few KiB of JSON */
#define SNAP_EXTENT_MAX (2ULL << 20) /* the writer's memory extents cover at most 2 MiB */
#define SNAP_MAX_VCPUS 255
#define SNAP_KEY_BYTES 32
#define SNAP_MAC_BYTES 32
#define SNAP_ID_BYTES 32	 /* a file's content identity (snap_file_identity) */
#define SNAP_PARENT_NAME_MAX 255 /* a parent is named by a file name in the tip's directory */
#define SNAP_CHAIN_MAX 256	 /* links in a chain, the tip and its full base included */
/* Authentication schemes in the header. */
#define SNAP_AUTH_SCHEME_NONE 0
#define SNAP_AUTH_SCHEME_BLAKE2B 1 /* keyed BLAKE2b-256 (libsodium crypto_generichash) */

/* What the authentication block says about a file, for one user's key. */
enum snap_auth {
	SNAP_AUTH_NONE,	   /* the file carries no MAC */
	SNAP_AUTH_VALID,   /* the MAC matches the key: this host's khyve wrote it for this user */
	SNAP_AUTH_INVALID, /* it does not: another host or user, or the file was altered */
	SNAP_AUTH_NOKEY,   /* there is a MAC, but this user has no key to check it with */
};

enum snap_section_type {
	SNAP_SEC_META = 1,   /* JSON: config, host CPU, times, versions */
	SNAP_SEC_VM = 2,     /* irqchip, PIT, KVM clock, virtual clock */
	SNAP_SEC_VCPU = 3,   /* one per vCPU */
	SNAP_SEC_DEV = 4,    /* one per device instance */
	SNAP_SEC_MEMMAP = 5, /* RAM regions and data extents with checksums */
	SNAP_SEC_DISKS = 6,  /* what identifies each disk's state (snap/disks.h) */
	SNAP_SEC_CHAIN = 7,  /* format 2: the parent of an incremental snapshot (snap/chain.h) */
	SNAP_SEC_LAST = SNAP_SEC_CHAIN,
};

struct snap_section {
	uint32_t type;
	uint32_t version;
	char id[48];
	uint64_t offset, length;
	uint64_t checksum;
};

struct snap_region {
	uint64_t gpa, size, file_offset;
};

struct snap_extent {
	uint64_t file_offset, length;
	uint64_t checksum;
};

/*
 * The chain section of an incremental snapshot: its memory area holds only the pages written
 * since its parent was taken (each of them, zero or not, as data); every other page is the
 * parent's.  The parent is named by a file name in the directory of this file (never a path:
 * a file must not make khyve open arbitrary host files) and by its content identity, so a
 * parent that was replaced or changed is refused rather than mixed in.
 */
struct snap_parent {
	uint32_t depth; /* links below this file: 1 when the parent is a full snapshot */
	char name[SNAP_PARENT_NAME_MAX + 1];
	uint8_t id[SNAP_ID_BYTES];
};

/* An open snapshot, validated (header, table, section checksums, memmap consistency). */
struct snap_file {
	int fd;
	uint64_t file_size;
	uint32_t format_version;
	char khyve_version[32];
	uint64_t created_ns; /* CLOCK_REALTIME at save */
	unsigned nsections;
	struct snap_section *sections;
	unsigned nregions;
	struct snap_region regions[2];
	unsigned nextents;
	struct snap_extent *extents;
	uint64_t mem_offset, mem_size;
	char *meta_json; /* NUL-terminated */
	bool has_parent; /* an incremental snapshot: @parent says whose */
	struct snap_parent parent;
	/* What the MAC covers, kept to check it against a key (snap_file_check_mac). */
	uint32_t auth_scheme;
	uint8_t mac[SNAP_MAC_BYTES];
	uint8_t header_raw[128];
	size_t header_len;
	uint8_t *table_raw;
	uint64_t table_len;
	/* Every section's bytes as checked at open, when they fit one read (else NULL). */
	uint8_t *sec_raw;
	uint64_t sec_start, sec_len;
};

/*
 * Open and validate @path.  With @verify_memory, also read every memory extent and check its
 * checksum.  On failure fills @err with one clear sentence.
 */
int snap_file_open(struct snap_file *f, const char *path, bool verify_memory, char *err,
		   size_t errlen);
/* The same on an open descriptor (taken over: closed on failure and by snap_file_close). */
int snap_file_open_fd(struct snap_file *f, int fd, const char *path, bool verify_memory, char *err,
		      size_t errlen);
void snap_file_close(struct snap_file *f);
/* Check memory extent @i against its checksum. */
int snap_file_verify_extent(const struct snap_file *f, unsigned i, const char *path, char *err,
			    size_t errlen);
/*
 * The file's content identity: BLAKE2b-256 over its section table, which holds the checksum of
 * every section, the memory map's (and so every memory extent's checksum) among them.
 */
int snap_file_identity(const struct snap_file *f, uint8_t id[SNAP_ID_BYTES]);
int snap_table_identity(const void *table, uint64_t len, uint8_t id[SNAP_ID_BYTES]);
/* Lowercase hex of an identity, into @out (2 * SNAP_ID_BYTES + 1 bytes). */
void snap_id_hex(const uint8_t id[SNAP_ID_BYTES], char *out);
/* Is @name one a parent may have: a plain file name (no '/', not . or .., printable)? */
bool snap_parent_name_ok(const char *name);
/* The chain section's coding, and its decoding with every field checked (fuzzed). */
void snap_parent_io(struct sstream *s, struct snap_parent *p);
int snap_parent_decode(const void *buf, size_t len, struct snap_parent *p, char *err,
		       size_t errlen);
const char *snap_section_type_name(uint32_t type);
/* Find a section; NULL if absent. */
const struct snap_section *snap_file_find(const struct snap_file *f, uint32_t type, const char *id);
/* Read a section's bytes (checksum already verified at open); caller frees. */
int snap_file_read(const struct snap_file *f, const struct snap_section *s, void **buf);
/* 0 when the file's MAC matches @key, -ENODATA when it has none, -EBADMSG when it differs. */
int snap_file_check_mac(const struct snap_file *f, const uint8_t key[SNAP_KEY_BYTES]);

/*
 * Writing a snapshot.  Layout: header page, memory area (each region at its page-aligned
 * offset, sparse), then sections, then the section table; the header goes last, then fsync
 * and rename, so a crash at any point leaves the previous file at the path intact.
 */
struct snap_writer {
	int fd;
	/*
	 * snap_writer_direct: the same file opened again with O_DIRECT, which memory writes of
	 * whole aligned pages go through (-1: none, everything goes through @fd).
	 */
	int dfd;
	char path[4096];
	char tmppath[4096 + 32];
	uint64_t pos; /* where the next section goes */
	uint64_t mem_offset, mem_size;
	unsigned nsections, cap;
	struct snap_section *sections;
	uint64_t bytes; /* data bytes written */
	bool keyed;	/* commit adds a MAC made with @key */
	uint8_t key[SNAP_KEY_BYTES];
	void *meta; /* a copy of the meta section, which the MAC covers */
	uint64_t meta_len;
	/*
	 * A streaming writer (snap_writer_open_sink): memory and sections go to @sink instead of
	 * the file, @sec NULL for memory at @offset in the memory area.  Migration uses it.
	 */
	int (*sink)(void *opaque, const struct snap_section *sec, uint64_t offset, const void *buf,
		    uint64_t len);
	void *sink_opaque;
	uint8_t id[SNAP_ID_BYTES]; /* after commit: the new file's snap_file_identity */
};

int snap_writer_open(struct snap_writer *w, const char *path, uint64_t mem_size, char *err,
		     size_t errlen);
/*
 * A writer with no file of its own: into @fd (duplicated; commit writes table and header but
 * renames nothing), or, with snap_writer_open_sink, into @sink (commit is not used then).
 */
int snap_writer_open_fd(struct snap_writer *w, int fd, uint64_t mem_size, char *err, size_t errlen);
void snap_writer_open_sink(struct snap_writer *w, uint64_t mem_size,
			   int (*sink)(void *opaque, const struct snap_section *sec,
				       uint64_t offset, const void *buf, uint64_t len),
			   void *opaque);
/* Write @len bytes of guest memory at @offset inside the memory area. */
int snap_writer_memory(struct snap_writer *w, uint64_t offset, const void *buf, uint64_t len);
/*
 * The same through the page cache whatever snap_writer_direct says (a file writer only): a few
 * scattered pages are copied in at memory speed, where each direct write waits for the disk
 * (a live checkpoint's final pause); the commit's fsync writes them out.
 */
int snap_writer_memory_cached(struct snap_writer *w, uint64_t offset, const void *buf,
			      uint64_t len);
int snap_writer_section(struct snap_writer *w, uint32_t type, const char *id, uint32_t version,
			const void *buf, uint64_t len);
/* Authenticate the file with the host key (snap/trust.h); without it the file has no MAC. */
void snap_writer_set_key(struct snap_writer *w, const uint8_t key[SNAP_KEY_BYTES]);
/* Table, header, fsync, rename over @path, fsync the directory. */
int snap_writer_commit(struct snap_writer *w, char *err, size_t errlen);
/* Remove the temporary file (after an error or instead of commit). */
void snap_writer_abort(struct snap_writer *w);
/*
 * Write guest memory past the page cache (O_DIRECT) from now on, where the file system allows
 * it: the pages go from guest memory to the disk with no copy, and a checkpoint does not fill
 * the host's page cache with a second copy of the guest (doc/snapshot-format.md, "Direct I/O").
 * Writes that are not whole aligned pages, and files that refuse O_DIRECT, go through the page
 * cache as before.  Returns whether direct writes are on.
 */
bool snap_writer_direct(struct snap_writer *w);

/* XXH3-64 of a buffer: the checksum used throughout the format. */
uint64_t snap_checksum(const void *buf, size_t len);

/* The memmap section's coding (regions then extents), used by the writer and the reader. */
void snap_memmap_io(struct sstream *s, struct snap_file *f);
#endif
