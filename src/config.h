/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The configuration: flat "key=value" pairs, as bhyve's config model.  Every command-line
 * option sets a key; -o sets any key; -k reads a file of key=value lines.  Keys are
 * dot-separated paths ("pci.0.31.0.device", "lpc.com1.path", "boot.kernel").
 */
#ifndef KHYVE_CONFIG_H
#define KHYVE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct config_kv {
	char *key, *value;
};

struct config {
	struct config_kv *kv; /* sorted by key */
	unsigned n, cap;
};

/* The name @key is stored under: bhyve's for an old khyve name (rtc.localtime), else @key. */
const char *config_canonical(const char *key);
void config_init(struct config *c);
void config_free(struct config *c);
int config_set(struct config *c, const char *key, const char *value);
void config_unset(struct config *c, const char *key);
const char *config_get(const struct config *c, const char *key);
const char *config_get_default(const struct config *c, const char *key, const char *dflt);
/* "key=value"; returns -EINVAL when there is no '=' or the key is empty. */
int config_set_pair(struct config *c, const char *pair);
/*
 * Reads a -k file: one key=value per line, '#' comments, blank lines.  On error fills @err
 * with "FILE:LINE: what".
 */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen);
/* "true"/"false"/"yes"/"no"/"on"/"off"/"1"/"0"; -EINVAL otherwise. */
int config_get_bool(const struct config *c, const char *key, bool dflt, bool *out);
/* Integer with optional K/M/G/T suffix (powers of 1024). */
int parse_size(const char *s, uint64_t *out);
int config_get_size(const struct config *c, const char *key, uint64_t dflt, uint64_t *out);
/* Visit keys that start with @prefix, in key order. */
void config_foreach(const struct config *c, const char *prefix,
		    void (*fn)(const char *key, const char *value, void *opaque), void *opaque);
void config_dump(const struct config *c, FILE *f);
/* @dst (initialised, empty) becomes a copy of @src. */
int config_copy(struct config *dst, const struct config *src);

#endif
