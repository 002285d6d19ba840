/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: the Bochs/QEMU standard VGA (khyve's fbuf), driven as
 * Linux's bochs-drm does: BAR 0 the frame buffer, BAR 2 the EDID and the
 * VBE registers; the legacy VGA ports through the syscall.
 */
#ifndef FBUF_H
#define FBUF_H

#include "user.h"

struct fbdev {
	const struct pci_fn *pci;
	u64 fb, mmio;		/* BAR 0, BAR 2 */
	u32 vram;		/* bytes */
	u32 edid_w, edid_h;	/* preferred mode, 0 without a valid EDID */
};

/* Find the first 1234:1111 display; false when there is none. */
bool fbdev_find(struct fbdev *d);
u16 vbe_read(struct fbdev *d, u32 idx);
void vbe_write(struct fbdev *d, u32 idx, u16 v);
/* Linear mode w x h at 32 bits per pixel; 0 or -1. */
int fbdev_set_mode(struct fbdev *d, u32 w, u32 h);
/* Back to VGA (text) mode. */
void fbdev_vga_mode(struct fbdev *d);

void check_fbuf(void);

#endif
