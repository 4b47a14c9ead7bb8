#!/bin/bash
# GPU affinity on Polaris: one GPU per rank, set before Python (and MPI) start.
# GPU3 <-> CPUs 0-7, GPU2 <-> 8-15, GPU1 <-> 16-23, GPU0 <-> 24-31, so with --depth 8 --cpu-bind depth the
# reversed order keeps each rank on the GPU nearest its cores.
num_gpus=${PTYHPC_GPUS_PER_NODE:-4}
local_rank=${PMI_LOCAL_RANK:-${PALS_LOCAL_RANKID:-0}}
export CUDA_VISIBLE_DEVICES=$((num_gpus - 1 - local_rank % num_gpus))
exec "$@"
