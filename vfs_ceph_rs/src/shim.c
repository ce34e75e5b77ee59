/* SPDX-License-Identifier: GPL-3.0-or-later
 * The few Samba C macros the module needs, as callable functions. */
#include "wrapper.h"
#include "shim.h"

bool ceph_rs_shim_debug_enabled(int cls, int level)
{
	return CHECK_DEBUGLVLC(cls, level);
}

bool ceph_rs_shim_debug(int cls, int level, const char *location, const char *func,
			const char *msg)
{
	if (!CHECK_DEBUGLVLC(cls, level)) {
		return false;
	}
	if (!dbghdrclass(level, cls, location, func)) {
		return false;
	}
	dbgtext("%s\n", msg);
	return true;
}

int ceph_rs_shim_va_arg_int(va_list ap)
{
	va_list c;
	int v;

	va_copy(c, ap);
	v = va_arg(c, int);
	va_end(c);
	return v;
}
