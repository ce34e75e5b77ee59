/* SPDX-License-Identifier: GPL-3.0-or-later
 * C macros of Samba that Rust cannot call, wrapped as functions (shim.c). */
#ifndef CEPH_RS_SHIM_H
#define CEPH_RS_SHIM_H
#include <stdbool.h>

/* DEBUGC(cls, level, ...) with a preformatted message: true if it was logged. */
bool ceph_rs_shim_debug(int cls, int level, const char *location, const char *func,
			const char *msg);
/* CHECK_DEBUGLVLX(cls, level) */
bool ceph_rs_shim_debug_enabled(int cls, int level);
/* va_arg(ap, int) on a copy of ap (the fcntl slot's argument). */
#include <stdarg.h>
int ceph_rs_shim_va_arg_int(va_list ap);
#endif
