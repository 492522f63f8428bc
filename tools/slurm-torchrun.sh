#!/usr/bin/env bash
# One torchrun per node of a SLURM allocation, started by srun (one task per node):
#   srun --nodes=N --ntasks-per-node=1 tools/slurm-torchrun.sh GPUS_PER_NODE -m guidance_repro train ...
# The rendezvous comes from SLURM's environment: the node count (SLURM_NNODES), this node's rank
# (SLURM_NODEID) and the first host of SLURM_JOB_NODELIST as the master. MASTER_PORT may be set;
# by default it is derived from the job id so that two jobs sharing a node do not collide.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 PROCS_PER_NODE TORCHRUN_ARGS..." >&2; exit 2; }
nproc=$1
shift
: "${SLURM_NNODES:?not inside a SLURM allocation (SLURM_NNODES unset)}"
: "${SLURM_NODEID:?not a SLURM task (SLURM_NODEID unset): start this script with srun}"
: "${SLURM_JOB_NODELIST:?SLURM_JOB_NODELIST unset}"
# scontrol expands host ranges (node[1-4]); it needs SLURM's config, present on a cluster node
master=$(scontrol show hostnames "$SLURM_JOB_NODELIST" 2>/dev/null | head -n 1) || true
if [ -z "$master" ]; then
  # without SLURM's tools only a plain host list can be read
  master=${SLURM_JOB_NODELIST%%,*}
  case $master in *"["*) echo "$0: scontrol is needed to expand $SLURM_JOB_NODELIST" >&2; exit 1 ;; esac
fi
port=${MASTER_PORT:-$((20000 + ${SLURM_JOB_ID:-0} % 20000))}
exec "${TORCHRUN:-torchrun}" --nnodes="$SLURM_NNODES" --node-rank="$SLURM_NODEID" \
  --nproc-per-node="$nproc" --master-addr="$master" --master-port="$port" "$@"
