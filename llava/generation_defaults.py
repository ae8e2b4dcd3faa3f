"""The one set of sampling defaults that the CLI, the HTTP API and the gradio demo start from.

Each entry point exposes these as its flags' defaults (`--max-new-tokens`, `--temperature`,
`--top-p`), and `SamplingParams()` has the same values, so a question asked through any of them
without settings is answered the same way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationDefaults:
    """Sampling settings used when a caller sets none.

    max_new_tokens 256: the API's default answer length (the CLI used 512 before; one value for all).
    temperature 0.2: LLaVA's serving default, kept from the API (0 means greedy decoding).
    top_p 1.0: no nucleus filtering.
    """

    max_new_tokens: int = 256
    temperature: float = 0.2
    top_p: float = 1.0


GENERATION_DEFAULTS = GenerationDefaults()
