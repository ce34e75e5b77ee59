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
/* Whether the READs of fsp's tree connect are signed or encrypted: the SMB2 server
 * requires signing, or the client said in its NEGOTIATE that it does (Windows 11 24H2,
 * domain members, smbclient --option=clientsigning=required), or the tree connect has
 * carried a signed or an encrypted request. smbd never uses sendfile for those. (smbd
 * internals: struct smbXsrv_connection, smbd/globals.h; smbXsrv_tcon_global0.) */
struct files_struct;
bool ceph_rs_shim_fsp_conn_signs_or_seals(const struct files_struct *fsp);
/* Ask smbd to send no interim response (STATUS_PENDING) for the SMB2 READ or WRITE an
 * async VFS call serves, as smbd's own FLUSH does (smb2_request_set_async_internal,
 * smbd/globals.h): mem_ctx is what the *_send call got, a few talloc generations below
 * the request (smb_vfs_call_*_send's state, smbd's aio_extra). False (nothing done) if
 * no struct smbd_smb2_request is among its first 8 ancestors (an SMB1 request, say) or
 * the one found is not a READ or WRITE (a server-side copy's IOCTL). */
bool ceph_rs_shim_smb2_no_interim(const void *mem_ctx);
/* va_arg(ap, int) on a copy of ap (the fcntl slot's argument). */
#include <stdarg.h>
int ceph_rs_shim_va_arg_int(va_list ap);
#endif
