// SPDX-License-Identifier: BSD-2-Clause
/*
 * virtio-blk driven as a guest driver would: find the virtio capabilities in config space,
 * negotiate through the common config window in BAR 4, lay out a split queue in guest RAM,
 * kick through the notify window and wait for the used ring.  The backing image is a
 * temporary file the test reads and writes directly to check what the device did.
 *
 * Requests run on the device's worker threads, so every wait polls the used ring with a
 * generous bound (a hang fails the test; nothing asserts how long anything took).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "dev/dev.h"
#include "dev/pci/pci.h"
#include "dev/virtio/virtio.h"
#include "sstream.h"
#include "vm.h"
#include "dev/virtio/virtio_pci_regs.h"

/* ---- what a driver knows from the virtio spec ---- */

#define F_SEG_MAX 2
#define F_RO 5
#define F_BLK_SIZE 6
#define F_FLUSH 9
#define F_TOPOLOGY 10
#define F_DISCARD 13
#define F_WRITE_ZEROES 14

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13
#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2

#define D_NEXT 1
#define D_WRITE 2
#define D_INDIRECT 4

/* Guest RAM layout of the test driver. */
#define RAM_SIZE (16 * MiB)
#define QSZ 256
#define DESC_GPA 0x10000ULL
#define AVAIL_GPA 0x20000ULL
#define USED_GPA 0x30000ULL
#define INDIR_GPA 0x40000ULL
#define HDR_GPA 0x50000ULL /* request r: header at +32r, status at +32r+16 */
#define DATA_GPA 0x100000ULL
#define IMG_SIZE (1 * MiB)
#define IMG_SECTORS (IMG_SIZE / 512)

struct vdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

/* ---- interrupt sinks ---- */

static unsigned irq_count, msi_count;

static void rec_irq(struct vm *vm, unsigned gsi, int level)
{
	if (level)
		__atomic_add_fetch(&irq_count, 1, __ATOMIC_RELAXED);
}

static int rec_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	__atomic_add_fetch(&msi_count, 1, __ATOMIC_RELAXED);
	return 0;
}

/* ---- fixture: a bare VM, a temporary image, virtio-blk in slot 3 ---- */

struct fx {
	struct vm vm;
	struct config cfg;
	struct pci_dev *pd;
	char path[256];
	uint64_t common, notify, isr, devcfg;
	uint32_t notify_mult;
	uint16_t notify_off;
	/* driver-side ring state */
	uint64_t features;
	uint16_t avail_idx, used_seen, next_desc;
	unsigned nreq;
};

static void make_image(char *path, size_t pathlen, uint64_t size, uint8_t fill)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	uint8_t buf[4096];
	int fd;

	snprintf(path, pathlen, "%s/khyve-test-blk-XXXXXX", dir);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	memset(buf, fill, sizeof(buf));
	for (uint64_t off = 0; off < size; off += sizeof(buf)) {
		size_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);

		assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
	}
	close(fd);
}

/* Bring up the VM and the device; NULL pd (with @err) when the device refused its options. */
static void fx_start(struct fx *f, const char *path, const char *const *keys, char *err,
		     size_t errlen)
{
	char kv[400];

	vm_init_bare(&f->vm, true);
	config_init(&f->cfg);
	f->vm.cfg = &f->cfg;
	f->vm.set_irq = rec_irq;
	f->vm.send_msi = rec_msi;
	assert_int_equal(vm_add_memory(&f->vm, RAM_SIZE), 0);
	if (path) {
		snprintf(kv, sizeof(kv), "pci.0.3.0.path=%s", path);
		assert_int_equal(config_set_pair(&f->cfg, kv), 0);
	}
	for (; keys && *keys; keys++) {
		snprintf(kv, sizeof(kv), "pci.0.3.0.%s", *keys);
		assert_int_equal(config_set_pair(&f->cfg, kv), 0);
	}
	if (pci_setup(&f->vm, err, errlen))
		fail_msg("pci_setup: %s", err);
	f->pd = pci_dev_add(&f->vm, 3, 0, &pci_emul_virtio_blk, err, errlen);
}

static void fx_stop(struct fx *f)
{
	/*
	 * vm_destroy frees the PCI bus before its functions, so a worker still raising an
	 * interrupt would touch freed memory: stop the device's threads first.
	 */
	if (f->pd)
		assert_int_equal(f->pd->dev.ops->pause(&f->pd->dev), 0);
	vm_destroy(&f->vm);
	config_free(&f->cfg);
}

static void *gpa(struct fx *f, uint64_t a, uint64_t len)
{
	void *p = vm_gpa(&f->vm, a, len);

	assert_non_null(p);
	return p;
}

static uint64_t mmio_rd(struct fx *f, uint64_t addr, unsigned size)
{
	uint8_t b[8];

	assert_true(bus_access(&f->vm.mmio, addr, b, size, false));
	return io_get(b, size);
}

static void mmio_wr(struct fx *f, uint64_t addr, unsigned size, uint64_t v)
{
	uint8_t b[8];

	io_put(b, size, v);
	assert_true(bus_access(&f->vm.mmio, addr, b, size, true));
}

static uint32_t cfg_rd(struct fx *f, unsigned reg, unsigned size)
{
	return (uint32_t)mmio_rd(f, PCI_ECAM_BASE + (3ULL << 15) + reg, size);
}

/* Walk the capability list as a driver does and note where each window is. */
static void find_caps(struct fx *f)
{
	unsigned p = cfg_rd(f, PCIR_CAP_PTR, 1), guard = 0;

	f->common = f->notify = f->isr = f->devcfg = 0;
	for (; p && guard < 48; p = cfg_rd(f, p + 1, 1), guard++) {
		uint64_t base;
		uint8_t type;

		if (cfg_rd(f, p, 1) != PCIY_VENDOR)
			continue;
		type = (uint8_t)cfg_rd(f, p + 3, 1);
		base = pci_bar_addr(f->pd, (int)cfg_rd(f, p + 4, 1)) + cfg_rd(f, p + 8, 4);
		if (type == CAP_COMMON_CFG && !f->common)
			f->common = base;
		else if (type == CAP_NOTIFY_CFG && !f->notify) {
			f->notify = base;
			f->notify_mult = cfg_rd(f, p + 16, 4);
		} else if (type == CAP_ISR_CFG && !f->isr)
			f->isr = base;
		else if (type == CAP_DEVICE_CFG && !f->devcfg)
			f->devcfg = base;
	}
	assert_true(f->common && f->notify && f->isr && f->devcfg);
}

static uint64_t offered_features(struct fx *f)
{
	uint64_t v;

	mmio_wr(f, f->common + CC_DFSELECT, 4, 0);
	v = mmio_rd(f, f->common + CC_DF, 4);
	mmio_wr(f, f->common + CC_DFSELECT, 4, 1);
	return v | mmio_rd(f, f->common + CC_DF, 4) << 32;
}

static uint8_t dev_status(struct fx *f)
{
	return (uint8_t)mmio_rd(f, f->common + CC_STATUS, 1);
}

/* Reset, negotiate @want (of what is offered) and bring up queue 0 with QSZ entries. */
static void drv_init(struct fx *f, uint64_t want)
{
	uint64_t c;

	find_caps(f);
	c = f->common;
	/* Bus mastering on, as a driver's pci_set_master. */
	mmio_wr(f, PCI_ECAM_BASE + (3ULL << 15) + PCIR_COMMAND, 2,
		PCIM_CMD_MEM | PCIM_CMD_IO | PCIM_CMD_BUSMASTER);
	mmio_wr(f, c + CC_STATUS, 1, 0);
	assert_int_equal(dev_status(f), 0);
	mmio_wr(f, c + CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	mmio_wr(f, c + CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	f->features = offered_features(f) & (want | 1ULL << VIRTIO_F_VERSION_1);
	mmio_wr(f, c + CC_GFSELECT, 4, 0);
	mmio_wr(f, c + CC_GF, 4, (uint32_t)f->features);
	mmio_wr(f, c + CC_GFSELECT, 4, 1);
	mmio_wr(f, c + CC_GF, 4, (uint32_t)(f->features >> 32));
	mmio_wr(f, c + CC_STATUS, 1,
		VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	assert_true(dev_status(f) & VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(mmio_rd(f, c + CC_NUMQ, 2), 1);
	mmio_wr(f, c + CC_QSELECT, 2, 0);
	assert_int_equal(mmio_rd(f, c + CC_QSIZE, 2), QSZ);
	memset(gpa(f, DESC_GPA, 0x30000 + 8 * QSZ + 6), 0, 0x30000 + 8 * QSZ + 6);
	mmio_wr(f, c + CC_QSIZE, 2, QSZ);
	mmio_wr(f, c + CC_QDESC, 4, DESC_GPA);
	mmio_wr(f, c + CC_QDESC + 4, 4, 0);
	mmio_wr(f, c + CC_QAVAIL, 4, AVAIL_GPA);
	mmio_wr(f, c + CC_QAVAIL + 4, 4, 0);
	mmio_wr(f, c + CC_QUSED, 4, USED_GPA);
	mmio_wr(f, c + CC_QUSED + 4, 4, 0);
	f->notify_off = (uint16_t)mmio_rd(f, c + CC_QNOFF, 2);
	mmio_wr(f, c + CC_QENABLE, 2, 1);
	mmio_wr(f, c + CC_STATUS, 1,
		VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			VIRTIO_STATUS_DRIVER_OK);
	assert_true(dev_status(f) & VIRTIO_STATUS_DRIVER_OK);
	f->avail_idx = f->used_seen = f->next_desc = 0;
	f->nreq = 0;
}

static uint64_t devcfg_rd(struct fx *f, unsigned off, unsigned size)
{
	return mmio_rd(f, f->devcfg + off, size);
}

/* ---- requests ---- */

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* Descriptors for @s[0..n) from the ring's free run (the tests never have more in flight). */
static uint16_t put_chain(struct fx *f, const struct seg *s, unsigned n)
{
	struct vdesc *d = gpa(f, DESC_GPA, sizeof(*d) * QSZ);
	uint16_t head = f->next_desc;

	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % QSZ);

		d[idx].addr = s[i].gpa;
		d[idx].len = s[i].len;
		d[idx].flags = (uint16_t)((s[i].write ? D_WRITE : 0) | (i + 1 < n ? D_NEXT : 0));
		d[idx].next = (uint16_t)((idx + 1) % QSZ);
	}
	f->next_desc = (uint16_t)((head + n) % QSZ);
	return head;
}

/* One descriptor in the ring pointing at a table of @n at INDIR_GPA + @slot * 4 KiB. */
static uint16_t put_indirect(struct fx *f, const struct seg *s, unsigned n, unsigned slot)
{
	uint64_t table = INDIR_GPA + slot * 4096ULL;
	struct vdesc *t = gpa(f, table, sizeof(*t) * n);
	struct seg one = { table, (uint32_t)(sizeof(*t) * n), false };
	struct vdesc *d = gpa(f, DESC_GPA, sizeof(*d) * QSZ);
	uint16_t head;

	for (unsigned i = 0; i < n; i++) {
		t[i].addr = s[i].gpa;
		t[i].len = s[i].len;
		t[i].flags = (uint16_t)((s[i].write ? D_WRITE : 0) | (i + 1 < n ? D_NEXT : 0));
		t[i].next = (uint16_t)(i + 1);
	}
	head = put_chain(f, &one, 1);
	d[head].flags = D_INDIRECT;
	return head;
}

static void publish(struct fx *f, uint16_t head)
{
	uint16_t *avail = gpa(f, AVAIL_GPA, 4 + 2 * QSZ + 2);

	avail[2 + f->avail_idx % QSZ] = head;
	f->avail_idx++;
	__atomic_store_n(&avail[1], f->avail_idx, __ATOMIC_RELEASE);
}

static void kick(struct fx *f)
{
	mmio_wr(f, f->notify + (uint64_t)f->notify_off * f->notify_mult, 2, 0);
}

static uint16_t used_idx(struct fx *f)
{
	uint16_t *used = gpa(f, USED_GPA, 4 + 8 * QSZ + 2);

	return __atomic_load_n(&used[1], __ATOMIC_ACQUIRE);
}

/* Wait (bounded) until the used ring holds @want entries in all. */
static void wait_used(struct fx *f, uint16_t want)
{
	struct timespec ts = { 0, 200000 };

	for (unsigned i = 0; i < 150000; i++) {
		if (used_idx(f) == want)
			return;
		nanosleep(&ts, NULL);
	}
	fail_msg("used ring stuck at %u, waiting for %u", used_idx(f), want);
}

static void used_elem(struct fx *f, uint16_t i, uint32_t *id, uint32_t *len)
{
	uint32_t *e = gpa(f, USED_GPA + 4 + 8ULL * (i % QSZ), 8);

	*id = e[0];
	*len = e[1];
}

static uint64_t hdr_gpa(unsigned r)
{
	return HDR_GPA + 32ULL * r;
}

/* Header of request slot @r; its status byte is set to 0xEE so a write to it shows. */
static void put_hdr(struct fx *f, unsigned r, uint32_t type, uint64_t sector)
{
	uint8_t *h = gpa(f, hdr_gpa(r), 17);

	memcpy(h, &type, 4);
	memset(h + 4, 0, 4);
	memcpy(h + 8, &sector, 8);
	h[16] = 0xEE;
}

static uint8_t status_of(struct fx *f, unsigned r)
{
	return *(uint8_t *)gpa(f, hdr_gpa(r) + 16, 1);
}

/* Submit the chain @s[0..n), wait for it and return its used length. */
static uint32_t run_chain(struct fx *f, const struct seg *s, unsigned n, bool indirect)
{
	uint16_t head = indirect ? put_indirect(f, s, n, 0) : put_chain(f, s, n);
	uint32_t id, len;

	publish(f, head);
	kick(f);
	wait_used(f, (uint16_t)(f->used_seen + 1));
	used_elem(f, f->used_seen++, &id, &len);
	assert_int_equal(id, head);
	return len;
}

/* header, one data buffer (absent when @len is 0), status: the common layout. */
static uint8_t req(struct fx *f, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
		   uint32_t *used_len)
{
	bool in = type == T_IN || type == T_GET_ID;
	struct seg s[3] = { { hdr_gpa(0), 16, false } };
	unsigned n = 1;
	uint32_t l;

	put_hdr(f, 0, type, sector);
	if (len)
		s[n++] = (struct seg){ data, len, in };
	s[n++] = (struct seg){ hdr_gpa(0) + 16, 1, true };
	l = run_chain(f, s, n, false);
	if (used_len)
		*used_len = l;
	return status_of(f, 0);
}

static void pattern(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7 + seed * 13 + (i >> 9));
}

static void file_read(const char *path, uint64_t off, void *buf, size_t n)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static void file_write(const char *path, uint64_t off, const void *buf, size_t n)
{
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static bool file_all(const char *path, uint64_t off, size_t n, uint8_t v)
{
	uint8_t *b = malloc(n);
	bool ok = true;

	file_read(path, off, b, n);
	for (size_t i = 0; i < n && ok; i++)
		ok = b[i] == v;
	free(b);
	return ok;
}

static uint64_t all_features(void)
{
	return 1ULL << F_SEG_MAX | 1ULL << F_RO | 1ULL << F_BLK_SIZE | 1ULL << F_FLUSH |
	       1ULL << F_TOPOLOGY | 1ULL << F_DISCARD | 1ULL << F_WRITE_ZEROES |
	       1ULL << VIRTIO_F_INDIRECT_DESC;
}

/* ---- setup ---- */

struct tstate {
	struct fx f;
	char img[256];
};

static int setup_keys(void **state, const char *const *keys)
{
	struct tstate *t = calloc(1, sizeof(*t));
	char err[256];

	make_image(t->img, sizeof(t->img), IMG_SIZE, 0x5A);
	fx_start(&t->f, t->img, keys, err, sizeof(err));
	if (!t->f.pd)
		fail_msg("virtio-blk: %s", err);
	drv_init(&t->f, all_features());
	*state = t;
	return 0;
}

static int setup(void **state)
{
	return setup_keys(state, NULL);
}

static int setup_ro(void **state)
{
	return setup_keys(state, (const char *const[]){ "ro=true", NULL });
}

static int teardown(void **state)
{
	struct tstate *t = *state;

	fx_stop(&t->f);
	unlink(t->img);
	free(t);
	return 0;
}

/* ---- tests ---- */

static void test_config(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f;
	uint64_t off = offered_features(f);

	assert_int_equal(cfg_rd(f, PCIR_VENDOR, 2), 0x1af4);
	assert_int_equal(cfg_rd(f, PCIR_DEVICE, 2), 0x1040 + VIRTIO_ID_BLOCK);
	assert_int_equal(cfg_rd(f, PCIR_CLASS, 1), 0x01);
	for (unsigned b = 0; b < 64; b++) {
		bool want = b == F_SEG_MAX || b == F_BLK_SIZE || b == F_FLUSH || b == F_TOPOLOGY ||
			    b == F_DISCARD || b == F_WRITE_ZEROES;

		if (b < 24) /* device bits; the transport owns the rest */
			assert_int_equal(!!(off & (1ULL << b)), want);
	}
	assert_true(off & (1ULL << VIRTIO_F_VERSION_1));
	assert_int_equal(devcfg_rd(f, 0, 8), IMG_SECTORS);
	assert_int_equal(devcfg_rd(f, 0, 4), IMG_SECTORS);
	assert_int_equal(devcfg_rd(f, 12, 4), QSZ - 2); /* seg_max */
	assert_int_equal(devcfg_rd(f, 20, 4), 512);	/* blk_size */
	assert_int_equal(devcfg_rd(f, 24, 1), 3);	/* 4096 = 512 << 3 */
	assert_int_equal(devcfg_rd(f, 25, 1), 0);
	assert_int_equal(devcfg_rd(f, 26, 2), 8); /* min_io_size, blocks */
	assert_int_equal(devcfg_rd(f, 28, 4), 0);
	assert_int_equal(devcfg_rd(f, 34, 2), 1);
	assert_int_equal(devcfg_rd(f, 36, 4), 1U << 22); /* max_discard_sectors */
	assert_int_equal(devcfg_rd(f, 40, 4), 32);
	assert_int_equal(devcfg_rd(f, 44, 4), 8); /* discard alignment */
	assert_int_equal(devcfg_rd(f, 48, 4), 1U << 22);
	assert_int_equal(devcfg_rd(f, 52, 4), 32);
	assert_int_equal(devcfg_rd(f, 56, 1), 1);
	/* An access running past the 60 bytes, or after them, reads 0. */
	assert_int_equal(devcfg_rd(f, 58, 4), 0);
	assert_int_equal(devcfg_rd(f, 60, 4), 0);
	/* The image is registered for snapshots under its absolute path. */
	assert_non_null(f->vm.disks);
	assert_string_equal(f->vm.disks->cfg_key, "pci.0.3.0.path");
	assert_string_equal(f->vm.disks->id, "pci@0.3.0");
	assert_int_equal(f->vm.disks->path[0], '/');
	assert_true(f->vm.disks->fd >= 0);
}

static void test_config_options(void **state)
{
	struct fx f;
	char img[256], err[256];

	make_image(img, sizeof(img), 64 * KiB, 0);
	fx_start(&f, img,
		 (const char *const[]){ "sectorsize=4096/16384", "ro=true", "ser=DISK-1", NULL },
		 err, sizeof(err));
	if (!f.pd)
		fail_msg("%s", err);
	find_caps(&f);
	assert_int_equal(offered_features(&f) & 0xffffff, 1U << F_SEG_MAX | 1U << F_RO |
								  1U << F_BLK_SIZE | 1U << F_FLUSH |
								  1U << F_TOPOLOGY);
	assert_int_equal(devcfg_rd(&f, 0, 8), 128);
	assert_int_equal(devcfg_rd(&f, 20, 4), 4096);
	assert_int_equal(devcfg_rd(&f, 24, 1), 2);
	assert_int_equal(devcfg_rd(&f, 26, 2), 4);
	assert_int_equal(devcfg_rd(&f, 36, 4), 0);
	assert_int_equal(devcfg_rd(&f, 48, 4), 0);
	fx_stop(&f);

	/* discard=off: write-zeroes stays but may not unmap. */
	fx_start(&f, img, (const char *const[]){ "discard=off", NULL }, err, sizeof(err));
	if (!f.pd)
		fail_msg("%s", err);
	find_caps(&f);
	assert_int_equal(offered_features(&f) & (1U << F_DISCARD | 1U << F_WRITE_ZEROES),
			 1U << F_WRITE_ZEROES);
	assert_int_equal(devcfg_rd(&f, 56, 1), 0);
	fx_stop(&f);
	unlink(img);
}

static void test_read_write(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f;
	uint8_t *d = gpa(f, DATA_GPA, 64 * KiB), want[8192], got[8192];
	uint32_t len;

	/* Four sectors written from three scattered buffers (512 + 1024 + 512 bytes). */
	pattern(want, 2048, 1);
	memcpy(d + 0x3000, want, 512);
	memcpy(d + 0x1000, want + 512, 1024);
	memcpy(d + 0x8000, want + 1536, 512);
	put_hdr(f, 0, T_OUT, 10);
	len = run_chain(f,
			(struct seg[]){ { hdr_gpa(0), 16, false },
					{ DATA_GPA + 0x3000, 512, false },
					{ DATA_GPA + 0x1000, 1024, false },
					{ DATA_GPA + 0x8000, 512, false },
					{ hdr_gpa(0) + 16, 1, true } },
			5, false);
	assert_int_equal(status_of(f, 0), S_OK);
	assert_int_equal(len, 1);
	file_read(t->img, 10 * 512, got, 2048);
	assert_memory_equal(got, want, 2048);
	assert_true(file_all(t->img, 9 * 512, 512, 0x5A));
	assert_true(file_all(t->img, 14 * 512, 512, 0x5A));

	/* Read back into other pieces; the status shares the last buffer with data. */
	memset(d, 0, 64 * KiB);
	put_hdr(f, 0, T_IN, 10);
	len = run_chain(f,
			(struct seg[]){ { hdr_gpa(0), 8, false },
					{ hdr_gpa(0) + 8, 8, false },
					{ DATA_GPA + 0x2000, 1536, true },
					{ DATA_GPA + 0x6000, 513, true } },
			4, false);
	assert_int_equal(len, 2049);
	assert_int_equal(d[0x6000 + 512], S_OK);
	assert_memory_equal(d + 0x2000, want, 1536);
	assert_memory_equal(d + 0x6000, want + 1536, 512);

	/* The file's own contents come back through the device. */
	pattern(want, 8192, 2);
	file_write(t->img, IMG_SIZE - 8192, want, 8192);
	assert_int_equal(req(f, T_IN, IMG_SECTORS - 16, DATA_GPA, 8192, &len), S_OK);
	assert_int_equal(len, 8193);
	assert_memory_equal(d, want, 8192);
}

static void test_indirect(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f;
	uint8_t *d = gpa(f, DATA_GPA, 64 * KiB), want[4096], got[4096];

	assert_true(f->features & (1ULL << VIRTIO_F_INDIRECT_DESC));
	pattern(want, 4096, 3);
	memcpy(d, want, 4096);
	put_hdr(f, 0, T_OUT, 100);
	run_chain(f,
		  (struct seg[]){ { hdr_gpa(0), 16, false },
				  { DATA_GPA, 1024, false },
				  { DATA_GPA + 1024, 3072, false },
				  { hdr_gpa(0) + 16, 1, true } },
		  4, true);
	assert_int_equal(status_of(f, 0), S_OK);
	file_read(t->img, 100 * 512, got, 4096);
	assert_memory_equal(got, want, 4096);
	memset(d, 0, 4096);
	put_hdr(f, 0, T_IN, 100);
	assert_int_equal(run_chain(f,
				   (struct seg[]){ { hdr_gpa(0), 16, false },
						   { DATA_GPA, 4096, true },
						   { hdr_gpa(0) + 16, 1, true } },
				   3, true),
			 4097);
	assert_int_equal(status_of(f, 0), S_OK);
	assert_memory_equal(d, want, 4096);
}

static void test_flush_and_get_id(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f;
	uint8_t *d = gpa(f, DATA_GPA, 64);
	uint32_t len;

	assert_int_equal(req(f, T_FLUSH, 0, 0, 0, &len), S_OK);
	assert_int_equal(len, 1);
	memset(d, 0xFF, 64);
	assert_int_equal(req(f, T_GET_ID, 0, DATA_GPA, 20, &len), S_OK);
	assert_int_equal(len, 21);
	assert_memory_equal(d, "KHYVE-BLK-3.0\0\0\0\0\0\0\0", 20);
	/* A bigger buffer gets 20 bytes. */
	memset(d, 0xFF, 64);
	assert_int_equal(req(f, T_GET_ID, 0, DATA_GPA, 40, &len), S_OK);
	assert_int_equal(len, 21);
	assert_int_equal(d[20], 0xFF);
	/* Unknown request types. */
	assert_int_equal(req(f, 42, 0, 0, 0, NULL), S_UNSUPP);
	assert_int_equal(req(f, 10, 0, DATA_GPA, 512, NULL), S_UNSUPP); /* GET_LIFETIME */
}

static void test_serial_option(void **state)
{
	struct fx f;
	char img[256], err[256];
	uint8_t *d;

	make_image(img, sizeof(img), 64 * KiB, 0);
	fx_start(&f, img, (const char *const[]){ "serial=ABCDEFGHIJKLMNOPQRST", NULL }, err,
		 sizeof(err));
	if (!f.pd)
		fail_msg("%s", err);
	drv_init(&f, all_features());
	d = gpa(&f, DATA_GPA, 32);
	memset(d, 0, 32);
	assert_int_equal(req(&f, T_GET_ID, 0, DATA_GPA, 20, NULL), S_OK);
	assert_memory_equal(d, "ABCDEFGHIJKLMNOPQRST", 20);
	fx_stop(&f);
	unlink(img);
}

/* One segment request: header, segments, status. */
static uint8_t seg_req(struct fx *f, uint32_t type, const uint64_t *sec, const uint32_t *num,
		       const uint32_t *flags, unsigned n, uint32_t raw_len)
{
	uint8_t *d = gpa(f, DATA_GPA, 16ULL * 64);

	for (unsigned i = 0; i < n; i++) {
		memcpy(d + 16 * i, &sec[i], 8);
		memcpy(d + 16 * i + 8, &num[i], 4);
		memcpy(d + 16 * i + 12, &flags[i], 4);
	}
	put_hdr(f, 0, type, 0);
	run_chain(f,
		  (struct seg[]){ { hdr_gpa(0), 16, false },
				  { DATA_GPA, raw_len ? raw_len : 16 * n, false },
				  { hdr_gpa(0) + 16, 1, true } },
		  3, false);
	return status_of(f, 0);
}

static void test_discard_write_zeroes(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f;
	uint8_t *d = gpa(f, DATA_GPA + 0x10000, 4096);
	struct stat st;

	/* Two discard segments: the ranges read as zeros, the file keeps its size. */
	assert_int_equal(seg_req(f, T_DISCARD, (uint64_t[]){ 8, 64 }, (uint32_t[]){ 8, 16 },
				 (uint32_t[]){ 0, 0 }, 2, 0),
			 S_OK);
	assert_true(file_all(t->img, 8 * 512, 4096, 0));
	assert_true(file_all(t->img, 64 * 512, 8192, 0));
	assert_true(file_all(t->img, 16 * 512, 512, 0x5A));
	assert_true(file_all(t->img, 7 * 512, 512, 0x5A));
	assert_int_equal(stat(t->img, &st), 0);
	assert_int_equal(st.st_size, IMG_SIZE);
	/* The guest reads the zeros too. */
	memset(d, 0xFF, 4096);
	assert_int_equal(req(f, T_IN, 8, DATA_GPA + 0x10000, 4096, NULL), S_OK);
	for (unsigned i = 0; i < 4096; i++)
		assert_int_equal(d[i], 0);

	/* Write zeroes, with and without UNMAP, and an empty segment. */
	assert_int_equal(seg_req(f, T_WRITE_ZEROES, (uint64_t[]){ 200, 300, 400 },
				 (uint32_t[]){ 3, 5, 0 }, (uint32_t[]){ 1, 0, 0 }, 3, 0),
			 S_OK);
	assert_true(file_all(t->img, 200 * 512, 3 * 512, 0));
	assert_true(file_all(t->img, 300 * 512, 5 * 512, 0));
	assert_true(file_all(t->img, 203 * 512, 512, 0x5A));
	assert_true(file_all(t->img, 305 * 512, 512, 0x5A));
	assert_true(file_all(t->img, 400 * 512, 512, 0x5A));

	/* Refused, and nothing changed: all segments are checked first. */
	assert_int_equal(seg_req(f, T_DISCARD, (uint64_t[]){ 500, IMG_SECTORS - 1 },
				 (uint32_t[]){ 1, 2 }, (uint32_t[]){ 0, 0 }, 2, 0),
			 S_IOERR);
	assert_int_equal(seg_req(f, T_WRITE_ZEROES, (uint64_t[]){ 500, ~0ULL - 1 },
				 (uint32_t[]){ 1, 4 }, (uint32_t[]){ 0, 0 }, 2, 0),
			 S_IOERR);
	assert_int_equal(seg_req(f, T_DISCARD, (uint64_t[]){ 500 }, (uint32_t[]){ 1 },
				 (uint32_t[]){ 1 }, 1, 0),
			 S_UNSUPP); /* UNMAP on discard */
	assert_int_equal(seg_req(f, T_WRITE_ZEROES, (uint64_t[]){ 500 }, (uint32_t[]){ 1 },
				 (uint32_t[]){ 2 }, 1, 0),
			 S_UNSUPP); /* reserved flag */
	assert_int_equal(seg_req(f, T_DISCARD, (uint64_t[]){ 500 }, (uint32_t[]){ 1 },
				 (uint32_t[]){ 0 }, 1, 15),
			 S_IOERR); /* not 16 bytes */
	assert_int_equal(seg_req(f, T_DISCARD, (uint64_t[]){ 500 }, (uint32_t[]){ 1 << 23 },
				 (uint32_t[]){ 0 }, 1, 0),
			 S_IOERR); /* > max sectors */
	assert_int_equal(seg_req(f, T_DISCARD, (uint64_t[]){ 500 }, (uint32_t[]){ 1 },
				 (uint32_t[]){ 0 }, 1, 33 * 16),
			 S_IOERR);				     /* > max segs */
	assert_int_equal(req(f, T_DISCARD, 0, 0, 0, NULL), S_IOERR); /* no segment */
	assert_true(file_all(t->img, 500 * 512, 512, 0x5A));
	assert_true(file_all(t->img, IMG_SIZE - 512, 512, 0x5A));
}

/* nocache (O_DIRECT) and direct (O_DSYNC): unaligned guest buffers go through a copy. */
static void test_nocache(void **state)
{
	struct fx f;
	char img[256], err[256];
	uint8_t want[65536], got[65536], *d;

	make_image(img, sizeof(img), IMG_SIZE, 0x5A);
	fx_start(&f, img, (const char *const[]){ "nocache=true", "direct=true", NULL }, err,
		 sizeof(err));
	if (!f.pd) {
		unlink(img);
		skip(); /* a filesystem without O_DIRECT */
	}
	drv_init(&f, all_features());
	d = gpa(&f, DATA_GPA, 2 * 65536);
	/* Aligned: straight from guest memory. */
	pattern(want, 65536, 5);
	memcpy(d, want, 65536);
	assert_int_equal(req(&f, T_OUT, 128, DATA_GPA, 65536, NULL), S_OK);
	file_read(img, 128 * 512, got, 65536);
	assert_memory_equal(got, want, 65536);
	/* Odd addresses, in two pieces: refused by O_DIRECT, so bounced. */
	pattern(want, 1536, 6);
	memcpy(d + 1, want, 1536);
	put_hdr(&f, 0, T_OUT, 7);
	run_chain(&f,
		  (struct seg[]){ { hdr_gpa(0), 16, false },
				  { DATA_GPA + 1, 1024, false },
				  { DATA_GPA + 1025, 512, false },
				  { hdr_gpa(0) + 16, 1, true } },
		  4, false);
	assert_int_equal(status_of(&f, 0), S_OK);
	file_read(img, 7 * 512, got, 1536);
	assert_memory_equal(got, want, 1536);
	memset(d, 0, 4096);
	assert_int_equal(req(&f, T_IN, 7, DATA_GPA + 24, 1536, NULL), S_OK);
	assert_memory_equal(d + 24, want, 1536);
	/* Write zeroes through the same path. */
	assert_int_equal(seg_req(&f, T_WRITE_ZEROES, (uint64_t[]){ 7 }, (uint32_t[]){ 3 },
				 (uint32_t[]){ 0 }, 1, 0),
			 S_OK);
	assert_true(file_all(img, 7 * 512, 1536, 0));
	fx_stop(&f);
	unlink(img);
}

static void test_not_negotiated(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f;

	/* A driver that did not take DISCARD/WRITE_ZEROES gets UNSUPP for them. */
	drv_init(f, 1ULL << F_FLUSH);
	assert_int_equal(seg_req(f, T_DISCARD, (uint64_t[]){ 8 }, (uint32_t[]){ 8 },
				 (uint32_t[]){ 0 }, 1, 0),
			 S_UNSUPP);
	assert_int_equal(seg_req(f, T_WRITE_ZEROES, (uint64_t[]){ 8 }, (uint32_t[]){ 8 },
				 (uint32_t[]){ 0 }, 1, 0),
			 S_UNSUPP);
	assert_true(file_all(t->img, 8 * 512, 4096, 0x5A));
	/* Without FLUSH the device is write-through; writes still work. */
	drv_init(f, 0);
	memset(gpa(f, DATA_GPA, 512), 0x11, 512);
	assert_int_equal(req(f, T_OUT, 3, DATA_GPA, 512, NULL), S_OK);
	assert_true(file_all(t->img, 3 * 512, 512, 0x11));
}

static void test_read_only(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f;
	uint8_t *d = gpa(f, DATA_GPA, 4096);

	assert_true(f->features & (1ULL << F_RO));
	memset(d, 0x77, 4096);
	assert_int_equal(req(f, T_OUT, 0, DATA_GPA, 4096, NULL), S_IOERR);
	assert_int_equal(seg_req(f, T_DISCARD, (uint64_t[]){ 0 }, (uint32_t[]){ 8 },
				 (uint32_t[]){ 0 }, 1, 0),
			 S_UNSUPP);
	assert_int_equal(seg_req(f, T_WRITE_ZEROES, (uint64_t[]){ 0 }, (uint32_t[]){ 8 },
				 (uint32_t[]){ 0 }, 1, 0),
			 S_UNSUPP);
	assert_true(file_all(t->img, 0, IMG_SIZE, 0x5A));
	/* Reads and flushes work. */
	assert_int_equal(req(f, T_IN, 0, DATA_GPA, 4096, NULL), S_OK);
	assert_int_equal(d[0], 0x5A);
	assert_int_equal(req(f, T_FLUSH, 0, 0, 0, NULL), S_OK);
}

static void test_out_of_range(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f;
	uint8_t *d = gpa(f, DATA_GPA, 8192);

	memset(d, 0x99, 8192);
	assert_int_equal(req(f, T_OUT, IMG_SECTORS, DATA_GPA, 512, NULL), S_IOERR);
	assert_int_equal(req(f, T_OUT, IMG_SECTORS - 1, DATA_GPA, 1024, NULL), S_IOERR);
	assert_int_equal(req(f, T_OUT, ~0ULL - 1, DATA_GPA, 1024, NULL), S_IOERR);
	assert_int_equal(req(f, T_OUT, 1ULL << 55, DATA_GPA, 512, NULL), S_IOERR);
	assert_int_equal(req(f, T_IN, IMG_SECTORS, DATA_GPA, 512, NULL), S_IOERR);
	assert_int_equal(req(f, T_IN, ~0ULL, DATA_GPA, 8192, NULL), S_IOERR);
	assert_true(file_all(t->img, 0, IMG_SIZE, 0x5A));
	/* The last sector itself is fine. */
	assert_int_equal(req(f, T_OUT, IMG_SECTORS - 1, DATA_GPA, 512, NULL), S_OK);
	assert_true(file_all(t->img, IMG_SIZE - 512, 512, 0x99));
	/* A zero-length transfer at the end is in range. */
	assert_int_equal(req(f, T_IN, IMG_SECTORS, 0, 0, NULL), S_OK);
}

static void test_malformed(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f;
	uint8_t *d = gpa(f, DATA_GPA, 4096);

	memset(d, 0x33, 4096);
	/* Header too short (8 bytes), status present: IOERR. */
	put_hdr(f, 0, T_OUT, 0);
	run_chain(f, (struct seg[]){ { hdr_gpa(0), 8, false }, { hdr_gpa(0) + 16, 1, true } }, 2,
		  false);
	assert_int_equal(status_of(f, 0), S_IOERR);
	/* IN whose data is readable; OUT whose data is writable. */
	put_hdr(f, 0, T_IN, 0);
	run_chain(f,
		  (struct seg[]){ { hdr_gpa(0), 16, false },
				  { DATA_GPA, 512, false },
				  { hdr_gpa(0) + 16, 1, true } },
		  3, false);
	assert_int_equal(status_of(f, 0), S_IOERR);
	put_hdr(f, 0, T_OUT, 0);
	run_chain(f,
		  (struct seg[]){ { hdr_gpa(0), 16, false },
				  { DATA_GPA, 512, true },
				  { hdr_gpa(0) + 16, 1, true } },
		  3, false);
	assert_int_equal(status_of(f, 0), S_IOERR);
	assert_int_equal(d[0], 0x33);
	/* GET_ID with readable bytes after the header; DISCARD with a writable byte before the
	 * status: IOERR, the id buffer and the image untouched. */
	put_hdr(f, 0, T_GET_ID, 0);
	run_chain(f,
		  (struct seg[]){ { hdr_gpa(0), 16, false },
				  { DATA_GPA, 20, false },
				  { DATA_GPA + 512, 20, true },
				  { hdr_gpa(0) + 16, 1, true } },
		  4, false);
	assert_int_equal(status_of(f, 0), S_IOERR);
	assert_int_equal(d[512], 0x33);
	memset(d, 0, 16);
	memcpy(d + 8, (uint32_t[]){ 8 }, 4);
	put_hdr(f, 0, T_DISCARD, 0);
	run_chain(f,
		  (struct seg[]){ { hdr_gpa(0), 16, false },
				  { DATA_GPA, 16, false },
				  { DATA_GPA + 1024, 4, true },
				  { hdr_gpa(0) + 16, 1, true } },
		  4, false);
	assert_int_equal(status_of(f, 0), S_IOERR);
	assert_true(file_all(t->img, 0, 4096, 0x5A));
	memset(d, 0x33, 4096);
	/* Data that is not whole sectors. */
	assert_int_equal(req(f, T_OUT, 0, DATA_GPA, 100, NULL), S_IOERR);
	assert_int_equal(req(f, T_IN, 0, DATA_GPA, 1000, NULL), S_IOERR);
	assert_true(file_all(t->img, 0, 4096, 0x5A));
	assert_false(dev_status(f) & VIRTIO_STATUS_NEEDS_RESET);
	/* No writable byte at all: nowhere to put a status, so the device wants a reset. */
	put_hdr(f, 0, T_OUT, 0);
	run_chain(f, (struct seg[]){ { hdr_gpa(0), 16, false }, { DATA_GPA, 512, false } }, 2,
		  false);
	assert_true(dev_status(f) & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(file_all(t->img, 0, 4096, 0x5A));
	/* A reset brings it back. */
	drv_init(f, all_features());
	assert_int_equal(req(f, T_IN, 0, DATA_GPA, 512, NULL), S_OK);
}

/* Many writes in flight; pause must return with every popped one completed. */
#define NBURST 64
#define BURST_LEN (IMG_SIZE / NBURST) /* a burst covers the image once, no overlap */

static uint16_t burst_head[NBURST];

static void submit_burst(struct fx *f, unsigned seed)
{
	for (unsigned r = 0; r < NBURST; r++) {
		uint64_t data = DATA_GPA + (uint64_t)r * BURST_LEN;

		pattern(gpa(f, data, BURST_LEN), BURST_LEN, seed + r);
		put_hdr(f, r, T_OUT, (uint64_t)r * (BURST_LEN / 512));
		burst_head[r] = put_chain(f,
					  (struct seg[]){ { hdr_gpa(r), 16, false },
							  { data, BURST_LEN, false },
							  { hdr_gpa(r) + 16, 1, true } },
					  3);
		publish(f, burst_head[r]);
	}
	kick(f);
}

static unsigned burst_req(uint32_t head)
{
	for (unsigned r = 0; r < NBURST; r++)
		if (burst_head[r] == head)
			return r;
	fail_msg("used ring names head %u, which was not submitted", head);
	return 0;
}

static struct virtqueue *vq0(struct fx *f)
{
	struct virtio_dev *vd = f->pd->priv;

	return &vd->vq[0];
}

static void test_pause_drains(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f;
	struct dev *d = &f->pd->dev;
	struct timespec ts = { 0, 2000000 };
	uint8_t *want = malloc(BURST_LEN), *got = malloc(BURST_LEN);
	uint16_t seen;

	for (unsigned round = 0; round < 8; round++) {
		submit_burst(f, round * NBURST);
		assert_int_equal(d->ops->pause(d), 0);
		/* Everything the device took is back in the used ring, statuses written. */
		seen = used_idx(f);
		assert_int_equal(vq0(f)->last_avail, vq0(f)->used_idx);
		assert_int_equal(vq0(f)->used_idx, seen);
		for (uint16_t i = f->used_seen; i != seen; i++) {
			uint32_t id, len;

			used_elem(f, i, &id, &len);
			assert_int_equal(len, 1);
			assert_int_equal(status_of(f, burst_req(id)), S_OK);
		}
		/* Paused: a kick takes nothing (a one-sided check: it cannot fail by luck). */
		kick(f);
		nanosleep(&ts, NULL);
		assert_int_equal(used_idx(f), seen);
		assert_int_equal(vq0(f)->last_avail, seen);
		assert_int_equal(d->ops->resume(d), 0);
		wait_used(f, (uint16_t)(f->used_seen + NBURST));
		f->used_seen = (uint16_t)(f->used_seen + NBURST);
		for (unsigned r = 0; r < NBURST; r++)
			assert_int_equal(status_of(f, r), S_OK);
	}
	/* The image holds the last round's data. */
	for (unsigned r = 0; r < NBURST; r++) {
		pattern(want, BURST_LEN, 7 * NBURST + r);
		file_read(t->img, (uint64_t)r * BURST_LEN, got, BURST_LEN);
		assert_memory_equal(got, want, BURST_LEN);
	}
	free(want);
	free(got);
}

/* ---- snapshots ---- */

/* Pause and save; the device stays paused unless @resume. */
static void save_dev(struct fx *f, struct sstream *s, bool resume)
{
	struct dev *d = &f->pd->dev;

	ss_init_save(s);
	assert_int_equal(d->ops->pause(d), 0);
	assert_int_equal(d->ops->save(d, s), 0);
	if (resume)
		assert_int_equal(d->ops->resume(d), 0);
}

static int load_dev(struct fx *f, const uint8_t *buf, size_t len, char *msg, size_t msglen)
{
	struct dev *d = &f->pd->dev;
	struct sstream s;
	int ret;

	ss_init_load(&s, buf, len);
	ret = d->ops->load(d, &s, d->ops->version);
	if (msg)
		snprintf(msg, msglen, "%s", s.msg);
	ss_free(&s);
	return ret;
}

static void copy_ram(struct fx *dst, struct fx *src)
{
	memcpy(gpa(dst, 0, RAM_SIZE), gpa(src, 0, RAM_SIZE), RAM_SIZE);
	dst->common = src->common;
	dst->notify = src->notify;
	dst->isr = src->isr;
	dst->devcfg = src->devcfg;
	dst->notify_mult = src->notify_mult;
	dst->notify_off = src->notify_off;
	dst->features = src->features;
	dst->avail_idx = src->avail_idx;
	dst->used_seen = src->used_seen;
	dst->next_desc = src->next_desc;
}

static void test_snapshot(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f, g;
	struct sstream s1, s2;
	char err[256], msg[300];
	uint8_t *d;

	memset(gpa(f, DATA_GPA, 512), 0x42, 512);
	assert_int_equal(req(f, T_OUT, 20, DATA_GPA, 512, NULL), S_OK);
	save_dev(f, &s1, false); /* paused: its guest RAM holds still for copy_ram */

	/* A fresh device on the same image, as a restore builds it. */
	fx_start(&g, t->img, NULL, err, sizeof(err));
	if (!g.pd)
		fail_msg("%s", err);
	copy_ram(&g, f);
	assert_int_equal(load_dev(&g, s1.buf, s1.len, NULL, 0), 0);
	assert_int_equal(g.pd->dev.ops->resume(&g.pd->dev), 0);
	save_dev(&g, &s2, true);
	assert_int_equal(s1.len, s2.len);
	assert_memory_equal(s1.buf, s2.buf, s1.len);
	ss_free(&s2);
	/* The restored device carries on where the first one stopped. */
	d = gpa(&g, DATA_GPA, 512);
	memset(d, 0, 512);
	assert_int_equal(req(&g, T_IN, 20, DATA_GPA, 512, NULL), S_OK);
	assert_int_equal(d[0], 0x42);
	assert_int_equal(d[511], 0x42);

	/* Truncated or overlong streams are refused. */
	for (size_t n = 0; n < s1.len; n += 5)
		assert_int_not_equal(load_dev(&g, s1.buf, n, NULL, 0), 0);
	uint8_t *big = calloc(1, s1.len + 1);

	memcpy(big, s1.buf, s1.len);
	assert_int_not_equal(load_dev(&g, big, s1.len + 1, NULL, 0), 0);
	free(big);
	fx_stop(&g);

	/* Another image of another size: refused, naming both sizes. */
	char img2[256];

	make_image(img2, sizeof(img2), 2 * IMG_SIZE, 0);
	fx_start(&g, img2, NULL, err, sizeof(err));
	if (!g.pd)
		fail_msg("%s", err);
	copy_ram(&g, f);
	assert_int_not_equal(load_dev(&g, s1.buf, s1.len, msg, sizeof(msg)), 0);
	if (!strstr(msg, "1048576") || !strstr(msg, "2097152"))
		fail_msg("capacity message \"%s\" does not give both sizes", msg);
	fx_stop(&g);
	/* Same size, another file: accepted (a clone). */
	assert_int_equal(truncate(img2, IMG_SIZE), 0);
	fx_start(&g, img2, NULL, err, sizeof(err));
	if (!g.pd)
		fail_msg("%s", err);
	copy_ram(&g, f);
	assert_int_equal(load_dev(&g, s1.buf, s1.len, NULL, 0), 0);
	/*
	 * A saved device is drained: a file claiming requests in flight is refused (they would
	 * never complete).  The count follows capacity (sectors), ro and the 20-byte serial.
	 */
	{
		uint8_t *bad = malloc(s1.len);
		const uint64_t cap = IMG_SECTORS;
		size_t at = 0, found = 0;

		for (size_t o = 0; o + 8 + 1 + 20 + 4 <= s1.len; o++) {
			if (memcmp(s1.buf + o, &cap, 8) || s1.buf[o + 8] != 0)
				continue;
			at = o + 8 + 1 + 20;
			found++;
		}
		assert_int_equal(found, 1);
		assert_memory_equal(s1.buf + at, (uint8_t[4]){ 0 }, 4);
		memcpy(bad, s1.buf, s1.len);
		bad[at] = 3;
		assert_int_not_equal(load_dev(&g, bad, s1.len, msg, sizeof(msg)), 0);
		if (!strstr(msg, "3 requests in flight"))
			fail_msg("in-flight message \"%s\"", msg);
		/*
		 * Before the capacity: features, logical and physical sector size; after it
		 * the ro flag.  Each differing from the device is refused with its own words.
		 */
		{
			static const struct {
				int off; /* from the capacity */
				uint8_t val;
				const char *why;
			} fld[] = {
				{ -12, 0x40, "offered features" },
				{ -7, 0x10, "sectorsize=4096/4096, this one 512/4096" },
				{ -3, 0x20, "sectorsize=512/8192, this one 512/4096" },
				{ 8, 1,
				  "the snapshot's disk was read-only, this one is read-write" },
			};
			size_t cap_at = at - 8 - 1 - 20;

			for (size_t i = 0; i < sizeof(fld) / sizeof(fld[0]); i++) {
				memcpy(bad, s1.buf, s1.len);
				bad[cap_at + fld[i].off] = fld[i].val;
				assert_int_not_equal(load_dev(&g, bad, s1.len, msg, sizeof(msg)),
						     0);
				if (!strstr(msg, fld[i].why))
					fail_msg("field %d: message \"%s\" lacks \"%s\"",
						 fld[i].off, msg, fld[i].why);
			}
		}
		free(bad);
	}
	fx_stop(&g);
	/* Read-only or another serial: refused. */
	fx_start(&g, img2, (const char *const[]){ "ro=true", NULL }, err, sizeof(err));
	assert_non_null(g.pd);
	copy_ram(&g, f);
	assert_int_not_equal(load_dev(&g, s1.buf, s1.len, msg, sizeof(msg)), 0);
	/* The transport may see it first: the driver took features ro withdraws. */
	if (!strstr(msg, "read-only") && !strstr(msg, "features"))
		fail_msg("ro message \"%s\"", msg);
	fx_stop(&g);
	fx_start(&g, img2, (const char *const[]){ "ser=OTHER", NULL }, err, sizeof(err));
	assert_non_null(g.pd);
	copy_ram(&g, f);
	assert_int_not_equal(load_dev(&g, s1.buf, s1.len, msg, sizeof(msg)), 0);
	if (!strstr(msg, "OTHER"))
		fail_msg("serial message \"%s\"", msg);
	fx_stop(&g);
	unlink(img2);
	ss_free(&s1);
}

/* ---- option errors ---- */

static void expect_error(const char *path, const char *const *keys, const char *want)
{
	struct fx f;
	char err[256] = "";

	fx_start(&f, path, keys, err, sizeof(err));
	if (f.pd)
		fail_msg("virtio-blk accepted options it should refuse (want \"%s\")", want);
	if (!strstr(err, want))
		fail_msg("error \"%s\" does not say \"%s\"", err, want);
	if (!strstr(err, "pci.0.3.0"))
		fail_msg("error \"%s\" does not name the slot", err);
	fx_stop(&f);
}

static void test_option_errors(void **state)
{
	char img[256], odd[256], missing[300];

	make_image(img, sizeof(img), 64 * KiB, 0);
	make_image(odd, sizeof(odd), 64 * KiB + 512, 0);
	snprintf(missing, sizeof(missing), "%s.nonexistent", img);
	expect_error(NULL, NULL, "missing disk image");
	expect_error(missing, NULL, "No such file or directory");
	expect_error(missing, NULL, "path=");
	expect_error("/", NULL, "not a regular file or block device");
	expect_error(img, (const char *const[]){ "sectorsize=1000", NULL }, "sectorsize=1000");
	expect_error(img, (const char *const[]){ "sectorsize=8192", NULL }, "512 to 4096");
	expect_error(img, (const char *const[]){ "sectorsize=256", NULL }, "512 to 4096");
	expect_error(img, (const char *const[]){ "sectorsize=4096/512", NULL }, "physical");
	expect_error(img, (const char *const[]){ "sectorsize=abc", NULL }, "sectorsize=abc");
	expect_error(img, (const char *const[]){ "sectorsize=512/", NULL }, "LOGICAL/PHYSICAL");
	expect_error(odd, (const char *const[]){ "sectorsize=4096", NULL },
		     "not a multiple of the 4096-byte sector size");
	expect_error(img, (const char *const[]){ "ser=ABCDEFGHIJKLMNOPQRSTU", NULL }, "at most 20");
	expect_error(img, (const char *const[]){ "ser=A", "serial=B", NULL }, "disagree");
	expect_error(img, (const char *const[]){ "discard=maybe", NULL }, "discard=maybe");
	expect_error(img, (const char *const[]){ "ro=perhaps", NULL }, "ro=perhaps");
	/* 64 KiB + 512 is fine with 512-byte sectors. */
	struct fx f;
	char err[256];

	fx_start(&f, odd, NULL, err, sizeof(err));
	assert_non_null(f.pd);
	fx_stop(&f);
	unlink(img);
	unlink(odd);
}

/* The -s name goes through pci.c's emulation table. */
static void test_pci_table(void **state)
{
	assert_ptr_equal(pci_emul_find("virtio-blk"), &pci_emul_virtio_blk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_config, setup, teardown),
		cmocka_unit_test(test_config_options),
		cmocka_unit_test_setup_teardown(test_read_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_and_get_id, setup, teardown),
		cmocka_unit_test(test_serial_option),
		cmocka_unit_test_setup_teardown(test_discard_write_zeroes, setup, teardown),
		cmocka_unit_test(test_nocache),
		cmocka_unit_test_setup_teardown(test_not_negotiated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup_ro, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_drains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
		cmocka_unit_test(test_option_errors),
		cmocka_unit_test(test_pci_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
