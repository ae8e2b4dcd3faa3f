"""Split a saved multimodal checkpoint into the three inputs of an upstream-style training run.

    python -m llava.model.export CHECKPOINT OUT

writes

    OUT/llm/             the language model and tokenizer  (`--model_name_or_path OUT/llm`)
    OUT/vision_tower/    the vision encoder and image processor  (`--vision_tower OUT/vision_tower`)
    OUT/mm_projector.bin the projector, upstream key layout  (`--pretrain_mm_mlp_adapter OUT/mm_projector.bin`)

so a later stage can start from a checkpoint whose LLM or vision tower also trained (a tiny
random-init LLM, an unfrozen tower) and still pick its own `--mm_projector_type`: a `parrot_moe`
projector loads an `mlp2x_gelu` file into its base projector and initialises its MoE.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from llava.constants import MM_PROJECTOR_FILE
from llava.model.hub_kernels import hub_kernel_kwargs
from llava.model.projector_io import projector_state_dict_for_upstream

logger = logging.getLogger(__name__)


def export_components(checkpoint: str | Path, out: str | Path) -> dict[str, Path]:
    """Write `llm/`, `vision_tower/` and `mm_projector.bin` of `checkpoint` under `out`; return their paths."""
    from transformers import AutoImageProcessor, AutoTokenizer

    from llava.model import LlavaForCausalLM

    checkpoint, out = Path(checkpoint), Path(out)
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint}: no config.json; pass a folder written by llava.train.train")
    model = LlavaForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, **hub_kernel_kwargs())
    if not model.config.has_vision:
        raise ValueError(f"{checkpoint} has no vision tower (config.vision_config is None): nothing to split")
    paths = {"llm": out / "llm", "vision_tower": out / "vision_tower", "projector": out / MM_PROJECTOR_FILE}
    model.language_model.config.use_cache = True
    model.language_model.save_pretrained(paths["llm"])
    AutoTokenizer.from_pretrained(checkpoint).save_pretrained(paths["llm"])
    model.vision_tower.encoder.save_pretrained(paths["vision_tower"])
    AutoImageProcessor.from_pretrained(checkpoint).save_pretrained(paths["vision_tower"])
    torch.save(projector_state_dict_for_upstream(model.mm_projector), paths["projector"])
    logger.info("split %s into %s", checkpoint, ", ".join(str(p) for p in paths.values()))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llava.model.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a full checkpoint folder (config.json + safetensors)")
    parser.add_argument("out", type=Path, help="folder to write llm/, vision_tower/ and mm_projector.bin into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        paths = export_components(args.checkpoint, args.out)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
