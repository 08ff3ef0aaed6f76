#!/usr/bin/env bash
# A whole experiment on one multi-GPU machine, no scheduler: members run one per GPU, as
# many at a time as there are GPUs (a small model trains faster alone on a GPU than in DDP
# across several); then the cache and the student with torchrun on every GPU, calibration,
# and the evaluation on every GPU. Rerun the same command after a crash: finished stages
# are skipped, interrupted ones resume.
#
#   examples/torchrun-one-node.sh configs/cityscapes-paper.yaml [--set data.root=/data/cityscapes ...]
#   GPUS=2 examples/torchrun-one-node.sh ...      # use GPUs 0 and 1 only
set -euo pipefail
CONFIG=$1; shift
GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}
mkdir -p logs
plan=$(udistill experiment --config "$CONFIG" "$@" --dry-run)
mapfile -t members < <(sed -n 's/^  udistill \(train-teacher .*\)/\1/p' <<<"$plan")
mapfile -t steps < <(sed -n 's/^  udistill \(distill\|calibrate\|evaluate\) /\1 /p' <<<"$plan")

for ((gpu = 0; gpu < GPUS; gpu++)); do  # GPU g trains members g, g+GPUS, g+2*GPUS, ...
  (
    for ((k = gpu; k < ${#members[@]}; k += GPUS)); do
      eval "CUDA_VISIBLE_DEVICES=$gpu udistill ${members[k]}" >"logs/member-$k.log" 2>&1
    done
  ) &
done
wait  # set -e does not see background failures: check every member below
for ((k = 0; k < ${#members[@]}; k++)); do
  grep -q "member ready" "logs/member-$k.log" || { echo "member $k failed: logs/member-$k.log" >&2; exit 1; }
done

for step in "${steps[@]}"; do
  echo "[$(date +%T)] udistill $step"
  case $step in
    calibrate*) eval "udistill $step" ;;
    *) eval "torchrun --standalone --nproc_per_node $GPUS -m udistill $step" ;;
  esac
done
