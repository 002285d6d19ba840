// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: the chain section of an incremental snapshot (snap/format.c,
 * snap_parent_decode), as every open of a format 2 file reads it before the parent is looked
 * up (snap/chain.c).  The input is the section's bytes.
 *
 * What must hold: no crash or sanitizer report; a section that decodes names a plain file name
 * (no '/', not "." or "..", no control character: the parent can only be a file in the tip's
 * directory), a depth within 1 .. SNAP_CHAIN_MAX - 1, and encodes back to the same bytes.
 * Seeds: a parent of depth 1 and one of the deepest depth with the longest name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snap/format.h"
#include "sstream.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_parent p;
	struct sstream s;
	char err[512];

	if (snap_parent_decode(data, size, &p, err, sizeof(err)))
		return 0;
	FZ_ASSERT(snap_parent_name_ok(p.name) && !strchr(p.name, '/'), "name '%s' accepted",
		  p.name);
	FZ_ASSERT(p.depth >= 1 && p.depth < SNAP_CHAIN_MAX, "depth %u accepted", p.depth);
	ss_init_save(&s);
	snap_parent_io(&s, &p);
	FZ_ASSERT(!ss_error(&s) && s.len == size && !memcmp(s.buf, data, size),
		  "decoded section does not encode back to its bytes");
	ss_free(&s);
	return 0;
}

static void seed(const char *name, uint32_t depth, const char *pname)
{
	struct snap_parent p = { .depth = depth };
	struct fz_seed z;
	struct sstream s;

	snprintf(p.name, sizeof(p.name), "%s", pname);
	for (unsigned i = 0; i < SNAP_ID_BYTES; i++)
		p.id[i] = (uint8_t)(i * 7 + 1);
	ss_init_save(&s);
	snap_parent_io(&s, &p);
	fz_seed_start(&z);
	fz_put_bytes(&z, s.buf, s.len);
	fz_seed_write(&z, name);
	ss_free(&s);
}

void fuzz_seeds(void)
{
	char longest[SNAP_PARENT_NAME_MAX + 1];

	memset(longest, 'a', SNAP_PARENT_NAME_MAX);
	longest[SNAP_PARENT_NAME_MAX] = '\0';
	seed("depth1", 1, "base.snap");
	seed("deepest", SNAP_CHAIN_MAX - 1, longest);
}
