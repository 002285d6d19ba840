/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * USB devices as a host controller sees them (USB 2.0 chapter 9): a device answers control
 * requests on endpoint 0 and moves data on its other endpoints; the controller (xhci.c) owns
 * the rings, the slot and endpoint state and the bus address, and calls these hooks when the
 * guest's transfer reaches the device.  So a new USB device is one file with one ops table and
 * knows nothing of xHCI, and the controller knows nothing of HID.
 *
 * Locking: the controller's lock (@lock, set when the device is attached) covers the device's
 * state.  Hooks are called with it held.  A device that gets data from another thread (the
 * tablet from the console backend) takes it, queues the data and calls usb_dev_wakeup() so the
 * controller retries the endpoint that was waiting (NAKed).
 *
 * Snapshots: save writes the device's state; load decodes into a staging copy it allocates
 * and validates; commit installs it.  The controller calls commit only once every part of its
 * own state checked out, so a refused snapshot changes nothing.
 */
#ifndef KHYVE_DEV_USB_USB_H
#define KHYVE_DEV_USB_USB_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct sstream;
struct usb_dev;

enum usb_speed {
	USB_SPEED_FULL = 1, /* xHCI's default protocol speed IDs */
	USB_SPEED_LOW = 2,
	USB_SPEED_HIGH = 3,
	USB_SPEED_SUPER = 4,
};

/* The SETUP packet (USB 2.0 9.3), decoded from little endian. */
struct usb_setup {
	uint8_t type; /* bmRequestType */
	uint8_t request;
	uint16_t value, index, length;
};

#define USB_DIR_IN 0x80
#define USB_TYPE_MASK 0x60
#define USB_TYPE_STANDARD 0x00
#define USB_TYPE_CLASS 0x20
#define USB_RECIP_MASK 0x1F
#define USB_RECIP_DEVICE 0x00
#define USB_RECIP_INTERFACE 0x01
#define USB_RECIP_ENDPOINT 0x02

#define USB_REQ_GET_STATUS 0x00
#define USB_REQ_CLEAR_FEATURE 0x01
#define USB_REQ_SET_FEATURE 0x03
#define USB_REQ_SET_ADDRESS 0x05
#define USB_REQ_GET_DESCRIPTOR 0x06
#define USB_REQ_SET_DESCRIPTOR 0x07
#define USB_REQ_GET_CONFIGURATION 0x08
#define USB_REQ_SET_CONFIGURATION 0x09
#define USB_REQ_GET_INTERFACE 0x0A
#define USB_REQ_SET_INTERFACE 0x0B

#define USB_DT_DEVICE 0x01
#define USB_DT_CONFIG 0x02
#define USB_DT_STRING 0x03
#define USB_DT_INTERFACE 0x04
#define USB_DT_ENDPOINT 0x05

/* Results of a transfer hook besides a byte count. */
#define USB_NAK (-EAGAIN)  /* nothing to send now: the controller retries after a wakeup */
#define USB_STALL (-EPIPE) /* request or endpoint not supported: a STALL handshake */

struct usb_dev_ops {
	const char *name; /* "tablet", the value of the controller's device option */
	unsigned version; /* of the state save() writes */
	enum usb_speed speed;
	/*
	 * A control transfer.  @data holds setup->length bytes: what the host sends (OUT) or
	 * room for the answer (IN).  Returns the bytes answered (IN; <= setup->length), 0
	 * (OUT, no data) or USB_STALL.  SET_ADDRESS is handled by the controller.
	 */
	int (*control)(struct usb_dev *d, const struct usb_setup *setup, uint8_t *data);
	/* Data for IN endpoint @ep (1..15), at most @len bytes: bytes, USB_NAK or USB_STALL. */
	int (*data_in)(struct usb_dev *d, unsigned ep, uint8_t *buf, size_t len);
	/* Data from the host for OUT endpoint @ep: 0, USB_NAK or USB_STALL. */
	int (*data_out)(struct usb_dev *d, unsigned ep, const uint8_t *buf, size_t len);
	/*
	 * Bus reset: back to the default state (unconfigured).  Input queued for the host that
	 * reset it is dropped: that host starts over and asked for none of it.
	 */
	void (*reset)(struct usb_dev *d);
	int (*save)(struct usb_dev *d, struct sstream *s);
	/* Decode and validate into a malloc'ed staging copy *@staged, or fail the stream. */
	int (*load)(struct usb_dev *d, struct sstream *s, unsigned version, void **staged);
	void (*commit)(struct usb_dev *d, void *staged); /* install it and free it */
	void (*destroy)(struct usb_dev *d);
};

struct usb_dev {
	const struct usb_dev_ops *ops;
	pthread_mutex_t *lock; /* the controller's */
	/* Set by the controller when it attaches the device. */
	void (*wakeup)(void *host, struct usb_dev *d, unsigned ep);
	void *host;
	unsigned port; /* root port number, 1-based */
};

/* Tell the controller IN endpoint @ep has data now.  With *d->lock held. */
static inline void usb_dev_wakeup(struct usb_dev *d, unsigned ep)
{
	if (d->wakeup)
		d->wakeup(d->host, d, ep);
}

/*
 * The device types (usb_hid.c ...), their state guarded by the controller's @lock.  NULL with
 * @err when one cannot be created.  The controller sets wakeup, host and port under @lock.
 */
struct usb_dev *usb_tablet_create(struct vm *vm, pthread_mutex_t *lock, char *err, size_t errlen);

/* Create a device by option name ("tablet"); NULL with @err. */
struct usb_dev *usb_dev_create(struct vm *vm, const char *name, pthread_mutex_t *lock, char *err,
			       size_t errlen);

#endif
