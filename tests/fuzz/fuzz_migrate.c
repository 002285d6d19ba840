// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: what a migration source sends to khyve -R (snap/migrate.c): frame headers
 * (mig_frame_decode), then each frame into the receiver (mig_in_frame: a stop-and-copy stream or
 * a live one, with pre-copy rounds closed by ROUND frames), and after an END the
 * snapshot it made (mig_in_finish), opened and validated as a restore opens it.
 *
 * The input is the byte stream itself, frame after frame, except that the payload checksums
 * are not checked (the checksum is a CRC of what arrived, and an input that had to get it right
 * would mostly test XXH3): the receiver is what is fuzzed.  HELLO may announce at most 64 MiB
 * here so that one input stays fast (a real destination takes up to MIG_MAX_MEM, checked the
 * same way).
 *
 * What must hold: no crash, no sanitizer report, no unbounded allocation, whatever arrives;
 * and a snapshot the receiver finished always opens (the receiver never writes a file that
 * its own reader refuses).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "snap/format.h"
#include "snap/migrate.h"
#include "sstream.h"
#include "fuzz.h"

#define MAX_MEM (64ULL << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_in m;
	char err[512], path[64];
	struct snap_file f;
	int fd = memfd_create("mig", MFD_CLOEXEC), ret = 0;

	if (fd < 0)
		abort();
	mig_in_init(&m, fd);
	m.max_mem = MAX_MEM;
	while (size >= MIG_HDR && !ret && !m.ended) {
		struct mig_frame fr;

		ret = mig_frame_decode(data, &fr, err, sizeof(err));
		if (ret || fr.length > size - MIG_HDR)
			break;
		ret = mig_in_frame(&m, &fr, data + MIG_HDR, err, sizeof(err));
		data += MIG_HDR + fr.length;
		size -= MIG_HDR + fr.length;
	}
	if (!ret && m.ended && !mig_in_finish(&m, err, sizeof(err))) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ret = snap_file_open(&f, path, true, err, sizeof(err));
		/* The metadata and state sections came from the stream and may be anything: only
		 * the memory map and memory, which the receiver made, must be right. */
		FZ_ASSERT(!ret || strstr(err, "metadata") || strstr(err, "region"),
			  "the receiver wrote a snapshot its reader refuses: %s", err);
		if (!ret)
			snap_file_close(&f);
	}
	mig_in_free(&m);
	close(fd);
	return 0;
}

static void frame(struct fz_seed *s, uint32_t type, const void *p, size_t n)
{
	uint8_t h[MIG_HDR];

	mig_frame_encode(h, type, p, n);
	fz_put_bytes(s, h, sizeof(h));
	if (n)
		fz_put_bytes(s, p, n);
}

static void section(struct fz_seed *s, uint32_t type, const char *id, const void *p, size_t n)
{
	uint8_t *b = calloc(1, MIG_SEC_HDR + n + 1);

	if (!b)
		abort();
	b[0] = (uint8_t)type;
	b[4] = 1;
	strcpy((char *)b + 8, id);
	memcpy(b + MIG_SEC_HDR, p, n);
	frame(s, MIG_SECTION, b, MIG_SEC_HDR + n);
	free(b);
}

void fuzz_seeds(void)
{
	struct fz_seed s;
	struct snap_file map;
	struct sstream ss;
	uint8_t hello[16] = { MIG_VERSION }, mem[8 + 4096], z[16] = { 0 }, round[16];

	memset(&map, 0, sizeof(map));
	map.nregions = 2;
	map.regions[0] = (struct snap_region){ 0, 4ULL << 20, SNAP_MEM_ALIGN };
	map.regions[1] = (struct snap_region){ 1ULL << 32, 2ULL << 20,
					       SNAP_MEM_ALIGN + (4ULL << 20) };
	ss_init_save(&ss);
	snap_memmap_io(&ss, &map);
	hello[10] = 0x60; /* 6 MiB */
	memset(mem, 0, 8);
	memset(mem + 8, 0x5a, 4096);
	fz_seed_start(&s);
	frame(&s, MIG_HELLO, hello, sizeof(hello));
	section(&s, SNAP_SEC_META, "meta", "{\"config\":{}}", 13);
	section(&s, SNAP_SEC_DEV, "uart@com1", "\1\2\3", 3);
	section(&s, SNAP_SEC_MEMMAP, "memory", ss.buf, ss.len);
	frame(&s, MIG_MEM, mem, sizeof(mem));
	mem[2] = 0x50; /* at 5 MiB: region 1 */
	frame(&s, MIG_MEM, mem, sizeof(mem));
	z[2] = 0x50;	 /* that page again, cleared */
	z[8 + 1] = 0x10; /* 4 KiB */
	frame(&s, MIG_ZERO, z, sizeof(z));
	frame(&s, MIG_AUTH, mem + 8, SNAP_MAC_BYTES);
	frame(&s, MIG_END, NULL, 0);
	fz_seed_write(&s, "stream");
	/* Live: pre-copy rounds (MEM, ROUND), then the state and the last pages. */
	hello[4] = MIG_F_LIVE;
	memset(mem, 0, 8);
	memset(round, 0, sizeof(round));
	fz_seed_start(&s);
	frame(&s, MIG_HELLO, hello, sizeof(hello));
	frame(&s, MIG_MEM, mem, sizeof(mem));
	round[0] = 1;
	frame(&s, MIG_ROUND, round, sizeof(round));
	mem[1] = 0x10; /* 4 KiB */
	frame(&s, MIG_MEM, mem, sizeof(mem));
	round[0] = 2;
	frame(&s, MIG_ROUND, round, sizeof(round));
	section(&s, SNAP_SEC_META, "meta", "{\"config\":{}}", 13);
	section(&s, SNAP_SEC_MEMMAP, "memory", ss.buf, ss.len);
	mem[1] = 0x20;
	frame(&s, MIG_MEM, mem, sizeof(mem));
	frame(&s, MIG_END, NULL, 0);
	fz_seed_write(&s, "live");
	ss_free(&ss);
}
