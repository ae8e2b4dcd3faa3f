"""`--data_path`: one LLaVA file, comma-separated files, or a YAML mixture of sources.

    # mixture.yaml (the Pangea layout; `sampling_strategy` is accepted for `sampling`)
    datasets:
      - json_path: ${PARROT_DATA:-./playground/data}/llava_v1_5_mix665k.json
        image_folder: ${PARROT_DATA:-./playground/data}   # optional: overrides --image_folder
        lang: en                                           # optional: fills `lang` where items have none
        sampling: all                                      # all | first:N | end:N | random:N | fraction:F

`${VAR}` and `${VAR:-default}` expand from the environment (defaults may nest); relative paths
are relative to the current directory, like every path flag. `random:N` and `fraction:F` draw
without replacement, the same items for the same `--seed`, and keep the file's order. Every
entry is checked when the file is parsed, so a wrong path fails before any model is loaded.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from llava.data.files import read_llava_file

_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^${}]*))?\}")
_SAMPLING = re.compile(r"^(all|first:(\d+)|end:(\d+)|random:(\d+)|fraction:([0-9.]+))$")
KEYS = {"json_path", "image_folder", "lang", "sampling", "sampling_strategy"}


class MixtureError(ValueError):
    """A mixture file that cannot be used as written; the message names the file, entry and fix."""


@dataclass(frozen=True)
class Source:
    json_path: str
    image_folder: str | None = None
    lang: str | None = None
    sampling: str = "all"
    where: str = ""  # "mixture.yaml entry 2", for messages


@dataclass
class CompositionRow:
    source: str
    sampling: str
    available: int
    langs: Counter = field(default_factory=Counter)  # language -> items used


@dataclass
class LoadedData:
    items: list[dict]
    composition: list[CompositionRow]

    def table(self) -> str:
        """Items per source and per language, as one plain-text table for the log."""
        langs = sorted({lang for row in self.composition for lang in row.langs})
        total = Counter()
        for row in self.composition:
            total.update(row.langs)
        width = max([len("source"), *(len(row.source) for row in self.composition)])
        header = f"{'source':<{width}}  {'sampling':<14} {'available':>10} {'used':>10}" + "".join(f" {lang:>9}" for lang in langs)
        lines = [header]
        for row in self.composition:
            lines.append(f"{row.source:<{width}}  {row.sampling:<14} {row.available:>10,} {sum(row.langs.values()):>10,}"
                         + "".join(f" {row.langs[lang]:>9,}" for lang in langs))
        used = sum(total.values())
        lines.append(f"{'total':<{width}}  {'':<14} {'':>10} {used:>10,}" + "".join(f" {total[lang]:>9,}" for lang in langs))
        lines.append(f"{'share':<{width}}  {'':<14} {'':>10} {'':>10}"
                     + "".join(f" {100 * total[lang] / max(used, 1):>8.1f}%" for lang in langs))
        return "\n".join(lines)


def is_mixture(data_path: str) -> bool:
    return data_path.strip().lower().endswith((".yaml", ".yml"))


def expand_variables(value: str, where: str) -> str:
    """Expand ${VAR} and ${VAR:-default}, innermost first; an unset VAR without default is an error."""
    while True:
        match = _VARIABLE.search(value)
        if match is None:
            return value
        name, default = match.groups()
        replacement = os.environ.get(name) or default
        if replacement is None:
            raise MixtureError(f"{where}: ${{{name}}} is not set; export {name} or write ${{{name}:-default}}")
        value = value[: match.start()] + replacement + value[match.end():]


def _source(entry, where: str) -> Source:
    if not isinstance(entry, dict) or "json_path" not in entry:
        raise MixtureError(f"{where}: each entry needs a json_path (and optionally image_folder, lang, sampling)")
    unknown = set(entry) - KEYS
    if unknown:
        raise MixtureError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(KEYS)}")
    json_path = expand_variables(str(entry["json_path"]), where)
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"{where}: json_path {json_path} does not exist; fix the path or the variables it uses")
    image_folder = entry.get("image_folder")
    if image_folder is not None:
        image_folder = expand_variables(str(image_folder), where)
        if not os.path.isdir(image_folder):
            raise FileNotFoundError(f"{where}: image_folder {image_folder} is not a folder; fix the path")
    sampling = str(entry.get("sampling", entry.get("sampling_strategy", "all"))).strip()
    match = _SAMPLING.match(sampling)
    fraction = match and match.group(5)
    if not match or (fraction and not 0 < float(fraction) <= 1) or any(g == "0" for g in match.groups()[1:4]):
        raise MixtureError(f"{where}: sampling {sampling!r}; use all, first:N, end:N, random:N (N >= 1) "
                           "or fraction:F (0 < F <= 1)")
    lang = entry.get("lang")
    return Source(json_path, image_folder, None if lang is None else str(lang), sampling, where)


def parse_mixture(path: str) -> list[Source]:
    """The sources of a mixture file, every path checked; raises naming the file and the entry."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--data_path {path} does not exist")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise MixtureError(f"--data_path {path}: not valid YAML ({err})") from None
    entries = data.get("datasets") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise MixtureError(f"--data_path {path}: expected a `datasets:` list of sources (json_path, sampling, ...)")
    return [_source(entry, f"--data_path {path} entry {number} ({_label(entry)})")
            for number, entry in enumerate(entries, 1)]


def _label(entry) -> str:
    return str(entry.get("json_path", "no json_path")) if isinstance(entry, dict) else repr(entry)


def sample_items(items: list, source: Source, rng: random.Random) -> list:
    """The items `source.sampling` selects; asking for more than the file holds is an error."""
    kind, _, amount = source.sampling.partition(":")
    if kind == "all":
        return list(items)
    count = round(float(amount) * len(items)) if kind == "fraction" else int(amount)
    if count > len(items):
        raise MixtureError(f"{source.where}: sampling {source.sampling} asks for {count} items, the file has "
                           f"{len(items)}; lower N or use all")
    if kind == "first":
        return items[:count]
    if kind == "end":
        return items[len(items) - count:]
    return [items[i] for i in sorted(rng.sample(range(len(items)), count))]


def _apply_source(items: list, source: Source) -> list:
    out = []
    for item in items:
        if isinstance(item, dict) and (source.image_folder or source.lang):
            item = dict(item)
            if source.image_folder and "image_folder" not in item:
                item["image_folder"] = source.image_folder
            if source.lang and not item.get("lang"):
                item["lang"] = source.lang
        out.append(item)
    return out


def load_data(data_path: str, seed: int = 0) -> LoadedData:
    """Items of a mixture file, or of one or more comma-separated JSON/JSONL files, with their composition."""
    if is_mixture(data_path):
        sources = parse_mixture(data_path.strip())
    else:
        sources = [Source(p.strip(), where=f"--data_path {p.strip()}") for p in data_path.split(",") if p.strip()]
    items, composition = [], []
    for index, source in enumerate(sources):
        available = read_llava_file(source.json_path)
        chosen = _apply_source(sample_items(available, source, random.Random(f"{seed}:{index}")), source)
        langs = Counter(str(item.get("lang") or "unknown") if isinstance(item, dict) else "unknown" for item in chosen)
        composition.append(CompositionRow(os.path.basename(source.json_path), source.sampling, len(available), langs))
        items.extend(chosen)
    return LoadedData(items, composition)
