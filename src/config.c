// SPDX-License-Identifier: BSD-2-Clause
/* The configuration: a sorted array of key=value pairs (see config.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * Old khyve names of keys that now have bhyve's (bhyve_config(5)): the old name is stored
 * and looked up as the new one, from the command line, a -k file or a snapshot alike.
 */
static const char *const config_aliases[][2] = {
	{ "rtc.localtime", "rtc.use_localtime" },
};

const char *config_canonical(const char *key)
{
	for (size_t i = 0; i < sizeof(config_aliases) / sizeof(config_aliases[0]); i++)
		if (!strcmp(key, config_aliases[i][0]))
			return config_aliases[i][1];
	return key;
}

void config_init(struct config *c)
{
	memset(c, 0, sizeof(*c));
}

void config_free(struct config *c)
{
	for (unsigned i = 0; i < c->n; i++) {
		free(c->kv[i].key);
		free(c->kv[i].value);
	}
	free(c->kv);
	memset(c, 0, sizeof(*c));
}

/* Index of @key, or of where it would go; *found tells which. */
static unsigned config_find(const struct config *c, const char *key, bool *found)
{
	unsigned lo = 0, hi = c->n;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int r = strcmp(c->kv[mid].key, key);

		if (!r) {
			*found = true;
			return mid;
		}
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

int config_set(struct config *c, const char *key, const char *value)
{
	bool found;
	unsigned i = config_find(c, key = config_canonical(key), &found);
	char *v = strdup(value);
	char *k;

	if (!v)
		return -ENOMEM;
	if (found) {
		free(c->kv[i].value);
		c->kv[i].value = v;
		return 0;
	}
	k = strdup(key);
	if (!k)
		goto nomem;
	if (c->n == c->cap) {
		unsigned cap = c->cap ? c->cap * 2 : 32;
		struct config_kv *nkv = realloc(c->kv, cap * sizeof(*nkv));

		if (!nkv)
			goto nomem;
		c->kv = nkv;
		c->cap = cap;
	}
	memmove(&c->kv[i + 1], &c->kv[i], (c->n - i) * sizeof(c->kv[0]));
	c->kv[i].key = k;
	c->kv[i].value = v;
	c->n++;
	return 0;
nomem:
	free(k);
	free(v);
	return -ENOMEM;
}

void config_unset(struct config *c, const char *key)
{
	bool found;
	unsigned i = config_find(c, key = config_canonical(key), &found);

	if (!found)
		return;
	free(c->kv[i].key);
	free(c->kv[i].value);
	memmove(&c->kv[i], &c->kv[i + 1], (c->n - i - 1) * sizeof(c->kv[0]));
	c->n--;
}

const char *config_get(const struct config *c, const char *key)
{
	bool found;
	unsigned i = config_find(c, config_canonical(key), &found);

	return found ? c->kv[i].value : NULL;
}

const char *config_get_default(const struct config *c, const char *key, const char *dflt)
{
	const char *v = config_get(c, key);

	return v ? v : dflt;
}

int config_set_pair(struct config *c, const char *pair)
{
	const char *eq = strchr(pair, '=');
	char *key;
	int ret;

	if (!eq || eq == pair)
		return -EINVAL;
	key = strndup(pair, (size_t)(eq - pair));
	if (!key)
		return -ENOMEM;
	ret = config_set(c, key, eq + 1);
	free(key);
	return ret;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* "key = value" with blanks around either side, as people write files. */
static int config_set_file_line(struct config *c, char *line)
{
	char *eq = strchr(line, '=');

	if (!eq)
		return -EINVAL;
	*eq = '\0';
	line = trim(line);
	if (!*line)
		return -EINVAL;
	return config_set(c, line, trim(eq + 1));
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	int ret = 0;

	if (!f) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return ret;
	}
	for (;;) {
		char *s;

		errno = 0;
		if (getline(&line, &cap, f) < 0)
			break;
		s = trim(line);
		lineno++;
		if (!*s || *s == '#')
			continue;
		ret = config_set_file_line(c, s);
		if (ret == -EINVAL)
			snprintf(err, errlen, "%s:%u: expected key=value, got '%s'", path, lineno,
				 s);
		else if (ret)
			snprintf(err, errlen, "%s:%u: %s", path, lineno, strerror(-ret));
		if (ret)
			break;
	}
	/*
	 * getline fails alike at the end of the file, on a read error (a directory, EIO) and
	 * when it cannot grow its buffer: only the first is the end of the configuration.
	 */
	if (!ret && (ferror(f) || errno == ENOMEM)) {
		ret = errno ? -errno : -EIO;
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
	}
	free(line);
	fclose(f);
	return ret;
}

int config_get_bool(const struct config *c, const char *key, bool dflt, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	const char *v = config_get(c, key);

	*out = dflt;
	if (!v)
		return 0;
	for (unsigned i = 0; i < 4; i++) {
		if (!strcasecmp(v, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(v, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

int parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno)
		return -EINVAL;
	switch (toupper((unsigned char)*end)) {
	case 'T':
		shift = 40;
		end++;
		break;
	case 'G':
		shift = 30;
		end++;
		break;
	case 'M':
		shift = 20;
		end++;
		break;
	case 'K':
		shift = 10;
		end++;
		break;
	default:
		break;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

int config_get_size(const struct config *c, const char *key, uint64_t dflt, uint64_t *out)
{
	const char *v = config_get(c, key);

	*out = dflt;
	return v ? parse_size(v, out) : 0;
}

void config_foreach(const struct config *c, const char *prefix,
		    void (*fn)(const char *key, const char *value, void *opaque), void *opaque)
{
	size_t plen = strlen(prefix);

	for (unsigned i = 0; i < c->n; i++)
		if (!strncmp(c->kv[i].key, prefix, plen))
			fn(c->kv[i].key, c->kv[i].value, opaque);
}

void config_dump(const struct config *c, FILE *f)
{
	for (unsigned i = 0; i < c->n; i++)
		fprintf(f, "%s=%s\n", c->kv[i].key, c->kv[i].value);
}

int config_copy(struct config *dst, const struct config *src)
{
	for (unsigned i = 0; i < src->n; i++) {
		int ret = config_set(dst, src->kv[i].key, src->kv[i].value);

		if (ret)
			return ret;
	}
	return 0;
}
