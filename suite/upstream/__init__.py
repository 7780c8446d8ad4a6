"""Prune once, for all (Zafrir et al. 2021; papers.md 1): task-agnostic sparse MLM pre-training
with distillation (`stage=upstream`), then pattern-locked transfer to each task (`stage=transfer`).

    # one upstream cell (its own cell id, cache entry and MLflow run, tag stage=upstream)
    python -m suite.run stage=upstream sparsity=gmp sparsity.target=0.9
    # transfer: builds/looks up the upstream named by this cell's model + sparsity + upstream.* + seed
    python -m suite.run stage=transfer sparsity=gmp sparsity.target=0.9 task=mrpc distill=logits quant=qat
    # transfer from a given upstream (cell id in <cache>/upstream/, or a directory)
    python -m suite.run stage=transfer upstream.ref=9b121bd64c497fdc task=cola
    # the paper grid: one upstream per sparsity, every task, next to task-specific pruning
    python -m suite.run -m +experiment=prune_ofa        # arms ofa85_kd, ofa90_kd, ofa90 vs gmp*_kd

Design. A Hydra sweep cannot order cells, so a transfer cell names its upstream by *config*: the
`sparsity` group of a transfer cell describes the upstream pruning, `upstream` (conf/upstream/:
tasks = TRAIN splits of the data dir at the quick profile, wikipedia = the hub corpus at the full
profile) the corpus and MLM recipe. Before its own MLflow run opens, a transfer cell computes the
upstream cell id, and under a file lock reuses the cached entry or trains it (recorded as its own
run in the same experiment); parallel cells train it once. `stage=finetune` (default) is the
task-specific path, with unchanged cell ids.

corpus.py    the unlabeled corpus (task TRAIN files only, local files, or a hub dataset)
stage.py     the upstream stage: MLM + gradual pruning + KD, cached by cell id, recorded in MLflow
transfer.py  the transfer modifier: load the sparse encoder, lock its masks
config.py    UpstreamConfig (`upstream` key) and the stage checks
"""
