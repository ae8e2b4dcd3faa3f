"""Shared fixtures: offline tiny assets, a small LLaVA dataset with real image files, and an
untrained tiny LLaVA checkpoint saved the way training saves one."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from PIL import Image

from llava.tiny import build_tiny_llava, save_tiny_llava  # noqa: F401  (re-exported for tests)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 230, 20)}


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> dict[str, Path]:
    from llava.tiny import build_tiny_assets

    return build_tiny_assets(tmp_path_factory.mktemp("tiny"), seed=0)


def write_tiny_dataset(root: Path, num_images: int = 16, seed: int = 0) -> dict[str, Path]:
    """Solid-colour images with captions (stage 1) and two-turn instructions (stage 2)."""
    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    captions, instructions = [], []
    for i in range(num_images):
        colour = rng.choice(sorted(COLOURS))
        Image.new("RGB", (40, 32), COLOURS[colour]).save(images / f"{i}.png")
        captions.append(
            {"id": f"cap{i}", "image": f"{i}.png", "conversations": [
                {"from": "human", "value": "<image>\nDescribe the image."},
                {"from": "gpt", "value": f"A {colour} picture."}]}
        )
        instructions.append(
            {"id": f"ins{i}", "image": f"{i}.png", "lang": "en", "conversations": [
                {"from": "human", "value": "<image>\nWhat colour is the picture?"},
                {"from": "gpt", "value": colour.capitalize()},
                {"from": "human", "value": "Are you sure?"},
                {"from": "gpt", "value": "Yes."}]}
        )
    instructions.append({"id": "text0", "lang": "en", "conversations": [
        {"from": "human", "value": "Say hello."}, {"from": "gpt", "value": "Hello!"}]})
    paths = {"images": images, "captions": root / "captions.json", "instructions": root / "instructions.json"}
    paths["captions"].write_text(json.dumps(captions))
    paths["instructions"].write_text(json.dumps(instructions))
    return paths


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    return write_tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def tiny_llava_checkpoint(tiny_assets, tmp_path_factory) -> Path:
    """An untrained tiny Qwen2+CLIP LLaVA saved with weights, tokenizer and image processor."""
    return save_tiny_llava(tiny_assets, tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture
def translation_server(monkeypatch):
    """The fake OpenAI-compatible translator on loopback (tests/translation_server.py), key set."""
    from translation_server import TranslationServer

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with TranslationServer() as server:
        yield server


@pytest.fixture(scope="session")
def stage1_reference_run(tiny_assets, tiny_data, tmp_path_factory) -> Path:
    """An uninterrupted stage-1 run (LLaMA, 4 steps, checkpoints at 2 and 4): the weights that an
    interrupted and resumed run of the same flags (`stage1_resume_flags`) must end with."""
    from llava.train.train import main

    out = tmp_path_factory.mktemp("stage1_reference")
    main(stage1_resume_flags(tiny_assets, tiny_data, out))
    return out


def stage1_resume_flags(assets, data, out, *extra: str) -> list[str]:
    from distributed_utils import train_flags

    steps = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2"]
    return train_flags(assets, data, out, stage=1, llm="llama", extra=[*steps, *extra])
