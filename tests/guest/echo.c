// SPDX-License-Identifier: MIT
/*
 * khyve test guest, mode=echo: every byte received on COM1 is printed as
 * "rx XX" (hex), one line each, so a test sees exactly what reached the
 * guest from khyve's console (the escape of a stdio console must keep ~.
 * and ~? to itself). Polled: no interrupts.
 */
#include "user.h"

#define LSR_DR	0x01

void echo_run(void)
{
	pr("echo: ready\n");
	for (;;) {
		while (inb(COM1 + 5) & LSR_DR)
			pr("rx %02x\n", inb(COM1));
		udelay(1000);
	}
}
