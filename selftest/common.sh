# selftest/common.sh - shared settings of the selftest scripts (sourced, not run).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$HOME/.cargo/bin:$PATH
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${CEPH_RS_STATE:-/var/tmp/ceph_rs}          # everything the environment runs keeps state here
CACHE=${CEPH_RS_CACHE:-/var/cache/ceph_rs}         # survives between runs: cargo target, venv, headers
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
CEPH_CONF=$STATE/ceph/ceph.conf
CEPH_CLIENT=samba
CEPH_FS=cephfs
SHARE_PATH=/share                                   # the share's path inside CephFS
SOCK=$STATE/libcephfsd.sock
SMB=$STATE/smb
SMB_PORT=${CEPH_RS_SMB_PORT:-4455}
SMB_RF=$STATE/smb-rf                                 # a second smbd: [cephrs] alone, recvfile on
SMB_RF_PORT=${CEPH_RS_SMB_RF_PORT:-4456}
SMB_WIN=$STATE/smb-win                               # a third smbd: Windows-sized (1 MiB) I/O
SMB_WIN_PORT=${CEPH_RS_SMB_WIN_PORT:-4457}
MODULES_DIR=/usr/lib/x86_64-linux-gnu/samba/vfs
VENV=$CACHE/venv
TEST_USERS=("rsuser1:3001:Ceph-rs-1" "rsuser2:3002:Ceph-rs-2")
export CEPH_RS_CEPH_CONF=$CEPH_CONF CEPH_RS_CLIENT_ID=$CEPH_CLIENT CEPH_RS_FS=$CEPH_FS
export CEPH_RS_SOCKET=$SOCK CEPH_RS_SMB_PORT=$SMB_PORT CEPH_RS_STATE=$STATE
export CEPH_RS_SMB_RF_PORT=$SMB_RF_PORT CEPH_RS_SMB_WIN_PORT=$SMB_WIN_PORT

alive() { local st; st=$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null); [ -n "$st" ] && [ "$st" != Z ]; }
# pid from a pid file, only if that process still runs the expected executable
pid_of() {  # pid_of PIDFILE EXE
  local p; [ -f "$1" ] || return 1; p=$(tr -dc 0-9 < "$1"); [ -n "$p" ] || return 1
  local exe; exe=$(readlink "/proc/$p/exe" 2>/dev/null) || return 1
  # a rebuilt binary shows as "EXE (deleted)" in a process started before the build
  alive "$p" && { [ "$exe" = "$2" ] || [ "$exe" = "$2 (deleted)" ]; } && echo "$p"
}
stop_pid() {  # stop_pid NAME PID [SECS]: SIGTERM, then SIGKILL after SECS (default 10)
  local i n=$(( ${3:-10} * 5 ))
  kill -TERM "$2" 2>/dev/null || return 0
  for i in $(seq 1 $n); do alive "$2" || return 0; sleep 0.2; done
  echo "$1 (pid $2) ignored SIGTERM: SIGKILL"; kill -KILL "$2" 2>/dev/null || true; sleep 0.2
}
