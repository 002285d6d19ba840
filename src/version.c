// SPDX-License-Identifier: BSD-2-Clause
/* What --version says.  The commit comes from the build (Makefile: $(BUILD)/gen/commit.h). */
#include "version.h"

#include "commit.h"
#include "snap/format.h"

const char khyve_commit[] = KHYVE_COMMIT;

void version_print(FILE *f, const char *prog)
{
	fprintf(f, "%s %s (commit %s), snapshot format %u\n", prog, KHYVE_VERSION, khyve_commit,
		(unsigned)SNAP_FORMAT_VERSION);
}
