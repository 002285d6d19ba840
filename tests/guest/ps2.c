// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: the i8042 keyboard controller and its PS/2
 * keyboard and mouse, polled through ports 0x60/0x64 (the syscall), with
 * IRQ 1 and 12 checked through the IOAPIC.
 */
#include "user.h"
#include "ps2.h"

#define KBC_DATA	0x60
#define KBC_STS		0x64
#define STS_OBF		0x01
#define STS_IBF		0x02
#define STS_AUXB	0x20

bool kbc_present(void)
{
	return inb(KBC_STS) != 0xff;
}

static void kbc_wait_write(void)
{
	int n = 10000;

	while ((inb(KBC_STS) & STS_IBF) && --n)
		;
}

void kbc_cmd(u8 c)
{
	kbc_wait_write();
	outb(KBC_STS, c);
}

void kbc_data(u8 v)
{
	kbc_wait_write();
	outb(KBC_DATA, v);
}

/* The next byte within timeout_us, or -1; *aux says which port it came from. */
int kbc_read_src(u64 timeout_us, bool *aux)
{
	u64 end = now_us() + timeout_us;
	u8 st;

	while (!((st = inb(KBC_STS)) & STS_OBF)) {
		if (now_us() > end)
			return -1;
		udelay(50);
	}
	if (aux)
		*aux = st & STS_AUXB;
	return inb(KBC_DATA);
}

int kbc_read(u64 timeout_us)
{
	return kbc_read_src(timeout_us, 0);
}

void kbc_flush(void)
{
	int n = 64;

	while ((inb(KBC_STS) & STS_OBF) && n--)
		inb(KBC_DATA);
}

int kbc_query(u8 cmd)
{
	kbc_cmd(cmd);
	return kbc_read(100000);
}

void kbc_set_ctr(u8 v)
{
	kbc_cmd(0x60);
	kbc_data(v);
}

void aux_write(u8 v)
{
	kbc_cmd(0xd4);
	kbc_data(v);
}

/* Send cmd to a device (keyboard or, with aux, mouse) and expect each byte of want. */
static bool dev_expect(bool aux, u8 cmd, const u8 *want, int n, const char *what)
{
	int i, b;

	if (aux)
		aux_write(cmd);
	else
		kbc_data(cmd);
	for (i = 0; i < n; i++) {
		b = kbc_read(200000);
		if (b != want[i]) {
			check_fail("%s: byte %d is 0x%x, want 0x%x", what, i, b, want[i]);
			kbc_flush();
			return false;
		}
	}
	return true;
}

#define DEV_EXPECT(aux, cmd, what, ...) ({				\
	static const u8 w_[] = { __VA_ARGS__ };				\
	dev_expect(aux, cmd, w_, sizeof(w_), what);			\
})

static void check_controller(void)
{
	int b;

	if ((b = kbc_query(0xaa)) != 0x55)
		check_fail("self-test: 0x%x, want 0x55", b);
	if ((b = kbc_query(0xab)) != 0x00)
		check_fail("keyboard interface test: 0x%x", b);
	if ((b = kbc_query(0xa9)) != 0x00)
		check_fail("mouse interface test: 0x%x", b);
}

static void check_keyboard(u8 ctr)
{
	DEV_EXPECT(false, 0xff, "keyboard reset", 0xfa, 0xaa);
	if (ctr & 0x40)
		DEV_EXPECT(false, 0xf2, "keyboard identify", 0xfa, 0xab, 0x41);
	else
		DEV_EXPECT(false, 0xf2, "keyboard identify", 0xfa, 0xab, 0x83);
	DEV_EXPECT(false, 0xee, "keyboard echo", 0xee);
}

static void mouse_rate(u8 r)
{
	aux_write(0xf3);
	kbc_read(200000);
	aux_write(r);
	kbc_read(200000);
}

static void check_mouse(void)
{
	bool aux = false;
	int b;

	DEV_EXPECT(true, 0xff, "mouse reset", 0xfa, 0xaa, 0x00);
	DEV_EXPECT(true, 0xf2, "mouse identify", 0xfa, 0x00);
	mouse_rate(200);
	mouse_rate(100);
	mouse_rate(80);
	DEV_EXPECT(true, 0xf2, "IntelliMouse detection", 0xfa, 0x03);
	DEV_EXPECT(true, 0xf6, "mouse defaults", 0xfa);
	/* Linux's AUX probe: D3 loops a byte back as mouse data. */
	kbc_cmd(0xd3);
	kbc_data(0x5a);
	b = kbc_read_src(100000, &aux);
	if (b != 0x5a || !aux)
		check_fail("D3 loopback: 0x%x%s", b, aux ? "" : " not flagged as mouse data");
}

/* IRQ 1 and 12: a byte put in the output buffer with D2 / D3 raises its line. */
static void check_irq(u8 ctr, u8 irq, u8 cmd, u8 enable)
{
	u32 pin = route_isa(irq, cpus[0].apic_id), vec = VEC_IOAPIC_BASE + pin;
	u64 c0 = irq_count(0, vec);

	kbc_set_ctr((ctr & ~3) | enable);
	kbc_cmd(cmd);
	kbc_data(0x42);
	if (!wait_irq(0, vec, c0 + 1, 500000))
		check_fail("no interrupt on IRQ %u (IOAPIC pin %u)", irq, pin);
	kbc_read(100000);
	ioapic_mask(pin);
	kbc_set_ctr(ctr & ~3);
}

/*
 * atkbdc: controller self-test and interface tests; keyboard reset,
 * identify (AB 83, or AB 41 when translated) and echo; mouse reset,
 * identify, the IntelliMouse wheel detection and the D3 loopback; IRQ 1
 * and IRQ 12.  Skipped when no controller answers.
 */
void check_atkbdc(void)
{
	int ctr;

	if (!kbc_present())
		return;
	group_begin("atkbdc");
	kbc_flush();
	ctr = kbc_query(0x20);
	if (ctr < 0) {
		check_fail("no answer to read command byte");
		return;
	}
	/* Polled, both ports enabled: firmware (SeaBIOS) may leave the mouse port disabled. */
	kbc_cmd(0xae);
	kbc_cmd(0xa8);
	kbc_set_ctr(ctr & ~0x33);
	check_controller();
	check_keyboard(ctr & ~0x30);
	check_mouse();
	check_irq(ctr & ~0x30, 1, 0xd2, 1);
	check_irq(ctr & ~0x30, 12, 0xd3, 2);
	kbc_set_ctr(ctr);
	kbc_flush();
	group_end();
}
