#!/usr/bin/env bash
# Cross-dataset transfer and domain generalisation for the TRAINERS (default MMRL, MMRL++ and
# zero-shot CLIP): train on all ImageNet classes (16 shots, seeds 1 2 3), then evaluate on the
# 10 other datasets (cd) and on ImageNet-V2/-Sketch/-A/-R (dg, sharing the same trainings); then
# both tables.
# Runs go to OUTPUT/cross_dataset/train/... and OUTPUT/cross_dataset/test/<target>/... (their
# own tree, unlike the authors' scripts, which reuse base2new/train_base and test_new).
# A thin wrapper over `mmrl sweep` / `mmrl table`.
#
#   DATA=/path/to/datasets bash scripts/cross_dataset.sh
#
# Environment (all optional):
#   DATA      dataset root (unset: the embedded demo dataset runs instead)
#   OUTPUT    results root (default: output)
#   TRAINERS  e.g. "MMRL MMRLpp ZeroshotCLIP" (default: MMRL MMRLpp ZeroshotCLIP)
#   DATASETS  cd target stems (default: the 10 datasets besides ImageNet)
#   DG_DATASETS  dg target stems (default: imagenetv2 imagenet_sketch imagenet_a imagenet_r)
#   SEEDS     default "1 2 3"
#   EXECUTOR  local | gpus | slurm | print (default: local);  GPUS  e.g. 0,1,2,3 for gpus
#             (slurm submits and returns unless --wait is passed; print writes an sbatch script)
#   OPTS      extra config opts for every run, "KEY VALUE ..."
#   PYTHON    the interpreter (default: python)
# Further arguments go to both `mmrl sweep` calls (see `python -m mmrl sweep --help`).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

cd_sel=()
[ -n "${DATASETS:-}" ] && cd_sel+=(--datasets $DATASETS)
dg_sel=()
[ -n "${DG_DATASETS:-}" ] && dg_sel+=(--datasets $DG_DATASETS)

status=0
"$PY" -m mmrl sweep --protocol cd "${sel[@]}" ${cd_sel[@]+"${cd_sel[@]}"} "${run[@]}" "$@" || status=$?
# dg reuses the ImageNet trainings of cd (complete runs are skipped)
"$PY" -m mmrl sweep --protocol dg "${sel[@]}" ${dg_sel[@]+"${dg_sel[@]}"} "${run[@]}" "$@" || status=$?
exit_unless_ran "$status" "cd / dg" "$@"
echo
"$PY" -m mmrl table --protocol cd "${sel[@]}" ${cd_sel[@]+"${cd_sel[@]}"} --allow-partial
table_status=$?
echo
"$PY" -m mmrl table --protocol dg "${sel[@]}" ${dg_sel[@]+"${dg_sel[@]}"} --allow-partial || table_status=$?
[ $status -eq 0 ] && status=$table_status
exit $status
