/* SPDX-License-Identifier: MIT */
/* khyve test guest: the i8042 driver (ps2.c), for the selftest and mode=console. */
#ifndef PS2_H
#define PS2_H

#include "user.h"

bool kbc_present(void);
void kbc_cmd(u8 c);
void kbc_data(u8 v);
int kbc_read(u64 timeout_us);
int kbc_read_src(u64 timeout_us, bool *aux);
int kbc_query(u8 cmd);
void kbc_flush(void);
void kbc_set_ctr(u8 v);
void aux_write(u8 v);

#endif
