#!/bin/bash
# Start a single-node SLURM cluster on localhost with all state under DIR:
# its own munge key and socket, its own slurm.conf and its own ports, so it
# never touches /etc, /run or another cluster on the machine.
#
# Usage: tools/slurm/start_cluster.sh DIR [CTLD_PORT]   then: export SLURM_CONF=DIR/slurm.conf
# Stop:  tools/slurm/stop_cluster.sh DIR                (kills the daemons by PID file)
# Needs: slurmctld, slurmd, the slurm client tools and munge (Debian: slurm-wlm munge).
#
# Sandbox pitfalls handled here (../shared/reference/environment.md section 4): no
# cgroups (proctrack/linuxproc, task/none, jobacct_gather/none), no accounting
# database (squeue/scontrol instead of sacct, MinJobAge keeps finished jobs
# visible), the host name is not 'localhost' (slurmd -N localhost).
set -euo pipefail
DIR=${1:?usage: start_cluster.sh DIR [CTLD_PORT]}
PORT0=${2:-${TMFAST_SLURM_PORT:-16917}}
PORT1=$((PORT0 + 1))
CPUS=${TMFAST_SLURM_CPUS:-$(nproc)}
MEM_MB=${TMFAST_SLURM_MEM_MB:-4000}
USER_NAME=$(id -un)
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
mkdir -p "$DIR"/{munge,state,spool,run,log}

for exe in munged munge slurmctld slurmd sinfo; do
  command -v "$exe" >/dev/null || { echo "start_cluster: $exe not found (apt-get install slurm-wlm munge)" >&2; exit 3; }
done

if [ ! -f "$DIR/munge/munge.key" ]; then
  head -c 1024 /dev/urandom > "$DIR/munge/munge.key"
fi
chmod 700 "$DIR/munge"
chmod 400 "$DIR/munge/munge.key"
munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
       --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
       --seed-file="$DIR/munge/munged.seed"
for _ in $(seq 1 40); do [ -S "$DIR/munge/munge.socket" ] && break; sleep 0.05; done
munge --socket="$DIR/munge/munge.socket" -n | unmunge --socket="$DIR/munge/munge.socket" >/dev/null

cat > "$DIR/slurm.conf" <<CONF
# Single-node test cluster written by tools/slurm/start_cluster.sh
ClusterName=tmfasttest
SlurmctldHost=localhost
SlurmUser=$USER_NAME
SlurmdUser=root
SlurmctldPort=$PORT0
SlurmdPort=$PORT1
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=2
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$DIR/slurm.conf"

slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N localhost

for _ in $(seq 1 100); do
  st=$(sinfo -h -N -o %t 2>/dev/null || true)
  [ "$st" = "idle" ] && break
  sleep 0.1
done
if [ "$(sinfo -h -N -o %t 2>/dev/null || true)" != "idle" ]; then
  echo "start_cluster: node did not become idle; see $DIR/log/" >&2
  exit 4
fi
echo "SLURM_CONF=$SLURM_CONF"
echo "pids munged=$(cat "$DIR/munge/munged.pid") slurmctld=$(cat "$DIR/run/slurmctld.pid") slurmd=$(cat "$DIR/run/slurmd.pid")"
