"""Distillation losses as pure functions of student / teacher outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_logits(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Hinton KD: KL(softmax(t/T) || softmax(s/T)) * T^2, batch mean."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=-1), F.softmax(teacher.detach() / t, dim=-1),
                    reduction="batchmean") * (t * t)


def kd_regression(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student.float().squeeze(-1), teacher.detach().float().squeeze(-1))


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer (0-based) for each student layer i: round((i+1) * Lt / Ls) - 1."""
    return [max(0, min(teacher_layers - 1, int(round((i + 1) * teacher_layers / student_layers)) - 1))
            for i in range(student_layers)]


def hidden_mse(student_hidden, teacher_hidden, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over mapped layers of the MSE between layer outputs (hidden_states[1:]), padding
    tokens excluded. Hidden widths must match (shrunk students keep the width)."""
    s_layers, t_layers = list(student_hidden[1:]), list(teacher_hidden[1:])
    mapping = layer_map(len(s_layers), len(t_layers))
    total = student_hidden[0].new_zeros(())
    for i, j in enumerate(mapping):
        s, t = s_layers[i], t_layers[j].detach()
        if s.shape[-1] != t.shape[-1]:
            raise ValueError(f"hidden distillation needs equal widths: student {s.shape[-1]}, teacher {t.shape[-1]}")
        err = (s - t).pow(2).mean(-1)  # [batch, seq]
        if attention_mask is not None:
            m = attention_mask.to(err.dtype)
            total = total + (err * m).sum() / m.sum().clamp_min(1)
        else:
            total = total + err.mean()
    return total / max(1, len(mapping))
