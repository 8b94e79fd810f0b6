"""Write a peft LoRA as a GGUF adapter that llama.cpp loads (`llama_adapter_lora_init`).

The layout follows llama.cpp's own converter: `general.type=adapter`, `adapter.type=lora`,
`adapter.lora.alpha`, and for every adapted weight `<gguf name>.lora_a` (rank × in) and
`<gguf name>.lora_b` (out × rank), names taken from gguf's tensor-name map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from tuning.architectures import QK_PERMUTED, check_exportable
from tuning.errors import TuningError


@dataclass(frozen=True)
class BaseShape:
    """What the export needs to know about the base model."""

    arch: str
    layers: int
    heads: int
    kv_heads: int


def permute_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's q/k row order: within each head, interleaved halves become pairs.

    The GGUF's q_proj/k_proj rows were permuted this way when it was converted (transformers
    undoes it on load), so an adapter's `lora_b` rows must be permuted the same way, or the q/k
    updates land on the wrong rows.
    """
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def lora_pairs(model: Any) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{base weight name: (A, B)} of a peft model, e.g. 'model.layers.0.self_attn.q_proj.weight'."""
    found: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in model.state_dict().items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in name:
                module = name.split(marker)[0].removeprefix("base_model.model.")
                found.setdefault(f"{module}.weight", {})[part] = tensor.detach()
    return {name: (pair["lora_A"], pair["lora_B"]) for name, pair in found.items()}


def export_adapter(
    model: Any, shape: BaseShape, alpha: float, out: Path, *, permute_qk: bool | None = None
) -> int:
    """Write the peft `model`'s LoRA weights to `out`; return the number of adapted weights.

    `permute_qk` (default: what the architecture's GGUF does) is there only so a test can show
    that the other choice gives wrong logits.
    """
    check_exportable(shape.arch)
    arch_id = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == shape.arch), None)
    if arch_id is None:
        raise TuningError(f"gguf does not know the architecture {shape.arch!r}.")
    names = gguf.get_tensor_name_map(arch_id, shape.layers)
    writer = gguf.GGUFWriter(str(out), shape.arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    permute = QK_PERMUTED[shape.arch] if permute_qk is None else permute_qk
    pairs = lora_pairs(model)
    for hf_name, (lora_a, lora_b) in sorted(pairs.items()):
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight",))
        if gguf_name is None:
            raise TuningError(f"No GGUF name for {hf_name}; this adapter cannot be exported.")
        if permute:
            if hf_name.endswith("q_proj.weight"):
                lora_b = permute_rows(lora_b, shape.heads)
            elif hf_name.endswith("k_proj.weight"):
                lora_b = permute_rows(lora_b, shape.kv_heads)
        writer.add_tensor(f"{gguf_name}.lora_a", _f32(lora_a))
        writer.add_tensor(f"{gguf_name}.lora_b", _f32(lora_b))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return len(pairs)


def _f32(tensor: torch.Tensor) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.ascontiguousarray(tensor.to(torch.float32).cpu().numpy())


def read_adapter_header(path: Path) -> dict[str, object]:
    """The adapter's type, LoRA type, alpha and architecture, read back from the file."""
    reader = gguf.GGUFReader(str(path))
    wanted = {"general.type", "adapter.type", "adapter.lora.alpha", "general.architecture"}
    return {key: field.contents() for key, field in reader.fields.items() if key in wanted}
