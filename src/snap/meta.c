// SPDX-License-Identifier: BSD-2-Clause
/* The metadata section (see meta.h). */
#include "snap/meta.h"

#include <cpuid.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "snap/format.h"
#include "version.h"
#include "vm.h"

static void add_str(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v));
}

static void add_int(struct json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

static struct json_object *host_cpu(void)
{
	struct json_object *o = json_object_new_object();
	unsigned a, b, c, d, family, model;
	char vendor[13], brand[49] = "";

	__cpuid(0, a, b, c, d);
	memcpy(vendor, &b, 4);
	memcpy(vendor + 4, &d, 4);
	memcpy(vendor + 8, &c, 4);
	vendor[12] = '\0';
	add_str(o, "vendor", vendor);
	__cpuid(1, a, b, c, d);
	family = (a >> 8) & 0xf;
	model = (a >> 4) & 0xf;
	if (family == 0xf)
		family += (a >> 20) & 0xff;
	if (family >= 6)
		model |= ((a >> 16) & 0xf) << 4;
	add_int(o, "family", family);
	add_int(o, "model", model);
	add_int(o, "stepping", a & 0xf);
	__cpuid(0x80000000, a, b, c, d);
	if (a >= 0x80000004) {
		for (unsigned i = 0; i < 3; i++) {
			__cpuid(0x80000002 + i, a, b, c, d);
			memcpy(brand + 16 * i, &a, 4);
			memcpy(brand + 16 * i + 4, &b, 4);
			memcpy(brand + 16 * i + 8, &c, 4);
			memcpy(brand + 16 * i + 12, &d, 4);
		}
		add_str(o, "model_name", brand);
	}
	return o;
}

static void add_config_kv(const char *key, const char *value, void *opaque)
{
	add_str(opaque, key, value);
}

char *snap_meta_build(struct vm *vm, const struct config *config)
{
	struct json_object *o = json_object_new_object(), *devs = json_object_new_array();
	struct json_object *cfg = json_object_new_object();
	char when[64];
	time_t now = time(NULL);
	struct tm tm;
	char *out;

	add_str(o, "name", vm->name);
	add_int(o, "vcpus", vm->ncpus);
	add_int(o, "memory", (int64_t)vm->ram_size);
	add_str(o, "khyve_version", KHYVE_VERSION);
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	add_str(o, "created", when);
	json_object_object_add(o, "host_cpu", host_cpu());
	for (struct dev *d = vm->devs; d; d = d->next) {
		struct json_object *e = json_object_new_object();

		add_str(e, "id", d->id);
		add_str(e, "type", d->ops->name);
		add_int(e, "version", d->ops->version);
		json_object_array_add(devs, e);
	}
	json_object_object_add(o, "devices", devs);
	config_foreach(config, "", add_config_kv, cfg);
	json_object_object_add(o, "config", cfg);
	out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							       JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return out;
}

int snap_meta_config(const char *json, struct config *cfg, char *err, size_t errlen)
{
	struct json_object *o = json_tokener_parse(json), *c;
	int ret = 0;

	if (!o || !json_object_object_get_ex(o, "config", &c) ||
	    !json_object_is_type(c, json_type_object)) {
		snprintf(err, errlen, "metadata has no configuration");
		ret = -EINVAL;
		goto out;
	}
	json_object_object_foreach (c, key, val) {
		if (!json_object_is_type(val, json_type_string)) {
			snprintf(err, errlen, "metadata: configuration key %s is not a string",
				 key);
			ret = -EINVAL;
			goto out;
		}
		ret = config_set(cfg, key, json_object_get_string(val));
		if (ret)
			goto out;
	}
out:
	json_object_put(o);
	return ret;
}

static bool get_u64(struct json_object *o, const char *key, uint64_t *v)
{
	struct json_object *x;

	if (!json_object_object_get_ex(o, key, &x) || !json_object_is_type(x, json_type_int) ||
	    json_object_get_int64(x) < 0)
		return false;
	*v = (uint64_t)json_object_get_int64(x);
	return true;
}

static int check_vcpus(struct json_object *o, const struct config *cfg, const struct snap_file *f,
		       char *err, size_t errlen)
{
	const char *c = config_get_default(cfg, "cpus", "1");
	uint64_t n, nsec = 0;
	char id[16];

	if (!get_u64(o, "vcpus", &n) || n != strtoull(c, NULL, 10)) {
		snprintf(err, errlen,
			 "metadata: vcpus does not match the configuration (cpus=%.16s)", c);
		return -EINVAL;
	}
	for (unsigned i = 0; i < f->nsections; i++)
		nsec += f->sections[i].type == SNAP_SEC_VCPU;
	for (uint64_t i = 0; i < n && i <= SNAP_MAX_VCPUS; i++) {
		snprintf(id, sizeof(id), "cpu%u", (unsigned)i);
		if (!snap_file_find(f, SNAP_SEC_VCPU, id))
			nsec = UINT64_MAX;
	}
	if (nsec != n) {
		snprintf(err, errlen,
			 "the file's vCPU sections are not cpu0..cpu%llu for its %llu vCPUs",
			 (unsigned long long)n - 1, (unsigned long long)n);
		return -EINVAL;
	}
	return 0;
}

static int check_memory(struct json_object *o, const struct config *cfg, const struct snap_file *f,
			char *err, size_t errlen)
{
	uint64_t m, size;

	if (!get_u64(o, "memory", &m) || m != f->mem_size) {
		snprintf(err, errlen,
			 "metadata: memory does not match the memory area (%llu bytes)",
			 (unsigned long long)f->mem_size);
		return -EINVAL;
	}
	if (config_get(cfg, "memory.size") &&
	    (config_get_size(cfg, "memory.size", 0, &size) || size != m)) {
		snprintf(err, errlen, "metadata: memory does not match memory.size");
		return -EINVAL;
	}
	return 0;
}

/* "devices" lists each device section once, with that section's version. */
static int check_devices(struct json_object *o, const struct snap_file *f, char *err, size_t errlen)
{
	struct json_object *devs, *d, *id, *ver;
	size_t n, ndev = 0;

	if (!json_object_object_get_ex(o, "devices", &devs) ||
	    !json_object_is_type(devs, json_type_array))
		goto bad;
	n = json_object_array_length(devs);
	for (unsigned i = 0; i < f->nsections; i++)
		ndev += f->sections[i].type == SNAP_SEC_DEV;
	if (n != ndev)
		goto bad;
	for (size_t i = 0; i < n; i++) {
		const struct snap_section *sec;

		d = json_object_array_get_idx(devs, i);
		if (!json_object_is_type(d, json_type_object) ||
		    !json_object_object_get_ex(d, "id", &id) ||
		    !json_object_is_type(id, json_type_string) ||
		    !json_object_object_get_ex(d, "version", &ver) ||
		    !json_object_is_type(ver, json_type_int))
			goto bad;
		sec = snap_file_find(f, SNAP_SEC_DEV, json_object_get_string(id));
		if (!sec || json_object_get_int64(ver) != (int64_t)sec->version)
			goto bad;
		for (size_t j = 0; j < i; j++) {
			struct json_object *e = json_object_array_get_idx(devs, j), *eid;

			json_object_object_get_ex(e, "id", &eid);
			if (!strcmp(json_object_get_string(eid), json_object_get_string(id)))
				goto bad;
		}
	}
	return 0;
bad:
	snprintf(err, errlen, "metadata: devices do not match the file's device sections");
	return -EINVAL;
}

int snap_meta_check(const char *json, const struct config *cfg, const struct snap_file *f,
		    char *err, size_t errlen)
{
	struct json_object *o = json_tokener_parse(json), *name;
	const char *cname = config_get(cfg, "name");
	int ret;

	if (!o || !json_object_is_type(o, json_type_object)) {
		snprintf(err, errlen, "metadata is not a JSON object");
		json_object_put(o);
		return -EINVAL;
	}
	ret = check_vcpus(o, cfg, f, err, errlen);
	if (!ret)
		ret = check_memory(o, cfg, f, err, errlen);
	if (!ret)
		ret = check_devices(o, f, err, errlen);
	if (!ret && cname &&
	    (!json_object_object_get_ex(o, "name", &name) ||
	     !json_object_is_type(name, json_type_string) ||
	     strcmp(json_object_get_string(name), cname))) {
		snprintf(err, errlen, "metadata: name does not match the configuration");
		ret = -EINVAL;
	}
	json_object_put(o);
	return ret;
}
