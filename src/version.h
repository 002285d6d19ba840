/* SPDX-License-Identifier: BSD-2-Clause */
#ifndef KHYVE_VERSION_H
#define KHYVE_VERSION_H

#define KHYVE_VERSION "0.1.0"

#endif
