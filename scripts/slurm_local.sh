#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests and for trying hydra/launcher=slurm without a cluster:
#   scripts/slurm_local.sh start   # installs slurm-wlm and munge with apt if missing; prints `export SLURM_CONF=...`
#   scripts/slurm_local.sh stop    # stops the daemons it started (by their PIDs) and removes its state
#   scripts/slurm_local.sh status
# Everything lives under $SLURM_LOCAL_DIR (default /tmp/crossvit-slurm): slurm.conf, logs, spool, state, PID files.
# Needs root (slurmd runs jobs as their users; munged and the daemons write system paths). One partition, `debug`,
# with this machine's CPUs; no accounting (jobs are tracked by squeue alone).
set -euo pipefail
DIR=${SLURM_LOCAL_DIR:-/tmp/crossvit-slurm}
CONF=$DIR/slurm.conf

install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  command -v apt-get >/dev/null || { echo "slurm_local: no slurmctld/munged and no apt-get to install them" >&2; exit 3; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
  local host cpus
  host=$(hostname -s)
  # the machine's CPUs: nproc alone reports OMP_NUM_THREADS where it is set (make test sets it), and a node of 1 CPU
  # leaves every 2-task job pending (PartitionConfig) forever
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
  mkdir -p "$DIR/spool" "$DIR/state" "$DIR/munge"
  cat > "$CONF" <<CONF
ClusterName=crossvit-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=5  # a requeued job may start 6 s later (default 121 s)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmdSpoolDir=$DIR/spool
StateSaveLocation=$DIR/state
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerParameters=sched_interval=1
KillWait=5
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  install
  if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
    echo "export SLURM_CONF=$CONF"; return
  fi
  write_conf
  [ -f /etc/munge/munge.key ] || mungekey --create >/dev/null 2>&1 || create-munge-key -f >/dev/null
  munged --force --socket "$DIR/munge/munge.socket" --pid-file "$DIR/munged.pid" \
    --log-file "$DIR/munged.log" --seed-file "$DIR/munge/seed"
  SLURM_CONF=$CONF slurmctld -f "$CONF"
  SLURM_CONF=$CONF slurmd -f "$CONF"
  for _ in $(seq 60); do  # the node registers within seconds
    if SLURM_CONF=$CONF sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "export SLURM_CONF=$CONF"; return
    fi
    sleep 0.5
  done
  echo "slurm_local: the node did not come up; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2
  exit 1
}

stop() {
  for daemon in slurmd slurmctld munged; do
    if [ -f "$DIR/$daemon.pid" ]; then
      pid=$(cat "$DIR/$daemon.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true  # a test cluster: its state goes with it
    fi
  done
  rm -rf "$DIR"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) SLURM_CONF=$CONF sinfo; SLURM_CONF=$CONF squeue ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
