/* SPDX-License-Identifier: GPL-3.0-or-later
 * The few Samba C macros the module needs, as callable functions. */
#include "wrapper.h"
#include "shim.h"
#include <sys/ioctl.h>

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

bool ceph_rs_shim_fsp_conn_signs_or_seals(const struct files_struct *fsp)
{
	const struct smbXsrv_connection *xconn = NULL;
	const struct smbXsrv_tcon *tcon = NULL;

	if (fsp == NULL || fsp->conn == NULL || fsp->conn->sconn == NULL ||
	    fsp->conn->sconn->client == NULL) {
		return false;
	}
	xconn = fsp->conn->sconn->client->connections;
	if (xconn == NULL || xconn->protocol < PROTOCOL_SMB2_02) {
		return false;
	}
	if (xconn->smb2.signing_mandatory ||
	    (xconn->smb2.client.security_mode & SMB2_NEGOTIATE_SIGNING_REQUIRED) != 0) {
		return true;
	}
	tcon = fsp->conn->tcon;
	return tcon != NULL && tcon->global != NULL &&
	       ((tcon->global->signing_flags & SMBXSRV_PROCESSED_SIGNED_PACKET) != 0 ||
		(tcon->global->encryption_flags & SMBXSRV_PROCESSED_ENCRYPTED_PACKET) != 0);
}

size_t ceph_rs_shim_fsp_client_unread(const struct files_struct *fsp)
{
	const struct smbXsrv_connection *xconn = NULL;
	int n = 0;

	if (fsp == NULL || fsp->conn == NULL || fsp->conn->sconn == NULL ||
	    fsp->conn->sconn->client == NULL) {
		return 0;
	}
	xconn = fsp->conn->sconn->client->connections;
	if (xconn == NULL || xconn->transport.sock < 0 ||
	    ioctl(xconn->transport.sock, FIONREAD, &n) != 0 || n < 0) {
		return 0;
	}
	return (size_t)n;
}

bool ceph_rs_shim_smb2_no_interim(const void *mem_ctx)
{
	const void *p = mem_ctx;
	int i;

	/* mem_ctx is the state of smb_vfs_call_*_send's tevent request (one per VFS
	 * module above this one that passes the call on), under smbd's aio_extra, under
	 * the request. */
	for (i = 0; i < 8 && p != NULL; i++) {
		struct smbd_smb2_request *req =
			talloc_get_type(p, struct smbd_smb2_request);
		if (req != NULL) {
			/* Only a READ's or WRITE's own I/O: a server-side copy (an IOCTL
			 * whose reads and writes come here too) keeps smbd's default. */
			uint16_t op = SVAL(SMBD_SMB2_IN_HDR_PTR(req), SMB2_HDR_OPCODE);
			if (op != SMB2_OP_READ && op != SMB2_OP_WRITE) {
				return false;
			}
			smb2_request_set_async_internal(req, true);
			return true;
		}
		p = talloc_parent(p);
	}
	return false;
}

bool ceph_rs_shim_copy_lock_ok(struct files_struct *fsp, off_t off, off_t len, bool write)
{
	struct lock_struct lck;

	init_strict_lock_struct(fsp, fsp->op->global->open_persistent_id, off, len,
				write ? WRITE_LOCK : READ_LOCK,
				lp_posix_cifsu_locktype(fsp), &lck);
	return SMB_VFS_STRICT_LOCK_CHECK(fsp->conn, fsp, &lck);
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
