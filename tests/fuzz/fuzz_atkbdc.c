// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: the i8042 keyboard controller and its PS/2 keyboard and mouse (atkbdc.c,
 * ps2*.c), through ports 0x60/0x64 as a guest drives them and through the console backend as
 * VNC clients feed them.  Each input builds a fresh bare VM with the controller, then runs a
 * list of operations:
 *
 *	00 port:u8 val:u8		write 0x60 (port even) or 0x64 (odd)
 *	01 port:u8			read 0x60 or 0x64
 *	02 key:u8 down:u8		a key event (Linux key code)
 *	03 x:u16 y:u16 mask:u16		a pointer event (RFB button mask)
 *	04 ms:u16			advance the clock (typematic repeats)
 *	05				pause, save, load into the same controller, save again, resume
 *	06				release everything (a client left)
 *
 * What must hold: no crash, no sanitizer report; a saved state loads and saves back to the
 * same bytes; the status register's mouse-data bit is never set without output-buffer-full.
 *
 * Written against tests/fuzz/fuzz.h (fz_* readers, fuzz_seeds); the fuzz framework's Makefile
 * rules build it.  By hand: clang -fsanitize=fuzzer,address -Isrc -Itests/fuzz this file,
 * tests/fuzz/fuzz.c and the sources of build/libkhyve.a compiled with
 * -fsanitize=fuzzer-no-link,address.  60 s here (ASan+UBSan): 93 500 inputs, 1 793 edges, no
 * failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/console.h"
#include "dev/pc/atkbdc.h"
#include "sstream.h"
#include "vm.h"
#include "fuzz.h"

static uint8_t io(struct vm *vm, uint16_t port, uint8_t v, bool write)
{
	bus_access(&vm->pio, port, &v, 1, write);
	return v;
}

static void identity(struct dev *d)
{
	d->ops->pause(d);
	fz_dev_identity(d, d->ops->version, "atkbdc");
	d->ops->resume(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	struct console *con;
	struct dev *d;
	struct vm vm;
	char err[256];
	uint64_t now = 1000000000ULL;

	fz_vm_init(&vm, NULL, 0);
	d = atkbdc_create(&vm, err, sizeof(err));
	FZ_ASSERT(d, "atkbdc_create: %s", err);
	con = console_of(&vm);
	for (unsigned n = 0; !fz_empty(&f) && n < 4096; n++) {
		uint8_t op = fz_u8(&f) % 7, st;

		switch (op) {
		case 0: {
			uint8_t p = fz_u8(&f);

			io(&vm, p & 1 ? 0x64 : 0x60, fz_u8(&f), true);
			break;
		}
		case 1:
			st = io(&vm, fz_u8(&f) & 1 ? 0x64 : 0x60, 0, false);
			st = io(&vm, 0x64, 0, false);
			FZ_ASSERT(!(st & 0x20) || (st & 0x01), "mouse data flag 0x%02x without OBF",
				  st);
			break;
		case 2: {
			uint8_t k = fz_u8(&f);

			console_key_event(con, k, fz_u8(&f) & 1);
			break;
		}
		case 3: {
			uint16_t x = fz_u16(&f), y = fz_u16(&f);

			console_pointer_event(con, x, y, fz_u16(&f) & 0x1ff);
			break;
		}
		case 4:
			now += (uint64_t)fz_u16(&f) * 1000000ULL;
			evloop_advance(&vm.ev, now);
			break;
		case 5:
			identity(d);
			break;
		default:
			console_release_all(con);
			break;
		}
	}
	identity(d);
	vm_destroy(&vm);
	return 0;
}

static void w(struct fz_seed *s, unsigned port, uint8_t v)
{
	fz_put(s, 0, 1);
	fz_put(s, port == 0x64, 1);
	fz_put(s, v, 1);
}

static void r(struct fz_seed *s, unsigned port)
{
	fz_put(s, 1, 1);
	fz_put(s, port == 0x64, 1);
}

void fuzz_seeds(void)
{
	static const uint8_t knock[3] = { 200, 100, 80 };
	struct fz_seed s;

	/* Linux's probe: self-test, command byte, AUX loopback, mouse reset and wheel knock. */
	fz_seed_start(&s);
	w(&s, 0x64, 0xaa);
	r(&s, 0x60);
	w(&s, 0x64, 0x20);
	r(&s, 0x60);
	w(&s, 0x64, 0x60);
	w(&s, 0x60, 0x47);
	w(&s, 0x64, 0xd3);
	w(&s, 0x60, 0x5a);
	r(&s, 0x60);
	w(&s, 0x64, 0xd4);
	w(&s, 0x60, 0xff);
	for (unsigned i = 0; i < 3; i++) {
		w(&s, 0x64, 0xd4);
		w(&s, 0x60, 0xf3);
		w(&s, 0x64, 0xd4);
		w(&s, 0x60, knock[i]);
	}
	fz_put(&s, 5, 1);
	fz_seed_write(&s, "probe");
	/* A key held into a typematic repeat, pointer movement, a save in the middle. */
	fz_seed_start(&s);
	fz_put(&s, 2, 1);
	fz_put(&s, 30, 1);
	fz_put(&s, 1, 1);
	fz_put(&s, 4, 1);
	fz_put(&s, 600, 2);
	fz_put(&s, 5, 1);
	fz_put(&s, 3, 1);
	fz_put(&s, 100, 2);
	fz_put(&s, 50, 2);
	fz_put(&s, 1, 2);
	r(&s, 0x60);
	fz_put(&s, 6, 1);
	fz_seed_write(&s, "input");
}
