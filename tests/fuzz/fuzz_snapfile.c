// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: a whole snapshot file, opened and validated as `khyve -r` and `khyvectl
 * snapshot verify` do (snap/format.c: header, section table, sections, memory map, holes,
 * extents), then what a restore reads from it before building the machine: the metadata
 * (snap/meta.c: configuration and its cross-checks against the file), the disks section
 * (snap/disks.c), the trust filter (snap/trust.c), the MAC, the vCPU and VM state decoders.
 *
 * A file is mostly a hole (the memory area starts 2 MiB in and is sparse), so the input
 * describes it as pieces laid into an empty file:
 *
 *	flags:u8		bit 0: recompute the header's and the table's checksums,
 *				bit 1: every section's, bit 2: every memory extent's (the
 *				attacker of doc/snapshot-format.md does), bit 3: verify memory
 *	then pieces to the end	off:u32 len:u16 bytes; the file ends where the last one ends
 *
 * What must hold: no crash, no sanitizer report, no unbounded allocation (libFuzzer's
 * -malloc_limit_mb), whatever the file says.  Seeds: real snapshots of the test guest cut down
 * to their header, sections, table and the first bytes of every extent
 * (tests/fuzz/snapshot-seeds.sh, kept in tests/fuzz/corpus/snapfile/), and a file made here
 * with the writer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "arch/x86/cpustate.h"
#include "config.h"
#include "snap/disks.h"
#include "snap/format.h"
#include "snap/meta.h"
#include "snap/trust.h"
#include "sstream.h"
#include "fuzz.h"

#define F_FIX_TABLE 1
#define F_FIX_SECTIONS 2
#define F_FIX_EXTENTS 4
#define F_VERIFY 8

/* Where the header keeps its fields (doc/snapshot-format.md). */
#define H_TABLE_OFFSET 60
#define H_TABLE_LENGTH 68
#define H_TABLE_SUM 76
#define H_FIELDS 100
#define TABLE_ENTRY 80
/* Real snapshots of the test guest have 64 MiB of RAM: pieces go up to here. */
#define MAX_FILE (256ULL << 20)

static int memfd = -1;
/*
 * What the fix-ups may still hash for this input: a table or memory map can list millions of
 * entries, each as long as the file, and rewriting them all took seconds per input (the
 * harness's time, not khyve's, which refuses such a file at its first overlap).  An attacker's
 * file needs each range fixed once: FIX_BUDGET is that for a file of MAX_FILE, twice over, and
 * every range costs at least FIX_MIN (so 16384 ranges at most are fixed).
 * Once it is spent, checksums stay as they are.
 */
#define FIX_BUDGET (2 * MAX_FILE)
#define FIX_MIN (32ULL << 10)
static uint64_t fix_budget;
static XXH3_state_t *st;
static char memfd_path[64];

void fuzz_init(void)
{
	memfd = memfd_create("snap", 0);
	if (memfd < 0)
		abort();
	snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
	st = XXH3_createState();
	if (!st)
		abort();
}

static uint64_t rd64(uint64_t off)
{
	uint8_t b[8] = { 0 };
	uint64_t v = 0;

	if (pread(memfd, b, 8, (off_t)off) < 0)
		return 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

static void wr64(uint64_t off, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	if (pwrite(memfd, b, 8, (off_t)off) != 8)
		abort();
}

/*
 * XXH3 (snap_checksum's) of [off, off + len) of the file into @sum (0 when that is not inside
 * it); false when the budget is spent and the checksum is to stay as it is.
 */
static bool sum_range(uint64_t off, uint64_t len, uint64_t size, uint64_t *sum)
{
	static uint8_t buf[1 << 16];
	uint64_t cost = len < FIX_MIN ? FIX_MIN : len;

	if (cost > fix_budget)
		return false;
	fix_budget -= cost;
	*sum = 0;
	if (off > size || len > size - off)
		return true;
	XXH3_64bits_reset(st);
	while (len) {
		size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);

		if (pread(memfd, buf, n, (off_t)off) != (ssize_t)n)
			memset(buf, 0, n);
		XXH3_64bits_update(st, buf, n);
		off += n;
		len -= n;
	}
	*sum = XXH3_64bits_digest(st);
	return true;
}

/* The memory map's extents get the checksums of what the file holds there. */
static void fix_extents(uint64_t secoff, uint64_t seclen, uint64_t size)
{
	uint64_t nr, ne, pos, sum;

	if (secoff > size || seclen > size - secoff || seclen < 4)
		return;
	nr = rd64(secoff) & 0xFFFFFFFF;
	pos = secoff + 4 + (nr <= 2 ? nr * 24 : 0);
	if (pos + 4 > secoff + seclen)
		return;
	ne = rd64(pos) & 0xFFFFFFFF;
	pos += 4;
	for (uint64_t i = 0; i < ne && pos + 24 <= secoff + seclen && fix_budget; i++, pos += 24)
		if (sum_range(rd64(pos), rd64(pos + 8), size, &sum))
			wr64(pos + 16, sum);
}

/* What an attacker who rewrote the file does next: every checksum made to match. */
static void fixup(uint8_t flags, uint64_t size)
{
	uint64_t toff = rd64(H_TABLE_OFFSET), tlen = rd64(H_TABLE_LENGTH), sum;
	uint8_t hdr[H_FIELDS];

	if (toff <= size && tlen <= size - toff) {
		for (uint64_t e = toff; e + TABLE_ENTRY <= toff + tlen && fix_budget;
		     e += TABLE_ENTRY) {
			uint64_t type = rd64(e) & 0xFFFFFFFF, off = rd64(e + 56),
				 len = rd64(e + 64);

			if (flags & F_FIX_EXTENTS && type == SNAP_SEC_MEMMAP)
				fix_extents(off, len, size);
			if (flags & F_FIX_SECTIONS && sum_range(off, len, size, &sum))
				wr64(e + 72, sum);
		}
		/* The table's own checksum is fixed whatever the entries spent. */
		fix_budget += tlen + FIX_MIN;
		if (flags & F_FIX_TABLE && sum_range(toff, tlen, size, &sum))
			wr64(H_TABLE_SUM, sum);
	}
	if (flags & F_FIX_TABLE && pread(memfd, hdr, sizeof(hdr), 0) == sizeof(hdr)) {
		sum = snap_checksum(hdr, sizeof(hdr));
		wr64(H_FIELDS, sum);
	}
}

/* What a restore decodes before it builds the machine. */
static void after_open(struct snap_file *sf)
{
	static const uint8_t key[SNAP_KEY_BYTES] = { 1, 2, 3 };
	struct config saved, cmdline;
	struct snap_disks sd;
	char err[1024], missing[1600];

	snap_file_check_mac(sf, key);
	memset(&sd, 0, sizeof(sd));
	if (!snap_disks_read(sf, &sd, err, sizeof(err)))
		snap_disks_free(&sd);
	for (unsigned i = 0; i < sf->nsections; i++) {
		const struct snap_section *sec = &sf->sections[i];
		struct cpustate cs = { 0 };
		struct vmstate vs = { 0 };
		struct sstream s;
		void *buf;

		if (sec->type != SNAP_SEC_VCPU && sec->type != SNAP_SEC_VM)
			continue;
		if (snap_file_read(sf, sec, &buf))
			continue;
		ss_init_load(&s, buf, sec->length);
		if (sec->type == SNAP_SEC_VCPU)
			cpustate_io(&s, &cs);
		else
			vmstate_io(&s, &vs);
		ss_finish(&s);
		cpustate_free(&cs);
		free(buf);
	}
	config_init(&saved);
	config_init(&cmdline);
	if (!snap_meta_config(sf->meta_json, &saved, err, sizeof(err)) &&
	    !snap_meta_check(sf->meta_json, &saved, sf, err, sizeof(err))) {
		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "fuzz: opened, metadata agrees with the file\n");
		snap_trust_filter(&saved, &cmdline, false, missing, sizeof(missing));
		config_free(&saved);
		config_init(&saved);
		snap_meta_config(sf->meta_json, &saved, err, sizeof(err));
		snap_trust_filter(&saved, &cmdline, true, missing, sizeof(missing));
	} else if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "fuzz: opened: %s\n", err);
	config_free(&saved);
	config_free(&cmdline);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	uint8_t flags = fz_u8(&f);
	uint64_t fsize = 0;
	struct snap_file sf;
	char err[1024];

	if (ftruncate(memfd, 0))
		abort();
	while (!fz_empty(&f)) {
		uint64_t off = fz_u32(&f) % MAX_FILE;
		size_t len = fz_u16(&f), got;
		const uint8_t *p = fz_bytes(&f, len, &got);

		if (got && pwrite(memfd, p, got, (off_t)off) != (ssize_t)got)
			abort();
		if (off + got > fsize)
			fsize = off + got;
	}
	if (ftruncate(memfd, (off_t)fsize))
		abort();
	fix_budget = FIX_BUDGET;
	fixup(flags, fsize);
	if (!snap_file_open(&sf, memfd_path, flags & F_VERIFY, err, sizeof(err))) {
		after_open(&sf);
		snap_file_close(&sf);
	} else if (getenv("FUZZ_VERBOSE")) {
		fprintf(stderr, "fuzz: %s\n", err);
	}
	return 0;
}

/*
 * The input that lays out @path again: header, sections and table whole, the first 64 bytes
 * of each memory extent (the rest left zero, the checksums recomputed by the flags).
 */
static void seed_from_file(const char *path, const char *name)
{
	struct snap_file sf;
	struct fz_seed s;
	char err[1024];
	uint8_t *buf;
	uint64_t tail;

	if (snap_file_open(&sf, path, false, err, sizeof(err))) {
		fprintf(stderr, "fuzz: %s\n", err);
		exit(1);
	}
	tail = sf.mem_offset + sf.mem_size;
	buf = malloc(sf.file_size - tail + 4096);
	fz_seed_start(&s);
	fz_put(&s, F_FIX_TABLE | F_FIX_SECTIONS | F_FIX_EXTENTS | F_VERIFY, 1);
	if (pread(sf.fd, buf, 256, 0) != 256)
		abort();
	fz_put(&s, 0, 4);
	fz_put(&s, 256, 2);
	fz_put_bytes(&s, buf, 256);
	for (unsigned i = 0; i < sf.nextents; i++) {
		if (pread(sf.fd, buf, 64, (off_t)sf.extents[i].file_offset) != 64)
			abort();
		fz_put(&s, sf.extents[i].file_offset, 4);
		fz_put(&s, 64, 2);
		fz_put_bytes(&s, buf, 64);
	}
	/* Sections and table, in pieces of at most 64 KiB, the last one ending the file. */
	for (uint64_t off = tail; off < sf.file_size;) {
		uint64_t n = sf.file_size - off < 0xFFFF ? sf.file_size - off : 0xFFFF;

		if (pread(sf.fd, buf, n, (off_t)off) != (ssize_t)n)
			abort();
		fz_put(&s, off, 4);
		fz_put(&s, n, 2);
		fz_put_bytes(&s, buf, n);
		off += n;
	}
	free(buf);
	snap_file_close(&sf);
	fz_seed_write(&s, name);
}

void fuzz_seeds(void)
{
	const char *snap = getenv("FUZZ_SNAPSHOT");
	static uint8_t page[4096];
	struct snap_writer w;
	char path[128], err[512];
	const char *meta = "{\"name\":\"fuzz\",\"vcpus\":1,\"memory\":65536,\"devices\":[],"
			   "\"config\":{\"cpus\":\"1\",\"memory.size\":\"64K\",\"name\":\"fuzz\"}}";
	struct sstream ss;
	struct snap_file mm = { .nregions = 1, .regions = { { 0, 65536, SNAP_MEM_ALIGN } } };
	struct snap_extent ext = { SNAP_MEM_ALIGN + 4096, 4096, 0 };
	struct cpustate cs = { 0 };

	if (snap) {
		seed_from_file(snap, "snapshot");
		return;
	}
	/* A small file from the writer: metadata, a vCPU, the memory map, one page of data. */
	snprintf(path, sizeof(path), "%s/khyve-fuzz-snap-%d", getenv("FUZZ_WRITE_SEEDS"), getpid());
	if (snap_writer_open(&w, path, 65536, err, sizeof(err))) {
		fprintf(stderr, "fuzz: %s\n", err);
		exit(1);
	}
	memset(page, 0x5a, sizeof(page));
	ext.checksum = snap_checksum(page, sizeof(page));
	mm.nextents = 1;
	mm.extents = &ext;
	snap_writer_memory(&w, 4096, page, sizeof(page));
	snap_writer_section(&w, SNAP_SEC_META, "meta", 1, meta, strlen(meta));
	ss_init_save(&ss);
	cpustate_io(&ss, &cs);
	snap_writer_section(&w, SNAP_SEC_VCPU, "cpu0", CPUSTATE_VERSION, ss.buf, ss.len);
	ss_free(&ss);
	ss_init_save(&ss);
	snap_memmap_io(&ss, &mm);
	snap_writer_section(&w, SNAP_SEC_MEMMAP, "memory", 1, ss.buf, ss.len);
	ss_free(&ss);
	if (snap_writer_commit(&w, err, sizeof(err))) {
		fprintf(stderr, "fuzz: %s\n", err);
		exit(1);
	}
	seed_from_file(path, "writer");
	unlink(path);
}
