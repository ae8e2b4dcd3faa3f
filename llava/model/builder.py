"""`load_pretrained_model`: upstream LLaVA's signature; every decision comes from saved configs.

Upstream chose the model class and LoRA handling from substrings of the folder name; here the
checkpoint's `config.json` (`model_type`) and the files present decide:
- a `parrot_llava` checkpoint loads whole;
- an adapter checkpoint (`adapter_config.json`, LoRA) is rebuilt from its own `config.json` on top of
  `model_base` (the LLM it was trained on, or a whole `parrot_llava` checkpoint), with its
  `non_lora_trainables.safetensors` (projector, MoE, resized embeddings), then merged;
- a partial output (`mm_projector.bin`, with `vision_tower.safetensors` when the tower trained too)
  is combined with `model_base`: the LLM it was trained on, or the whole `parrot_llava` checkpoint
  it continued from.
`model_name` is accepted for compatibility and only used for display.

Placement and precision, as the flags say: `load_4bit`/`load_8bit` quantize the LLM with
bitsandbytes (`BitsAndBytesConfig`; the vision tower and the projector stay in the compute dtype)
and need CUDA; `device_map` ("auto", another accelerate strategy, or a {module: device} dict) spreads
the model over devices through accelerate instead of moving it to `device`; the dtype defaults to
`default_dtype(device)`.
"""

from __future__ import annotations

import json
import logging
import os

import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
)

from llava.constants import MM_PROJECTOR_FILE, MODEL_WEIGHT_FILES, VISION_TOWER_FILE
from llava.model import LlavaConfig, LlavaForCausalLM
from llava.model.hub_kernels import hub_kernel_kwargs
from llava.model.projector_io import load_projector_weights
from llava.model.tower_io import load_vision_tower_weights

logger = logging.getLogger(__name__)

# Written by LoRA training beside the adapter: every trained tensor that is not a LoRA weight.
NON_LORA_TRAINABLES_FILE = "non_lora_trainables.safetensors"
# Modules that quantization leaves in the compute dtype: the multimodal parts and the output layer.
UNQUANTIZED_MODULES = ["vision_tower", "mm_projector", "lm_head"]
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def default_dtype(device: str | torch.device) -> torch.dtype:
    """The dtype a model runs in when none is asked for: bfloat16 on a CUDA device that supports it
    (Qwen and LLaMA train in bf16), float16 on older CUDA devices, float32 on the CPU."""
    if not str(device).startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def parse_device_map(value: str | None) -> str | dict | None:
    """`--device-map` as given on a command line: None, an accelerate strategy ("auto", ...), a
    device ("cpu", "cuda:1"), or a JSON object {module name: device} ({"": "cpu"} = all on the CPU)."""
    if value is None or not value.lstrip().startswith("{"):
        return value
    try:
        mapping = json.loads(value)
    except ValueError as err:
        raise ValueError(f"--device-map {value!r} is not valid JSON ({err}); e.g. '{{\"\": \"cuda:0\"}}' or auto") from err
    if not isinstance(mapping, dict):
        raise ValueError(f"--device-map {value!r} must be a JSON object mapping module names to devices")
    return mapping


def quantization_config(load_8bit: bool, load_4bit: bool, compute_dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """The bitsandbytes config for `--load-8bit`/`--load-4bit` (None for neither); refuses clearly
    without CUDA or without bitsandbytes, instead of loading in full precision."""
    if load_8bit and load_4bit:
        raise ValueError("--load-8bit and --load-4bit exclude each other; pass one of them")
    if not (load_8bit or load_4bit):
        return None
    flag = "--load-4bit" if load_4bit else "--load-8bit"
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"{flag} quantizes the LLM with bitsandbytes, which needs a CUDA GPU, and none is visible; "
            "drop the flag to load the model unquantized on this machine"
        )
    from llava.optional import require

    try:
        require("bitsandbytes")
    except ImportError as err:
        raise ImportError(f"{flag}: {err}") from err
    return BitsAndBytesConfig(
        load_in_4bit=load_4bit,
        load_in_8bit=load_8bit,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        llm_int8_skip_modules=UNQUANTIZED_MODULES,
    )


def _from_pretrained_kwargs(
    device_map: str | dict | None,
    quantization: BitsAndBytesConfig | None,
    device: str,
    attn_implementation: str | None,
    use_hub_kernels: bool = False,
) -> dict:
    """What every `from_pretrained` of one load gets: placement, quantization, attention, Hub kernels
    (`llava.model.hub_kernels`). bitsandbytes needs a device map, so a quantized model without one
    goes whole to `device`."""
    if device_map is None and quantization is not None:
        device_map = {"": device}
    settings = {"device_map": device_map, "quantization_config": quantization, "attn_implementation": attn_implementation}
    return {**{name: value for name, value in settings.items() if value is not None}, **hub_kernel_kwargs(use_hub_kernels)}


def _assemble_on_llm(model_path: str, model_base: str, dtype: torch.dtype, **load_kwargs) -> LlavaForCausalLM:
    """The model described by `model_path/config.json`, with the LLM weights of `model_base` and the
    vision tower's pretrained weights; tower and projector sit where the LLM's embeddings are."""
    llm = AutoModelForCausalLM.from_pretrained(model_base, dtype=dtype, **load_kwargs)
    model = LlavaForCausalLM.from_components(llm, config=LlavaConfig.from_pretrained(model_path), dtype=dtype)
    if model.config.has_vision:
        embed_device = llm.get_input_embeddings().weight.device
        model.vision_tower.to(embed_device)
        model.mm_projector.to(embed_device)
    return model


def _load_partial(model_path: str, model_base: str, dtype: torch.dtype, **load_kwargs):
    """`model_base` with the projector (and the vision tower, when the folder holds it) of `model_path`."""
    if AutoConfig.from_pretrained(model_base).model_type == LlavaConfig.model_type:
        model = LlavaForCausalLM.from_pretrained(model_base, dtype=dtype, **load_kwargs)
    else:
        model = _assemble_on_llm(model_path, model_base, dtype, **load_kwargs)
    load_projector_weights(model.mm_projector, os.path.join(model_path, MM_PROJECTOR_FILE))
    tower_file = os.path.join(model_path, VISION_TOWER_FILE)
    if os.path.isfile(tower_file):
        load_vision_tower_weights(model.vision_tower, tower_file)
    return model, AutoTokenizer.from_pretrained(model_base)


def load_non_lora_trainables(model: LlavaForCausalLM, path: str) -> None:
    """Load `non_lora_trainables.safetensors` (keys relative to the model); every key must exist."""
    from safetensors.torch import load_file

    state = load_file(path)
    # The file holds only what LoRA training changed besides the adapter: "missing" keys are expected.
    _, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{path}: tensors {unexpected[:5]} do not exist in the model built from its config.json")
    logger.info("loaded %d non-LoRA tensors from %s", len(state), path)


def _load_adapter(model_path: str, model_base: str, dtype: torch.dtype, merge: bool = True, **load_kwargs):
    if "quantization_config" in load_kwargs:
        raise ValueError(
            f"{model_path} holds a LoRA adapter: merge it into its base first (python scripts/merge_lora_weights.py "
            "--model-path ADAPTER --model-base BASE --save-model-path OUT), then load OUT with --load-4bit/--load-8bit"
        )
    from llava.optional import require_peft

    peft = require_peft()
    if AutoConfig.from_pretrained(model_base).model_type == LlavaConfig.model_type:
        base = LlavaForCausalLM.from_pretrained(model_base, dtype=dtype, **load_kwargs)
    else:
        base = _assemble_on_llm(model_path, model_base, dtype, **load_kwargs)
    non_lora = os.path.join(model_path, NON_LORA_TRAINABLES_FILE)
    if os.path.isfile(non_lora):
        load_non_lora_trainables(base, non_lora)
    model = peft.PeftModel.from_pretrained(base, model_path)
    if merge:
        model = model.merge_and_unload()
    return model, AutoTokenizer.from_pretrained(model_path)


def load_pretrained_model(
    model_path: str,
    model_base: str | None = None,
    model_name: str | None = None,
    load_8bit: bool = False,
    load_4bit: bool = False,
    device_map: str | dict | None = None,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = None,
    merge_lora: bool = True,
    use_flash_attn: bool = False,
    use_hub_kernels: bool = False,
):
    """Returns (tokenizer, model, image_processor, context_len), like upstream LLaVA.

    A LoRA adapter folder is merged into its base (`merge_lora=False` keeps the peft model, for
    comparisons and further training). `device_map` (accelerate) places the model instead of
    `device`; `use_flash_attn` (upstream's flag) means `attn_implementation="flash_attention_2"`;
    `use_hub_kernels` lets transformers swap in kernels downloaded from the Hub (off: offline, CPU-safe)."""
    if not os.path.isdir(model_path):
        raise FileNotFoundError(f"--model-path {model_path}: not a directory with a saved checkpoint")
    if use_flash_attn:
        attn_implementation = "flash_attention_2"
    dtype = dtype or default_dtype(device)
    load_kwargs = _from_pretrained_kwargs(
        device_map, quantization_config(load_8bit, load_4bit, dtype), device, attn_implementation, use_hub_kernels
    )
    files = set(os.listdir(model_path))
    if "adapter_config.json" in files:
        if model_base is None:
            raise ValueError(f"{model_path} holds a LoRA adapter: pass --model-base with the model it was trained on")
        model, tokenizer = _load_adapter(model_path, model_base, dtype, merge=merge_lora, **load_kwargs)
    elif AutoConfig.from_pretrained(model_path).model_type != LlavaConfig.model_type:
        raise ValueError(
            f"{model_path}: config.json has model_type {AutoConfig.from_pretrained(model_path).model_type!r}, "
            f"not a {LlavaConfig.model_type!r} checkpoint; train one with llava/train/train.py"
        )
    elif MM_PROJECTOR_FILE in files and not files & MODEL_WEIGHT_FILES:
        if model_base is None:
            parts = "a projector and a vision tower" if VISION_TOWER_FILE in files else "a stage-1 projector"
            raise ValueError(
                f"{model_path} holds only {parts}: pass --model-base with the model it was trained on (its LLM)"
            )
        model, tokenizer = _load_partial(model_path, model_base, dtype, **load_kwargs)
    else:
        model = LlavaForCausalLM.from_pretrained(model_path, dtype=dtype, **load_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    if "device_map" not in load_kwargs:
        model.to(device)
    model.eval()
    model.config.use_cache = True
    model.language_model.config.use_cache = True
    image_processor = None
    if model.config.has_vision:
        source = model_path if "preprocessor_config.json" in files else model.config.mm_vision_tower
        image_processor = AutoImageProcessor.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    context_len = model.config.tokenizer_model_max_length or getattr(
        model.config.text_config, "max_position_embeddings", 2048
    )
    where = f"device_map {device_map}" if device_map is not None else device
    quantized = " 4-bit" if load_4bit else " 8-bit" if load_8bit else ""
    logger.info("loaded %s (%s%s) on %s", model_name or os.path.basename(os.path.normpath(model_path)), dtype, quantized, where)
    return tokenizer, model, image_processor, context_len
