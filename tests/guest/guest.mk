# khyve test guest: make fragment, included by the top-level Makefile.
# Standalone: make -f tests/guest/guest.mk build/testguest
# Defines only build/testguest, build/guest/* and GUEST_* variables.

GUEST_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
GUEST_OUT := build/guest

GUEST_CFLAGS := -std=gnu11 -m64 -O2 -Wall -Wextra -Werror -ffreestanding \
	-fno-pic -fno-pie -mno-red-zone -mgeneral-regs-only \
	-fno-stack-protector -fno-asynchronous-unwind-tables \
	-fno-builtin -mcmodel=small -fcf-protection=none -MMD -MP
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none \
	-Wl,-z,max-page-size=4096 -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments \
	-Wl,-T,$(GUEST_DIR)/guest.ld

GUEST_SRCS := head.S entry.S kernel.c lib.c acpi.c hw.c smp.c main.c \
	selftest.c counter.c \
	pci.c virtio.c virtio_blk.c virtio_net.c virtio_rnd.c evil.c
GUEST_OBJS := $(addprefix $(GUEST_OUT)/,$(addsuffix .o,$(basename $(GUEST_SRCS))))

build/testguest: $(GUEST_OBJS) $(GUEST_DIR)/guest.ld
	$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ $(GUEST_OBJS)

$(GUEST_OUT)/%.o: $(GUEST_DIR)/%.c $(GUEST_DIR)/guest.mk
	@mkdir -p $(GUEST_OUT)
	$(CC) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST_OUT)/%.o: $(GUEST_DIR)/%.S $(GUEST_DIR)/guest.mk
	@mkdir -p $(GUEST_OUT)
	$(CC) $(GUEST_CFLAGS) -c -o $@ $<

-include $(GUEST_OBJS:.o=.d)
