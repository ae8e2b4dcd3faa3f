"""Remote-code exports: `to-hf` for projectors transformers' Llava cannot express (parrot_moe, pargo).

The folder is transformers' Llava for everything Llava already does (vision tower, merge, LLM,
processor, chat template) plus code for the projector only: `modeling_parrot_llava.py` subclasses
transformers' Llava classes (see `llava.model.remote_code`), and the projector's own math modules are
copied, byte for byte, from the plugin that registered the type. A projector opts in through the
`export` hook of its `ProjectorSpec` (see `llava.model.multimodal_projector.builder`), which returns
a `RemoteExport`; the core never imports a plugin. Load the folder with

    AutoProcessor.from_pretrained(OUT)
    AutoModelForImageTextToText.from_pretrained(OUT, trust_remote_code=True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from llava.model.convert.base import OUR_ENGINES, ConversionError

REMOTE_MODEL_TYPE = "parrot_llava_remote"
CONFIG_CLASS = "configuration_parrot_llava.ParrotLlavaConfig"
MODEL_CLASS = "modeling_parrot_llava.ParrotLlavaForConditionalGeneration"
AUTO_MAP = {"AutoConfig": CONFIG_CLASS, "AutoModelForImageTextToText": MODEL_CLASS}
CORE_FILES = tuple(
    Path(__file__).resolve().parent.parent / "remote_code" / name
    for name in ("configuration_parrot_llava.py", "modeling_parrot_llava.py", "text_guidance.py")
)
PROJECTOR_INDEX = "parrot_projectors.py"  # written per folder: which shipped module builds which type


@dataclass(frozen=True)
class RemoteExport:
    """How a projector is written into a remote-code folder.

    spec: config.json `parrot_projector`, `{"type": name, ...}`: what the module's `build_remote_projector(spec,
      build_base)` reads (a stacked projector nests its base's spec under `base`).
    modules: type name -> the shipped file whose `build_remote_projector` builds that type.
    files: every file to copy (the modules and whatever they import relatively); names must be unique.
    renames: (our key prefix, exported key prefix) pairs for the projector's tensors; others keep their key.
    """

    spec: dict
    modules: dict[str, Path] = field(default_factory=dict)
    files: tuple[Path, ...] = ()
    renames: tuple[tuple[str, str], ...] = ()

    def exported_keys(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {_rename(key, self.renames): tensor for key, tensor in state.items()}

    def our_keys(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {_rename(key, tuple((new, old) for old, new in self.renames)): tensor for key, tensor in state.items()}


def _rename(key: str, renames: tuple[tuple[str, str], ...]) -> str:
    for old, new in renames:
        if key.startswith(old):
            return new + key[len(old):]
    return key


# transformers' own LlavaMultiModalProjector (gelu), under a projector that stacks on mlp2x_gelu.
MLP2X_GELU = RemoteExport(spec={"type": "mlp2x_gelu"}, renames=(("0.", "linear_1."), ("2.", "linear_2.")))


def export_of(projector_type: str, projector: torch.nn.Module, num_patches: int) -> RemoteExport:
    """The `RemoteExport` of a built projector of `projector_type`, or a `ConversionError` saying why not."""
    from llava.model.multimodal_projector.builder import get_projector_spec

    if projector_type == "mlp2x_gelu":
        return MLP2X_GELU
    spec = get_projector_spec(projector_type)
    if spec.export is None:
        raise ConversionError(
            f"mm_projector_type {projector_type!r} has no transformers export (its ProjectorSpec has no `export` "
            f"hook); serve the checkpoint with {OUR_ENGINES}"
        )
    return spec.export(projector, num_patches, export_of)


def check_files(export: RemoteExport) -> tuple[Path, ...]:
    """Every file the folder gets: the core's and the projector's, refusing two different files of one name."""
    files: dict[str, Path] = {}
    for path in (*CORE_FILES, *export.files):
        known = files.setdefault(path.name, path)
        if known.resolve() != path.resolve():
            raise ConversionError(f"{known} and {path} would both be {path.name} in the exported folder; rename one")
    if PROJECTOR_INDEX in files:
        raise ConversionError(f"{files[PROJECTOR_INDEX]}: {PROJECTOR_INDEX} is the name to-hf writes itself")
    return tuple(files.values())


def projector_index(export: RemoteExport) -> str:
    """`parrot_projectors.py`: one relative import per shipped projector module (what the loader copies)."""
    lines = ['"""The projector modules of this folder, by type (written by `python -m llava.model.convert to-hf`)."""', ""]
    names = {}
    for projector_type, path in sorted(export.modules.items()):
        names[projector_type] = f"build_{projector_type}"
        lines.append(f"from .{path.stem} import build_remote_projector as {names[projector_type]}")
    entries = ", ".join(f"{projector_type!r}: {name}" for projector_type, name in names.items())
    return "\n".join([*lines, "", f"REMOTE_PROJECTORS = {{{entries}}}", ""])


def write_code(export: RemoteExport, out: Path) -> None:
    """Copy the code files into `out` and write its projector index."""
    out.mkdir(parents=True, exist_ok=True)
    for path in check_files(export):
        (out / path.name).write_bytes(path.read_bytes())
    (out / PROJECTOR_INDEX).write_text(projector_index(export), encoding="utf-8")


def remote_classes(folder: Path):
    """(config class, model class) of the remote-code folder `folder`, loaded the way transformers loads them."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    return (
        get_class_from_dynamic_module(CONFIG_CLASS, str(folder)),
        get_class_from_dynamic_module(MODEL_CLASS, str(folder)),
    )


def remote_export(ours, source: object) -> tuple[RemoteExport, str]:
    """(the export of `ours`'s projector, transformers' `vision_feature_select_strategy` for it).

    The projector gets the CLS row when it asks for it (`wants_cls_token`) or under `cls_patch`; that is
    strategy `full`, which needs a tower with a real CLS (our SigLIP row 0 is a mean of the patches).
    """
    from llava.model.convert.hf_llava import has_cls_token, select_strategy

    config, projector = ours.config, ours.mm_projector
    needs_cls = projector.wants_cls_token or config.mm_vision_select_feature == "cls_patch"
    if needs_cls and not has_cls_token(config.vision_config):
        raise ConversionError(
            f"{source}: mm_projector_type {config.mm_projector_type!r} reads the vision CLS row, which a "
            f"{config.vision_config.model_type} tower does not have (ours feeds a mean of the patches instead); "
            f"serve it with {OUR_ENGINES}"
        )
    strategy = "full" if needs_cls else select_strategy(config.mm_vision_select_feature, config.vision_config)
    try:
        export = export_of(config.mm_projector_type, projector, ours.vision_tower.num_patches)
    except ConversionError as error:
        raise ConversionError(f"{source}: {error}") from error
    return export, strategy


# Our config's fields that are not kept elsewhere in the exported config.json.
_NOT_OURS = ("text_config", "vision_config", "model_type", "transformers_version", "architectures", "auto_map")


def our_fields(config, source_vocab_size: int) -> dict:
    """config.json `parrot_config`: every field of our config but its sub-configs, and the LLM's vocabulary
    size before to-hf added `<image>`, so `from-hf` restores the checkpoint exactly."""
    fields = {key: value for key, value in config.to_dict().items() if key not in _NOT_OURS}
    return {**fields, "source_vocab_size": source_vocab_size}


def projector_types(spec: dict) -> list[str]:
    """The projector types of a `parrot_projector` spec, outermost first (`parrot_moe`, then its base)."""
    return [spec["type"], *(projector_types(spec["base"]) if "base" in spec else [])]


def remote_code_card(export: RemoteExport) -> dict:
    """What the model card says about a remote-code folder (see `llava.model.model_card`)."""
    return {
        "projector": " over ".join(projector_types(export.spec)),
        "auto_map": dict(AUTO_MAP),
        "files": sorted(path.name for path in check_files(export)) + [PROJECTOR_INDEX],
    }
