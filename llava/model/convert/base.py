"""What a converter is: one `python -m llava.model.convert NAME` subcommand, and the error it raises.

The core ships `to-hf` and `from-hf`. A plugin adds its own subcommand without touching the core by
declaring an entry point in the `llava.converters` group whose object is a `Converter` (the entry
point's name must equal `Converter.name`); `parrot_moe` registers `from-parrot` that way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ENTRY_POINT_GROUP = "llava.converters"

# Where each kind of checkpoint can be served; named in every refusal, so nobody is left guessing.
OUR_ENGINES = "this repository's own loaders (llava.model.builder, llava.serve.*, llava.eval.*, python -m playground.demo)"


CONVERT_COMMAND = "python -m llava.model.convert"


def conversion_record(subcommand: str, source: Path, out: Path, *options: str):
    """The model-card record of a conversion: its command line, and the source's languages carried over."""
    from llava.model.model_card import TrainingRecord, languages_on_card

    return TrainingRecord(
        base_model=str(source),
        languages=languages_on_card(source),
        flags=[subcommand, str(source), str(out), *options],
        command=CONVERT_COMMAND,
    )


def save_converted(out: Path, model, tokenizer, image_processor, record) -> Path:
    """Write a converted checkpoint of ours: weights and config, tokenizer, image processor, model card."""
    from llava.model.model_card import write_model_card

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    write_model_card(out, model.config, record)
    return out


class ConversionError(ValueError):
    """Bad input to a converter: the message names the file or flag and what to do about it."""


@dataclass(frozen=True)
class Converter:
    """A subcommand: `add_arguments(parser)` declares its flags, `run(args)` converts and returns OUT."""

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Path]
