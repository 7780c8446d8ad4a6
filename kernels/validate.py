"""Task-level check of a packed model against its float model (wired up by the suite)."""

from __future__ import annotations

import torch


@torch.no_grad()
def compare_on_dataset(model_fp, model_packed, dataloader, metric=None, max_batches=None) -> dict:
    """Run both models over ``dataloader`` (batches: dicts of tensors with an optional
    ``labels`` key, passed as keyword arguments) and compare predictions.

    Returns {"n", "agreement", "max_abs_logit_diff", "metric_fp", "metric_packed", "delta"};
    the metric is accuracy (argmax vs labels) unless ``metric(preds, labels) -> float`` is given.
    The suite's "task metric within 0.5 point" check asserts ``abs(delta) <= 0.5`` (percent).
    """
    model_fp.eval()
    model_packed.eval()
    preds_fp, preds_pk, labels, diff = [], [], [], 0.0
    for i, batch in enumerate(dataloader):
        if max_batches is not None and i >= max_batches:
            break
        batch = dict(batch)
        lab = batch.pop("labels", None)
        a = _logits(model_fp(**batch))
        b = _logits(model_packed(**batch))
        diff = max(diff, float((a - b).abs().max()))
        preds_fp.append(a.argmax(-1))
        preds_pk.append(b.argmax(-1))
        if lab is not None:
            labels.append(lab)
    pf, pp = torch.cat(preds_fp), torch.cat(preds_pk)
    out = {"n": int(pf.numel()), "agreement": float((pf == pp).float().mean()),
           "max_abs_logit_diff": diff}
    if labels:
        y = torch.cat(labels)
        score = metric or (lambda p, t: 100.0 * float((p == t).float().mean()))
        out["metric_fp"], out["metric_packed"] = score(pf, y), score(pp, y)
        out["delta"] = out["metric_packed"] - out["metric_fp"]
    return out


def _logits(out):
    return out.logits if hasattr(out, "logits") else (out[0] if isinstance(out, tuple) else out)
