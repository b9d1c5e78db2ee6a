#!/usr/bin/env bash
# Few-shot classification (all classes) for the TRAINERS (default MMRL, MMRL++ and zero-shot
# CLIP), 1 2 4 8 16 shots, seeds 1 2 3, then the table.  A thin wrapper over `mmrl sweep` /
# `mmrl table`.
#
#   DATA=/path/to/datasets bash scripts/few_shot.sh
#
# Environment (all optional):
#   DATA      dataset root (unset: the embedded demo dataset runs instead)
#   OUTPUT    results root (default: output)
#   TRAINERS  e.g. "MMRL MMRLpp ZeroshotCLIP" (default: MMRL MMRLpp ZeroshotCLIP)
#   DATASETS  dataset stems, e.g. "eurosat dtd" (default: the 11 datasets)
#   SEEDS     default "1 2 3";  SHOTS  default "1 2 4 8 16"
#   EXECUTOR  local | gpus | slurm | print (default: local);  GPUS  e.g. 0,1,2,3 for gpus
#             (slurm submits and returns unless --wait is passed; print writes an sbatch script)
#   OPTS      extra config opts for every run, "KEY VALUE ..."
#   PYTHON    the interpreter (default: python)
# Further arguments go to `mmrl sweep` (see `python -m mmrl sweep --help`).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ -n "${DATASETS:-}" ] && sel+=(--datasets $DATASETS)
[ -n "${SHOTS:-}" ] && sel+=(--shots $SHOTS)

sweep_then_table fs "$@"
