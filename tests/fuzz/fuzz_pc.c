// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: the PC platform devices as the guest drives them: the 16550 UARTs
 * (uart.c: COM1 and COM2), the MC146818 RTC with its alarm wired to PM (rtc.c), ACPI PM
 * (pm.c: PM1 event/control, the PM timer, the reset register, the FACS global lock), the
 * HPET (hpet.c) and fw_cfg (fw_cfg.c: selector, data port, DMA into guest RAM).  Each input
 * builds a fresh bare VM with 1 MiB of RAM and these devices, as machine.c creates them, then
 * runs operations:
 *
 *	00 dev:u8 off:u8 val:u32 size:u8	write a port of dev % 6 (COM1, COM2, RTC, PM,
 *						reset, fw_cfg) at off % its length, size 1/2/4
 *	01 dev:u8 off:u8 size:u8		read one
 *	02 off:u16 val:u64 size:u8		write the HPET at off % 1 KiB, size 4 or 8
 *	03 off:u16 size:u8			read it
 *	04 ns:u32				let the virtual clock run (timers, alarms, FIFO
 *						timeouts fire)
 *	05 com:u8 len:u8 bytes			bytes on COM1/COM2's receive line
 *	06					pause, save, load, save every device: the same
 *						bytes; resume
 *	07 off:u16 len:u8 bytes			write guest RAM (fw_cfg DMA descriptors, FACS)
 *	08 what:u8				the platform: power button, global lock acquire
 *						or release
 *
 * What must hold: no crash, no sanitizer report, no hang; every device's saved state loads
 * and saves back to the same bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dev/pc/fw_cfg.h"
#include "dev/pc/hpet.h"
#include "dev/pc/pm.h"
#include "dev/pc/rtc.h"
#include "dev/pc/uart.h"
#include "sstream.h"
#include "vm.h"
#include "fuzz.h"

#define RAM (1 * MiB)
#define FACS 0x8000
#define MAX_OPS 1024

static const struct {
	uint16_t port, len;
} ports[] = {
	{ 0x3F8, 8 },	       { 0x2F8, 8 },	  { 0x70, 2 },
	{ PM1A_EVT_PORT, 12 }, { RESET_PORT, 1 }, { FW_CFG_PORT_SEL, FW_CFG_PORT_LEN },
};
#define NPORTS (sizeof(ports) / sizeof(ports[0]))

struct fx {
	struct vm vm;
	struct config cfg;
	struct dev *com[2], *pm;
};

/* What a checkpoint does: pause everything, save everything, resume. */
static void identity(struct fx *x)
{
	for (struct dev *d = x->vm.devs; d; d = d->next)
		if (d->ops->pause)
			d->ops->pause(d);
	for (struct dev *d = x->vm.devs; d; d = d->next)
		fz_dev_identity(d, d->ops->version, d->id);
	for (struct dev *d = x->vm.devs; d; d = d->next)
		if (d->ops->resume)
			d->ops->resume(d);
}

static void access(struct bus *b, uint64_t a, uint64_t v, unsigned size, bool write)
{
	uint8_t buf[8];

	io_put(buf, size, v);
	bus_access(b, a, buf, size, write);
}

static void run(struct fx *x, struct fz *f)
{
	for (unsigned n = 0; !fz_empty(f) && n < MAX_OPS; n++) {
		uint8_t op = fz_u8(f) % 9;
		size_t got;

		switch (op) {
		case 0:
		case 1: {
			unsigned d = fz_u8(f) % NPORTS, off = fz_u8(f) % ports[d].len;
			uint32_t v = op == 0 ? fz_u32(f) : 0;
			unsigned size = fz_size(f);

			access(&x->vm.pio, ports[d].port + off, v, size, op == 0);
			break;
		}
		case 2:
		case 3: {
			uint64_t off = fz_u16(f) % 0x400;
			uint64_t v = op == 2 ? fz_u64(f) : 0;
			unsigned size = fz_u8(f) & 1 ? 8 : 4;

			access(&x->vm.mmio, HPET_BASE + (off & ~(uint64_t)(size - 1)), v, size,
			       op == 2);
			break;
		}
		case 4:
			evloop_advance(&x->vm.ev, vclock_ns(&x->vm.ev) + fz_u32(f));
			break;
		case 5: {
			struct dev *com = x->com[fz_u8(f) & 1];
			const uint8_t *p = fz_bytes(f, fz_u8(f), &got);

			uart_rx_inject(com, p, got);
			break;
		}
		case 6:
			identity(x);
			break;
		case 7: {
			uint64_t off = fz_u16(f);
			const uint8_t *p = fz_bytes(f, fz_u8(f), &got);
			void *h = vm_gpa(&x->vm, off, got);

			if (h)
				memcpy(h, p, got);
			break;
		}
		default: {
			uint8_t w = fz_u8(f) % 3;

			if (w == 0)
				pm_power_button(x->pm);
			else if (w == 1)
				pm_global_lock_acquire(x->pm);
			else
				pm_global_lock_release(x->pm);
			break;
		}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t e820[20] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 1 };
	struct fz f = { data, size };
	struct fw_cfg *fc;
	struct dev *rtc;
	char err[256];
	struct fx x;

	memset(&x, 0, sizeof(x));
	fz_vm_init(&x.vm, &x.cfg, RAM);
	/* machine.c's order. */
	rtc = rtc_create(&x.vm, err, sizeof(err));
	FZ_ASSERT(rtc, "rtc: %s", err);
	x.pm = pm_create(&x.vm, err, sizeof(err));
	FZ_ASSERT(x.pm, "pm: %s", err);
	FZ_ASSERT(hpet_create(&x.vm, err, sizeof(err)), "hpet: %s", err);
	rtc_set_alarm_hook(rtc, pm_rtc_alarm, x.pm);
	for (unsigned i = 0; i < 2; i++) {
		x.com[i] = uart_create(&x.vm, i, "off", err, sizeof(err));
		FZ_ASSERT(x.com[i], "uart: %s", err);
	}
	fc = fw_cfg_create(&x.vm, err, sizeof(err));
	FZ_ASSERT(fc, "fw_cfg: %s", err);
	fw_cfg_add_item(fc, 0x05, "\x01\0", 2);
	fw_cfg_add_file(fc, "etc/e820", e820, sizeof(e820));
	fw_cfg_add_file(fc, "etc/boot-fail-wait", "\0\0\0\0", 4);
	FZ_ASSERT(!pm_set_facs(x.pm, FACS), "pm: the FACS was refused");
	run(&x, &f);
	identity(&x);
	for (struct dev *d = x.vm.devs; d; d = d->next)
		if (d->ops->pause)
			d->ops->pause(d);
	vm_destroy(&x.vm);
	config_free(&x.cfg);
	return 0;
}

static void out(struct fz_seed *s, unsigned dev, unsigned off, uint32_t v, unsigned size)
{
	fz_put(s, 0, 1);
	fz_put(s, dev, 1);
	fz_put(s, off, 1);
	fz_put(s, v, 4);
	fz_put_size(s, size);
}

static void in(struct fz_seed *s, unsigned dev, unsigned off, unsigned size)
{
	fz_put(s, 1, 1);
	fz_put(s, dev, 1);
	fz_put(s, off, 1);
	fz_put_size(s, size);
}

static void hpet_w(struct fz_seed *s, unsigned off, uint64_t v)
{
	fz_put(s, 2, 1);
	fz_put(s, off, 2);
	fz_put(s, v, 8);
	fz_put(s, 1, 1);
}

static void tick(struct fz_seed *s, uint32_t ns)
{
	fz_put(s, 4, 1);
	fz_put(s, ns, 4);
}

void fuzz_seeds(void)
{
	struct fz_seed s;

	/* A serial driver: 115200 8N1, FIFOs on, interrupts on, a line out, a line in. */
	fz_seed_start(&s);
	out(&s, 0, 3, 0x80, 1);
	out(&s, 0, 0, 1, 1);
	out(&s, 0, 1, 0, 1);
	out(&s, 0, 3, 0x03, 1);
	out(&s, 0, 2, 0xC7, 1);
	out(&s, 0, 4, 0x0B, 1);
	out(&s, 0, 1, 0x0F, 1);
	for (const char *p = "hello\n"; *p; p++)
		out(&s, 0, 0, (uint8_t)*p, 1);
	fz_put(&s, 5, 1);
	fz_put(&s, 0, 1);
	fz_put(&s, 5, 1);
	fz_put_bytes(&s, "abcde", 5);
	tick(&s, 1000000);
	in(&s, 0, 2, 1);
	in(&s, 0, 5, 1);
	in(&s, 0, 0, 1);
	fz_put(&s, 6, 1);
	fz_seed_write(&s, "uart");
	/* RTC: read the time, a periodic interrupt, an alarm (reaching PM), register C. */
	fz_seed_start(&s);
	for (unsigned r = 0; r < 10; r++) {
		out(&s, 2, 0, r, 1);
		in(&s, 2, 1, 1);
	}
	out(&s, 2, 0, 0x0A, 1);
	out(&s, 2, 1, 0x26, 1);
	out(&s, 2, 0, 0x0B, 1);
	out(&s, 2, 1, 0x62, 1);
	out(&s, 2, 0, 0x01, 1);
	out(&s, 2, 1, 0xFF, 1);
	tick(&s, 1500000000);
	out(&s, 2, 0, 0x0C, 1);
	in(&s, 2, 1, 1);
	fz_put(&s, 6, 1);
	fz_seed_write(&s, "rtc");
	/* PM: SCI_EN, timer and power button events, the status bits cleared, S5. */
	fz_seed_start(&s);
	out(&s, 3, 4, 1, 2);
	out(&s, 3, 2, 0x0121, 2);
	in(&s, 3, 8, 4);
	tick(&s, 0xFFFFFFFF);
	fz_put(&s, 8, 1);
	fz_put(&s, 0, 1);
	in(&s, 3, 0, 2);
	out(&s, 3, 0, 0xFFFF, 2);
	fz_put(&s, 8, 1);
	fz_put(&s, 1, 1);
	fz_put(&s, 6, 1);
	out(&s, 3, 4, 1 | 5 << 10 | 1 << 13, 2);
	fz_seed_write(&s, "pm");
	/* HPET: legacy routing, comparators periodic and one-shot, the counter on. */
	fz_seed_start(&s);
	hpet_w(&s, 0x100, 0x4C);
	hpet_w(&s, 0x108, 1000000);
	hpet_w(&s, 0x108, 1000000);
	hpet_w(&s, 0x120, 0x4);
	hpet_w(&s, 0x128, 5000000);
	hpet_w(&s, 0x010, 3);
	tick(&s, 300000000);
	fz_put(&s, 3, 1);
	fz_put(&s, 0xF0, 2);
	fz_put(&s, 1, 1);
	hpet_w(&s, 0x020, 0xFF);
	fz_put(&s, 6, 1);
	tick(&s, 300000000);
	fz_seed_write(&s, "hpet");
	/* fw_cfg: signature, the file directory, a DMA read of etc/e820 into RAM. */
	fz_seed_start(&s);
	out(&s, 5, 0, 0, 2);
	for (unsigned i = 0; i < 4; i++)
		in(&s, 5, 1, 1);
	out(&s, 5, 0, 0x19, 2);
	for (unsigned i = 0; i < 8; i++)
		in(&s, 5, 1, 1);
	fz_put(&s, 7, 1);
	fz_put(&s, 0x1000, 2);
	fz_put(&s, 16, 1);
	fz_put_bytes(&s,
		     (const uint8_t[16]){ 0, 0x20, 0, 0x0A, 0, 0, 0, 0x14, 0, 0, 0, 0, 0, 0, 0x20,
					  0 },
		     16);
	out(&s, 5, 8, 0, 4);
	out(&s, 5, 4, 0, 4);
	out(&s, 5, 8, 0x00100000, 4);
	fz_put(&s, 6, 1);
	fz_seed_write(&s, "fw_cfg");
}
