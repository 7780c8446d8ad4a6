"""The trained student of a compressed cell, kept as a run artifact (`student.safetensors`).

Its state dict as the cell left it (masks and quantizer parameters included, parametrizations as
they are), so the model can be rebuilt from the record's config (load the model, build the cell's
modifiers, load this state) and timed, packed or exported later, apart from training.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

STUDENT_ARTIFACT = "student.safetensors"


def log_student(model: nn.Module) -> None:
    """Write the model's state dict as safetensors into the active MLflow run."""
    import mlflow
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / STUDENT_ARTIFACT
        save_file(state, str(path), metadata={"format": "pt"})
        mlflow.log_artifact(str(path))
