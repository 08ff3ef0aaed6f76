#!/usr/bin/env bash
# Submit a whole experiment: the members as one array job, then the student job that
# starts when every member succeeded.
#
#   examples/slurm/submit.sh configs/cityscapes-paper.yaml [--set data.root=/data/cityscapes ...]
set -euo pipefail
CONFIG=$1; shift
EXTRA="$*"
here=$(dirname "$0")
mkdir -p logs
# shellcheck disable=SC2086
members=$(udistill experiment --config "$CONFIG" $EXTRA --dry-run | grep -c '^  udistill train-teacher ')
jid=$(sbatch --parsable --array="0-$((members - 1))" --export="ALL,CONFIG=$CONFIG,EXTRA=$EXTRA" "$here/members.sbatch")
sid=$(sbatch --parsable --dependency="afterok:${jid%%;*}" --export="ALL,CONFIG=$CONFIG,EXTRA=$EXTRA" "$here/student.sbatch")
echo "members: job $jid (array 0-$((members - 1))); student, calibration, evaluation: job $sid (after $jid)"
