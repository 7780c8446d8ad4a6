"""`stage=transfer`: fine-tune a task on the sparse upstream encoder with its masks locked.

TransferModifier takes the pruning slot of the cell (the `sparsity` group then describes the
upstream pruning): at train start it loads the upstream encoder weights into the task model's
base model (the task head stays freshly initialised, the pooler pretrained) and keeps the
upstream masks applied after every step (LockedMaskModifier), so pruned weights stay exactly 0
and the zeros sit at the same positions as upstream (mask_sha256 equal). KD (distill=logits) and
QAT (quant=qat) compose as usual, after it.
"""

from __future__ import annotations

from suite.errors import SparqError
from suite.prune.masks import mask_sha256
from suite.prune.modifier import LockedMaskModifier
from suite.upstream.stage import UpstreamEntry, find_entry


class TransferModifier(LockedMaskModifier):
    def __init__(self, entry: UpstreamEntry):
        super().__init__({})
        self.entry = entry

    def on_train_start(self, model, state) -> None:
        base, prefix = model.base_model, model.base_model_prefix
        missing, unexpected = base.load_state_dict(self.entry.encoder_state(), strict=False)
        missing = [k for k in missing if not k.startswith("pooler.") and "position_ids" not in k]
        if missing or unexpected:
            raise SparqError(f"upstream {self.entry.cell_id} does not fit model: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
        masks = self.entry.masks()
        if mask_sha256(masks) != self.entry.mask_sha256:
            raise SparqError(f"upstream {self.entry.cell_id}: masks do not match their recorded mask_sha256")
        self.masks = {f"{prefix}.{k}": v for k, v in masks.items()}
        self.linears = None
        super().on_train_start(model, state)

    def base_masks(self) -> dict:
        n = len(self.entry.meta["base_model_prefix"]) + 1
        return {k[n:]: v for k, v in self.masks.items()}

    def tags(self) -> dict[str, str]:
        return {"upstream_cell_id": self.entry.cell_id, "mask_sha256": mask_sha256(self.base_masks()),
                "upstream_mask_sha256": self.entry.mask_sha256, "mlm_head": self.entry.meta["tags"]["mlm_head"]}


def transfer_modifiers(cfg, ctx) -> list:
    return [TransferModifier(find_entry(cfg))]
