#!/bin/bash
# Stop the daemons started by tools/slurm/start_cluster.sh DIR, by their PID files only.
DIR=${1:?usage: stop_cluster.sh DIR}
pids=()
for f in "$DIR/run/slurmd.pid" "$DIR/run/slurmctld.pid" "$DIR/munge/munged.pid"; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null && pids+=("$pid") && echo "stopping $pid ($f)"
done
for pid in "${pids[@]}"; do
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null && echo "killed $pid"
done
exit 0
