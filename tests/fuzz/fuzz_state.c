// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: the state-stream decoders, as a crafted snapshot file feeds them (the file's
 * checksums recomputed, so every byte of a section reaches its decoder).  The first input byte
 * picks what loads:
 *
 *	uart rtc pm hpet fw_cfg atkbdc pci (the bus's latch) hostbridge lpc virtio-blk
 *	virtio-net virtio-rnd e1000 ahci fbuf, each a device's load() into a fresh device as a
 *	restore does; vcpu (cpustate_io, arch/x86/cpustate.c) and vm (vmstate_io)
 *
 * then
 *
 *	ver:u8			the section version, 1 + ver % the device's version
 *	nops:u8 ops:5*(nops%16)	guest accesses after the load: off:u16 flags:u8 val:u16
 *				(flags bit 0 write, bits 1-2 size 1/2/4, bit 3 BAR (flags >> 4)
 *				% 6 instead of the device's registers or configuration space)
 *	the section's bytes	to the end of the input
 *
 * What must hold: no crash and no sanitizer report while loading; a state that loaded runs
 * (resume, its timers fire, the guest reads and writes it, pause) and a save of it loads back
 * and saves the same bytes.  Seeds: each device's own fresh state, and sections cut from a
 * real snapshot of the test guest (FUZZ_SNAPSHOT=FILE with FUZZ_WRITE_SEEDS; see
 * tests/fuzz/snapshot-seeds.sh), kept in tests/fuzz/corpus/state/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/cpustate.h"
#include "backend/net_backend.h"
#include "config.h"
#include "dev/pc/atkbdc.h"
#include "dev/pc/fw_cfg.h"
#include "dev/pc/hpet.h"
#include "dev/pc/pm.h"
#include "dev/pc/rtc.h"
#include "dev/pc/uart.h"
#include "dev/pci/pci.h"
#include "snap/format.h"
#include "snap/meta.h"
#include "sstream.h"
#include "vm.h"
#include "fuzz.h"

#define RAM (4 * MiB)
#define SLOT 3
#define OP_LEN 5 /* a guest access after the load: off:u16 flags:u8 val:u16 */

static char disk_path[64], ahci_path[64];

enum kind {
	K_UART,
	K_RTC,
	K_PM,
	K_HPET,
	K_FW_CFG,
	K_ATKBDC,
	K_PCI,
	K_HOSTBRIDGE,
	K_LPC,
	K_VIRTIO_BLK,
	K_VIRTIO_NET,
	K_VIRTIO_RND,
	K_E1000,
	K_AHCI,
	K_FBUF,
	K_VCPU,
	K_VM,
	K_COUNT,
};

/* Each kind: its name (the seed file's), the PCI emulation or the device's own registers. */
static const struct kind_desc {
	const char *name;
	const char *emul;
	bool mmio;
	uint64_t base, len;
} kinds[K_COUNT] = {
	[K_UART] = { "uart", NULL, false, 0x3F8, 8 },
	[K_RTC] = { "rtc", NULL, false, 0x70, 2 },
	[K_PM] = { "pm", NULL, false, PM1A_EVT_PORT, 12 },
	[K_HPET] = { "hpet", NULL, true, HPET_BASE, 0x400 },
	[K_FW_CFG] = { "fw_cfg", NULL, false, FW_CFG_PORT_SEL, FW_CFG_PORT_LEN },
	[K_ATKBDC] = { "atkbdc", NULL, false, 0x60, 5 },
	[K_PCI] = { "pci", NULL, false, 0xCF8, 8 },
	[K_HOSTBRIDGE] = { .name = "hostbridge", .emul = "hostbridge" },
	[K_LPC] = { .name = "lpc", .emul = "lpc" },
	[K_VIRTIO_BLK] = { .name = "virtio-blk", .emul = "virtio-blk" },
	[K_VIRTIO_NET] = { .name = "virtio-net", .emul = "virtio-net" },
	[K_VIRTIO_RND] = { .name = "virtio-rnd", .emul = "virtio-rnd" },
	[K_E1000] = { .name = "e1000", .emul = "e1000" },
	[K_AHCI] = { .name = "ahci", .emul = "ahci" },
	[K_FBUF] = { .name = "fbuf", .emul = "fbuf" },
	[K_VCPU] = { .name = "vcpu" },
	[K_VM] = { .name = "vm" },
};

static int null_open(struct net_backend *nb, const struct net_backend_args *a, char *err,
		     size_t errlen)
{
	return 0;
}

static int null_send(struct net_backend *nb, const void *frame, size_t len)
{
	return 0;
}

static void null_close(struct net_backend *nb)
{
}

static const struct net_backend_type null_type = {
	.name = "null",
	.usage = "null",
	.open = null_open,
	.send = null_send,
	.close = null_close,
};

static void remove_images(void)
{
	unlink(disk_path);
	unlink(ahci_path);
}

static void make_image(char *path, size_t len, off_t size)
{
	static uint8_t img[64 * 1024];
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int fd;

	for (unsigned i = 0; i < sizeof(img); i++)
		img[i] = (uint8_t)(i * 7 + 3);
	snprintf(path, len, "%s/khyve-fuzz-state-XXXXXX", dir);
	fd = mkstemp(path);
	/* As large as the disks of tests/fuzz/snapshot-seeds.sh, whose states must load here. */
	if (fd < 0 || write(fd, img, sizeof(img)) != (ssize_t)sizeof(img) || ftruncate(fd, size))
		abort();
	close(fd);
}

void fuzz_init(void)
{
	make_image(disk_path, sizeof(disk_path), 8 * MiB);
	make_image(ahci_path, sizeof(ahci_path), 4 * MiB);
	atexit(remove_images);
	net_backend_register(&null_type);
}

struct fx {
	struct vm vm;
	struct config cfg;
	struct dev *d;
	struct pci_dev *pd;
};

static struct dev *last_dev(struct vm *vm)
{
	struct dev *d = vm->devs;

	while (d && d->next)
		d = d->next;
	return d;
}

/* A fresh bare VM with the one device @k, as a restore creates it before loading. */
static void fx_create(struct fx *x, enum kind k)
{
	const struct kind_desc *kd = &kinds[k];
	unsigned slot = k == K_AHCI ? 7 : SLOT;
	char err[256], key[64];
	struct dev *d = NULL;

	memset(x, 0, sizeof(*x));
	fz_vm_init(&x->vm, &x->cfg, RAM);
#define OPT(k, v) \
	config_set(&x->cfg, (snprintf(key, sizeof(key), "pci.0.%u.0.%s", slot, k), key), v)
	switch (k) {
	case K_UART:
		d = uart_create(&x->vm, 0, "off", err, sizeof(err));
		break;
	case K_RTC:
		d = rtc_create(&x->vm, err, sizeof(err));
		break;
	case K_PM:
		d = pm_create(&x->vm, err, sizeof(err));
		break;
	case K_HPET:
		d = hpet_create(&x->vm, err, sizeof(err));
		break;
	case K_FW_CFG: {
		/* Items as khyve adds them for firmware, so a state has some to select. */
		struct fw_cfg *fc = fw_cfg_create(&x->vm, err, sizeof(err));

		if (fc) {
			fw_cfg_add_item(fc, 0x05, "\x01\0", 2);
			fw_cfg_add_file(fc, "etc/e820", "0123456789abcdefghij", 20);
			fw_cfg_add_file(fc, "etc/table-loader", "", 0);
			d = last_dev(&x->vm);
		}
		break;
	}
	case K_ATKBDC:
		d = atkbdc_create(&x->vm, err, sizeof(err));
		break;
	case K_VIRTIO_BLK:
		OPT("path", disk_path);
		break;
	case K_VIRTIO_NET:
	case K_E1000:
		OPT("backend", "null");
		break;
	/* The devices of tests/fuzz/snapshot-seeds.sh, so that its states load. */
	case K_AHCI:
		OPT("port.0.type", "hd");
		OPT("port.0.path", ahci_path);
		break;
	case K_FBUF:
		OPT("tcp", "off");
		OPT("w", "640");
		OPT("h", "480");
		break;
	default:
		break;
	}
#undef OPT
	if (k >= K_PCI && k <= K_FBUF) {
		FZ_ASSERT(!pci_setup(&x->vm, err, sizeof(err)), "pci_setup: %s", err);
		d = last_dev(&x->vm);
		if (kd->emul) {
			/*
			 * The LPC bridge lives where the ACPI tables say it does; AHCI drives take
			 * their serial from the slot, which a state must match (the script's).
			 */
			x->pd = pci_dev_add(&x->vm, k == K_LPC ? 31 : slot, 0,
					    pci_emul_find(kd->emul), err, sizeof(err));
			FZ_ASSERT(x->pd, "%s: %s", kd->name, err);
			d = &x->pd->dev;
		}
	}
	if (k < K_VCPU)
		FZ_ASSERT(d, "%s: %s", kd->name, err);
	x->d = d;
}

/* Not every device has background work to stop or restart. */
static void dev_pause(struct dev *d)
{
	if (d && d->ops->pause)
		d->ops->pause(d);
}

static void dev_resume(struct dev *d)
{
	if (d->ops->resume)
		d->ops->resume(d);
}

static void fx_destroy(struct fx *x)
{
	dev_pause(x->d);
	vm_destroy(&x->vm);
	config_free(&x->cfg);
}

/* One guest access to the device's registers (or configuration space), or to its BAR 0. */
static void guest_access(struct fx *x, const struct kind_desc *kd, const uint8_t *op)
{
	unsigned off = (unsigned)(op[0] | op[1] << 8), flags = op[2];
	unsigned size = 1U << ((flags >> 1) % 3), bar = (flags >> 4) % PCI_BARS;
	bool write = flags & 1;
	uint8_t b[4];
	uint64_t a;

	io_put(b, size,
	       (uint32_t)op[3] | (uint32_t)op[4] << 8 | (uint32_t)op[3] << 16 |
		       (uint32_t)op[4] << 24);
	if (x->pd) {
		/* A BAR where the loaded state put it (virtio's notify window is in BAR 4). */
		if (flags & 8) {
			a = pci_bar_addr(x->pd, (int)bar);
			if (!a || x->pd->bar[bar].type == PCI_BAR_NONE ||
			    x->pd->bar[bar].type == PCI_BAR_MEM64_HI)
				return;
			a += (off % x->pd->bar[bar].size) & ~(size - 1U);
			bus_access(x->pd->bar[bar].type == PCI_BAR_IO ? &x->vm.pio : &x->vm.mmio, a,
				   b, size, write);
			return;
		}
		a = PCI_ECAM_BASE + ((uint64_t)x->pd->slot << 15) + ((off % 4096) & ~(size - 1U));
		bus_access(&x->vm.mmio, a, b, size, write);
		return;
	}
	if (!kd->len)
		return;
	a = kd->base + (off % kd->len);
	if (kd->mmio)
		a &= ~(uint64_t)(size - 1);
	bus_access(kd->mmio ? &x->vm.mmio : &x->vm.pio, a, b, size, write);
}

static void dev_identity(struct dev *d, const char *name)
{
	dev_pause(d);
	fz_dev_identity(d, d->ops->version, name);
}

static void load_dev(enum kind k, unsigned ver, const uint8_t *ops, unsigned nops,
		     const uint8_t *buf, size_t len)
{
	const struct kind_desc *kd = &kinds[k];
	struct sstream s;
	struct fx x;
	int ret;

	fx_create(&x, k);
	ss_init_load(&s, buf, len);
	ret = x.d->ops->load(x.d, &s, 1 + ver % x.d->ops->version);
	if (!ret)
		ret = ss_error(&s);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "fuzz: %s: %s\n", kd->name, ret ? s.msg : "loaded");
	if (!ret) {
		/* What loaded is a state the device must live with. */
		dev_resume(x.d);
		evloop_advance(&x.vm.ev, vclock_ns(&x.vm.ev) + 1000000000ULL);
		for (unsigned i = 0; i < nops; i++)
			guest_access(&x, kd, ops + OP_LEN * i);
		evloop_advance(&x.vm.ev, vclock_ns(&x.vm.ev) + 50000000ULL);
		dev_identity(x.d, kd->name);
	}
	fx_destroy(&x);
}

static void load_cpu(bool vcpu, const uint8_t *buf, size_t len)
{
	struct sstream s, a, l, b;
	struct cpustate cs = { 0 }, cs2 = { 0 };
	struct vmstate vs = { 0 }, vs2 = { 0 };
	uint64_t tsc;

	ss_init_load(&s, buf, len);
	if (vcpu)
		cpustate_io(&s, &cs);
	else
		vmstate_io(&s, &vs);
	if (ss_finish(&s)) {
		cpustate_free(&cs);
		return;
	}
	if (vcpu && !cpustate_tsc(&cs, &tsc))
		FZ_ASSERT(!cpustate_set_tsc(&cs, tsc + 1),
			  "vcpu: the saved TSC cannot be replaced");
	ss_init_save(&a);
	if (vcpu)
		cpustate_io(&a, &cs);
	else
		vmstate_io(&a, &vs);
	FZ_ASSERT(!ss_error(&a), "%s: save: %s", vcpu ? "vcpu" : "vm", a.msg);
	ss_init_load(&l, a.buf, a.len);
	if (vcpu)
		cpustate_io(&l, &cs2);
	else
		vmstate_io(&l, &vs2);
	FZ_ASSERT(!ss_finish(&l), "%s: its own state was refused: %s", vcpu ? "vcpu" : "vm", l.msg);
	ss_init_save(&b);
	if (vcpu)
		cpustate_io(&b, &cs2);
	else
		vmstate_io(&b, &vs2);
	FZ_ASSERT(a.len == b.len && !memcmp(a.buf, b.buf, a.len), "%s: save -> load -> save differ",
		  vcpu ? "vcpu" : "vm");
	ss_free(&a);
	ss_free(&b);
	cpustate_free(&cs);
	cpustate_free(&cs2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	enum kind k = (enum kind)(fz_u8(&f) % K_COUNT);
	unsigned ver = fz_u8(&f), nops = fz_u8(&f) % 16;
	const uint8_t *ops;
	size_t got;

	ops = fz_bytes(&f, OP_LEN * nops, &got);
	nops = (unsigned)(got / OP_LEN);
	if (k == K_VCPU || k == K_VM)
		load_cpu(k == K_VCPU, f.data, f.size);
	else
		load_dev(k, ver, ops, nops, f.data, f.size);
	return 0;
}

static void seed(enum kind k, const char *suffix, unsigned ver, const void *buf, size_t len)
{
	struct fz_seed s;
	char name[96];

	fz_seed_start(&s);
	fz_put(&s, k, 1);
	fz_put(&s, ver - 1, 1);
	fz_put(&s, 0, 1);
	fz_put_bytes(&s, buf, len);
	snprintf(name, sizeof(name), "%s%s", kinds[k].name, suffix);
	fz_seed_write(&s, name);
}

static void put_op(struct fz_seed *s, unsigned off, unsigned flags, unsigned val)
{
	fz_put(s, off, 2);
	fz_put(s, flags, 1);
	fz_put(s, val, 2);
}

/*
 * The same state with what a guest does next: a virtio driver notifies every queue (BAR 4's
 * notify window) and reads the ISR; other devices get each register read.
 */
static void seed_run(enum kind k, const char *suffix, unsigned ver, const void *buf, size_t len)
{
	bool virtio = k >= K_VIRTIO_BLK && k <= K_VIRTIO_RND;
	struct fz_seed s;
	char name[96];

	fz_seed_start(&s);
	fz_put(&s, k, 1);
	fz_put(&s, ver - 1, 1);
	fz_put(&s, virtio ? 4 : 8, 1);
	for (unsigned i = 0; i < (virtio ? 4U : 8U); i++) {
		if (virtio)
			put_op(&s, i < 3 ? 0x3000 + 4 * i : 0x1000, i < 3 ? 0x4B : 0x48, i);
		else
			put_op(&s, kinds[k].emul ? 4 * i : i, kinds[k].emul ? 0x0C : 0x00, 0);
	}
	fz_put_bytes(&s, buf, len);
	snprintf(name, sizeof(name), "%s%s-run", kinds[k].name, suffix);
	fz_seed_write(&s, name);
}

/* The kind of device section @id: "uart@com1", "pci@0.3.0" (its emulation from @cfg). */
static enum kind section_kind(const char *id, const struct config *cfg)
{
	unsigned slot, func;
	const char *name = id;
	char key[64];

	if (sscanf(id, "pci@0.%u.%u", &slot, &func) == 2) {
		snprintf(key, sizeof(key), "pci.0.%u.%u.device", slot, func);
		name = config_get(cfg, key);
	}
	for (unsigned j = 0; name && j < K_VCPU; j++) {
		size_t n = strlen(kinds[j].name);

		if (!strncmp(name, kinds[j].name, n) && (name[n] == '@' || !name[n]))
			return (enum kind)j;
	}
	return K_COUNT;
}

/* The sections of a real snapshot, each as the input that loads it. */
static void seeds_from_snapshot(const char *path)
{
	struct snap_file sf;
	struct config cfg;
	char err[512];

	config_init(&cfg);
	if (snap_file_open(&sf, path, false, err, sizeof(err)) ||
	    snap_meta_config(sf.meta_json, &cfg, err, sizeof(err))) {
		fprintf(stderr, "fuzz: %s\n", err);
		exit(1);
	}
	for (unsigned i = 0; i < sf.nsections; i++) {
		const struct snap_section *sec = &sf.sections[i];
		enum kind k = K_COUNT;
		char suffix[64];
		void *buf;

		if (sec->type == SNAP_SEC_VCPU)
			k = K_VCPU;
		else if (sec->type == SNAP_SEC_VM)
			k = K_VM;
		else if (sec->type == SNAP_SEC_DEV)
			k = section_kind(sec->id, &cfg);
		if (k == K_COUNT || snap_file_read(&sf, sec, &buf))
			continue;
		snprintf(suffix, sizeof(suffix), "-snap-%s", sec->id);
		for (char *p = suffix; *p; p++)
			if (*p == '/' || *p == '@' || *p == '.')
				*p = '-';
		seed(k, suffix, sec->version, buf, sec->length);
		if (k < K_FBUF)
			seed_run(k, suffix, sec->version, buf, sec->length);
		free(buf);
	}
	snap_file_close(&sf);
	config_free(&cfg);
}

void fuzz_seeds(void)
{
	const char *snap = getenv("FUZZ_SNAPSHOT");

	if (snap) {
		seeds_from_snapshot(snap);
		return;
	}
	for (unsigned k = 0; k < K_VCPU; k++) {
		struct sstream s;
		struct fx x;

		fx_create(&x, (enum kind)k);
		ss_init_save(&s);
		FZ_ASSERT(!x.d->ops->save(x.d, &s), "%s: save: %s", kinds[k].name, s.msg);
		seed((enum kind)k, "", x.d->ops->version, s.buf, s.len);
		ss_free(&s);
		fx_destroy(&x);
	}
	/* A vCPU and a VM in their reset state, no MSRs, CPUID or XSAVE. */
	for (unsigned k = K_VCPU; k <= K_VM; k++) {
		struct cpustate cs = { 0 };
		struct vmstate vs = { 0 };
		struct sstream s;

		ss_init_save(&s);
		if (k == K_VCPU)
			cpustate_io(&s, &cs);
		else
			vmstate_io(&s, &vs);
		seed((enum kind)k, "", 1, s.buf, s.len);
		ss_free(&s);
	}
}
