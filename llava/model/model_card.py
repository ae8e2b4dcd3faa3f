"""Model cards: the `README.md` (YAML metadata + text) that every final save writes beside a checkpoint.

Metadata (Hugging Face Hub conventions, written with `huggingface_hub.ModelCardData`):
- `base_model`: the LLM (and the vision tower) the checkpoint started from, when they are hub ids; a
  local path is named in the text instead, since the Hub refuses metadata that is not a model id;
- `language`: ISO 639 codes of the `lang` fields seen in the training data;
- `pipeline_tag: image-text-to-text`, `library_name` (`parrot-llava` for our format, `transformers`
  for a `to-hf` export), `tags`;
- `model-index`: accuracies once `llava.eval.run_benchmark` has scored the checkpoint (see
  `llava.eval.card`), which also fills the card's evaluation section between two markers.
The text states the parts (LLM, tower, projector, template), how to load it, and the training flags.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
LIBRARY_NAME = "parrot-llava"
PIPELINE_TAG = "image-text-to-text"
EVAL_START, EVAL_END = "<!-- llava.eval: start -->", "<!-- llava.eval: end -->"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ISO_639 = re.compile(r"^[a-z]{2,3}$")
_DATA_CODES = {"cn": "zh"}  # the benchmarks' spelling of Chinese
# Flags whose value is a credential (`--hub_token`, `--token`, `--wandb_api_key`, ...), not `--mm_use_im_patch_token`.
_SECRET_FLAG = re.compile(r"^--(?:token|(?:\w+_)?(?:hub_token|auth_token|api_key|secret|password))$", re.IGNORECASE)


@dataclass
class TrainingRecord:
    """What a run knows that the saved config does not: where it started, its data, its command line."""

    base_model: str | None = None
    languages: Counter = field(default_factory=Counter)
    flags: list[str] = field(default_factory=list)
    command: str = "python -m llava.train.train"


def languages_of(items: Iterable[dict]) -> Counter:
    """Data items per `lang` field (`cn` read as `zh`); items without one are not counted."""
    codes = (str(item["lang"]).strip().lower() for item in items if isinstance(item, dict) and item.get("lang"))
    return Counter(_DATA_CODES.get(code, code) for code in codes)


def redacted(flags: list[str]) -> list[str]:
    """The command line with the values of token/secret flags replaced, fit to publish."""
    out, hide_next = [], False
    for flag in flags:
        if hide_next:
            out.append("<redacted>")
            hide_next = False
        elif _SECRET_FLAG.match(flag.partition("=")[0]):
            name, has_value, _ = flag.partition("=")
            out.append(f"{name}=<redacted>" if has_value else name)
            hide_next = not has_value
        else:
            out.append(flag)
    return out


def _hub_id(value: str | None) -> str | None:
    return value if value and _HUB_ID.match(value) and not os.path.exists(value) else None


def _base_models(config, record: TrainingRecord | None) -> list[str]:
    text_config = getattr(config, "text_config", None)
    candidates = [record.base_model if record else None, getattr(text_config, "_name_or_path", None)]
    candidates.append(getattr(config, "mm_vision_tower", None))
    found = [_hub_id(value) for value in candidates]
    return list(dict.fromkeys(value for value in found if value))


def _parts_table(config) -> list[str]:
    text_config, vision_config = config.text_config, getattr(config, "vision_config", None)
    rows = [("LLM", f"`{getattr(text_config, '_name_or_path', '') or text_config.model_type}` ({text_config.model_type}, width {text_config.hidden_size})")]
    if vision_config is not None:
        tower = config.mm_vision_tower or vision_config.model_type
        rows.append(("vision tower", f"`{tower}` ({vision_config.model_type}), layer {config.mm_vision_select_layer}, `{config.mm_vision_select_feature}`"))
        settings = ", ".join(f"{k}={v}" for k, v in _projector_settings(config).items())
        rows.append(("projector", f"`{config.mm_projector_type}`" + (f" ({settings})" if settings else "")))
    rows.append(("chat template", f"`{config.conv_template or 'chatml'}`"))
    return ["| part | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]


def _projector_settings(config) -> dict[str, object]:
    """The values saved in `config` for every flag the projector (and any it stacks on) registered, by
    name; built-in projectors register none."""
    from dataclasses import fields

    from llava.model.multimodal_projector.builder import projector_argument_types

    saved = config.to_dict()
    types = projector_argument_types(config.mm_projector_type, lambda name, default: saved.get(name, default))
    names = [f.name for kind in types for f in fields(kind)]
    return {name: saved[name] for name in names if saved.get(name) is not None}


def _usage(library_name: str, remote_code: dict | None = None) -> list[str]:
    if remote_code is not None:
        return _remote_code_usage(remote_code)
    if library_name == "transformers":
        return [
            "```python", "from transformers import AutoProcessor, LlavaForConditionalGeneration",
            'model = LlavaForConditionalGeneration.from_pretrained("THIS_FOLDER_OR_REPO")',
            'processor = AutoProcessor.from_pretrained("THIS_FOLDER_OR_REPO")', "```",
        ]
    return [
        "```python", "from llava.model.builder import load_pretrained_model",
        'tokenizer, model, image_processor, context_len = load_pretrained_model("THIS_FOLDER_OR_REPO")', "```",
        "",
        "Plain transformers cannot load this format (`model_type: parrot_llava`). "
        "`python -m llava.model.convert to-hf` writes a transformers copy: native Llava for `linear` and "
        "`mlp2x_gelu` projectors, Llava plus remote code for `parrot_moe` and `pargo`.",
    ]


def _remote_code_usage(remote_code: dict) -> list[str]:
    """How to load a `to-hf` remote-code folder (`llava.model.convert.remote.remote_code_card`)."""
    auto_map = remote_code["auto_map"]
    classes = ", ".join(f"`{auto}` -> `{target}`" for auto, target in auto_map.items())
    return [
        "```python", "from transformers import AutoModelForImageTextToText, AutoProcessor",
        'processor = AutoProcessor.from_pretrained("THIS_FOLDER_OR_REPO")',
        'model = AutoModelForImageTextToText.from_pretrained("THIS_FOLDER_OR_REPO", trust_remote_code=True)',
        "```", "",
        f"The `{remote_code['projector']}` projector is not one of transformers' own, so this folder needs "
        f"`trust_remote_code=True`: its config.json `auto_map` names {classes}, which subclass transformers' "
        "`LlavaConfig` / `LlavaModel` / `LlavaForConditionalGeneration` and override only the projector "
        "(the processor is transformers' plain `LlavaProcessor`). The code files: "
        + ", ".join(f"`{name}`" for name in remote_code["files"]) + ". Loading needs only torch and transformers. "
        "The output's `routing_probs` holds the per-image expert probabilities of a routing projector.",
        "",
        "Tested: transformers (forward, logits and `generate`). Not tested here: vLLM, SGLang and TGI, which "
        "would each need their own implementation of this projector; do not expect them to load it.",
    ]


def languages_on_card(folder: str | Path) -> Counter:
    """The `language` metadata of `folder/README.md` (counts unknown: 0), to carry it through a conversion."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return Counter()
    language = ModelCard.load(path).data.language or []
    return Counter(dict.fromkeys([language] if isinstance(language, str) else language, 0))


def _flag_lines(flags: list[str]) -> list[str]:
    """Shell-quoted flags, one flag and its values per line."""
    lines: list[str] = []
    for flag in flags:
        if flag.startswith("--") or not lines:
            lines.append(shlex.quote(flag))
        else:
            lines[-1] += " " + shlex.quote(flag)
    return lines


def _provenance_section(record: TrainingRecord | None) -> list[str]:
    if record is None:
        return []
    if record.languages:
        spoken = ", ".join(code + (f" ({count:,} items)" if count else "") for code, count in record.languages.most_common())
        data = f"Languages of the training data (`lang` fields): {spoken}."
    else:
        data = "The training data carries no `lang` fields."
    base = f"Started from `{record.base_model}`. " if record.base_model else ""
    command = " \\\n  ".join([record.command, *_flag_lines(redacted(record.flags))])
    return ["## How it was made", "", base + data, "", "```bash", command, "```", ""]


def render_card(
    config, record: TrainingRecord | None = None, *, name: str, library_name: str = LIBRARY_NAME,
    remote_code: dict | None = None,
) -> ModelCard:
    """The card of a checkpoint described by `config` (our `LlavaConfig`); `remote_code` for a `to-hf`
    folder that ships its projector as code (what `llava.model.convert.remote.remote_code_card` gives)."""
    languages = [code for code in (record.languages if record else {}) if _ISO_639.match(code)]
    data = ModelCardData(
        base_model=_base_models(config, record) or None,
        language=languages or None,
        pipeline_tag=PIPELINE_TAG,
        library_name=library_name,
        tags=["llava", "multimodal", getattr(config, "mm_projector_type", None) or "llava"],
    )
    text = [
        f"# {name}", "",
        "A LLaVA-style multimodal model: vision tower -> projector -> LLM, trained with this repository's "
        "`llava.train.train` (LLaVA-1.5 flags, Parrot's `parrot_moe` projector as a plugin).", "",
        *_parts_table(config), "", "## Use", "", *_usage(library_name, remote_code), "",
        *_provenance_section(record),
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(text) + "\n")


def write_model_card(folder: str | Path, config, record: TrainingRecord | None = None, **kwargs) -> Path:
    """Write `folder/README.md` for the checkpoint in `folder`; returns its path."""
    folder = Path(folder)
    card = render_card(config, record, name=kwargs.pop("name", folder.resolve().name), **kwargs)
    path = folder / CARD_FILE
    card.save(path)
    logger.info("wrote the model card %s", path)
    return path


def replace_section(text: str, body: str) -> str:
    """`text` with the evaluation section (between EVAL_START and EVAL_END) set to `body`; appended if absent."""
    block = f"{EVAL_START}\n{body.rstrip()}\n{EVAL_END}"
    if EVAL_START in text and EVAL_END in text:
        before, rest = text.split(EVAL_START, 1)
        return before + block + rest.split(EVAL_END, 1)[1]
    return text.rstrip() + "\n\n" + block + "\n"
