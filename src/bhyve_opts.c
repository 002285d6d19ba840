// SPDX-License-Identifier: BSD-2-Clause
/* bhyve's host-side options: wired memory, vCPU pinning, UUID, x2APIC, strict I/O. */
#include "bhyve_opts.h"

#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <sodium.h>

#include "vcpu.h"
#include "vm.h"

#define MSR_IA32_APICBASE 0x1b
#define APICBASE_BSP (1ULL << 8)
#define APICBASE_X2APIC (1ULL << 10)
#define APICBASE_ENABLE (1ULL << 11)
#define APICBASE_ADDR 0xfee00000ULL

int uuid_parse(const char *s, uint8_t out[16])
{
	unsigned n = 0;

	if (!s || strlen(s) != 36)
		return -EINVAL;
	for (unsigned i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash != (s[i] == '-') || (!dash && !isxdigit((unsigned char)s[i])))
			return -EINVAL;
	}
	for (const char *p = s; *p; p++) {
		char hex[3] = { 0 };

		if (*p == '-')
			continue;
		hex[0] = p[0];
		hex[1] = p[1];
		out[n++] = (uint8_t)strtoul(hex, NULL, 16);
		p++;
	}
	return 0;
}

int bhyve_opts_default_uuid(struct config *cfg, char *err, size_t errlen)
{
	char host[256] = "", name[600];
	uint8_t u[16];
	int n, ret;

	if (config_get(cfg, "uuid"))
		return 0;
	gethostname(host, sizeof(host) - 1);
	/* Domain-separated, so no other use of the same hash gives the same bytes. */
	n = snprintf(name, sizeof(name), "khyve system uuid%c%s%c%s", 0, host, 0,
		     config_get_default(cfg, "name", "vm"));
	if (n < 0 || (size_t)n >= sizeof(name))
		n = (int)sizeof(name) - 1; /* a VM name that long is refused elsewhere */
	crypto_generichash(u, sizeof(u), (const unsigned char *)name, (size_t)n, NULL, 0);
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x80); /* version 8: vendor-specific (RFC 9562) */
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80); /* the RFC's variant */
	snprintf(name, sizeof(name),
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
		 u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
		 u[15]);
	ret = config_set(cfg, "uuid", name);
	if (ret)
		snprintf(err, errlen, "uuid: %s", strerror(-ret));
	return ret;
}

static bool parse_num(const char **s, unsigned long max, unsigned long *out)
{
	char *end;

	if (!isdigit((unsigned char)**s))
		return false;
	errno = 0;
	*out = strtoul(*s, &end, 10);
	*s = end;
	return !errno && *out <= max;
}

int bhyve_opt_pin(struct config *cfg, const char *arg, char *err, size_t errlen)
{
	const char *p = arg, *old;
	unsigned long vcpu, host;
	char key[32], *val;
	int ret;

	if (!parse_num(&p, 254, &vcpu) || *p++ != ':' || !parse_num(&p, CPU_SETSIZE - 1, &host) ||
	    *p) {
		snprintf(err, errlen, "-p %s: expected VCPU:HOSTCPU (numbers, e.g. -p 0:2)", arg);
		return -EINVAL;
	}
	snprintf(key, sizeof(key), "vcpu.%lu.cpuset", vcpu);
	old = config_get(cfg, key);
	if (asprintf(&val, "%s%s%lu", old ? old : "", old ? "," : "", host) < 0)
		return -ENOMEM;
	ret = config_set(cfg, key, val);
	free(val);
	return ret;
}

/* "0-3,6" into @set.  0, or -EINVAL naming the bad part in @err. */
static int cpuset_parse(const char *key, const char *v, cpu_set_t *set, char *err, size_t errlen)
{
	const char *p = v;

	CPU_ZERO(set);
	while (*p) {
		unsigned long a, b;

		if (!parse_num(&p, CPU_SETSIZE - 1, &a))
			goto bad;
		b = a;
		if (*p == '-' && (p++, !parse_num(&p, CPU_SETSIZE - 1, &b) || b < a))
			goto bad;
		for (unsigned long c = a; c <= b; c++)
			CPU_SET(c, set);
		if (*p == ',')
			p++;
		else if (*p)
			goto bad;
	}
	if (CPU_COUNT(set))
		return 0;
bad:
	snprintf(err, errlen, "%s=%s: expected host CPUs such as 2 or 0-3,6", key, v);
	return -EINVAL;
}

struct pin_check {
	unsigned ncpus;
	cpu_set_t allowed;
	char *err;
	size_t errlen;
	int ret;
};

static void pin_check_key(const char *key, const char *value, void *opaque)
{
	struct pin_check *c = opaque;
	unsigned long n;
	cpu_set_t set, both;
	char *end;

	if (c->ret)
		return;
	n = strtoul(key + 5, &end, 10);
	if (strcmp(end, ".cpuset"))
		return;
	if (n >= c->ncpus) {
		snprintf(c->err, c->errlen, "%s: the VM has %u vCPUs (0 to %u)", key, c->ncpus,
			 c->ncpus - 1);
		c->ret = -EINVAL;
		return;
	}
	c->ret = cpuset_parse(key, value, &set, c->err, c->errlen);
	CPU_AND(&both, &set, &c->allowed);
	if (!c->ret && !CPU_EQUAL(&both, &set)) {
		snprintf(c->err, c->errlen,
			 "%s=%s: khyve may not run on every one of those host CPUs (offline, or "
			 "outside its affinity mask)",
			 key, value);
		c->ret = -EINVAL;
	}
}

int bhyve_opts_check(const struct config *cfg, unsigned ncpus, char *err, size_t errlen)
{
	struct pin_check c = { .ncpus = ncpus, .err = err, .errlen = errlen };
	static const char *const bools[] = {
		"memory.wired",	     "x86.x2apic",	    "x86.strictio",
		"x86.vmexit_on_hlt", "x86.vmexit_on_pause", "x86.mptable",
		"virtio_msix",	     "destroy_on_poweroff", "acpi_tables",
	};
	const char *uuid = config_get(cfg, "uuid");
	uint8_t u[16];
	bool b;

	for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
		if (config_get_bool(cfg, bools[i], false, &b)) {
			snprintf(err, errlen, "%s=%s: expected true or false", bools[i],
				 config_get(cfg, bools[i]));
			return -EINVAL;
		}
	}
	if (uuid && uuid_parse(uuid, u)) {
		snprintf(err, errlen,
			 "uuid=%s: expected a UUID such as 6ba7b810-9dad-11d1-80b4-00c04fd430c8",
			 uuid);
		return -EINVAL;
	}
	if (sched_getaffinity(0, sizeof(c.allowed), &c.allowed))
		CPU_ZERO(&c.allowed);
	config_foreach(cfg, "vcpu.", pin_check_key, &c);
	return c.ret;
}

/* x2APIC mode from the start, as bhyve's -x: enabled, extended, BSP flag on vCPU 0. */
static int set_x2apic(struct vcpu *v)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = { .h.nmsrs = 1 };

	m.e.index = MSR_IA32_APICBASE;
	m.e.data = APICBASE_ADDR | APICBASE_ENABLE | APICBASE_X2APIC | (v->id ? 0 : APICBASE_BSP);
	return ioctl(v->fd, KVM_SET_MSRS, &m) == 1 ? 0 : -EINVAL;
}

int bhyve_opts_apply(struct vm *vm, bool restoring, char *err, size_t errlen)
{
	bool x2apic = false, strictio = false;

	config_get_bool(vm->cfg, "x86.x2apic", false, &x2apic);
	config_get_bool(vm->cfg, "x86.strictio", false, &strictio);
	vm->strictio = strictio;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpus[i];
		char key[32];
		const char *spec;

		snprintf(key, sizeof(key), "vcpu.%u.cpuset", i);
		spec = config_get(vm->cfg, key);
		if (spec) {
			v->pin = malloc(sizeof(*v->pin));
			if (!v->pin || cpuset_parse(key, spec, v->pin, err, errlen))
				return -EINVAL;
		}
		/* A restore brings the APIC base the guest had. */
		if (x2apic && !restoring && set_x2apic(v)) {
			snprintf(err, errlen,
				 "-x: vCPU %u refused x2APIC mode (does this KVM offer x2APIC?)",
				 i);
			return -EINVAL;
		}
	}
	return 0;
}

int bhyve_opts_wire(struct vm *vm, char *err, size_t errlen)
{
	bool wired = false;

	config_get_bool(vm->cfg, "memory.wired", false, &wired);
	if (!wired)
		return 0;
	for (unsigned i = 0; i < vm->nmem; i++) {
		if (mlock(vm->mem[i].hva, vm->mem[i].size)) {
			int e = errno;

			snprintf(err, errlen,
				 "-S: cannot lock %llu MiB of guest memory: %s (the limit is "
				 "RLIMIT_MEMLOCK, ulimit -l, for a user without CAP_IPC_LOCK)",
				 (unsigned long long)(vm->mem[i].size >> 20), strerror(e));
			return -e;
		}
	}
	return 0;
}
