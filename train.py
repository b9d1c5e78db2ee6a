#!/usr/bin/env python
"""Dassl-compatible entry point: the same flags as the authors' train.py.

    python train.py --root DATA --seed 1 --trainer MMRL \
        --dataset-config-file configs/datasets/eurosat.yaml \
        --config-file configs/trainers/MMRL/vit_b16.yaml \
        --output-dir output/base2new/train_base/eurosat/shots_16/MMRL/vit_b16/seed1 \
        DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base TASK B2N
"""
from mmrl.cli import exit_process, quiet_on_broken_pipe
from mmrl.engine.run import main

if __name__ == "__main__":
    exit_process(quiet_on_broken_pipe(main))
