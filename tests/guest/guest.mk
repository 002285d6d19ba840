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

# Every .c and .S here is part of the guest: a new driver needs no line in this file.
GUEST_SRCS := head.S entry.S $(sort $(filter-out head.S entry.S,$(notdir $(wildcard $(GUEST_DIR)/*.c $(GUEST_DIR)/*.S))))
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
