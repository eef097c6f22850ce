#!/usr/bin/env bash
# A single-node Slurm on loopback for tests and demos: root, no systemd, fake GPUs as GRES.
#
#   scripts/slurm-local.sh install          apt-get the Debian packages (munge, slurmctld, slurmd, client)
#   scripts/slurm-local.sh start DIR        start munged + slurmctld + slurmd with all state under DIR
#   scripts/slurm-local.sh stop DIR         TERM the daemons started by `start DIR` (pid files in DIR)
#
# Environment for `start`: SLURM_GPUS (fake GPUs, default 8), SLURM_GPU_TYPE (GRES type, default
# h100), SLURM_CTLD_PORT / SLURM_D_PORT (default 6817 / 6818). Clients need SLURM_CONF=DIR/slurm.conf.
# Everything (munge socket and key included) lives under DIR, so a second cluster or a system
# Slurm on the same machine is left alone; DIR and its parents must be traversable by the munge
# user (e.g. mode 755 under /tmp), because munged runs as that user.
set -euo pipefail
# The daemons live in sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

install_packages() {
  export DEBIAN_FRONTEND=noninteractive
  if dpkg -s munge slurmctld slurmd slurm-client >/dev/null 2>&1; then return 0; fi
  # --no-install-recommends: 8 packages instead of 42.
  apt-get update -qq
  apt-get install -y -q --no-install-recommends munge slurmctld slurmd slurm-client >/dev/null
}

start() {
  local D=$1
  local gpus=${SLURM_GPUS:-8} gtype=${SLURM_GPU_TYPE:-h100}
  local cport=${SLURM_CTLD_PORT:-6817} dport=${SLURM_D_PORT:-6818}
  mkdir -p "$D"/{state,spool,gpu}
  chmod 755 "$D"
  # --- munge: our own daemon, key and socket under DIR (munged runs as the munge user).
  install -d -o munge -g munge -m 755 "$D/munge"
  if [ ! -s "$D/munge/munge.key" ]; then
    dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
    chown munge:munge "$D/munge/munge.key"
    chmod 400 "$D/munge/munge.key"
  fi
  runuser -u munge -- /usr/sbin/munged --socket="$D/munge/munge.socket" \
    --key-file="$D/munge/munge.key" --pid-file="$D/munge/munged.pid" \
    --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed"
  munge -S "$D/munge/munge.socket" -n | unmunge -S "$D/munge/munge.socket" >/dev/null
  # --- fake GPUs: GRES needs character devices (NVIDIA's major 195); plain files leave
  # CUDA_VISIBLE_DEVICES empty, and `Count=` without `File=` marks the node INVAL.
  local last=$((gpus - 1)) i
  for i in $(seq 0 "$last"); do
    [ -e "$D/gpu/nvidia$i" ] || mknod "$D/gpu/nvidia$i" c 195 "$i"
  done
  local H
  H=$(hostname -s)
  cat >"$D/slurm.conf" <<CONF
ClusterName=suanli
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.socket
# Bind 6817/6818 to 127.0.0.1 only.
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
# Let a small box declare a big node (64 CPUs, $gpus GPUs).
SlurmdParameters=config_overrides
# Track job processes by process group: a child that outlives its parent is still killed
# (linuxproc loses reparented children; cgroup needs systemd here).
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Finished jobs (state, exit code, start/end, TRES) go to a text file that sacct -c reads.
JobCompType=jobcomp/filetxt
JobCompLoc=$D/jobcomp.log
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
# Schedule at most every 0.1 s instead of 2 s: test jobs start sooner.
SchedulerParameters=sched_min_interval=100000
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
KillWait=5
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
SlurmctldPort=$cport
SlurmdPort=$dport
GresTypes=gpu
NodeName=$H NodeAddr=127.0.0.1 CPUs=64 RealMemory=512000 Gres=gpu:$gtype:$gpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  cat >"$D/gres.conf" <<CONF
AutoDetect=off
NodeName=$H Name=gpu Type=$gtype File=$D/gpu/nvidia[0-$last]
CONF
  export SLURM_CONF=$D/slurm.conf
  # Both daemonize; their stdio must not hold the caller's pipes open (logs go to DIR).
  slurmctld -f "$SLURM_CONF" </dev/null >/dev/null 2>&1
  slurmd -f "$SLURM_CONF" </dev/null >/dev/null 2>&1
  # Wait up to 30 s for the node to be idle; a client call against a controller that died
  # retries for a minute, so each one is bounded too.
  local deadline=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$deadline" ]; do
    timeout 5 sinfo -h -o %T 2>/dev/null | grep -qx idle && return 0
    sleep 0.1
  done
  echo "slurm node did not become idle; see $D/slurmctld.log and $D/slurmd.log" >&2
  stop "$D"
  return 1
}

stop() {
  local D=$1 f pids=()
  for f in "$D/slurmd.pid" "$D/slurmctld.pid" "$D/munge/munged.pid"; do
    [ -s "$f" ] && pids+=("$(cat "$f")")
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  # slurmctld saves its state on TERM; give the daemons 10 s, then KILL what is left.
  local deadline=$((SECONDS + 10)) pid left
  while [ "$SECONDS" -lt "$deadline" ]; do
    left=0
    for pid in "${pids[@]}"; do
      ps -o stat= -p "$pid" 2>/dev/null | grep -qv '^Z' && left=1
    done
    [ "$left" = 0 ] && return 0
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

case "${1:-}" in
  install) install_packages ;;
  start) start "${2:?usage: $0 start DIR}" ;;
  stop) stop "${2:?usage: $0 stop DIR}" ;;
  *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
