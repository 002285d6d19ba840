// SPDX-License-Identifier: BSD-2-Clause
/*
 * The fuzz framework (fuzz.h): input readers, seed writing, and libFuzzer's initialisation
 * hook, which either writes the target's seeds (FUZZ_WRITE_SEEDS=DIR, then exits) or runs the
 * target's fuzz_init() before the first input.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "dev/dev.h"
#include "sstream.h"
#include "vm.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

uint64_t fz_uint(struct fz *f, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n && i < 8; i++) {
		if (!f->size)
			break;
		v |= (uint64_t)f->data[0] << (8 * i);
		f->data++;
		f->size--;
	}
	return v;
}

const uint8_t *fz_bytes(struct fz *f, size_t len, size_t *got)
{
	static const uint8_t none[1];
	const uint8_t *p = f->size ? f->data : none;

	*got = len < f->size ? len : f->size;
	f->data += *got;
	f->size -= *got;
	return p;
}

int fz_memfd(const char *name, const void *data, size_t len)
{
	int fd = memfd_create(name, 0);

	if (fd < 0 || write(fd, data, len) != (ssize_t)len) {
		fprintf(stderr, "fuzz: memfd %s: %s\n", name, strerror(errno));
		abort();
	}
	return fd;
}

void fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz: %s:%d: check failed: %s: ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

void fz_seed_start(struct fz_seed *s)
{
	s->buf = NULL;
	s->len = s->cap = 0;
}

void fz_put_bytes(struct fz_seed *s, const void *p, size_t n)
{
	if (s->len + n > s->cap) {
		size_t cap = s->cap ? s->cap : 256;

		while (cap < s->len + n)
			cap *= 2;
		s->buf = realloc(s->buf, cap);
		if (!s->buf)
			abort();
		s->cap = cap;
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

void fz_put(struct fz_seed *s, uint64_t v, unsigned n)
{
	uint8_t b[8];

	for (unsigned i = 0; i < n && i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	fz_put_bytes(s, b, n < 8 ? n : 8);
}

void fz_seed_write(struct fz_seed *s, const char *name)
{
	const char *dir = getenv("FUZZ_WRITE_SEEDS");
	char path[4096];
	FILE *fp;

	if (!dir)
		dir = ".";
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "wb");
	if (!fp || fwrite(s->buf ? s->buf : (uint8_t *)"", 1, s->len, fp) != s->len || fclose(fp)) {
		fprintf(stderr, "fuzz: seed %s: %s\n", path, strerror(errno));
		exit(1);
	}
	free(s->buf);
	fz_seed_start(s);
}

/* Targets without state to set up, or without seeds, need not define these. */
__attribute__((weak)) void fuzz_init(void)
{
}

__attribute__((weak)) void fuzz_seeds(void)
{
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (getenv("FUZZ_WRITE_SEEDS")) {
		fuzz_init();
		fuzz_seeds();
		exit(0);
	}
	fuzz_init();
	return 0;
}

static void fz_no_irq(struct vm *vm, unsigned gsi, int level)
{
}

static int fz_no_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	return 0;
}

void fz_vm_init(struct vm *vm, struct config *cfg, uint64_t ram)
{
	vm_init_bare(vm, true);
	if (cfg) {
		config_init(cfg);
		vm->cfg = cfg;
	}
	vm->name = "fuzz";
	vm->set_irq = fz_no_irq;
	vm->send_msi = fz_no_msi;
	if (ram) {
		if (vm_add_memory(vm, ram))
			abort();
		vm->ram_size = ram;
	}
}

void fz_dev_identity(struct dev *d, unsigned version, const char *name)
{
	struct sstream a, l, b;

	ss_init_save(&a);
	FZ_ASSERT(d->ops->save(d, &a) == 0, "%s: save: %s", name, a.msg);
	ss_init_load(&l, a.buf, a.len);
	FZ_ASSERT(d->ops->load(d, &l, version) == 0 && !ss_error(&l),
		  "%s: its own state was refused: %s", name, l.msg);
	ss_init_save(&b);
	FZ_ASSERT(d->ops->save(d, &b) == 0, "%s: save again: %s", name, b.msg);
	FZ_ASSERT(a.len == b.len && !memcmp(a.buf, b.buf, a.len),
		  "%s: save -> load -> save differ (%zu, %zu bytes)", name, a.len, b.len);
	ss_free(&a);
	ss_free(&b);
}
