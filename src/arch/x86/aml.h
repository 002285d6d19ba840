/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A small AML emitter: enough of the ACPI Machine Language to write a static DSDT (names,
 * integers, strings, EISA ids, packages, buffers, resource templates, scopes and devices),
 * and the few methods that return a constant or send a Notify (VMGenID's ADDR, a GED's _EVT).
 *
 * The emitter writes into a caller's fixed buffer.  Errors are sticky (a full buffer, a bad
 * name) and reported once by aml_finish(), so the table code needs no check per call.
 *
 * Objects with a PkgLength (scope, device, package, buffer) are opened by aml_*_open(), which
 * returns a mark, and closed by aml_close(mark) once their contents are written; the length
 * is inserted then, so nesting works in program order.
 */
#ifndef KHYVE_AML_H
#define KHYVE_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *buf;
	size_t len, cap;
	int err; /* 0, -ENOSPC (buffer full), -EINVAL (bad name) */
};

struct aml_mark {
	size_t at;   /* where the PkgLength goes */
	bool buffer; /* a Buffer also gets its BufferSize there */
};

void aml_init(struct aml *a, void *buf, size_t cap);
/* Returns the number of bytes written or the first error. */
long aml_finish(const struct aml *a);

void aml_byte(struct aml *a, uint8_t v);
void aml_word(struct aml *a, uint16_t v);
void aml_dword(struct aml *a, uint32_t v);
void aml_qword(struct aml *a, uint64_t v);

/* "\\_SB.PCI0", "^FOO", "_S5": segments shorter than 4 characters are padded with '_'. */
void aml_namestring(struct aml *a, const char *path);
/* The shortest encoding: ZeroOp, OneOp, Byte/Word/DWord/QWordPrefix. */
void aml_int(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* EisaId("PNP0A03"): three letters and four hex digits compressed into a DWord. */
void aml_eisaid(struct aml *a, const char *id);
/* Name(NAME, ...): the object follows. */
void aml_name(struct aml *a, const char *name);
/* Name(NAME, integer) and Name(NAME, EisaId(id)): the common cases in one call. */
void aml_name_int(struct aml *a, const char *name, uint64_t v);
void aml_name_eisaid(struct aml *a, const char *name, const char *id);

struct aml_mark aml_scope_open(struct aml *a, const char *path);
struct aml_mark aml_device_open(struct aml *a, const char *name);
struct aml_mark aml_package_open(struct aml *a, unsigned nelem);
/* Method(NAME, nargs, NotSerialized): the body follows, up to aml_close(). */
struct aml_mark aml_method_open(struct aml *a, const char *name, unsigned nargs);
/* Return (...): the object follows. */
void aml_return(struct aml *a);
/* Notify(path, value) */
void aml_notify(struct aml *a, const char *path, uint8_t value);
struct aml_mark aml_buffer_open(struct aml *a);
void aml_close(struct aml *a, struct aml_mark m);

/*
 * Resource descriptors, written inside a buffer opened with aml_buffer_open() (a
 * ResourceTemplate).  Windows of a host bridge are "producer" descriptors with fixed bounds.
 */
void aml_res_io(struct aml *a, uint16_t base, uint8_t len); /* IO(Decode16, b, b, 1, len) */
void aml_res_irq(struct aml *a, unsigned irq);		    /* IRQNoFlags() {irq} */
void aml_res_bus_window(struct aml *a, uint16_t min, uint16_t max);
void aml_res_io_window(struct aml *a, uint16_t min, uint16_t max);
void aml_res_mem32_window(struct aml *a, uint32_t base, uint32_t len);
void aml_res_mem64_window(struct aml *a, uint64_t base, uint64_t len);
void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len, bool writable);
void aml_res_end(struct aml *a);

#endif
