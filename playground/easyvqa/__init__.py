"""Six-language easy-VQA: a reviewed translation table and a deterministic LLaVA/VLMEvalKit data builder.

Build with `python -m playground.easyvqa build --out DIR`; see `playground.easyvqa.build`.
"""

from playground.easyvqa.translations import (
    LANGUAGES,
    TranslationTable,
    benchmark_code,
    format_mcq_prompt,
    load_table,
)

__all__ = ["LANGUAGES", "TranslationTable", "benchmark_code", "format_mcq_prompt", "load_table"]
