// SPDX-License-Identifier: BSD-2-Clause
/*
 * The display/input backend (see console.h): input front ends and the routing of events to
 * them, the key and pointer state of the clients, and the display surface.
 *
 * Locks: c->lock guards the input list and the client input state, and is held while a front
 * end's callback runs (so console_input_remove() waits for a callback in progress).  c->dlock
 * guards the display ops and the surface, and is held during refresh() and while the VNC
 * server copies from the surface.  Order: c->dlock, then c->lock, then a device's lock.
 */
#include "backend/console.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend/console_int.h"
#include "vm.h"

#define KEYS 256

struct console_input {
	struct console *c;
	const struct console_input_ops *ops;
	void *opaque;
	struct console_input *next;
};

struct console {
	struct vm *vm;
	int refs; /* under console_refs_lock */

	pthread_mutex_t lock;
	struct console_input *inputs;
	uint8_t down[KEYS / 8]; /* keys the clients hold */
	unsigned px, py, mask;	/* last pointer position and RFB button mask */

	pthread_mutex_t dlock;
	const struct console_display_ops *dops;
	void *dopaque;
	struct console_surface surf;
	atomic_uint width, height; /* the surface's, for scaling pointer positions */
	struct vnc *vnc;
};

/* Front ends of several devices take and drop references while the VM is built. */
static pthread_mutex_t console_refs_lock = PTHREAD_MUTEX_INITIALIZER;

struct console *console_get(struct vm *vm)
{
	struct console *c;

	pthread_mutex_lock(&console_refs_lock);
	c = vm->console;
	if (!c) {
		c = calloc(1, sizeof(*c));
		if (c) {
			c->vm = vm;
			pthread_mutex_init(&c->lock, NULL);
			pthread_mutex_init(&c->dlock, NULL);
			vm->console = c;
		}
	}
	if (c)
		c->refs++;
	pthread_mutex_unlock(&console_refs_lock);
	return c;
}

void console_put(struct console *c)
{
	bool last;

	if (!c)
		return;
	pthread_mutex_lock(&console_refs_lock);
	last = --c->refs == 0;
	if (last)
		c->vm->console = NULL;
	pthread_mutex_unlock(&console_refs_lock);
	if (!last)
		return;
	console_display_detach(c);
	free(c->surf.pixels);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->dlock);
	free(c);
}

struct console *console_of(struct vm *vm)
{
	return vm->console;
}

/* ---- input ---- */

struct console_input *console_input_add(struct console *c, const struct console_input_ops *ops,
					void *opaque)
{
	struct console_input *in = calloc(1, sizeof(*in)), **pp;

	if (!in)
		return NULL;
	in->c = c;
	in->ops = ops;
	in->opaque = opaque;
	pthread_mutex_lock(&c->lock);
	/* Highest priority first; among equals, the first registered. */
	for (pp = &c->inputs; *pp && (*pp)->ops->priority >= ops->priority; pp = &(*pp)->next)
		;
	in->next = *pp;
	*pp = in;
	pthread_mutex_unlock(&c->lock);
	return in;
}

void console_input_remove(struct console_input *in)
{
	struct console *c;

	if (!in)
		return;
	c = in->c;
	pthread_mutex_lock(&c->lock);
	for (struct console_input **pp = &c->inputs; *pp; pp = &(*pp)->next) {
		if (*pp == in) {
			*pp = in->next;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	free(in);
}

static bool input_wants(const struct console_input *in, bool keyboard)
{
	bool kbd = in->ops->type == CONSOLE_KEYBOARD;

	return kbd == keyboard && (!in->ops->active || in->ops->active(in->opaque));
}

/* The front end that gets the next key (@keyboard) or pointer event.  c->lock held. */
static struct console_input *input_target(struct console *c, bool keyboard)
{
	for (struct console_input *in = c->inputs; in; in = in->next)
		if (input_wants(in, keyboard))
			return in;
	return NULL;
}

static bool key_is_down(const struct console *c, unsigned k)
{
	return c->down[k / 8] & (1U << (k % 8));
}

static void key_set(struct console *c, unsigned k, bool down)
{
	if (down)
		c->down[k / 8] |= (uint8_t)(1U << (k % 8));
	else
		c->down[k / 8] &= (uint8_t) ~(1U << (k % 8));
}

/* c->lock held. */
static void key_deliver(struct console *c, unsigned keycode, bool down)
{
	struct console_input *in;

	if (!keycode || keycode >= KEYS || key_is_down(c, keycode) == down)
		return; /* unknown, a client's autorepeat, or a release of a key not held */
	key_set(c, keycode, down);
	in = input_target(c, true);
	if (in && in->ops->key)
		in->ops->key(in->opaque, keycode, down);
}

void console_key_event(struct console *c, unsigned keycode, bool down)
{
	pthread_mutex_lock(&c->lock);
	key_deliver(c, keycode, down);
	pthread_mutex_unlock(&c->lock);
}

void console_keysym_event(struct console *c, uint32_t keysym, bool down)
{
	console_key_event(c, keymap_keysym_to_key(keysym), down);
}

/* RFB button mask to CONSOLE_BTN_*. */
static unsigned rfb_buttons(unsigned mask)
{
	return (mask & 0x01 ? CONSOLE_BTN_LEFT : 0) | (mask & 0x02 ? CONSOLE_BTN_MIDDLE : 0) |
	       (mask & 0x04 ? CONSOLE_BTN_RIGHT : 0) | (mask & 0x80 ? CONSOLE_BTN_SIDE : 0) |
	       (mask & 0x100 ? CONSOLE_BTN_EXTRA : 0);
}

static unsigned abs_scale(unsigned v, unsigned size)
{
	if (size < 2)
		return 0;
	if (v >= size)
		v = size - 1;
	return (unsigned)((uint64_t)v * CONSOLE_ABS_MAX / (size - 1));
}

/* c->lock held. */
static void pointer_deliver(struct console *c, unsigned x, unsigned y, unsigned mask)
{
	unsigned pressed = mask & ~c->mask;
	int dz = (pressed & 0x08 ? 1 : 0) - (pressed & 0x10 ? 1 : 0);
	unsigned buttons = rfb_buttons(mask);
	int dx = (int)x - (int)c->px, dy = (int)y - (int)c->py;
	bool changed = dx || dy || dz || rfb_buttons(c->mask) != buttons;
	struct console_input *in;

	c->px = x;
	c->py = y;
	c->mask = mask;
	in = input_target(c, false);
	if (!changed || !in)
		return;
	if (in->ops->type == CONSOLE_POINTER_ABS && in->ops->abs)
		in->ops->abs(in->opaque, abs_scale(x, atomic_load(&c->width)),
			     abs_scale(y, atomic_load(&c->height)), dz, buttons);
	else if (in->ops->type == CONSOLE_POINTER_REL && in->ops->rel)
		in->ops->rel(in->opaque, dx, dy, dz, buttons);
}

void console_pointer_event(struct console *c, unsigned x, unsigned y, unsigned mask)
{
	pthread_mutex_lock(&c->lock);
	pointer_deliver(c, x, y, mask);
	pthread_mutex_unlock(&c->lock);
}

void console_release_all(struct console *c)
{
	pthread_mutex_lock(&c->lock);
	for (unsigned k = 1; k < KEYS; k++)
		if (key_is_down(c, k))
			key_deliver(c, k, false);
	if (c->mask)
		pointer_deliver(c, c->px, c->py, 0);
	pthread_mutex_unlock(&c->lock);
}

/* ---- display ---- */

int console_surface_resize(struct console_surface *s, unsigned w, unsigned h)
{
	struct console *c = s->priv;
	uint32_t *p;

	if (!w || !h || w > CONSOLE_MAX_WIDTH || h > CONSOLE_MAX_HEIGHT)
		return -EINVAL;
	if (w == s->width && h == s->height && s->pixels)
		return 0;
	p = calloc((size_t)w * h, sizeof(*p));
	if (!p)
		return -ENOMEM;
	free(s->pixels);
	s->pixels = p;
	s->width = w;
	s->height = h;
	atomic_store(&c->width, w);
	atomic_store(&c->height, h);
	console_damage(s, 0, 0, w, h);
	return 0;
}

void console_damage(struct console_surface *s, unsigned x, unsigned y, unsigned w, unsigned h)
{
	unsigned x1, y1;

	if (x >= s->width || y >= s->height || !w || !h)
		return;
	x1 = w > s->width - x ? s->width : x + w;
	y1 = h > s->height - y ? s->height : y + h;
	if (!s->damaged) {
		s->dx0 = x;
		s->dy0 = y;
		s->dx1 = x1;
		s->dy1 = y1;
		s->damaged = true;
		return;
	}
	s->dx0 = x < s->dx0 ? x : s->dx0;
	s->dy0 = y < s->dy0 ? y : s->dy0;
	s->dx1 = x1 > s->dx1 ? x1 : s->dx1;
	s->dy1 = y1 > s->dy1 ? y1 : s->dy1;
}

struct console_surface *console_refresh(struct console *c, bool full)
{
	pthread_mutex_lock(&c->dlock);
	if (!c->dops) {
		pthread_mutex_unlock(&c->dlock);
		return NULL;
	}
	/* Damage adds up until the VNC server takes it (a screenshot leaves it there). */
	c->dops->refresh(c->dopaque, &c->surf, full || !c->surf.pixels);
	return &c->surf;
}

void console_refresh_done(struct console *c)
{
	pthread_mutex_unlock(&c->dlock);
}

int console_display_attach(struct console *c, const struct console_display_ops *ops, void *opaque,
			   const struct console_vnc_cfg *cfg, char *err, size_t errlen)
{
	int ret;

	pthread_mutex_lock(&c->dlock);
	if (c->dops) {
		pthread_mutex_unlock(&c->dlock);
		snprintf(err, errlen, "only one display per VM is supported");
		return -EBUSY;
	}
	c->dops = ops;
	c->dopaque = opaque;
	c->surf.priv = c;
	pthread_mutex_unlock(&c->dlock);
	if (!cfg)
		return 0;
	ret = vnc_start(c, cfg, &c->vnc, err, errlen);
	if (ret) {
		pthread_mutex_lock(&c->dlock);
		c->dops = NULL;
		c->dopaque = NULL;
		pthread_mutex_unlock(&c->dlock);
	}
	return ret;
}

void console_display_detach(struct console *c)
{
	if (c->vnc) {
		vnc_stop(c->vnc);
		c->vnc = NULL;
	}
	pthread_mutex_lock(&c->dlock);
	c->dops = NULL;
	c->dopaque = NULL;
	pthread_mutex_unlock(&c->dlock);
}

int console_snapshot_image(struct console *c, uint32_t **pixels, unsigned *width, unsigned *height)
{
	struct console_surface *s = console_refresh(c, false);
	size_t n;

	if (!s)
		return -ENODEV;
	n = (size_t)s->width * s->height;
	*pixels = malloc(n * sizeof(**pixels));
	if (*pixels) {
		memcpy(*pixels, s->pixels, n * sizeof(**pixels));
		*width = s->width;
		*height = s->height;
	}
	/* The damage stays for the VNC server: it sends it with its next update. */
	console_refresh_done(c);
	return *pixels ? 0 : -ENOMEM;
}
