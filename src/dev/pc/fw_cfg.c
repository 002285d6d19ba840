// SPDX-License-Identifier: BSD-2-Clause
/* The fw_cfg interface (see fw_cfg.h). */
#include "dev/pc/fw_cfg.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev/pc/bootrom.h"
#include "sstream.h"
#include "vm.h"

#define FW_CFG_KEY_MASK 0xBFFF /* bit 14 is the old write channel: ignored */
#define DMA_CHUNK 4096
#define DMA_DESC_LEN 16

static const char dma_signature[8] = "QEMU CFG";

struct fw_item {
	uint16_t key;
	char name[FW_CFG_NAME_LEN]; /* "" for the fixed items */
	uint32_t len;
	uint8_t *data;
	/* A file the guest may write (fw_cfg_add_file_writable); not part of the snapshot. */
	fw_cfg_write_fn write;
	void *opaque;
};

struct fw_cfg {
	struct dev dev;
	struct vm *vm;
	pthread_mutex_t lock;
	struct fw_item items[FW_CFG_MAX_ITEMS];
	unsigned n;
	uint16_t next_file;
	/* The guest's position: the selected item (cur < 0: none) and the offset in it. */
	int cur;
	uint16_t sel;
	uint32_t off;
	uint64_t dma_addr;
};

static uint32_t be32_get(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void be32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static int find_item(const struct fw_item *items, unsigned n, uint16_t key)
{
	for (unsigned i = 0; i < n; i++)
		if (items[i].key == key)
			return (int)i;
	return -1;
}

/* ---- the guest's side ---- */

static void fw_select(struct fw_cfg *fc, uint16_t key)
{
	fc->sel = key & FW_CFG_KEY_MASK;
	fc->cur = find_item(fc->items, fc->n, fc->sel);
	fc->off = 0;
}

static uint8_t fw_read_byte(struct fw_cfg *fc)
{
	const struct fw_item *it;

	if (fc->cur < 0)
		return 0;
	it = &fc->items[fc->cur];
	return fc->off < it->len ? it->data[fc->off++] : 0;
}

/*
 * Put @len bytes (@src, or zeros when NULL) at guest address @gpa.  The guest chose @gpa and
 * @len: both are checked against guest RAM (and the BIOS area's PAM state) piece by piece.
 */
static bool dma_put(struct fw_cfg *fc, uint64_t gpa, const uint8_t *src, uint64_t len)
{
	static const uint8_t zeros[DMA_CHUNK];

	while (len) {
		uint64_t n = len < DMA_CHUNK ? len : DMA_CHUNK;

		if (gpa + n < gpa || !vm_gpa(fc->vm, gpa, n) ||
		    !bootrom_dma_write(fc->vm, gpa, src ? src : zeros, n))
			return false;
		gpa += n;
		len -= n;
		if (src)
			src += n;
	}
	return true;
}

/*
 * The guest writes @length bytes from @addr into the selected item at the current offset:
 * only into a writable file and only inside it (QEMU's rule; SeaBIOS and OVMF write the
 * loader's WRITE_POINTER values so).  The owner hears of it once the bytes are in.
 */
static uint32_t dma_write(struct fw_cfg *fc, uint32_t length, uint64_t addr)
{
	struct fw_item *it = fc->cur >= 0 ? &fc->items[fc->cur] : NULL;
	uint32_t done = 0;

	if (!it || !it->write || fc->off > it->len || length > it->len - fc->off)
		return FW_CFG_DMA_ERROR;
	while (done < length) {
		uint32_t n = length - done < DMA_CHUNK ? length - done : DMA_CHUNK;
		const uint8_t *src = addr + done >= addr ? vm_gpa(fc->vm, addr + done, n) : NULL;

		if (!src)
			return FW_CFG_DMA_ERROR;
		memcpy(it->data + fc->off, src, n);
		fc->off += n;
		done += n;
	}
	it->write(it->opaque, it->data, it->len);
	return 0;
}

/* Move up to @length bytes of the selected item; returns the control word to write back. */
static uint32_t dma_run(struct fw_cfg *fc, uint32_t control, uint32_t length, uint64_t addr)
{
	bool read = control & FW_CFG_DMA_READ, write = !read && (control & FW_CFG_DMA_WRITE);
	bool skip = !read && !write && (control & FW_CFG_DMA_SKIP);

	if (control & FW_CFG_DMA_SELECT)
		fw_select(fc, (uint16_t)(control >> 16));
	if (!read && !write && !skip)
		return 0;
	if (write)
		return dma_write(fc, length, addr);
	while (length) {
		const struct fw_item *it = fc->cur >= 0 ? &fc->items[fc->cur] : NULL;
		uint32_t n = length;

		if (!it || fc->off >= it->len) {
			/* Past the end (or nothing selected): a read gets zeros. */
			if (read && !dma_put(fc, addr, NULL, n))
				return FW_CFG_DMA_ERROR;
		} else {
			if (n > it->len - fc->off)
				n = it->len - fc->off;
			if (read && !dma_put(fc, addr, it->data + fc->off, n))
				return FW_CFG_DMA_ERROR;
			fc->off += n;
		}
		addr += n;
		length -= n;
	}
	return 0;
}

static void dma_transfer(struct fw_cfg *fc)
{
	uint64_t desc = fc->dma_addr, addr;
	uint8_t *d = vm_gpa(fc->vm, desc, DMA_DESC_LEN);
	uint32_t control, length;

	fc->dma_addr = 0; /* the next request starts from a fresh address */
	if (!d)
		return; /* no descriptor in RAM: nowhere to report anything either */
	control = be32_get(d);
	length = be32_get(d + 4);
	addr = (uint64_t)be32_get(d + 8) << 32 | be32_get(d + 12);
	control = dma_run(fc, control, length, addr);
	/* The transfer may have written over the descriptor: find it again. */
	d = vm_gpa(fc->vm, desc, DMA_DESC_LEN);
	if (d)
		be32_put(d, control);
}

static void dma_io(struct fw_cfg *fc, unsigned off, uint8_t *data, unsigned size, bool is_write)
{
	if (!is_write) {
		for (unsigned i = 0; i < size; i++)
			data[i] = off + i < 8 ? (uint8_t)dma_signature[off + i] : 0;
		return;
	}
	if (size == 4 && off == 0) {
		fc->dma_addr = (uint64_t)be32_get(data) << 32;
	} else if (size == 4 && off == 4) {
		fc->dma_addr |= be32_get(data);
		dma_transfer(fc);
	} else if (size == 8 && off == 0) {
		fc->dma_addr = (uint64_t)be32_get(data) << 32 | be32_get(data + 4);
		dma_transfer(fc);
	}
}

void fw_cfg_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct fw_cfg *fc = opaque;
	uint8_t *b = data;

	pthread_mutex_lock(&fc->lock);
	if (off >= FW_CFG_PORT_DMA - FW_CFG_PORT_SEL && off < FW_CFG_PORT_LEN) {
		dma_io(fc, (unsigned)off - (FW_CFG_PORT_DMA - FW_CFG_PORT_SEL), b, size, is_write);
	} else if (off == 0 && size == 2 && is_write) {
		fw_select(fc, (uint16_t)(b[0] | b[1] << 8));
	} else if (off <= 1 && size == 1 && !is_write) {
		b[0] = fw_read_byte(fc);
	} else if (!is_write) {
		memset(b, 0, size); /* the selector reads 0; data writes are ignored */
	}
	pthread_mutex_unlock(&fc->lock);
}

/* ---- items ---- */

static int fw_add(struct fw_cfg *fc, uint16_t key, const char *name, const void *data, uint32_t len)
{
	struct fw_item *it;
	uint8_t *copy;

	if (find_item(fc->items, fc->n, key) >= 0)
		return -EEXIST;
	if (fc->n >= FW_CFG_MAX_ITEMS)
		return -ENOSPC;
	copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	if (len)
		memcpy(copy, data, len);
	it = &fc->items[fc->n++];
	it->key = key;
	snprintf(it->name, sizeof(it->name), "%s", name ? name : "");
	it->len = len;
	it->data = copy;
	return 0;
}

int fw_cfg_add_item(struct fw_cfg *fc, uint16_t key, const void *data, uint32_t len)
{
	int ret;

	if ((key & FW_CFG_KEY_MASK) != key || key == FW_CFG_FILE_DIR ||
	    ((key & ~FW_CFG_ARCH_LOCAL) >= FW_CFG_FILE_FIRST))
		return -EINVAL;
	pthread_mutex_lock(&fc->lock);
	ret = fw_add(fc, key, NULL, data, len);
	pthread_mutex_unlock(&fc->lock);
	return ret;
}

/* The directory: be32 count, then { be32 size, be16 key, be16 0, name[56] } per file. */
static int fw_rebuild_dir(struct fw_cfg *fc)
{
	unsigned nfiles = 0, k = 0;
	uint8_t *dir;
	int d = find_item(fc->items, fc->n, FW_CFG_FILE_DIR);

	for (unsigned i = 0; i < fc->n; i++)
		nfiles += fc->items[i].name[0] != '\0';
	dir = calloc(1, 4 + 64 * (size_t)nfiles);
	if (!dir)
		return -ENOMEM;
	be32_put(dir, nfiles);
	for (unsigned i = 0; i < fc->n; i++) {
		const struct fw_item *it = &fc->items[i];
		uint8_t *e = dir + 4 + 64 * k;

		if (!it->name[0])
			continue;
		be32_put(e, it->len);
		e[4] = (uint8_t)(it->key >> 8);
		e[5] = (uint8_t)it->key;
		memcpy(e + 8, it->name, FW_CFG_NAME_LEN);
		k++;
	}
	if (d < 0) {
		int ret = fw_add(fc, FW_CFG_FILE_DIR, NULL, NULL, 0);

		if (ret) {
			free(dir);
			return ret;
		}
		d = (int)fc->n - 1;
	}
	free(fc->items[d].data);
	fc->items[d].data = dir;
	fc->items[d].len = 4 + 64 * nfiles;
	return 0;
}

static int fw_add_file(struct fw_cfg *fc, const char *name, const void *data, uint32_t len,
		       fw_cfg_write_fn fn, void *opaque)
{
	int ret = 0;

	if (!name[0] || strlen(name) >= FW_CFG_NAME_LEN)
		return -EINVAL;
	pthread_mutex_lock(&fc->lock);
	for (unsigned i = 0; i < fc->n && !ret; i++)
		if (!strcmp(fc->items[i].name, name))
			ret = -EEXIST;
	/* One place stays free for the directory. */
	if (!ret && fc->n + 1 >= FW_CFG_MAX_ITEMS)
		ret = -ENOSPC;
	if (!ret)
		ret = fw_add(fc, fc->next_file, name, data, len);
	if (!ret) {
		fc->items[fc->n - 1].write = fn;
		fc->items[fc->n - 1].opaque = opaque;
		fc->next_file++;
		ret = fw_rebuild_dir(fc);
	}
	pthread_mutex_unlock(&fc->lock);
	return ret;
}

int fw_cfg_add_file(struct fw_cfg *fc, const char *name, const void *data, uint32_t len)
{
	return fw_add_file(fc, name, data, len, NULL, NULL);
}

int fw_cfg_add_file_writable(struct fw_cfg *fc, const char *name, const void *data, uint32_t len,
			     fw_cfg_write_fn fn, void *opaque)
{
	return fn ? fw_add_file(fc, name, data, len, fn, opaque) : -EINVAL;
}

/* ---- snapshot ---- */

struct fw_state {
	uint32_t n;
	struct fw_item items[FW_CFG_MAX_ITEMS];
	uint16_t next_file, sel;
	bool selected;
	uint32_t off;
	uint64_t dma_addr;
};

static void fw_state_free(struct fw_state *st)
{
	for (unsigned i = 0; i < st->n && i < FW_CFG_MAX_ITEMS; i++)
		free(st->items[i].data);
}

/* Items as they are saved; on load each is checked as it is read. */
static void fw_state_io(struct sstream *s, struct fw_state *st)
{
	uint64_t total = 0;

	ss_u32(s, &st->n);
	ss_check_max(s, st->n, FW_CFG_MAX_ITEMS, "fw_cfg: item count");
	for (unsigned i = 0; i < st->n && !ss_error(s); i++) {
		struct fw_item *it = &st->items[i];

		ss_u16(s, &it->key);
		ss_bytes(s, it->name, sizeof(it->name));
		ss_u32(s, &it->len);
		total += it->len;
		ss_check_max(s, total, FW_CFG_MAX_TOTAL, "fw_cfg: bytes of all items");
		if (s->loading && !ss_error(s)) {
			if (memchr(it->name, 0, sizeof(it->name)) == NULL)
				ss_fail(s, -EINVAL, "fw_cfg: item %u has an unterminated name", i);
			else if (find_item(st->items, i, it->key) >= 0)
				ss_fail(s, -EINVAL, "fw_cfg: key 0x%x appears twice", it->key);
			else if (!(it->data = malloc(it->len ? it->len : 1)))
				ss_fail(s, -ENOMEM, "fw_cfg: out of memory");
		}
		if (!ss_error(s))
			ss_bytes(s, it->data, it->len);
	}
	ss_u16(s, &st->next_file);
	ss_u16(s, &st->sel);
	ss_bool(s, &st->selected);
	ss_u32(s, &st->off);
	ss_u64(s, &st->dma_addr);
}

static int fw_cfg_save(struct dev *d, struct sstream *s)
{
	struct fw_cfg *fc = container_of(d, struct fw_cfg, dev);
	struct fw_state *st = malloc(sizeof(*st));

	if (!st)
		return ss_fail(s, -ENOMEM, "fw_cfg: out of memory");
	pthread_mutex_lock(&fc->lock);
	st->n = fc->n;
	memcpy(st->items, fc->items, fc->n * sizeof(fc->items[0]));
	st->next_file = fc->next_file;
	st->sel = fc->sel;
	st->selected = fc->cur >= 0;
	st->off = fc->off;
	st->dma_addr = fc->dma_addr;
	fw_state_io(s, st);
	pthread_mutex_unlock(&fc->lock);
	free(st);
	return ss_error(s);
}

static int fw_cfg_load(struct dev *d, struct sstream *s, unsigned version)
{
	struct fw_cfg *fc = container_of(d, struct fw_cfg, dev);
	struct fw_state *st = calloc(1, sizeof(*st));
	int cur = -1, ret;

	if (!st)
		return ss_fail(s, -ENOMEM, "fw_cfg: out of memory");
	fw_state_io(s, st);
	if (!ss_error(s)) {
		cur = find_item(st->items, st->n, st->sel);
		if (st->selected != (cur >= 0))
			ss_fail(s, -EINVAL, "fw_cfg: selected key 0x%x does not match the items",
				st->sel);
		else if (cur >= 0 && st->off > st->items[cur].len)
			ss_fail(s, -EINVAL, "fw_cfg: offset %u is past item 0x%x (%u bytes)",
				st->off, st->sel, st->items[cur].len);
		else if (st->off && cur < 0)
			ss_fail(s, -EINVAL, "fw_cfg: offset %u with no item selected", st->off);
	}
	ret = ss_finish(s);
	if (ret) {
		fw_state_free(st);
		free(st);
		return ret;
	}
	pthread_mutex_lock(&fc->lock);
	/*
	 * Writability is this VM's, not the file's: a saved file stays writable when the VM
	 * being restored made one of that name writable (its owner already has its value
	 * from its own state), and no saved file becomes writable otherwise.
	 */
	for (unsigned i = 0; i < st->n; i++) {
		st->items[i].write = NULL;
		for (unsigned j = 0; j < fc->n && st->items[i].name[0]; j++)
			if (fc->items[j].write && !strcmp(fc->items[j].name, st->items[i].name) &&
			    fc->items[j].len == st->items[i].len) {
				st->items[i].write = fc->items[j].write;
				st->items[i].opaque = fc->items[j].opaque;
			}
	}
	for (unsigned i = 0; i < fc->n; i++)
		free(fc->items[i].data);
	memcpy(fc->items, st->items, st->n * sizeof(st->items[0]));
	fc->n = st->n;
	fc->next_file = st->next_file;
	fc->sel = st->sel;
	fc->cur = cur;
	fc->off = st->off;
	fc->dma_addr = st->dma_addr;
	pthread_mutex_unlock(&fc->lock);
	free(st);
	return 0;
}

static void fw_cfg_destroy(struct dev *d)
{
	struct fw_cfg *fc = container_of(d, struct fw_cfg, dev);

	bus_unregister(&fc->vm->pio, FW_CFG_PORT_SEL);
	for (unsigned i = 0; i < fc->n; i++)
		free(fc->items[i].data);
	pthread_mutex_destroy(&fc->lock);
	free(fc);
}

static const struct dev_ops fw_cfg_ops = {
	.name = "fw_cfg",
	.version = 1,
	.save = fw_cfg_save,
	.load = fw_cfg_load,
	.destroy = fw_cfg_destroy,
};

struct fw_cfg *fw_cfg_create(struct vm *vm, char *err, size_t errlen)
{
	struct fw_cfg *fc = calloc(1, sizeof(*fc));
	static const uint8_t id[4] = { FW_CFG_ID_TRADITIONAL | FW_CFG_ID_DMA };
	int ret;

	if (!fc) {
		snprintf(err, errlen, "fw_cfg: out of memory");
		return NULL;
	}
	fc->vm = vm;
	fc->dev.ops = &fw_cfg_ops;
	snprintf(fc->dev.id, sizeof(fc->dev.id), "fw_cfg");
	pthread_mutex_init(&fc->lock, NULL);
	fc->next_file = FW_CFG_FILE_FIRST;
	ret = fw_add(fc, FW_CFG_SIGNATURE, NULL, "QEMU", 4);
	if (!ret)
		ret = fw_add(fc, FW_CFG_ID, NULL, id, sizeof(id));
	if (!ret)
		ret = fw_rebuild_dir(fc);
	if (!ret)
		ret = bus_register(&vm->pio, FW_CFG_PORT_SEL, FW_CFG_PORT_LEN, fw_cfg_io, fc);
	if (ret) {
		snprintf(err, errlen, "fw_cfg: I/O ports 0x%x-0x%x: %s", FW_CFG_PORT_SEL,
			 FW_CFG_PORT_SEL + FW_CFG_PORT_LEN - 1, strerror(-ret));
		for (unsigned i = 0; i < fc->n; i++)
			free(fc->items[i].data);
		free(fc);
		return NULL;
	}
	/* At reset the signature is selected, as on QEMU. */
	fw_select(fc, FW_CFG_SIGNATURE);
	vm_add_dev(vm, &fc->dev);
	return fc;
}
