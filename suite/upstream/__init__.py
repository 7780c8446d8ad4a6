"""Prune once, for all (Zafrir et al. 2021): task-agnostic sparse MLM pre-training with
distillation (`stage=upstream`), then pattern-locked transfer to each task (`stage=transfer`).

corpus.py  the unlabeled corpus (TRAIN splits of the data dir, local files, or a hub dataset)
stage.py   the upstream stage: MLM + gradual pruning + KD, cached by cell id, recorded in MLflow
transfer.py  the transfer modifier: load the sparse encoder, lock its masks
"""
