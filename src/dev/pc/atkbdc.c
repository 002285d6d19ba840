// SPDX-License-Identifier: BSD-2-Clause
/*
 * The i8042 keyboard controller (see atkbdc.h), as the 8042 of the IBM PC/AT and PS/2 and the
 * Intel 8042/82C42 data sheets describe it, with the PS/2 auxiliary port.
 *
 * Status (read 0x64): OBF (bit 0), SYS (2, the command byte's), A2 (3: the last write was to
 * 0x64), INH (4, set: the keyboard is not inhibited), AUXB (5: the output buffer holds mouse
 * data).  IBF never shows: every write is handled at once.  Command byte (RAM 0): INT (0,
 * IRQ 1 on keyboard data), INT2 (1, IRQ 12 on mouse data), SYS (2), EN (4, keyboard port
 * disabled), EN2 (5, mouse port disabled), XLATE (6, keyboard bytes translated to set 1).
 *
 * Commands (write 0x64): 20-3F read RAM, 60-7F write RAM (the data follows on 0x60), A4 (no
 * password: F1), A7/A8 (disable/enable the mouse port), A9 (mouse interface test: 00), AA
 * (self-test: 55), AB (keyboard interface test: 00), AD/AE (disable/enable the keyboard
 * port), C0 (input port), D0/D1 (read/write the output port: bit 0 low resets the machine,
 * bit 1 is the A20 gate), D2/D3 (the next byte comes back as if the keyboard/mouse sent it),
 * D4 (the next byte goes to the mouse), DD/DF (A20 off/on), E0 (test inputs), F0-FF (pulse
 * output port lines: bit 0 low resets).  Others are ignored, as controllers do.  The A20 gate
 * reads back as written but is not applied: KVM keeps A20 enabled.  A reset ends the VM with
 * bhyve's reboot status, like every other reset on khyve.
 *
 * The output buffer is refilled as soon as it is read: the controller's own replies first,
 * then the keyboard's bytes (translated when XLATE is set), then the mouse's, each only while
 * its port is enabled.  IRQ 1 and 12 are high while the buffer holds data of their port and
 * the command byte enables them, so each refill is a new edge on the ISA line.
 *
 * Threads and locks: port I/O on vCPU threads, input from the console backend's thread, the
 * typematic timer on the event loop; one lock, c->lock, covers everything.  While paused
 * (snapshot) input is still queued in the devices, but nothing moves to the output buffer and
 * no interrupt changes until resume, so the saved queues and the saved interrupt controllers
 * agree.
 */
#include "dev/pc/atkbdc.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/console.h"
#include "dev/pc/ps2.h"
#include "sstream.h"
#include "vm.h"

#define ATKBDC_STATE_VERSION 1

#define STS_OBF 0x01
#define STS_SYS 0x04
#define STS_A2 0x08
#define STS_INH 0x10
#define STS_AUXB 0x20

#define CMD_INT 0x01
#define CMD_INT2 0x02
#define CMD_SYS 0x04
#define CMD_DIS_KBD 0x10
#define CMD_DIS_AUX 0x20
#define CMD_XLATE 0x40
#define CMD_BITS 0x77 /* bit 3 (inhibit override) and 7 are not kept */

/* Output port bits. */
#define OUT_RESET 0x01 /* low: reset */
#define OUT_A20 0x02
#define OUT_OBF_KBD 0x10
#define OUT_OBF_AUX 0x20

/* The command byte after power-on, as a BIOS leaves it: translated keyboard, both ports on. */
#define CMD_DEFAULT (CMD_INT | CMD_INT2 | CMD_SYS | CMD_XLATE)
#define RAM_SIZE 32
#define CTL_REPLY_SIZE 8

struct atkbdc {
	struct dev dev;
	struct vm *vm;
	pthread_mutex_t lock;

	/* Guest-visible controller state: exactly what the snapshot holds. */
	uint8_t ram[RAM_SIZE]; /* ram[0] is the command byte */
	uint8_t outb;	       /* output buffer (reads again after it was taken) */
	bool obf, obf_aux;     /* full; filled from the mouse port */
	bool a2;	       /* the last write went to the command port */
	uint8_t outport;       /* bits 0 and 1 (reset, A20); OBF bits are derived */
	uint8_t pending;       /* command waiting for its data byte, or 0 */
	struct ps2_queue ctl;  /* the controller's own replies */
	struct ps2kbd kbd;
	struct ps2mouse mouse;

	bool paused;
	bool irq1, irq12; /* levels we drive */
	struct vtimer typematic;
	struct console *con;
	struct console_input *in_kbd, *in_mouse;
};

static const struct dev_ops atkbdc_ops;

/* ---- output buffer and interrupts ---- */

static void atkbdc_irqs(struct atkbdc *c, bool force)
{
	bool i1 = c->obf && !c->obf_aux && (c->ram[0] & CMD_INT);
	bool i12 = c->obf && c->obf_aux && (c->ram[0] & CMD_INT2);

	if (force || i1 != c->irq1)
		vm_set_irq(c->vm, ATKBDC_IRQ_KBD, i1);
	if (force || i12 != c->irq12)
		vm_set_irq(c->vm, ATKBDC_IRQ_AUX, i12);
	c->irq1 = i1;
	c->irq12 = i12;
}

/* The next keyboard byte as the host sees it: an F0 break prefix folds into the next byte. */
static int atkbdc_kbd_byte(struct atkbdc *c)
{
	int b = ps2kbd_read(&c->kbd);

	if (b < 0 || !(c->ram[0] & CMD_XLATE))
		return b;
	if (b == 0xf0) {
		int n = ps2kbd_read(&c->kbd);

		/* Sequences are queued whole, so a lone F0 is one the host asked back (FE). */
		return n < 0 ? 0xf0 : ps2_translate((uint8_t)n) | 0x80;
	}
	return ps2_translate((uint8_t)b);
}

static void atkbdc_fill(struct atkbdc *c, int b, bool aux)
{
	c->outb = (uint8_t)b;
	c->obf = true;
	c->obf_aux = aux;
}

/* Move the next byte into an empty output buffer and drive the lines.  c->lock held. */
static void atkbdc_update(struct atkbdc *c)
{
	int b;

	if (c->paused)
		return;
	if (!c->obf) {
		if ((b = ps2_queue_pop(&c->ctl)) >= 0)
			atkbdc_fill(c, b, false);
		else if (!(c->ram[0] & CMD_DIS_KBD) && (b = atkbdc_kbd_byte(c)) >= 0)
			atkbdc_fill(c, b, false);
		else if (!(c->ram[0] & CMD_DIS_AUX) && (b = ps2mouse_read(&c->mouse)) >= 0)
			atkbdc_fill(c, b, true);
		/* The mouse queue may have room again for movement that waited. */
		ps2mouse_flush(&c->mouse);
	}
	atkbdc_irqs(c, false);
}

static void atkbdc_reply(struct atkbdc *c, uint8_t b)
{
	ps2_queue_push(&c->ctl, b);
}

/* ---- the typematic timer ---- */

static void atkbdc_arm_typematic(struct atkbdc *c)
{
	if (c->kbd.held && !c->paused)
		vtimer_arm(&c->typematic, c->kbd.repeat_at);
	else
		vtimer_cancel(&c->typematic);
}

static void atkbdc_typematic_fire(void *opaque)
{
	struct atkbdc *c = opaque;

	pthread_mutex_lock(&c->lock);
	if (!c->paused) {
		ps2kbd_repeat(&c->kbd, vclock_ns(&c->vm->ev));
		atkbdc_arm_typematic(c);
		atkbdc_update(c);
	}
	pthread_mutex_unlock(&c->lock);
}

/* ---- port I/O ---- */

static void atkbdc_reset_machine(struct atkbdc *c)
{
	vm_request_exit(c->vm, VM_EXIT_REBOOT);
}

static uint8_t atkbdc_outport(const struct atkbdc *c)
{
	return (uint8_t)((c->outport & (OUT_RESET | OUT_A20)) |
			 (c->obf && !c->obf_aux ? OUT_OBF_KBD : 0) |
			 (c->obf && c->obf_aux ? OUT_OBF_AUX : 0));
}

/* A data byte for the command waiting for one. */
static void atkbdc_cmd_data(struct atkbdc *c, uint8_t cmd, uint8_t v)
{
	switch (cmd) {
	case 0x60:
		c->ram[0] = v & CMD_BITS;
		break;
	case 0xd1:
		c->outport = v & (OUT_RESET | OUT_A20);
		if (!(v & OUT_RESET))
			atkbdc_reset_machine(c);
		break;
	case 0xd2:
		ps2_queue_push(&c->kbd.reply, v);
		break;
	case 0xd3:
		ps2_queue_push(&c->mouse.reply, v);
		break;
	case 0xd4:
		ps2mouse_write(&c->mouse, v);
		break;
	default: /* 0x61-0x7f */
		c->ram[cmd & 0x1f] = v;
		break;
	}
}

static void atkbdc_command(struct atkbdc *c, uint8_t cmd)
{
	c->pending = 0;
	if (cmd >= 0x20 && cmd < 0x40) {
		atkbdc_reply(c, c->ram[cmd & 0x1f]);
		return;
	}
	if ((cmd >= 0x60 && cmd < 0x80) || (cmd >= 0xd1 && cmd <= 0xd4)) {
		c->pending = cmd;
		return;
	}
	if (cmd >= 0xf0) {
		/* Pulse output port bits 0-3 where the command's bit is 0: bit 0 is reset. */
		if (!(cmd & OUT_RESET))
			atkbdc_reset_machine(c);
		return;
	}
	switch (cmd) {
	case 0xa4:
		atkbdc_reply(c, 0xf1); /* no password installed */
		break;
	case 0xa7:
		c->ram[0] |= CMD_DIS_AUX;
		break;
	case 0xa8:
		c->ram[0] &= ~CMD_DIS_AUX;
		break;
	case 0xa9:
	case 0xab:
		atkbdc_reply(c, 0x00); /* interface test passed */
		break;
	case 0xaa:
		c->ram[0] |= CMD_SYS;
		atkbdc_reply(c, 0x55);
		break;
	case 0xad:
		c->ram[0] |= CMD_DIS_KBD;
		break;
	case 0xae:
		c->ram[0] &= ~CMD_DIS_KBD;
		break;
	case 0xc0:
		atkbdc_reply(c, 0x80); /* keyboard not inhibited */
		break;
	case 0xd0:
		atkbdc_reply(c, atkbdc_outport(c));
		break;
	case 0xdd:
		c->outport &= ~OUT_A20;
		break;
	case 0xdf:
		c->outport |= OUT_A20;
		break;
	case 0xe0:
		atkbdc_reply(c, 0x00);
		break;
	default:
		break;
	}
}

static void atkbdc_write_data(struct atkbdc *c, uint8_t v)
{
	uint8_t cmd = c->pending;

	c->a2 = false;
	c->pending = 0;
	if (cmd)
		atkbdc_cmd_data(c, cmd, v);
	else
		ps2kbd_write(&c->kbd, v);
}

static uint8_t atkbdc_status(const struct atkbdc *c)
{
	return (uint8_t)((c->obf ? STS_OBF : 0) | (c->ram[0] & CMD_SYS ? STS_SYS : 0) |
			 (c->a2 ? STS_A2 : 0) | STS_INH | (c->obf && c->obf_aux ? STS_AUXB : 0));
}

static void atkbdc_io(struct atkbdc *c, bool cmdport, void *data, unsigned size, bool is_write)
{
	uint8_t v = (uint8_t)io_get(data, size);

	pthread_mutex_lock(&c->lock);
	if (is_write && cmdport) {
		c->a2 = true;
		atkbdc_command(c, v);
	} else if (is_write) {
		atkbdc_write_data(c, v);
	} else if (cmdport) {
		v = atkbdc_status(c);
	} else {
		v = c->outb;
		c->obf = false;
		c->obf_aux = false;
		/* The line drops now, so a refill below is a new edge. */
		if (!c->paused)
			atkbdc_irqs(c, false);
	}
	atkbdc_update(c);
	pthread_mutex_unlock(&c->lock);
	if (!is_write)
		io_put(data, size, v);
}

static void atkbdc_data_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	atkbdc_io(opaque, false, data, size, is_write);
}

static void atkbdc_cmd_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	atkbdc_io(opaque, true, data, size, is_write);
}

/* ---- input from the console ---- */

static void atkbdc_key(void *opaque, unsigned keycode, bool down)
{
	struct atkbdc *c = opaque;

	pthread_mutex_lock(&c->lock);
	ps2kbd_key(&c->kbd, keycode, down, vclock_ns(&c->vm->ev));
	atkbdc_arm_typematic(c);
	atkbdc_update(c);
	pthread_mutex_unlock(&c->lock);
}

static void atkbdc_mouse(void *opaque, int dx, int dy, int dz, unsigned buttons)
{
	struct atkbdc *c = opaque;

	pthread_mutex_lock(&c->lock);
	ps2mouse_move(&c->mouse, dx, dy, dz, buttons);
	atkbdc_update(c);
	pthread_mutex_unlock(&c->lock);
}

static const struct console_input_ops atkbdc_kbd_input = {
	.type = CONSOLE_KEYBOARD,
	.name = "ps2-keyboard",
	.priority = CONSOLE_PRIO_PS2,
	.key = atkbdc_key,
};

static const struct console_input_ops atkbdc_mouse_input = {
	.type = CONSOLE_POINTER_REL,
	.name = "ps2-mouse",
	.priority = CONSOLE_PRIO_PS2,
	.rel = atkbdc_mouse,
};

/* ---- snapshot ---- */

/* The saved state; the load staging copy. */
struct atkbdc_state {
	uint8_t ram[RAM_SIZE];
	uint8_t outb;
	bool obf, obf_aux, a2;
	uint8_t outport, pending;
	struct ps2_queue ctl;
	struct ps2kbd kbd;
	struct ps2mouse mouse;
};

static void atkbdc_state_io(struct sstream *s, struct atkbdc_state *st)
{
	ss_u8_array(s, st->ram, RAM_SIZE);
	ss_u8(s, &st->outb);
	ss_bool(s, &st->obf);
	ss_bool(s, &st->obf_aux);
	ss_bool(s, &st->a2);
	ss_u8(s, &st->outport);
	ss_u8(s, &st->pending);
	ps2_queue_state(s, &st->ctl);
	ps2kbd_state(s, &st->kbd);
	ps2mouse_state(s, &st->mouse);
}

static void atkbdc_state_check(struct sstream *s, const struct atkbdc_state *st)
{
	uint8_t p = st->pending;

	ss_check_max(s, st->ram[0] & ~CMD_BITS, 0, "atkbdc command byte reserved bits");
	ss_check_max(s, st->outport & ~(OUT_RESET | OUT_A20), 0, "atkbdc output port bits");
	if (p && !(p >= 0x60 && p < 0x80) && !(p >= 0xd1 && p <= 0xd4))
		ss_fail(s, -EINVAL, "atkbdc waits for data of command 0x%02x", p);
	if (st->obf_aux && !st->obf)
		ss_fail(s, -EINVAL, "atkbdc mouse data flag with an empty output buffer");
	ps2_queue_check(s, &st->ctl, "atkbdc reply");
	ps2kbd_check(s, &st->kbd);
	ps2mouse_check(s, &st->mouse);
}

static void atkbdc_state_get(const struct atkbdc *c, struct atkbdc_state *st)
{
	memcpy(st->ram, c->ram, RAM_SIZE);
	st->outb = c->outb;
	st->obf = c->obf;
	st->obf_aux = c->obf_aux;
	st->a2 = c->a2;
	st->outport = c->outport;
	st->pending = c->pending;
	st->ctl = c->ctl;
	st->kbd = c->kbd;
	st->mouse = c->mouse;
}

static int atkbdc_save(struct dev *d, struct sstream *s)
{
	struct atkbdc *c = container_of(d, struct atkbdc, dev);
	struct atkbdc_state *st = malloc(sizeof(*st));

	if (!st)
		return ss_fail(s, -ENOMEM, "out of memory");
	pthread_mutex_lock(&c->lock);
	atkbdc_state_get(c, st);
	pthread_mutex_unlock(&c->lock);
	atkbdc_state_io(s, st);
	free(st);
	return ss_error(s);
}

static int atkbdc_load(struct dev *d, struct sstream *s, unsigned version)
{
	struct atkbdc *c = container_of(d, struct atkbdc, dev);
	struct atkbdc_state *st;

	if (version != ATKBDC_STATE_VERSION)
		return ss_fail(s, -EINVAL, "state version %u is not supported (%u)", version,
			       ATKBDC_STATE_VERSION);
	st = calloc(1, sizeof(*st));
	if (!st)
		return ss_fail(s, -ENOMEM, "out of memory");
	/* The queues' capacities are this code's; the stream must agree (ps2_queue_state). */
	ps2_queue_init(&st->ctl, CTL_REPLY_SIZE);
	ps2_queue_init(&st->kbd.reply, PS2_REPLY_SIZE);
	ps2_queue_init(&st->kbd.data, PS2_QUEUE_SIZE);
	ps2_queue_init(&st->mouse.reply, PS2_REPLY_SIZE);
	ps2_queue_init(&st->mouse.data, PS2_QUEUE_SIZE);
	atkbdc_state_io(s, st);
	if (!ss_error(s))
		atkbdc_state_check(s, st);
	if (ss_finish(s)) {
		free(st);
		return ss_error(s);
	}
	pthread_mutex_lock(&c->lock);
	memcpy(c->ram, st->ram, RAM_SIZE);
	c->outb = st->outb;
	c->obf = st->obf;
	c->obf_aux = st->obf_aux;
	c->a2 = st->a2;
	c->outport = st->outport;
	c->pending = st->pending;
	c->ctl = st->ctl;
	c->kbd = st->kbd;
	c->mouse = st->mouse;
	/*
	 * A key held when the snapshot was taken was held by a client of another run; nobody
	 * is left to release it, so it does not repeat here.
	 */
	c->kbd.held = 0;
	/* Lines and timer follow at resume, after the interrupt controllers are loaded. */
	c->paused = true;
	vtimer_cancel(&c->typematic);
	pthread_mutex_unlock(&c->lock);
	free(st);
	return 0;
}

static int atkbdc_pause(struct dev *d)
{
	struct atkbdc *c = container_of(d, struct atkbdc, dev);

	pthread_mutex_lock(&c->lock);
	c->paused = true;
	vtimer_cancel(&c->typematic);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static int atkbdc_resume(struct dev *d)
{
	struct atkbdc *c = container_of(d, struct atkbdc, dev);

	pthread_mutex_lock(&c->lock);
	c->paused = false;
	/* A repeat due while paused comes now; the timer callback rechecks the time. */
	atkbdc_arm_typematic(c);
	atkbdc_irqs(c, true);
	atkbdc_update(c);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* ---- lifecycle ---- */

static void atkbdc_reset(struct atkbdc *c)
{
	memset(c->ram, 0, sizeof(c->ram));
	c->ram[0] = CMD_DEFAULT;
	c->outport = OUT_RESET | OUT_A20;
	ps2_queue_init(&c->ctl, CTL_REPLY_SIZE);
	ps2kbd_reset(&c->kbd);
	ps2mouse_reset(&c->mouse);
}

static void atkbdc_destroy(struct dev *d)
{
	struct atkbdc *c = container_of(d, struct atkbdc, dev);

	/* No input callback runs once these return. */
	console_input_remove(c->in_kbd);
	console_input_remove(c->in_mouse);
	console_put(c->con);
	vtimer_cancel(&c->typematic);
	bus_unregister(&c->vm->pio, ATKBDC_DATA_PORT);
	bus_unregister(&c->vm->pio, ATKBDC_CMD_PORT);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

struct dev *atkbdc_create(struct vm *vm, char *err, size_t errlen)
{
	struct atkbdc *c = calloc(1, sizeof(*c));

	if (!c) {
		snprintf(err, errlen, "atkbdc: out of memory");
		return NULL;
	}
	c->vm = vm;
	c->dev.ops = &atkbdc_ops;
	snprintf(c->dev.id, sizeof(c->dev.id), "atkbdc");
	pthread_mutex_init(&c->lock, NULL);
	vtimer_init(&c->typematic, &vm->ev, atkbdc_typematic_fire, c);
	atkbdc_reset(c);
	if (bus_register(&vm->pio, ATKBDC_DATA_PORT, 1, atkbdc_data_io, c)) {
		snprintf(err, errlen, "atkbdc: port 0x60 is already taken");
		goto fail;
	}
	if (bus_register(&vm->pio, ATKBDC_CMD_PORT, 1, atkbdc_cmd_io, c)) {
		snprintf(err, errlen, "atkbdc: port 0x64 is already taken");
		bus_unregister(&vm->pio, ATKBDC_DATA_PORT);
		goto fail;
	}
	c->con = console_get(vm);
	if (c->con) {
		c->in_kbd = console_input_add(c->con, &atkbdc_kbd_input, c);
		c->in_mouse = console_input_add(c->con, &atkbdc_mouse_input, c);
	}
	if (!c->con || !c->in_kbd || !c->in_mouse) {
		snprintf(err, errlen, "atkbdc: out of memory");
		atkbdc_destroy(&c->dev);
		return NULL;
	}
	vm_add_dev(vm, &c->dev);
	return &c->dev;
fail:
	pthread_mutex_destroy(&c->lock);
	free(c);
	return NULL;
}

static const struct dev_ops atkbdc_ops = {
	.name = "atkbdc",
	.version = ATKBDC_STATE_VERSION,
	.pause = atkbdc_pause,
	.resume = atkbdc_resume,
	.save = atkbdc_save,
	.load = atkbdc_load,
	.destroy = atkbdc_destroy,
};
