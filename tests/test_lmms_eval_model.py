"""Our checkpoints as an lmms-eval model: `parrot_llava` answers lmms-eval's own request objects as
`generate_batch` does, and scores continuations as the model's forward does (mlp, parrot_moe and pargo)."""

from __future__ import annotations

import importlib
import runpy
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import setuptools
import torch
from conftest import build_tiny_llava
from lmms_eval.api.instance import Instance
from lmms_eval.models.registry_v2 import ModelRegistryV2
from PIL import Image

from llava.constants import IGNORE_INDEX
from llava.eval.lmms_eval_manifest import MANIFEST
from llava.eval.lmms_eval_model import ParrotLlava
from llava.inference import build_prompt, generate_batch
from llava.mm_utils import process_images, tokenizer_image_token

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = ["What colour is it?", "这是什么颜色？", "Qual é a cor?", "Hello there", "<image>\nDescribe it."]
COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), None, (230, 230, 20)]

# pargo's partial queries must tile the tiny tower's 4x4 patch grid.
SIZES = {"pargo": dict(pargo_layers=1, pargo_hidden_size=8, pargo_heads=2, pargo_num_partial_queries=4,
                       pargo_num_global_queries=2)}


def save_chatty_checkpoint(assets, out: Path, projector: str) -> Path:
    """A tiny checkpoint whose greedy answers vary between prompts (LLM matrices redrawn at std 0.3)."""
    import pargo  # noqa: F401  (register the projectors even without the entry points)
    import parrot_moe  # noqa: F401

    model, tokenizer, image_processor = build_tiny_llava(assets, mm_projector_type=projector, **SIZES.get(projector, {}))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.language_model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.3, generator=generator)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=["mlp2x_gelu", "parrot_moe", "pargo"])
def lmm(request, tiny_assets, tmp_path_factory) -> ParrotLlava:
    path = save_chatty_checkpoint(tiny_assets, tmp_path_factory.mktemp(request.param), request.param)
    model = ParrotLlava(pretrained=str(path), device="cpu", dtype="float32", batch_size=2)
    assert model.model.config.mm_projector_type == request.param
    docs = [{"image": None if c is None else Image.new("RGB", (40, 32), c), "answer": "Red"} for c in COLOURS]
    model.task_dict = {"tiny": {"test": docs}}
    return model


def visual(doc):
    return [] if doc["image"] is None else [doc["image"]]


def request(kind: str, index: int, *arguments) -> Instance:
    return Instance(kind, (*arguments, visual, index, "tiny", "test"), index, {"task": "tiny", "doc_id": index, "repeats": 1})


def images(lmm):
    return [doc["image"] for doc in lmm.task_dict["tiny"]["test"]]


def test_generate_until_answers_are_generate_batch_greedy_answers(lmm):
    short, long = {"max_new_tokens": 3, "temperature": 0}, {"max_new_tokens": 6, "do_sample": False, "until": []}
    settings = [short, long, short, long, long]  # two groups, batches of two: answers come back in request order
    answers = lmm.generate_until([request("generate_until", i, q, s) for i, (q, s) in enumerate(zip(QUESTIONS, settings))])
    ours = {
        n: generate_batch(lmm.model, lmm.tokenizer, lmm.image_processor, QUESTIONS, images(lmm), max_new_tokens=n)
        for n in (3, 6)
    }
    assert answers == [ours[s["max_new_tokens"]][i] for i, s in enumerate(settings)]
    assert len(set(answers)) > 1


def test_until_ends_the_answer_before_the_stop_string(lmm):
    full = generate_batch(lmm.model, lmm.tokenizer, lmm.image_processor, QUESTIONS[:1], images(lmm)[:1], max_new_tokens=8)[0]
    stop = full.strip()[len(full.strip()) // 2 :][:2]
    assert stop
    [answer] = lmm.generate_until([request("generate_until", 0, QUESTIONS[0], {"max_new_tokens": 8, "until": stop})])
    assert answer == full.split(stop)[0] and len(answer) < len(full)


@pytest.mark.parametrize(("gen_kwargs", "match"), [
    ({"num_beams": 3}, "num_beams=3"),
    ({"image_aspect_ratio": "pad"}, r"\['image_aspect_ratio'\]"),
    ({"do_sample": True, "temperature": 0}, "do_sample=True"),
])
def test_unsupported_generation_settings_are_refused_naming_the_task(lmm, gen_kwargs, match):
    with pytest.raises(ValueError, match=f"task tiny.*{match}"):
        lmm.generate_until([request("generate_until", 0, QUESTIONS[0], gen_kwargs)])


def forward_logprob(lmm, message: str, continuation: str, image) -> tuple[float, bool]:
    """The continuation's log-probability read off `model(...)`'s logits: its tokens are the last ones."""
    model, tokenizer = lmm.model, lmm.tokenizer
    prompt = build_prompt(model, message.replace("<image>", "").strip(), image is not None)
    ids = tokenizer_image_token(prompt + continuation, tokenizer)
    n = len(ids) - len(tokenizer_image_token(prompt, tokenizer))
    input_ids = torch.tensor([ids])
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[0, -n:] = input_ids[0, -n:]  # text guidance from the prompt only, as in training
    pixels = None if image is None else process_images([image], lmm.image_processor, model.config)
    with torch.no_grad():
        logits = model(input_ids=input_ids, images=pixels, labels=labels).logits[0, -n - 1 : -1].log_softmax(-1)
    wanted = input_ids[0, -n:]
    return float(logits.gather(1, wanted[:, None]).sum()), bool((logits.argmax(-1) == wanted).all())


def first_greedy_token(lmm, message: str, image) -> str:
    """The text of the token greedy decoding starts the answer with (the engine's answers are stripped,
    so their text does not re-tokenize to the tokens decoded)."""
    prompt = build_prompt(lmm.model, message, image is not None)
    pixels = None if image is None else process_images([image], lmm.image_processor, lmm.model.config)
    token = lmm.model.generate(torch.tensor([tokenizer_image_token(prompt, lmm.tokenizer)]), images=pixels,
                               max_new_tokens=1, do_sample=False)[0, 0]
    return lmm.tokenizer.decode([token])


def test_loglikelihood_is_the_forward_logprob_of_the_continuation(lmm):
    greedy = [first_greedy_token(lmm, QUESTIONS[i], images(lmm)[i]) for i in (0, 2)]
    targets = [greedy[0], "Green", greedy[1], "Hello", lambda doc: doc["answer"]]
    requests = [request("loglikelihood", i, q, t) for i, (q, t) in enumerate(zip(QUESTIONS, targets))]
    results = lmm.loglikelihood(requests)
    for i, (logprob, is_greedy) in enumerate(results):
        target = targets[i] if isinstance(targets[i], str) else "Red"
        expected, expected_greedy = forward_logprob(lmm, QUESTIONS[i], target, images(lmm)[i])
        assert logprob == pytest.approx(expected, abs=1e-4) and logprob < 0
        assert is_greedy == expected_greedy
    assert results[0][1] and results[2][1]  # the model's own greedy answers are greedy
    assert len({round(r[0], 3) for r in results}) == len(results)


def test_generate_until_multi_round_is_refused_clearly(lmm):
    with pytest.raises(NotImplementedError, match="multi-round"):
        lmm.generate_until_multi_round([])


def test_the_manifest_resolves_to_the_model_class():
    registry = ModelRegistryV2()
    registry.register_manifest(MANIFEST)
    assert registry.get_model_class("parrot_llava") is ParrotLlava
    declared = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: declared.update(kwargs)
    try:
        runpy.run_path(str(REPO / "setup.py"))
    finally:
        setuptools.setup = original
    [line] = declared["entry_points"]["lmms_eval.models"]
    name, target = (part.strip() for part in line.split("="))
    module, attribute = target.split(":")
    assert name == "parrot_llava" and getattr(importlib.import_module(module), attribute) is MANIFEST
    installed = [ep for ep in entry_points(group="lmms_eval.models") if ep.name == "parrot_llava"]
    if installed:  # the package installed from this tree: lmms-eval reads the same manifest
        assert installed[0].load() == MANIFEST


def test_without_lmms_eval_the_import_names_the_no_deps_install():
    code = "import sys; sys.modules['lmms_eval'] = None; import llava.eval.lmms_eval_model"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1
    assert "ImportError: llava.eval.lmms_eval_model needs lmms-eval" in result.stderr
    assert "pip install --no-deps lmms-eval==0.7.3 loguru" in result.stderr
