/* SPDX-License-Identifier: GPL-3.0-or-later
 * Everything the ceph_rs VFS module needs from Samba: bindgen reads this (build.rs),
 * and samba-headers/prepare.sh makes sure every header it pulls in (including the
 * generated ones) exists in the prepared tree. */
#include "includes.h"
#include "system/filesys.h"
#include "smbd/smbd.h"
#include "smbd/globals.h"
#include "lib/util/tevent_unix.h"
#include "lib/util/tevent_ntstatus.h"
#include "modules/posixacl_xattr.h"
#include "lib/util/debug.h"
#include <tevent.h>
#include <talloc.h>
