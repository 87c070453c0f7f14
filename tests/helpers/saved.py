"""The tensors a stage saved in its model folder, whatever the form."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file


def saved_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """model.safetensors of a full (or merged) folder; adapter_model.safetensors of an adapter
    folder (lora.merge_on_save false, the default): the LoRA tensors and a reward model's score
    head. Two runs from the same base that trained alike save equal tensors in either form."""
    folder = Path(folder)
    name = "adapter_model.safetensors" if (folder / "adapter_config.json").is_file() else "model.safetensors"
    return load_file(str(folder / name))
