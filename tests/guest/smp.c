// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: AP start-up (INIT-SIPI-SIPI through the local
 * APIC's ICR, one AP at a time) and the AP's ring-3 life.
 */
#include "user.h"

extern char tramp_start[], tramp_end[];
extern volatile u32 ap_boot_cpu;	/* head.S: read by the AP in ring 0 */

struct cpu_state cpus[MAX_CPUS];
volatile u64 go_mode;
volatile u32 lapic_timer_count;
u32 ncpus_up = 1;

#define ICR_INIT	0x00004500
#define ICR_SIPI	0x00004600

static int ap_boot(u32 cpu, u32 apic)
{
	u64 end;

	WRITE_ONCE(ap_boot_cpu, cpu);
	lapic_send_ipi(apic, ICR_INIT);
	udelay(10000);
	lapic_send_ipi(apic, ICR_SIPI | TRAMP_BASE >> 12);
	udelay(200);
	lapic_send_ipi(apic, ICR_SIPI | TRAMP_BASE >> 12);
	end = rdtsc() + 3 * tsc_hz;
	while (!cpus[cpu].alive) {
		if ((s64)(rdtsc() - end) > 0)
			return -1;
		watchdog_poll();
		cpu_relax();
	}
	return 0;
}

/* CPU 0 is the BSP; the others follow in MADT order. */
int smp_start(void)
{
	u32 i;
	int err = 0;

	memcpy((void *)TRAMP_BASE, tramp_start, tramp_end - tramp_start);
	for (i = 1; i < plat.ncpus; i++) {
		if (ap_boot(i, plat.apic_id[i])) {
			pr("cpu %u (apic %u) did not start\n", i, plat.apic_id[i]);
			err = -1;
			continue;
		}
		ncpus_up++;
	}
	WRITE_ONCE(ap_boot_cpu, 0);
	return err;
}

static void counters_clear(u32 cpu)
{
	memset(percpu[cpu], 0, PERCPU_CLEAR_SIZE);
}

void ap_main(u32 cpu)
{
	counters_clear(cpu);
	lapic_init();
	cpus[cpu].apic_id = lapic_id();
	if (lapic_timer_count)
		lapic_timer_periodic(lapic_timer_count);
	WRITE_ONCE(cpus[cpu].alive, 1);
	while (!go_mode)
		sys_hlt(&go_mode, 0);
	if (go_mode == MODE_COUNTER + 1)
		counter_ap(cpu);
	if (go_mode == MODE_UART + 1)
		uart_ap(cpu);
	for (;;)
		sys_hlt(NULL, 0);
}
