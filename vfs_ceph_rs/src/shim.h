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
/* Bytes the client has sent on fsp's connection that smbd has not read yet (its socket's
 * FIONREAD; smbd reads one request at a time, so these are the requests queued behind the
 * one it is serving). 0 when it cannot tell. (smbd internals: the first struct
 * smbXsrv_connection's transport.sock, smbd/globals.h.) */
#include <stddef.h>
size_t ceph_rs_shim_fsp_client_unread(const struct files_struct *fsp);
/* Ask smbd to send no interim response (STATUS_PENDING) for the SMB2 READ or WRITE an
 * async VFS call serves, as smbd's own FLUSH does (smb2_request_set_async_internal,
 * smbd/globals.h): mem_ctx is what the *_send call got, a few talloc generations below
 * the request (smb_vfs_call_*_send's state, smbd's aio_extra). False (nothing done) if
 * no struct smbd_smb2_request is among its first 8 ancestors (an SMB1 request, say) or
 * the one found is not a READ or WRITE (a server-side copy's IOCTL). */
bool ceph_rs_shim_smb2_no_interim(const void *mem_ctx);
/* Whether a server-side copy may read (write == false) or write len bytes of fsp at
 * off: no other open's byte-range lock is in the way (what vfs_default checks before a
 * copy: init_strict_lock_struct + SMB_VFS_STRICT_LOCK_CHECK, smbd/locking). */
#include <sys/types.h>
bool ceph_rs_shim_copy_lock_ok(struct files_struct *fsp, off_t off, off_t len, bool write);
/* smbd's offload tokens (source3/modules/offload_token.h, Samba 4.22, which the
 * prepared headers do not include): the token a client gets for a copy's source file
 * with FSCTL_SRV_REQUEST_RESUME_KEY and names in its FSCTL_SRV_COPYCHUNK requests. */
struct vfs_offload_ctx;
NTSTATUS vfs_offload_token_ctx_init(TALLOC_CTX *mem_ctx, struct vfs_offload_ctx **_ctx);
NTSTATUS vfs_offload_token_db_store_fsp(struct vfs_offload_ctx *ctx,
					const struct files_struct *fsp,
					const DATA_BLOB *token_blob);
NTSTATUS vfs_offload_token_db_fetch_fsp(struct vfs_offload_ctx *ctx,
					const DATA_BLOB *token_blob,
					struct files_struct **fsp);
NTSTATUS vfs_offload_token_create_blob(TALLOC_CTX *mem_ctx,
				       const struct files_struct *fsp, uint32_t fsctl,
				       DATA_BLOB *token_blob);
NTSTATUS vfs_offload_token_check_handles(uint32_t fsctl, struct files_struct *src_fsp,
					 struct files_struct *dst_fsp);
/* va_arg(ap, int) on a copy of ap (the fcntl slot's argument). */
#include <stdarg.h>
int ceph_rs_shim_va_arg_int(va_list ap);
#endif
