// SPDX-License-Identifier: BSD-2-Clause
/* The metadata section (see meta.h). */
#include "snap/meta.h"

#include <cpuid.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
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
