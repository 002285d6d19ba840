/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Whole snapshot files for the orchestrator's tests that need no /dev/kvm (test_snapshot,
 * test_snapshot_faults): written with the real writer (snap/format.h), a VM of one vCPU and
 * 16 MiB with the vCPU and VM sections of an all-zero state, and whatever a test changes.
 */
#ifndef KHYVE_TEST_STATESNAP_H
#define KHYVE_TEST_STATESNAP_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/cpustate.h"
#include "snap/format.h"
#include "snap/trust.h"
#include "sstream.h"

#define STATESNAP_MEM (16ULL << 20)

struct spec {
	const char *config;   /* extra "key":"value" pairs of the saved configuration */
	const char *meta;     /* the whole metadata instead */
	const char *key;      /* a MAC with the key at this path (made if missing) */
	bool no_vm;	      /* no VM section */
	unsigned cpu_version; /* of cpu0 (0: CPUSTATE_VERSION) */
	bool short_vm;	      /* a VM section cut short */
	bool chain;	      /* a chain section naming a parent that is not there */
	const struct snap_parent *parent; /* a chain section naming this parent */
	uint8_t *id;			  /* the file's identity, if wanted */
};

static inline void statesnap_section(struct snap_writer *w, uint32_t type, const char *id,
				     uint32_t version, const void *buf, size_t len)
{
	assert_int_equal(snap_writer_section(w, type, id, version, buf, len), 0);
}

static inline void statesnap_chain(struct snap_writer *w, const struct snap_parent *parent)
{
	struct snap_parent p = *parent;
	struct sstream s;

	ss_init_save(&s);
	snap_parent_io(&s, &p);
	statesnap_section(w, SNAP_SEC_CHAIN, "chain", 1, s.buf, s.len);
	ss_free(&s);
}

static inline void write_snap_at(const char *path, const struct spec *sp)
{
	struct snap_file map = { .nregions = 1 };
	struct cpustate cs = { .xsave_size = sizeof(struct kvm_xsave) };
	struct vmstate vs = { 0 };
	struct snap_writer w;
	struct sstream s;
	char meta[2048], err[512];

	assert_int_equal(snap_writer_open(&w, path, STATESNAP_MEM, err, sizeof(err)), 0);
	if (sp->key) {
		struct snap_keyref ref = { .uid = geteuid() };
		uint8_t k[SNAP_KEY_BYTES];

		snprintf(ref.path, sizeof(ref.path), "%s", sp->key);
		assert_int_equal(snap_key_load(&ref, true, k, err, sizeof(err)), 0);
		snap_writer_set_key(&w, k);
	}
	cs.xsave = calloc(1, cs.xsave_size);
	ss_init_save(&s);
	cpustate_io(&s, &cs);
	statesnap_section(&w, SNAP_SEC_VCPU, "cpu0",
			  sp->cpu_version ? sp->cpu_version : CPUSTATE_VERSION, s.buf, s.len);
	ss_free(&s);
	free(cs.xsave);
	if (!sp->no_vm) {
		ss_init_save(&s);
		vmstate_io(&s, &vs);
		statesnap_section(&w, SNAP_SEC_VM, "vm", VMSTATE_VERSION, s.buf,
				  sp->short_vm ? s.len / 2 : s.len);
		ss_free(&s);
	}
	if (sp->meta)
		snprintf(meta, sizeof(meta), "%s", sp->meta);
	else
		snprintf(meta, sizeof(meta),
			 "{\"vcpus\":1,\"memory\":%llu,\"devices\":[],\"config\":{\"cpus\":\"1\","
			 "\"memory.size\":\"16M\"%s%s}}",
			 STATESNAP_MEM, sp->config ? "," : "", sp->config ? sp->config : "");
	statesnap_section(&w, SNAP_SEC_META, "meta", 1, meta, strlen(meta));
	if (sp->chain) {
		struct snap_parent p = { .depth = 1 };

		snprintf(p.name, sizeof(p.name), "gone.snap");
		statesnap_chain(&w, &p);
	}
	if (sp->parent)
		statesnap_chain(&w, sp->parent);
	map.regions[0] = (struct snap_region){ 0, STATESNAP_MEM, w.mem_offset };
	ss_init_save(&s);
	snap_memmap_io(&s, &map);
	statesnap_section(&w, SNAP_SEC_MEMMAP, "memory", 1, s.buf, s.len);
	ss_free(&s);
	assert_int_equal(snap_writer_commit(&w, err, sizeof(err)), 0);
	if (sp->id)
		memcpy(sp->id, w.id, SNAP_ID_BYTES);
}

#endif
