// SPDX-License-Identifier: BSD-2-Clause
/*
 * virtio-rnd (virtio entropy device, id 4): one queue; each chain's writable buffers are
 * filled with bytes from getrandom(), at most RND_MAX_REQUEST per chain so one request cannot
 * keep a vCPU thread busy for long.  Readable buffers are ignored.  `-s SLOT,virtio-rnd`.
 *
 * Requests are served synchronously on the vCPU thread that kicks the queue, so once the
 * vCPUs are paused nothing is in flight: pause has nothing to drain and the device has no
 * state of its own beyond the transport's (state version 1, empty).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#include "dev/pci/pci.h"
#include "dev/virtio/virtio.h"
#include "sstream.h"

#define RND_QUEUE_SIZE 256
#define RND_MAX_REQUEST (64 * 1024)
#define RND_CHUNK 4096

struct rnd {
	pthread_mutex_t lock; /* one server at a time; guards chain */
	struct virtio_chain chain;
};

/* Fill up to RND_MAX_REQUEST bytes of @c's writable buffers; returns the bytes written. */
static uint32_t rnd_fill(struct virtio_chain *c)
{
	uint64_t want = c->write_len < RND_MAX_REQUEST ? c->write_len : RND_MAX_REQUEST;
	uint8_t buf[RND_CHUNK];
	size_t done = 0;

	while (done < want) {
		size_t n = want - done < sizeof(buf) ? want - done : sizeof(buf);
		ssize_t got = getrandom(buf, n, 0);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		done += chain_write(c, done, buf, (size_t)got);
	}
	return (uint32_t)done;
}

static void rnd_serve(struct virtio_dev *vd, struct virtqueue *vq)
{
	struct rnd *r = vd->priv;

	pthread_mutex_lock(&r->lock);
	while (vq_pop(vq, &r->chain) == 1)
		vq_push(vq, r->chain.head, rnd_fill(&r->chain));
	vq_notify(vq);
	pthread_mutex_unlock(&r->lock);
}

static void rnd_queue_notify(struct virtio_dev *vd, struct virtqueue *vq)
{
	rnd_serve(vd, vq);
}

/* Buffers the driver added before DRIVER_OK (their kicks were dropped). */
static void rnd_driver_ok(struct virtio_dev *vd)
{
	rnd_serve(vd, &vd->vq[0]);
}

static int rnd_init(struct virtio_dev *vd, char *err, size_t errlen)
{
	struct rnd *r = calloc(1, sizeof(*r));

	if (!r) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&r->lock, NULL);
	vd->priv = r;
	vd->nqueues = 1;
	vd->queue_max[0] = RND_QUEUE_SIZE;
	vd->host_features = 0;
	vd->config_len = 0;
	return 0;
}

static int rnd_pause(struct virtio_dev *vd)
{
	return 0;
}

/* After a load the ring may hold chains the driver kicked for on the source: serve them. */
static int rnd_resume(struct virtio_dev *vd)
{
	if (virtio_driver_ok(vd))
		rnd_serve(vd, &vd->vq[0]);
	return 0;
}

static int rnd_save(struct virtio_dev *vd, struct sstream *s)
{
	return ss_error(s);
}

static int rnd_load(struct virtio_dev *vd, struct sstream *s, unsigned version)
{
	return ss_finish(s);
}

static void rnd_destroy(struct virtio_dev *vd)
{
	struct rnd *r = vd->priv;

	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	free(r);
	vd->priv = NULL;
}

static const struct virtio_dev_ops virtio_rnd_ops = {
	.name = "virtio-rnd",
	.device_id = VIRTIO_ID_RNG,
	.pci_class = 0xFF, /* "other": the spec names no class for entropy */
	.pci_subclass = 0x00,
	.version = 1,
	.init = rnd_init,
	.queue_notify = rnd_queue_notify,
	.driver_ok = rnd_driver_ok,
	.pause = rnd_pause,
	.resume = rnd_resume,
	.save = rnd_save,
	.load = rnd_load,
	.destroy = rnd_destroy,
};

VIRTIO_PCI_EMUL(virtio_rnd, "virtio-rnd", virtio_rnd_ops);
