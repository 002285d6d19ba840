/* SPDX-License-Identifier: BSD-2-Clause */
/* The command line: bhyve's option shapes, each turned into config keys. */
#ifndef KHYVE_OPTIONS_H
#define KHYVE_OPTIONS_H

#include <stddef.h>

#include "config.h"

struct options {
	const char *restore;  /* -r FILE */
	const char *incoming; /* -R ADDR:PORT */
	bool dump_config;     /* config.dump=true: print the configuration and exit */
};

/*
 * Fills @cfg from argv.  Returns 0, 1 for "help printed", or -EINVAL with a message in @err
 * naming the bad option.
 */
int options_parse(int argc, char **argv, struct config *cfg, struct options *opt, char *err,
		  size_t errlen);
/* -s "SLOT[:FUNC]|BUS:SLOT:FUNC,EMULATION[,CONF]" into pci.B.S.F.* keys. */
int options_parse_slot(struct config *cfg, const char *arg, char *err, size_t errlen);
/* -l "comN,BACKEND" into lpc.comN.path. */
int options_parse_lpc(struct config *cfg, const char *arg, char *err, size_t errlen);
/* -c "[cpus=]N[,sockets=S][,cores=C][,threads=T]". */
int options_parse_cpus(struct config *cfg, const char *arg, char *err, size_t errlen);
/* -m: a size, megabytes when it has no suffix (bhyve's rule). */
int options_parse_memory(struct config *cfg, const char *arg, char *err, size_t errlen);
void options_usage(FILE *f);

#endif
