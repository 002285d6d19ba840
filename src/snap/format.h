/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The snapshot file format (doc/snapshot-format.md is the reference).
 *
 *   page 0      header: magic, format version, khyve version, section table location and
 *               checksum, memory area location, header checksum
 *   ...         sections: typed records (meta, vm, vcpu, dev, memmap), each with an instance
 *               id, a version, offset, length and XXH3-64 checksum in the table
 *   aligned     guest memory: each RAM region at a page-aligned offset, sparse (never-touched
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

#define SNAP_MAGIC		"KHYVSNAP"
#define SNAP_FORMAT_VERSION	1
#define SNAP_PAGE		4096ULL
#define SNAP_MAX_SECTIONS	4096
#define SNAP_MAX_SECTION_SIZE	(64ULL << 20)

enum snap_section_type {
	SNAP_SEC_META = 1,	/* JSON: config, host CPU, times, versions */
	SNAP_SEC_VM = 2,	/* irqchip, PIT, KVM clock, virtual clock */
	SNAP_SEC_VCPU = 3,	/* one per vCPU */
	SNAP_SEC_DEV = 4,	/* one per device instance */
	SNAP_SEC_MEMMAP = 5,	/* RAM regions and data extents with checksums */
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

/* An open snapshot, validated (header, table, section checksums, memmap consistency). */
struct snap_file {
	int fd;
	uint64_t file_size;
	uint32_t format_version;
	char khyve_version[32];
	uint64_t created_ns;	/* CLOCK_REALTIME at save */
	unsigned nsections;
	struct snap_section *sections;
	unsigned nregions;
	struct snap_region regions[2];
	unsigned nextents;
	struct snap_extent *extents;
	uint64_t mem_offset, mem_size;
	char *meta_json;	/* NUL-terminated */
};

/*
 * Open and validate @path.  With @verify_memory, also read every memory extent and check its
 * checksum.  On failure fills @err with one clear sentence.
 */
int snap_file_open(struct snap_file *f, const char *path, bool verify_memory,
		   char *err, size_t errlen);
void snap_file_close(struct snap_file *f);
const char *snap_section_type_name(uint32_t type);
/* Find a section; NULL if absent. */
const struct snap_section *snap_file_find(const struct snap_file *f, uint32_t type,
					  const char *id);
/* Read a section's bytes (checksum already verified at open); caller frees. */
int snap_file_read(const struct snap_file *f, const struct snap_section *s, void **buf);

#endif
