/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Intel 82545EM (8254x family) registers, bits and descriptor layouts, as the PCI/PCI-X Family
 * of Gigabit Ethernet Controllers Software Developer's Manual (the "SDM") numbers them:
 * chapter 13 for registers, chapter 3 for descriptors, chapter 5 for the EEPROM, chapter 8
 * for the PHY (a Marvell 88E1011-compatible PHY at MDIO address 1).  Shared by the device and
 * its unit tests.
 */
#ifndef KHYVE_DEV_NET_E1000_REGS_H
#define KHYVE_DEV_NET_E1000_REGS_H

#define E1000_VENDOR 0x8086
#define E1000_DEV_82545EM 0x100F /* copper */
#define E1000_REVISION 0x01
#define E1000_MMIO_SIZE 0x20000 /* BAR 0: 128 KiB of registers */
#define E1000_IO_SIZE 0x40	/* BAR 1: IOADDR/IODATA (SDM 13.1.3) */
#define E1000_IOADDR 0x00
#define E1000_IODATA 0x04

/* ---- general (SDM 13.3, 13.4) ---- */
#define E1000_CTRL 0x0000
#define E1000_CTRL_ALIAS 0x0004 /* CTRL again, for old software */
#define E1000_STATUS 0x0008
#define E1000_EECD 0x0010
#define E1000_EERD 0x0014
#define E1000_CTRL_EXT 0x0018
#define E1000_FLA 0x001C
#define E1000_MDIC 0x0020
#define E1000_FCAL 0x0028
#define E1000_FCAH 0x002C
#define E1000_FCT 0x0030
#define E1000_VET 0x0038
#define E1000_ICR 0x00C0
#define E1000_ITR 0x00C4
#define E1000_ICS 0x00C8
#define E1000_IMS 0x00D0
#define E1000_IMC 0x00D8
#define E1000_RCTL 0x0100
#define E1000_FCTTV 0x0170
#define E1000_TXCW 0x0178
#define E1000_RXCW 0x0180
#define E1000_TCTL 0x0400
#define E1000_TIPG 0x0410
#define E1000_AIFS 0x0458
#define E1000_LEDCTL 0x0E00
#define E1000_PBA 0x1000
#define E1000_FCRTL 0x2160
#define E1000_FCRTH 0x2168
#define E1000_RDFH 0x2410
#define E1000_RDFT 0x2418
#define E1000_RDFHS 0x2420
#define E1000_RDFTS 0x2428
#define E1000_RDFPC 0x2430
#define E1000_RDBAL 0x2800
#define E1000_RDBAH 0x2804
#define E1000_RDLEN 0x2808
#define E1000_RDH 0x2810
#define E1000_RDT 0x2818
#define E1000_RDTR 0x2820
#define E1000_RXDCTL 0x2828
#define E1000_RADV 0x282C
#define E1000_RSRPD 0x2C00
#define E1000_TDFH 0x3410
#define E1000_TDFT 0x3418
#define E1000_TDFHS 0x3420
#define E1000_TDFTS 0x3428
#define E1000_TDFPC 0x3430
#define E1000_TDBAL 0x3800
#define E1000_TDBAH 0x3804
#define E1000_TDLEN 0x3808
#define E1000_TDH 0x3810
#define E1000_TDT 0x3818
#define E1000_TIDV 0x3820
#define E1000_TXDCTL 0x3828
#define E1000_TADV 0x382C
#define E1000_TSPMT 0x3830
#define E1000_STATS 0x4000 /* 64 statistics registers, 0x4000-0x40FC */
#define E1000_RXCSUM 0x5000
#define E1000_MTA 0x5200  /* 128 */
#define E1000_RA 0x5400	  /* 16 pairs RAL/RAH */
#define E1000_VFTA 0x5600 /* 128 */
#define E1000_WUC 0x5800
#define E1000_WUFC 0x5808
#define E1000_WUS 0x5810
#define E1000_MANC 0x5820
#define E1000_IPAV 0x5838
#define E1000_IP4AT 0x5840 /* 4 entries, 8 bytes apart */
#define E1000_IP6AT 0x5880 /* 4 dwords */
#define E1000_WUPL 0x5900
#define E1000_WUPM 0x5A00 /* 32 dwords */
#define E1000_FFLT 0x5F00 /* 4 entries, 8 bytes apart */
#define E1000_FFMT 0x9000 /* 128 entries, 8 bytes apart */
#define E1000_FFVT 0x9800 /* 128 entries, 8 bytes apart */

#define E1000_CTRL_FD (1U << 0)
#define E1000_CTRL_LRST (1U << 3)
#define E1000_CTRL_ASDE (1U << 5)
#define E1000_CTRL_SLU (1U << 6)
#define E1000_CTRL_ILOS (1U << 7)
#define E1000_CTRL_SPEED_MASK (3U << 8)
#define E1000_CTRL_FRCSPD (1U << 11)
#define E1000_CTRL_FRCDPLX (1U << 12)
#define E1000_CTRL_RST (1U << 26)
#define E1000_CTRL_VME (1U << 30)
#define E1000_CTRL_PHY_RST (1U << 31)

#define E1000_STATUS_FD (1U << 0)
#define E1000_STATUS_LU (1U << 1)
#define E1000_STATUS_SPEED_1000 (2U << 6)
#define E1000_STATUS_ASDV_1000 (2U << 8) /* speed the auto-detection found */
#define E1000_STATUS_BUS64 (1U << 12)

#define E1000_EECD_SK (1U << 0)
#define E1000_EECD_CS (1U << 1)
#define E1000_EECD_DI (1U << 2)
#define E1000_EECD_DO (1U << 3)
#define E1000_EECD_FWE_MASK (3U << 4)
#define E1000_EECD_FWE_DIS (1U << 4) /* reset value: flash writes disabled */
#define E1000_EECD_REQ (1U << 6)
#define E1000_EECD_GNT (1U << 7)
#define E1000_EECD_PRES (1U << 8)
/* EECD.SIZE (bit 9) is 0: a 64-word Microwire EEPROM with 6 address bits. */

#define E1000_EERD_START (1U << 0)
#define E1000_EERD_DONE (1U << 4)
#define E1000_EERD_ADDR_SHIFT 8
#define E1000_EERD_DATA_SHIFT 16

#define E1000_CTRL_EXT_EE_RST (1U << 13) /* reload from the EEPROM, self-clearing */

#define E1000_MDIC_DATA_MASK 0xFFFFU
#define E1000_MDIC_REG_SHIFT 16
#define E1000_MDIC_PHY_SHIFT 21
#define E1000_MDIC_OP_WRITE (1U << 26)
#define E1000_MDIC_OP_READ (2U << 26)
#define E1000_MDIC_READY (1U << 28)
#define E1000_MDIC_INT_EN (1U << 29)
#define E1000_MDIC_ERROR (1U << 30)

/* Interrupt causes: ICR, ICS, IMS, IMC (SDM 13.4.17-21). */
#define E1000_ICR_TXDW (1U << 0)
#define E1000_ICR_TXQE (1U << 1)
#define E1000_ICR_LSC (1U << 2)
#define E1000_ICR_RXSEQ (1U << 3)
#define E1000_ICR_RXDMT0 (1U << 4)
#define E1000_ICR_RXO (1U << 6)
#define E1000_ICR_RXT0 (1U << 7)
#define E1000_ICR_MDAC (1U << 9)
#define E1000_ICR_RXCFG (1U << 10)
#define E1000_ICR_PHYINT (1U << 12)
#define E1000_ICR_GPI_SDP6 (1U << 13)
#define E1000_ICR_GPI_SDP7 (1U << 14)
#define E1000_ICR_TXD_LOW (1U << 15)
#define E1000_ICR_SRPD (1U << 16)
#define E1000_ICR_ALL 0x0001F6DFU /* every cause the 82545EM has */

#define E1000_RCTL_EN (1U << 1)
#define E1000_RCTL_SBP (1U << 2)
#define E1000_RCTL_UPE (1U << 3)
#define E1000_RCTL_MPE (1U << 4)
#define E1000_RCTL_LPE (1U << 5)
#define E1000_RCTL_LBM_MASK (3U << 6)
#define E1000_RCTL_LBM_MAC (1U << 6)
#define E1000_RCTL_RDMTS_SHIFT 8
#define E1000_RCTL_MO_SHIFT 12
#define E1000_RCTL_BAM (1U << 15)
#define E1000_RCTL_BSIZE_SHIFT 16
#define E1000_RCTL_VFE (1U << 18)
#define E1000_RCTL_CFIEN (1U << 19)
#define E1000_RCTL_CFI (1U << 20)
#define E1000_RCTL_DPF (1U << 22)
#define E1000_RCTL_PMCF (1U << 23)
#define E1000_RCTL_BSEX (1U << 25)
#define E1000_RCTL_SECRC (1U << 26)

#define E1000_RDTR_FPD (1U << 31) /* flush partial descriptor block: fire now */

#define E1000_TCTL_EN (1U << 1)
#define E1000_TCTL_PSP (1U << 3)

#define E1000_TXDCTL_LWTHRESH_SHIFT 25

#define E1000_RXCSUM_PCSS_MASK 0xFFU
#define E1000_RXCSUM_IPOFL (1U << 8)
#define E1000_RXCSUM_TUOFL (1U << 9)

#define E1000_RAH_AV (1U << 31)
#define E1000_RAH_AS_SHIFT 16 /* 00 destination, 01 source address */

#define E1000_PBA_RESET 0x00000030U /* 48 KiB of the 64 KiB packet buffer receive */
#define E1000_PBA_RXA_MASK 0x7FU

/* ---- receive descriptor (SDM 3.2.3), 16 bytes ---- */
#define E1000_RXD_ADDR 0 /* u64 buffer address */
#define E1000_RXD_LEN 8	 /* u16 */
#define E1000_RXD_CSUM 10
#define E1000_RXD_STATUS 12
#define E1000_RXD_ERRORS 13
#define E1000_RXD_SPECIAL 14

#define E1000_RXD_STAT_DD (1U << 0)
#define E1000_RXD_STAT_EOP (1U << 1)
#define E1000_RXD_STAT_IXSM (1U << 2)
#define E1000_RXD_STAT_VP (1U << 3)
#define E1000_RXD_STAT_TCPCS (1U << 5)
#define E1000_RXD_STAT_IPCS (1U << 6)
#define E1000_RXD_STAT_PIF (1U << 7)
#define E1000_RXD_ERR_RXE (1U << 7)
#define E1000_RXD_ERR_IPE (1U << 6)
#define E1000_RXD_ERR_TCPE (1U << 5)

/* ---- transmit descriptors (SDM 3.3), 16 bytes ---- */
#define E1000_TXD_ADDR 0   /* u64 */
#define E1000_TXD_LOWER 8  /* u32: length / CSO / CMD (legacy); DTALEN / DTYP / DCMD */
#define E1000_TXD_UPPER 12 /* u32: STA / CSS / special (legacy); STA / POPTS / VLAN */

#define E1000_TXD_CMD_EOP (1U << 24)
#define E1000_TXD_CMD_IFCS (1U << 25)
#define E1000_TXD_CMD_IC (1U << 26)  /* legacy: insert checksum */
#define E1000_TXD_CMD_TSE (1U << 26) /* data: TCP segmentation */
#define E1000_TXD_CMD_RS (1U << 27)
#define E1000_TXD_CMD_RPS (1U << 28)
#define E1000_TXD_CMD_DEXT (1U << 29)
#define E1000_TXD_CMD_VLE (1U << 30)
#define E1000_TXD_CMD_IDE (1U << 31)
#define E1000_TXD_DTYP_MASK (0xFU << 20)
#define E1000_TXD_DTYP_CTX (0U << 20)
#define E1000_TXD_DTYP_DATA (1U << 20)
#define E1000_TXD_STAT_DD (1U << 0)
#define E1000_TXD_POPTS_IXSM (1U << 8) /* in the upper dword */
#define E1000_TXD_POPTS_TXSM (1U << 9)

/* Context descriptor: checksum offsets in the low 8 bytes, TUCMD in the command byte. */
#define E1000_TXC_TUCMD_TCP (1U << 24)
#define E1000_TXC_TUCMD_IP (1U << 25)
#define E1000_TXC_TUCMD_TSE (1U << 26)
#define E1000_TXC_PAYLEN_MASK 0x000FFFFFU

/* ---- statistics: register offsets within 0x4000 (SDM 13.7) ---- */
#define E1000_ST_CRCERRS 0x00
#define E1000_ST_MPC 0x10
#define E1000_ST_PRC64 0x5C
#define E1000_ST_PRC127 0x60
#define E1000_ST_PRC255 0x64
#define E1000_ST_PRC511 0x68
#define E1000_ST_PRC1023 0x6C
#define E1000_ST_PRC1522 0x70
#define E1000_ST_GPRC 0x74
#define E1000_ST_BPRC 0x78
#define E1000_ST_MPRC 0x7C
#define E1000_ST_GPTC 0x80
#define E1000_ST_GORCL 0x88
#define E1000_ST_GORCH 0x8C
#define E1000_ST_GOTCL 0x90
#define E1000_ST_GOTCH 0x94
#define E1000_ST_RNBC 0xA0
#define E1000_ST_RUC 0xA4
#define E1000_ST_ROC 0xAC
#define E1000_ST_TORL 0xC0
#define E1000_ST_TORH 0xC4
#define E1000_ST_TOTL 0xC8
#define E1000_ST_TOTH 0xCC
#define E1000_ST_TPR 0xD0
#define E1000_ST_TPT 0xD4
#define E1000_ST_PTC64 0xD8
#define E1000_ST_PTC127 0xDC
#define E1000_ST_PTC255 0xE0
#define E1000_ST_PTC511 0xE4
#define E1000_ST_PTC1023 0xE8
#define E1000_ST_PTC1522 0xEC
#define E1000_ST_MPTC 0xF0
#define E1000_ST_BPTC 0xF4
#define E1000_ST_TSCTC 0xF8
#define E1000_ST_TSCTFC 0xFC
#define E1000_NSTATS 64

/* ---- EEPROM (SDM 5.6): 64 words ---- */
#define E1000_EE_WORDS 64
#define E1000_EE_MAC 0x00 /* three words, low byte first */
#define E1000_EE_ID_LED 0x04
#define E1000_EE_PBA 0x08 /* two words: printed board assembly number */
#define E1000_EE_INIT1 0x0A
#define E1000_EE_SUBSYS 0x0B
#define E1000_EE_SUBVEN 0x0C
#define E1000_EE_DEVID 0x0D
#define E1000_EE_VENID 0x0E
#define E1000_EE_INIT2 0x0F
#define E1000_EE_INIT3 0x24 /* port A */
#define E1000_EE_CHECKSUM 0x3F
#define E1000_EE_SUM 0xBABA	 /* words 0x00..0x3F add up to this */
#define E1000_EE_READ_OPCODE 0x6 /* Microwire: start bit 1, opcode 10 */
#define E1000_EE_ABITS 6

/* ---- PHY registers (IEEE 802.3 clause 22 plus the 88E1011's own) ---- */
#define PHY_ADDR 1
#define PHY_CTRL 0x00
#define PHY_STATUS 0x01
#define PHY_ID1 0x02
#define PHY_ID2 0x03
#define PHY_ANAR 0x04
#define PHY_ANLPAR 0x05
#define PHY_ANER 0x06
#define PHY_NPTX 0x07
#define PHY_LPNPR 0x08
#define PHY_GBCR 0x09
#define PHY_GBSR 0x0A
#define PHY_EXT_STATUS 0x0F
#define PHY_M88_SPEC_CTRL 0x10
#define PHY_M88_SPEC_STATUS 0x11
#define PHY_M88_INT_ENABLE 0x12
#define PHY_M88_INT_STATUS 0x13
#define PHY_M88_EXT_SPEC_CTRL 0x14
#define PHY_M88_RX_ERR 0x15
#define PHY_M88_LED_CTRL 0x18
#define PHY_M88_PAGE 0x1D
#define PHY_M88_GEN_CTRL 0x1E
#define PHY_NREGS 32

#define PHY_CTRL_RESET (1U << 15)
#define PHY_CTRL_LOOPBACK (1U << 14)
#define PHY_CTRL_ANEG_EN (1U << 12)
#define PHY_CTRL_POWER_DOWN (1U << 11)
#define PHY_CTRL_ISOLATE (1U << 10)
#define PHY_CTRL_ANEG_RESTART (1U << 9)
#define PHY_STATUS_LINK (1U << 2)
#define PHY_STATUS_ANEG_DONE (1U << 5)
#define PHY_M88_SPEC_STATUS_LINK (1U << 10)

#endif
