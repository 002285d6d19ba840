// SPDX-License-Identifier: BSD-2-Clause
/*
 * Split virtqueues (virtio 1.x 2.6): taking chains from the available ring, returning them on
 * the used ring, and deciding when the driver wants an interrupt.
 *
 * The rings live in guest memory that the guest may rewrite at any moment, from another
 * vCPU, while we read it.  So: every ring field is read with an atomic load, once; a
 * descriptor is copied to a local before it is checked and then only the copy is used (no
 * time-of-check/time-of-use gap); the available index is read with acquire ordering before
 * the ring entry and descriptors it publishes, and the used index is written with release
 * ordering after the used element.  Every rule a driver can break is checked: indices,
 * chain length (a cycle ends there), flag combinations, indirect tables, buffer addresses
 * and lengths.  A broken rule breaks the queue (and, through its host, puts the device in
 * NEEDS_RESET) rather than guessing.
 *
 * The queue knows nothing of its transport (virtq.h): guest memory, interrupts and the news of
 * a broken ring go through the struct vq_host it was given at vq_init.
 *
 * Ring layout for a queue of N entries (all little endian):
 *	descriptor table: N x { le64 addr; le32 len; le16 flags; le16 next; }
 *	available ring:   le16 flags; le16 idx; le16 ring[N]; le16 used_event;
 *	used ring:        le16 flags; le16 idx; { le32 id; le32 len; } ring[N]; le16 avail_event;
 */
#include "dev/virtio/virtq.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1

#define DESC_SIZE 16

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

/* ---- ring fields ---- */

static uint16_t *avail_field(const struct virtqueue *vq, unsigned i)
{
	return (uint16_t *)vq->avail + i; /* 0 flags, 1 idx, 2.. ring, 2 + N used_event */
}

static uint16_t *used_field16(const struct virtqueue *vq, unsigned i)
{
	return (uint16_t *)vq->used + i; /* 0 flags, 1 idx, 2 + 4N avail_event */
}

static uint16_t avail_idx(const struct virtqueue *vq)
{
	/* Acquire: the ring entry and descriptors the index publishes are read after it. */
	return le16toh(__atomic_load_n(avail_field(vq, 1), __ATOMIC_ACQUIRE));
}

static uint16_t avail_flags(const struct virtqueue *vq)
{
	return le16toh(__atomic_load_n(avail_field(vq, 0), __ATOMIC_RELAXED));
}

static uint16_t avail_ring(const struct virtqueue *vq, uint16_t i)
{
	return le16toh(
		__atomic_load_n(avail_field(vq, 2 + (i & (vq->size - 1))), __ATOMIC_RELAXED));
}

static uint16_t used_event(const struct virtqueue *vq)
{
	return le16toh(__atomic_load_n(avail_field(vq, 2 + vq->size), __ATOMIC_RELAXED));
}

static void set_avail_event(struct virtqueue *vq, uint16_t v)
{
	__atomic_store_n(used_field16(vq, 2 + 4 * vq->size), htole16(v), __ATOMIC_RELAXED);
}

static void set_used_flags(struct virtqueue *vq, uint16_t v)
{
	__atomic_store_n(used_field16(vq, 0), htole16(v), __ATOMIC_RELAXED);
}

/*
 * Copy descriptor @i of @table out of guest memory once.  memcpy, because an indirect table
 * need not be aligned; the compiler barrier keeps the compiler from re-reading guest memory
 * in place of the copy.
 */
static void desc_read(const void *table, unsigned i, struct desc *d)
{
	uint8_t raw[DESC_SIZE];
	uint64_t a;
	uint32_t l;
	uint16_t f, n;

	memcpy(raw, (const uint8_t *)table + (size_t)i * DESC_SIZE, DESC_SIZE);
	__asm__ __volatile__("" ::: "memory");
	memcpy(&a, raw, 8);
	memcpy(&l, raw + 8, 4);
	memcpy(&f, raw + 12, 2);
	memcpy(&n, raw + 14, 2);
	d->addr = le64toh(a);
	d->len = le32toh(l);
	d->flags = le16toh(f);
	d->next = le16toh(n);
}

/* ---- readiness ---- */

/* Lockless: a device may look before it takes the lock (a kick for a queue that is off). */
bool vq_ready(struct virtqueue *vq)
{
	return __atomic_load_n(&vq->enabled, __ATOMIC_ACQUIRE) &&
	       __atomic_load_n(&vq->started, __ATOMIC_ACQUIRE) &&
	       !__atomic_load_n(&vq->broken, __ATOMIC_ACQUIRE);
}

/* vq->lock held: the ring pointers are stable. */
static bool vq_live(struct virtqueue *vq)
{
	return vq_ready(vq) && vq->desc && vq->avail && vq->used;
}

static bool vq_has(const struct virtqueue *vq, unsigned feature)
{
	return vq->features & feature;
}

static void *vq_gpa(const struct virtqueue *vq, uint64_t gpa, uint64_t len)
{
	return vq->host->gpa(vq->host->opaque, gpa, len);
}

/* ---- life cycle ---- */

int vq_init(struct virtqueue *vq, unsigned index, uint16_t max_size, const struct vq_host *host)
{
	memset(vq, 0, sizeof(*vq));
	if (max_size > VIRTQ_MAX_SIZE || (max_size & (max_size - 1)))
		return -EINVAL;
	vq->index = index;
	vq->host = host;
	vq->max_size = max_size;
	vq->inflight = calloc(max_size ? max_size : 1, sizeof(*vq->inflight));
	vq->taken = calloc(max_size ? max_size : 1, sizeof(*vq->taken));
	if (!vq->inflight || !vq->taken) {
		/* NULL again: the transport's cleanup calls vq_destroy on this queue too. */
		free(vq->inflight);
		free(vq->taken);
		vq->inflight = NULL;
		vq->taken = NULL;
		return -ENOMEM;
	}
	pthread_mutex_init(&vq->lock, NULL);
	vq->size = max_size;
	vq->gen = 1;
	return 0;
}

void vq_destroy(struct virtqueue *vq)
{
	if (!vq->inflight)
		return;
	pthread_mutex_destroy(&vq->lock);
	free(vq->inflight);
	free(vq->taken);
	vq->inflight = NULL;
	vq->taken = NULL;
}

/* A new generation: every chain handed out so far belongs to nobody.  vq->lock held. */
static void vq_new_gen(struct virtqueue *vq)
{
	if (!++vq->gen)
		vq->gen = 1;
	memset(vq->inflight, 0, vq->max_size * sizeof(*vq->inflight));
	vq->last_avail = vq->used_idx = vq->signalled_used = 0;
	vq->signalled_valid = false;
}

void vq_reset(struct virtqueue *vq)
{
	pthread_mutex_lock(&vq->lock);
	__atomic_store_n(&vq->enabled, false, __ATOMIC_RELEASE);
	__atomic_store_n(&vq->started, false, __ATOMIC_RELEASE);
	__atomic_store_n(&vq->broken, false, __ATOMIC_RELEASE);
	vq->size = vq->max_size;
	vq->features = 0;
	vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
	vq->desc = vq->avail = vq->used = NULL;
	vq_new_gen(vq);
	pthread_mutex_unlock(&vq->lock);
}

/*
 * Where the rings of a queue of @size entries at these addresses live in host memory.  The
 * avail ring includes used_event and the used ring avail_event (EVENT_IDX), so every field
 * vq_pop/vq_push/vq_notify touch is inside guest RAM.  Alignments are the split ring's.
 */
static const char *vq_map_rings(const struct vq_host *h, uint16_t size, uint64_t desc_gpa,
				uint64_t avail_gpa, uint64_t used_gpa, void **desc, void **avail,
				void **used)
{
	if (!size || (size & (size - 1)))
		return "queue size is not a power of two";
	if ((desc_gpa & 15) || (avail_gpa & 1) || (used_gpa & 3))
		return "queue ring address is misaligned";
	*desc = h->gpa(h->opaque, desc_gpa, 16ULL * size);
	*avail = h->gpa(h->opaque, avail_gpa, 6 + 2ULL * size);
	*used = h->gpa(h->opaque, used_gpa, 6 + 8ULL * size);
	if (!*desc || !*avail || !*used)
		return "queue ring lies outside guest RAM";
	return NULL;
}

const char *vq_enable(struct virtqueue *vq)
{
	void *d, *a, *u;
	const char *why;

	pthread_mutex_lock(&vq->lock);
	why = vq_map_rings(vq->host, vq->size, vq->desc_gpa, vq->avail_gpa, vq->used_gpa, &d, &a,
			   &u);
	if (!why) {
		vq->desc = d;
		vq->avail = a;
		vq->used = u;
		vq_new_gen(vq);
		__atomic_store_n(&vq->enabled, true, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&vq->lock);
	return why;
}

void vq_start(struct virtqueue *vq, unsigned features)
{
	pthread_mutex_lock(&vq->lock);
	vq->features = features;
	__atomic_store_n(&vq->started, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vq->lock);
}

void vq_break(struct virtqueue *vq)
{
	pthread_mutex_lock(&vq->lock);
	__atomic_store_n(&vq->broken, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vq->lock);
}

/* ---- taking a chain ---- */

struct walk {
	struct virtqueue *vq;
	struct virtio_chain *c;
	bool writing;	 /* a writable buffer was seen: no readable one may follow */
	const char *why; /* what the driver got wrong */
};

static int walk_fail(struct walk *w, const char *why)
{
	w->why = why;
	return -EINVAL;
}

/* Append one buffer of the chain. */
static int walk_buffer(struct walk *w, const struct desc *d)
{
	struct virtio_chain *c = w->c;
	bool wr = d->flags & VRING_DESC_F_WRITE;
	unsigned n = c->nread + c->nwrite;
	void *p;

	if (!wr && w->writing)
		return walk_fail(w, "readable buffer after a writable one");
	w->writing |= wr;
	/* An empty buffer is allowed by the spec and carries nothing: not mapped, not listed. */
	if (!d->len)
		return 0;
	p = vq_gpa(w->vq, d->addr, d->len);
	if (!p)
		return walk_fail(w, "buffer outside guest RAM");
	if (n >= VIRTIO_MAX_IOV)
		return walk_fail(w, "too many buffers in one chain");
	c->iov[n].iov_base = p;
	c->iov[n].iov_len = d->len;
	/* At most VIRTIO_MAX_IOV lengths below 2^32 each: the totals cannot overflow. */
	if (wr) {
		c->nwrite++;
		c->write_len += d->len;
	} else {
		c->nread++;
		c->read_len += d->len;
	}
	return 0;
}

/*
 * An indirect table: @d names it.  Its length is a whole number of descriptors, at most
 * VIRTIO_MAX_IOV; inside it a chain starts at entry 0, may not be longer than the table (so
 * a cycle ends) and may not name another table.
 */
static int walk_indirect(struct walk *w, const struct desc *d)
{
	unsigned n = d->len / DESC_SIZE, i = 0, count = 0;
	const void *table;
	struct desc e;
	int ret;

	if (!vq_has(w->vq, VQ_F_INDIRECT))
		return walk_fail(w, "indirect descriptor without VIRTIO_F_INDIRECT_DESC");
	if (d->flags & VRING_DESC_F_NEXT)
		return walk_fail(w, "indirect descriptor with NEXT set");
	if (!d->len || d->len % DESC_SIZE)
		return walk_fail(w, "indirect table length is not a multiple of 16");
	if (n > VIRTIO_MAX_IOV)
		return walk_fail(w, "indirect table too long");
	table = vq_gpa(w->vq, d->addr, d->len);
	if (!table)
		return walk_fail(w, "indirect table outside guest RAM");
	for (;;) {
		if (i >= n)
			return walk_fail(w, "indirect descriptor index out of range");
		if (++count > n)
			return walk_fail(w, "indirect chain loops");
		desc_read(table, i, &e);
		if (e.flags & VRING_DESC_F_INDIRECT)
			return walk_fail(w, "nested indirect table");
		ret = walk_buffer(w, &e);
		if (ret || !(e.flags & VRING_DESC_F_NEXT))
			return ret;
		i = e.next;
	}
}

/*
 * The chain at @head of the descriptor table.  It may not be longer than the queue (so a
 * cycle ends); an indirect descriptor can only be its last one (INDIRECT and NEXT together
 * are forbidden).
 */
static int walk_chain(struct walk *w, uint16_t head)
{
	struct virtqueue *vq = w->vq;
	unsigned i = head, count = 0;
	struct desc d;
	int ret;

	for (;;) {
		if (i >= vq->size)
			return walk_fail(w, "descriptor index out of range");
		if (++count > vq->size)
			return walk_fail(w, "descriptor chain longer than the queue (a loop?)");
		desc_read(vq->desc, i, &d);
		if (d.flags & VRING_DESC_F_INDIRECT)
			return walk_indirect(w, &d);
		ret = walk_buffer(w, &d);
		if (ret || !(d.flags & VRING_DESC_F_NEXT))
			return ret;
		i = d.next;
	}
}

/* A malformed ring: break the queue now, report with the lock dropped (lock order). */
static int vq_malformed(struct virtqueue *vq, const char *why)
{
	__atomic_store_n(&vq->broken, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vq->lock);
	if (vq->host->broken)
		vq->host->broken(vq->host->opaque, vq, why);
	return -EINVAL;
}

int vq_pop(struct virtqueue *vq, struct virtio_chain *c)
{
	struct walk w = { .vq = vq, .c = c };
	uint16_t idx, head;

	pthread_mutex_lock(&vq->lock);
	if (!vq_live(vq)) {
		pthread_mutex_unlock(&vq->lock);
		return 0;
	}
	idx = avail_idx(vq);
	if (idx == vq->last_avail) {
		pthread_mutex_unlock(&vq->lock);
		return 0;
	}
	/* The driver cannot have more than a queue's worth of chains outstanding. */
	if ((uint16_t)(idx - vq->last_avail) > vq->size)
		return vq_malformed(vq, "available index moved by more than the queue size");
	head = avail_ring(vq, vq->last_avail);
	c->head = head;
	c->nread = c->nwrite = 0;
	c->read_len = c->write_len = 0;
	if (walk_chain(&w, head))
		return vq_malformed(vq, w.why);
	/* The driver may not offer a chain again before it got it back. */
	if (vq->inflight[head] == vq->gen)
		return vq_malformed(vq, "a descriptor chain made available again while in use");
	vq->inflight[head] = vq->gen;
	vq->taken[vq->last_avail & (vq->size - 1)] = head;
	vq->last_avail++;
	/*
	 * EVENT_IDX: ask for a kick when the driver makes the entry after this one available.
	 * The device looks at the ring again before it sleeps (vq_has_work), which closes the
	 * window between this store and the driver's next addition.
	 */
	if (vq_has(vq, VQ_F_EVENT_IDX))
		set_avail_event(vq, vq->last_avail);
	pthread_mutex_unlock(&vq->lock);
	return 1;
}

bool vq_has_work(struct virtqueue *vq)
{
	bool work;

	pthread_mutex_lock(&vq->lock);
	work = vq_live(vq) && avail_idx(vq) != vq->last_avail;
	pthread_mutex_unlock(&vq->lock);
	return work;
}

/* ---- returning chains ---- */

/*
 * vq_pop takes chains strictly in avail-ring order and changes nothing else in the ring, so
 * stepping last_avail back under the queue's lock returns the last chains unused (bhyve's
 * vq_retchains).  With EVENT_IDX the driver's next notification still comes when it adds
 * buffers.
 */
void vq_unpop(struct virtqueue *vq, unsigned n)
{
	if (!n)
		return;
	pthread_mutex_lock(&vq->lock);
	/* Only chains of this generation: after a reset there is nothing to give back. */
	if (vq_live(vq) && n <= (uint16_t)(vq->last_avail - vq->used_idx)) {
		for (unsigned i = 1; i <= n; i++) {
			uint16_t head = vq->taken[(uint16_t)(vq->last_avail - i) & (vq->size - 1)];

			if (head < vq->size && vq->inflight[head] == vq->gen)
				vq->inflight[head] = 0;
		}
		vq->last_avail = (uint16_t)(vq->last_avail - n);
	}
	pthread_mutex_unlock(&vq->lock);
}

void vq_push(struct virtqueue *vq, uint16_t head, uint32_t written)
{
	uint32_t *elem;

	pthread_mutex_lock(&vq->lock);
	/*
	 * After a reset, a new enable or a break the chain belongs to nobody: drop it, as well as
	 * a head that was never taken (nothing the device may complete).
	 */
	if (!vq_live(vq) || head >= vq->size || vq->inflight[head] != vq->gen) {
		pthread_mutex_unlock(&vq->lock);
		return;
	}
	vq->inflight[head] = 0;
	elem = (uint32_t *)((uint8_t *)vq->used + 4 + 8 * (vq->used_idx & (vq->size - 1)));
	__atomic_store_n(&elem[0], htole32(head), __ATOMIC_RELAXED);
	__atomic_store_n(&elem[1], htole32(written), __ATOMIC_RELAXED);
	vq->used_idx++;
	/* Release: the element is visible before the index that publishes it. */
	__atomic_store_n(used_field16(vq, 1), htole16(vq->used_idx), __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vq->lock);
}

/* virtio 1.x 2.6.7.2: has the used index passed @event since @old? */
static bool vring_need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

void vq_notify(struct virtqueue *vq)
{
	bool need;

	pthread_mutex_lock(&vq->lock);
	if (!vq_live(vq)) {
		pthread_mutex_unlock(&vq->lock);
		return;
	}
	/* The used index store must be visible before we read what the driver asked for. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (vq->used_idx == vq->signalled_used)
		need = false; /* nothing used since the last decision */
	else if (vq_has(vq, VQ_F_EVENT_IDX))
		need = !vq->signalled_valid ||
		       vring_need_event(used_event(vq), vq->used_idx, vq->signalled_used);
	else
		need = !(avail_flags(vq) & VRING_AVAIL_F_NO_INTERRUPT);
	vq->signalled_used = vq->used_idx;
	vq->signalled_valid = true;
	pthread_mutex_unlock(&vq->lock);
	if (need && vq->host->interrupt)
		vq->host->interrupt(vq->host->opaque, vq);
}

void vq_set_notify(struct virtqueue *vq, bool enable)
{
	pthread_mutex_lock(&vq->lock);
	if (!vq_live(vq)) {
		pthread_mutex_unlock(&vq->lock);
		return;
	}
	if (vq_has(vq, VQ_F_EVENT_IDX)) {
		/*
		 * On: kick me when the next entry appears.  Off: avail_event is simply not
		 * moved forward here; vq_pop still moves it past each chain it takes (as QEMU
		 * does), so with EVENT_IDX "off" only saves kicks for entries beyond the one
		 * after the last taken: correct, at worst an extra kick.
		 */
		if (enable)
			set_avail_event(vq, avail_idx(vq));
	} else {
		set_used_flags(vq, enable ? 0 : VRING_USED_F_NO_NOTIFY);
	}
	/* The caller looks at the ring again after enabling (vq_has_work): order the two. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&vq->lock);
}

/* ---- copying ---- */

/* Copy between @iov[0..n) from byte @off and flat memory: into the buffers if @to_iov. */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t off, void *out, const void *in,
		       size_t len, bool to_iov)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t l = iov[i].iov_len, k;

		if (off >= l) {
			off -= l;
			continue;
		}
		k = l - off < len - done ? l - off : len - done;
		if (to_iov)
			memcpy((uint8_t *)iov[i].iov_base + off, (const uint8_t *)in + done, k);
		else
			memcpy((uint8_t *)out + done, (uint8_t *)iov[i].iov_base + off, k);
		done += k;
		off = 0;
	}
	return done;
}

size_t chain_read(const struct virtio_chain *c, size_t off, void *buf, size_t len)
{
	return iov_copy(c->iov, c->nread, off, buf, NULL, len, false);
}

size_t chain_write(struct virtio_chain *c, size_t off, const void *buf, size_t len)
{
	return iov_copy(c->iov + c->nread, c->nwrite, off, NULL, buf, len, true);
}

/* ---- snapshots ---- */

void vq_save(struct virtqueue *vq, struct vq_saved *s)
{
	pthread_mutex_lock(&vq->lock);
	*s = (struct vq_saved){
		.size = vq->size,
		.last_avail = vq->last_avail,
		.used_idx = vq->used_idx,
		.signalled_used = vq->signalled_used,
		.enabled = vq->enabled,
		.signalled_valid = vq->signalled_valid,
		.broken = vq->broken,
		.desc_gpa = vq->desc_gpa,
		.avail_gpa = vq->avail_gpa,
		.used_gpa = vq->used_gpa,
	};
	pthread_mutex_unlock(&vq->lock);
}

const char *vq_saved_check(const struct vq_host *host, uint16_t max_size, const struct vq_saved *s)
{
	void *d, *a, *u;

	if (!s->size || s->size > max_size || (s->size & (s->size - 1)))
		return "queue size is not a power of two within the maximum";
	/* A working queue cannot have taken more chains than it has entries. */
	if (!s->broken && (uint16_t)(s->last_avail - s->used_idx) > s->size)
		return "more chains in use than the queue has entries";
	if (!s->enabled)
		return NULL;
	return vq_map_rings(host, s->size, s->desc_gpa, s->avail_gpa, s->used_gpa, &d, &a, &u);
}

unsigned vq_in_flight(const struct vq_saved *s)
{
	return s->broken ? 0 : (uint16_t)(s->last_avail - s->used_idx);
}

void vq_load(struct virtqueue *vq, const struct vq_saved *s)
{
	pthread_mutex_lock(&vq->lock);
	__atomic_store_n(&vq->started, false, __ATOMIC_RELEASE);
	vq->size = s->size;
	vq->desc_gpa = s->desc_gpa;
	vq->avail_gpa = s->avail_gpa;
	vq->used_gpa = s->used_gpa;
	vq->features = 0;
	vq_new_gen(vq);
	vq->last_avail = s->last_avail;
	vq->used_idx = s->used_idx;
	vq->signalled_used = s->signalled_used;
	vq->signalled_valid = s->signalled_valid;
	__atomic_store_n(&vq->broken, s->broken, __ATOMIC_RELEASE);
	vq->desc = vq->avail = vq->used = NULL;
	__atomic_store_n(&vq->enabled, s->enabled, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vq->lock);
	vq_remap(vq);
}

const char *vq_remap(struct virtqueue *vq)
{
	const char *why = NULL;
	void *d, *a, *u;

	pthread_mutex_lock(&vq->lock);
	if (vq->enabled) {
		why = vq_map_rings(vq->host, vq->size, vq->desc_gpa, vq->avail_gpa, vq->used_gpa,
				   &d, &a, &u);
		if (why) {
			__atomic_store_n(&vq->enabled, false, __ATOMIC_RELEASE);
			vq->desc = vq->avail = vq->used = NULL;
		} else {
			vq->desc = d;
			vq->avail = a;
			vq->used = u;
		}
	}
	pthread_mutex_unlock(&vq->lock);
	return why;
}
