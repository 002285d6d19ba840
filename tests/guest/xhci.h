/* SPDX-License-Identifier: MIT */
/* khyve test guest: the polled xHCI driver and its USB tablet (xhci.c). */
#ifndef XHCI_H
#define XHCI_H

#include "user.h"

struct tablet_report {
	u32 x, y;	/* 0..32767 */
	u32 buttons;	/* bit 0 left, 1 right, 2 middle, 3 side, 4 extra */
	int dz;		/* wheel, positive away from the user */
	u32 len;	/* bytes the tablet sent */
};

/*
 * Find the first xHCI controller, reset it and enumerate the tablet on its
 * first connected USB 2 port: 0 ready, 1 no controller, -1 with @why.
 */
int xhci_tablet_open(char *why, size_t len);
/* 1: a report arrived (in @r), 0: none yet, -1: the transfer failed. */
int xhci_tablet_poll(struct tablet_report *r);
/* The selftest's checks: 0 passed, 1 no controller, -1 failed with @why. */
int xhci_selftest(char *why, size_t len);

#endif
