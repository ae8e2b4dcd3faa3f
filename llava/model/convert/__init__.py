"""Checkpoint converters between our format, transformers-native Llava and (through plugins) others.

Run `python -m llava.model.convert --help`; see `llava.model.convert.cli` for the subcommands and
`llava.model.convert.base` for how a plugin adds one.
"""

from llava.model.convert.base import ENTRY_POINT_GROUP, ConversionError, Converter

__all__ = ["ENTRY_POINT_GROUP", "ConversionError", "Converter"]
