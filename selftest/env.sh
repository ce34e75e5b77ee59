#!/bin/bash
# selftest/env.sh up|down|status - the whole ceph_rs environment on this machine:
#   a single-node CephFS (selftest/ceph.sh), libcephfsd on $SOCK, and a private smbd on
#   127.0.0.1:4455 with two shares on the same CephFS path:
#     [cephrs]  vfs objects = acl_xattr ceph_rs   (this project)
#     [cephnew] vfs objects = acl_xattr ceph_new  (Samba's direct libcephfs module, the bar)
#     [plain]   a local-disk share (the per-connection floor)
#   a second smbd on 127.0.0.1:4456 set up as a server with ceph_rs shares only
#   would be (`min receivefile size = 65536`), with [cephrs] alone, and a third on
#   127.0.0.1:4457 with [cephrs], [cephnew] and [plain] whose READs and WRITEs are at
#   most 1 MiB, the size Windows uses (smbclient then moves 1 MiB at a time).
# `up` installs and builds what is missing first; it is idempotent. `down` stops exactly
# what `up` started (by pid) and leaves nothing running.
set -euo pipefail
source "$(dirname "$0")/common.sh"
say() { echo "env: $*"; }
die() { echo "env: ERROR: $*" >&2; exit 1; }

DAEMON_BIN=$CARGO_TARGET_DIR/release/libcephfsd
SMBD=/usr/sbin/smbd

build() {
  bash "$REPO/selftest/install.sh"
  bash "$REPO/samba-headers/prepare.sh"
  say "cargo build --release (target dir $CARGO_TARGET_DIR)"
  (cd "$REPO" && cargo build --release --workspace --bins --lib 2>&1 | grep -vE '^\s+(Compiling|Checking)' || true)
  [ -f "$CARGO_TARGET_DIR/release/libceph_rs.so" ] && [ -x "$DAEMON_BIN" ] || die "cargo build failed"
  # smbd loads <modulesdir>/vfs/<name>.so; the registered name must match the file name
  install -m 0644 "$CARGO_TARGET_DIR/release/libceph_rs.so" "$MODULES_DIR/ceph_rs.so.new"
  mv -f "$MODULES_DIR/ceph_rs.so.new" "$MODULES_DIR/ceph_rs.so"
  say "installed $MODULES_DIR/ceph_rs.so"
}

venv() {
  if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c 'import smbprotocol, pytest, matplotlib' 2>/dev/null; then
    say "python venv with smbprotocol + pytest in $VENV"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check smbprotocol pytest matplotlib
  fi
}

users() {
  local u name uid pw
  for u in "${TEST_USERS[@]}"; do
    IFS=: read -r name uid pw <<<"$u"
    id "$name" >/dev/null 2>&1 || useradd -M -u "$uid" -d /nonexistent -s /usr/sbin/nologin "$name"
  done
}

cephfs_init() {  # the share directory inside CephFS, world-writable with the sticky bit
  /usr/bin/python3 - "$CEPH_CONF" "$CEPH_FS" "$SHARE_PATH" <<'PY'
import sys, cephfs
conf, fsname, path = sys.argv[1:]
fs = cephfs.LibCephFS(conffile=conf, auth_id="admin")
fs.mount(filesystem_name=fsname.encode())
try:
    fs.mkdir(path, 0o1777)
except cephfs.ObjectExists:
    pass
fs.chmod(path, 0o1777)
fs.unmount(); fs.shutdown()
PY
}

daemon_up() {
  local p
  if p=$(pid_of "$STATE/libcephfsd.pid" "$DAEMON_BIN"); then say "libcephfsd already running (pid $p)"; return; fi
  rm -f "$SOCK"
  # CEPH_RS_DAEMON_ARGS: extra options (e.g. "--threads 16") for tuning runs;
  # CEPH_RS_DAEMON_WRAP: a command that runs the daemon (tests: setpriv without a capability)
  # shellcheck disable=SC2086
  setsid ${CEPH_RS_DAEMON_WRAP:-} "$DAEMON_BIN" --socket "$SOCK" --allowed-uid 0 ${CEPH_RS_DAEMON_ARGS:-} </dev/null >>"$STATE/libcephfsd.log" 2>&1 &
  p=$!; echo "$p" > "$STATE/libcephfsd.pid"
  local i; for i in $(seq 1 100); do [ -S "$SOCK" ] && break; alive "$p" || break; sleep 0.1; done
  [ -S "$SOCK" ] || die "libcephfsd failed to start; see $STATE/libcephfsd.log"
  say "libcephfsd up (pid $p, socket $SOCK)"
}

# The [global] section of an smbd keeping its state under $1, on 127.0.0.1:$2.
smb_global() {
  cat <<CONF
[global]
	netbios name = CEPHRSLAB
	workgroup = LAB
	server role = standalone server
	smb ports = $2
	interfaces = 127.0.0.1
	bind interfaces only = yes
	disable netbios = yes
	private dir = $1/private
	lock directory = $1/lock
	state directory = $1/state
	cache directory = $1/cache
	pid directory = $1/pid
	ncalrpc dir = $1/ncalrpc
	log file = $1/log/log.%m
	log level = 1 vfs:2 ceph_rs:3
	max log size = 0
	passdb backend = tdbsam:$1/private/passdb.tdb
	load printers = no
	printing = bsd
	printcap name = /dev/null
	disable spoolss = yes
	usershare path =
	map to guest = never
CONF
}

# The [cephrs] share (smb_cephrs NAME: the same share under another name).
smb_cephrs() {
  cat <<CONF
[${1:-cephrs}]
	path = $SHARE_PATH
	read only = no
	vfs objects = acl_xattr streams_xattr ceph_rs
	ceph_rs:config_file = $CEPH_CONF
	ceph_rs:user_id = $CEPH_CLIENT
	ceph_rs:filesystem = $CEPH_FS
	ceph_rs:socket = $SOCK
	kernel share modes = no
	kernel oplocks = no
	# Reads of unsigned connections: libcephfsd sends the bytes onto the client's socket
	# itself (ceph_new has no sendfile). smbd tries sendfile only for reads it does not
	# send async (the module sends async those of a client keeping many in flight).
	# (Writes: "min receivefile size" is global and a ceph_new share fails under it, so
	# only the second smbd sets it.)
	use sendfile = yes
	aio read size = 0
CONF
}

# The [cephnew] and [plain] shares.
smb_cephnew_plain() {
  cat <<CONF
[cephnew]
	path = $SHARE_PATH
	read only = no
	vfs objects = acl_xattr streams_xattr ceph_new
	ceph_new:config_file = $CEPH_CONF
	ceph_new:user_id = $CEPH_CLIENT
	ceph_new:filesystem = $CEPH_FS
	kernel share modes = no
	kernel oplocks = no

[plain]
	path = $SMB/plain
	read only = no
CONF
}

smb_dirs() {  # smb_dirs DIR: the state directories of an smbd
  mkdir -p "$1"/{private,lock,state,cache,pid,log,ncalrpc}
  chmod 700 "$1/private"
}

smb_users() {  # smb_users CONF: the test users in that smbd's passdb
  local u name uid pw
  for u in "${TEST_USERS[@]}"; do
    IFS=: read -r name uid pw <<<"$u"
    (echo "$pw"; echo "$pw") | smbpasswd -c "$1" -a -s "$name" >/dev/null
  done
}

smb_conf() {
  smb_dirs "$SMB"
  mkdir -p "$SMB/plain"; chmod 1777 "$SMB/plain"
  {
    echo "# generated by selftest/env.sh"
    smb_global "$SMB" "$SMB_PORT"
    echo
    smb_cephrs
    echo
    # [cephrs] whose every request is encrypted (the server asks it of the client).
    smb_cephrs cephrs_sealed
    printf '\tserver smb encrypt = required\n\tbrowseable = no\n\n'
    smb_cephnew_plain
    cat <<CONF

# Misconfigured on purpose: the tests check each is a refused tree connect with one
# clear log line, never a crashed smbd.
[bad_socket]
	path = $SHARE_PATH
	vfs objects = acl_xattr ceph_rs
	ceph_rs:socket = $STATE/no-such-libcephfsd.sock
	ceph_rs:config_file = $CEPH_CONF
	ceph_rs:user_id = $CEPH_CLIENT
	kernel share modes = no
	browseable = no

[bad_config]
	path = $SHARE_PATH
	vfs objects = acl_xattr ceph_rs
	ceph_rs:socket = $SOCK
	ceph_rs:config_file = $STATE/no-such-ceph.conf
	ceph_rs:user_id = $CEPH_CLIENT
	kernel share modes = no
	browseable = no

[bad_user]
	path = $SHARE_PATH
	vfs objects = acl_xattr ceph_rs
	ceph_rs:socket = $SOCK
	ceph_rs:config_file = $CEPH_CONF
	ceph_rs:user_id = nosuchclient
	kernel share modes = no
	browseable = no
CONF
  } > "$SMB/smb.conf"
  smb_users "$SMB/smb.conf"
  # The second smbd: how a server with ceph_rs shares only is set up. smbd leaves the
  # bytes of an unsigned WRITE of 64 KiB or more in the client's socket and libcephfsd
  # takes them off it (recvfile). The setting is global, and a ceph_new share fails
  # under it, so it cannot be on the first smbd. bench_stream's [cephrs_rf].
  smb_dirs "$SMB_RF"
  {
    echo "# generated by selftest/env.sh"
    smb_global "$SMB_RF" "$SMB_RF_PORT"
    printf '\tmin receivefile size = 65536\n\n'
    smb_cephrs
  } > "$SMB_RF/smb.conf"
  smb_users "$SMB_RF/smb.conf"
  # The third smbd: READs and WRITEs of at most 1 MiB, as Windows sends them (smbd
  # offers its client no more; smbclient then keeps 16 of them in flight), for
  # bench_stream's rows of that size.
  smb_dirs "$SMB_WIN"
  {
    echo "# generated by selftest/env.sh"
    smb_global "$SMB_WIN" "$SMB_WIN_PORT"
    printf '\tsmb2 max read = 1048576\n\tsmb2 max write = 1048576\n\tsmb2 max trans = 1048576\n\n'
    smb_cephrs
    echo
    smb_cephnew_plain
  } > "$SMB_WIN/smb.conf"
  smb_users "$SMB_WIN/smb.conf"
}

smbd_start() {  # smbd_start DIR PORT
  local p
  if p=$(pid_of "$1/pid/smbd.pid" "$SMBD"); then say "smbd already running (pid $p) on 127.0.0.1:$2"; return; fi
  if ss -ltnH "sport = :$2" | grep -q .; then
    die "port $2 is already in use by another process: $(ss -ltnpH "sport = :$2" | awk '{print $NF}')"
  fi
  # -F: foreground, smbd makes its own process group (never --no-process-group: on SIGTERM
  # the parent signals its whole group). smbd calls setsid() itself, so no setsid here.
  "$SMBD" -F --debug-stdout -s "$1/smb.conf" </dev/null >>"$1/smbd.out" 2>&1 &
  local i; for i in $(seq 1 100); do ss -ltnH "sport = :$2" | grep -q . && break; sleep 0.1; done
  p=$(pid_of "$1/pid/smbd.pid" "$SMBD") || die "smbd failed to start; see $1/smbd.out"
  say "smbd up (pid $p) on 127.0.0.1:$2"
}

smbd_up() {
  smb_conf
  smbd_start "$SMB" "$SMB_PORT"
  smbd_start "$SMB_RF" "$SMB_RF_PORT"
  smbd_start "$SMB_WIN" "$SMB_WIN_PORT"
}
up() {
  mkdir -p "$STATE" "$CACHE"
  build
  venv
  users
  bash "$REPO/selftest/ceph.sh" up
  cephfs_init
  daemon_up
  smbd_up
  cat <<MSG

ceph_rs is up: a real CephFS ($CEPH_CONF), libcephfsd ($SOCK) and smbd on 127.0.0.1:$SMB_PORT.
Connect:
  smbclient -p $SMB_PORT //127.0.0.1/cephrs  -U rsuser1%Ceph-rs-1     (ceph_rs, through libcephfsd)
  smbclient -p $SMB_PORT //127.0.0.1/cephnew -U rsuser1%Ceph-rs-1     (Samba's ceph_new, for comparison)
  smbclient -p $SMB_RF_PORT //127.0.0.1/cephrs  -U rsuser1%Ceph-rs-1     (ceph_rs on an smbd without ceph_new shares: recvfile)
  smbclient -p $SMB_WIN_PORT //127.0.0.1/cephrs  -U rsuser1%Ceph-rs-1     (READs and WRITEs of 1 MiB, as Windows; also [cephnew], [plain])
Daemon status: $CARGO_TARGET_DIR/release/libcephfsd status --socket $SOCK
Logs: $SMB/smbd.out, $STATE/libcephfsd.log, $STATE/ceph/log/
Stop everything: bash selftest/env.sh down
MSG
}

down() {
  local p d
  for d in "$SMB" "$SMB_RF" "$SMB_WIN"; do
    if p=$(pid_of "$d/pid/smbd.pid" "$SMBD"); then stop_pid smbd "$p" 15; say "smbd stopped ($d)"; fi
  done
  if p=$(pid_of "$STATE/libcephfsd.pid" "$DAEMON_BIN"); then stop_pid libcephfsd "$p" 10; say "libcephfsd stopped"; fi
  rm -f "$SOCK"
  bash "$REPO/selftest/ceph.sh" down
}

status() {
  local rc=0 p
  bash "$REPO/selftest/ceph.sh" status || rc=1
  if p=$(pid_of "$STATE/libcephfsd.pid" "$DAEMON_BIN"); then echo "libcephfsd: up (pid $p)"; else echo "libcephfsd: down"; rc=1; fi
  if p=$(pid_of "$SMB/pid/smbd.pid" "$SMBD"); then echo "smbd: up (pid $p) on 127.0.0.1:$SMB_PORT"; else echo "smbd: down"; rc=1; fi
  if p=$(pid_of "$SMB_RF/pid/smbd.pid" "$SMBD"); then echo "smbd (recvfile): up (pid $p) on 127.0.0.1:$SMB_RF_PORT"; else echo "smbd (recvfile): down"; rc=1; fi
  if p=$(pid_of "$SMB_WIN/pid/smbd.pid" "$SMBD"); then echo "smbd (1 MiB I/O): up (pid $p) on 127.0.0.1:$SMB_WIN_PORT"; else echo "smbd (1 MiB I/O): down"; rc=1; fi
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  build) build ;;
  smbd) smbd_up ;;
  conf) smb_conf; say "rewrote $SMB/smb.conf (new connections use it)" ;;
  restart-daemon)  # rebuild (not with CEPH_RS_NO_BUILD=1), then restart libcephfsd only (smbd children reconnect)
    [ -n "${CEPH_RS_NO_BUILD:-}" ] || build
    if p=$(pid_of "$STATE/libcephfsd.pid" "$DAEMON_BIN"); then stop_pid libcephfsd "$p" 10; fi
    daemon_up ;;
  *) echo "usage: $0 up|down|status|build|smbd|conf|restart-daemon" >&2; exit 2 ;;
esac
