"""pargo through the whole pipeline on the tiny models: stage 1, stage 2 (pargo, and parrot_moe on
pargo) from the stage-1 file, save, reload, generate, the CLI, the API and evaluation; and every
visual-token count (LLM positions, dataset truncation, serving context) is P + G, not the patches."""

import base64
import json
from types import SimpleNamespace

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from training_helpers import common_flags, train_capturing_initial_weights

from llava.constants import IMAGE_TOKEN_INDEX, MM_PROJECTOR_FILE
from llava.conversation import get_conv_template
from llava.data.dataset import DataConfig, LazySupervisedDataset
from llava.eval import model_vqa_loader
from llava.model import LlavaConfig
from llava.model.builder import load_pretrained_model
from llava.model.multimodal_projector import ROUTING_METRIC, build_vision_projector
from llava.model.projector_io import read_projector_file
from llava.serve import cli
from llava.serve.api import create_app
from llava.serve.engine import ChatEngine, SamplingParams
from llava.serve.inputs import BadInputError

P, G = 8, 2  # the tiny CLIP has a 4x4 patch grid: 8 windows of 1x2 patches, and 2 global queries
PARGO = {"pargo_layers": 2, "pargo_hidden_size": 32, "pargo_heads": 4,
         "pargo_num_partial_queries": P, "pargo_num_global_queries": G}
PARGO_FLAGS = [item for name, value in PARGO.items() for item in (f"--{name}", str(value))]


def _flags(tiny_assets, tiny_data, out, stage, projector, extra=()):
    flags = common_flags(tiny_assets, tiny_data, out, stage=stage, extra=[*PARGO_FLAGS, *extra])
    flags[flags.index("--mm_projector_type") + 1] = projector
    return flags


@pytest.fixture(scope="module")
def stage1(tiny_assets, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("pargo_stage1")
    train_capturing_initial_weights(_flags(tiny_assets, tiny_data, out, 1, "pargo"))
    return out


def _stage2(tiny_assets, tiny_data, out, stage1, projector, extra=()):
    flags = _flags(tiny_assets, tiny_data, out, 2, projector,
                   ["--pretrain_mm_mlp_adapter", str(stage1 / MM_PROJECTOR_FILE), *extra])
    trainer, before = train_capturing_initial_weights(flags)
    return {"out": out, "model": trainer.model.eval(), "before": before}


@pytest.fixture(scope="module")
def pargo_stage2(stage1, tiny_assets, tiny_data, tmp_path_factory):
    return _stage2(tiny_assets, tiny_data, tmp_path_factory.mktemp("pargo_stage2"), stage1, "pargo")


@pytest.fixture(scope="module")
def moe_stage2(stage1, tiny_assets, tiny_data, tmp_path_factory):
    return _stage2(tiny_assets, tiny_data, tmp_path_factory.mktemp("moe_stage2"), stage1, "parrot_moe",
                   ["--moe_base_projector", "pargo", "--moe_num_experts", "3"])


@pytest.fixture(scope="module")
def load_saved(request):
    """load_pretrained_model on the output of a stage-2 fixture, once per fixture name."""
    cache = {}

    def load(run: str) -> SimpleNamespace:
        if run not in cache:
            tokenizer, model, processor, context_len = load_pretrained_model(str(request.getfixturevalue(run)["out"]))
            cache[run] = SimpleNamespace(tokenizer=tokenizer, model=model, processor=processor, context_len=context_len)
        return cache[run]

    return load


@pytest.fixture(scope="module")
def reloaded(load_saved):
    return load_saved("pargo_stage2")


def _batch(processor):
    ids = torch.tensor([[5, IMAGE_TOKEN_INDEX, 6, 7]])
    images = processor(images=[Image.new("RGB", (32, 32), "red")], return_tensors="pt")["pixel_values"]
    return ids, images


def _png(tmp_path) -> str:
    path = tmp_path / "red.png"
    Image.new("RGB", (40, 32), (220, 30, 30)).save(path)
    return str(path)


def test_stage1_saves_the_pargo_projector_and_every_flag_in_config(stage1):
    config = LlavaConfig.from_pretrained(stage1)
    assert {name: getattr(config, name) for name in PARGO} == PARGO and config.pargo_window is None
    saved = read_projector_file(str(stage1 / MM_PROJECTOR_FILE))
    assert sorted(saved) == sorted(build_vision_projector(config).state_dict())


@pytest.mark.parametrize("run", ["pargo_stage2", "moe_stage2"])
def test_stage2_starts_from_the_stage1_pargo_weights(run, stage1, request):
    before = request.getfixturevalue(run)["before"]
    stage1_weights = read_projector_file(str(stage1 / MM_PROJECTOR_FILE))
    for name, weight in stage1_weights.items():
        torch.testing.assert_close(before[f"mm_projector.{name}"], weight, rtol=0, atol=0)


@pytest.mark.parametrize("run", ["pargo_stage2", "moe_stage2"])
def test_saved_stage2_model_reloads_with_the_same_logits_and_one_image_costs_p_plus_g(run, request, load_saved):
    trained = request.getfixturevalue(run)
    model = load_saved(run).model
    ids, images = _batch(load_saved(run).processor)
    with torch.no_grad():
        out = model(input_ids=ids, images=images)
        expected = trained["model"](input_ids=ids, images=images).logits
    assert model.num_image_tokens == P + G and out.logits.shape[1] == 3 + P + G
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-5)
    assert (ROUTING_METRIC in out.projector_metrics) == (run == "moe_stage2")


def test_reloaded_model_generates_new_tokens(reloaded):
    ids, images = _batch(reloaded.processor)
    new = reloaded.model.generate(ids, images=images, max_new_tokens=3, do_sample=False)
    assert new.shape == (1, 3)


def test_cli_answers_a_question_about_an_image(pargo_stage2, tmp_path, capsys):
    argv = ["--model-path", str(pargo_stage2["out"]), "--image-file", _png(tmp_path), "--query", "What colour?",
            "--max-new-tokens", "3", "--temperature", "0", "--device", "cpu"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip()


def test_api_counts_p_plus_g_prompt_tokens_for_an_image(reloaded, tmp_path):
    engine = ChatEngine(reloaded.tokenizer, reloaded.model, reloaded.processor, reloaded.context_len, name="pargo")
    client = TestClient(create_app(engine, defaults=SamplingParams(max_new_tokens=3, temperature=0.0)))
    url = "data:image/png;base64," + base64.b64encode(open(_png(tmp_path), "rb").read()).decode()
    text = {"type": "text", "text": "What colour?"}
    usage = {}
    for name, content in {"image": [text, {"type": "image_url", "image_url": {"url": url}}], "text": [text]}.items():
        response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}]})
        assert response.status_code == 200, response.text
        usage[name] = response.json()["usage"]["prompt_tokens"]
    assert usage["image"] - usage["text"] == P + G + 1  # the visual tokens and the newline after <image>


def test_serving_context_check_counts_p_plus_g(reloaded):
    def engine(context_len):
        return ChatEngine(reloaded.tokenizer, reloaded.model, reloaded.processor, context_len, name="pargo")

    image = Image.new("RGB", (32, 32), "red")
    needed = engine(10_000).prepare("Hi", image=image).prompt_tokens
    assert engine(needed + 1).prepare("Hi", image=image).room_for_answer == 1
    with pytest.raises(BadInputError, match=f"{P + G} of them for the image"):
        engine(needed).prepare("Hi", image=image)


def test_a_sample_that_fits_with_pargo_but_not_with_mlp2x_gelu_is_not_truncated(reloaded, tiny_data):
    mlp_tokens = build_vision_projector(SimpleNamespace(mm_projector_type="mlp2x_gelu", mm_hidden_size=4,
                                                        hidden_size=4)).num_output_tokens(16)
    pargo_tokens = reloaded.model.num_image_tokens
    assert (pargo_tokens, mlp_tokens) == (P + G, 16)

    def first_item_length(num_image_tokens, max_length):
        config = DataConfig(get_conv_template("qwen_2"), str(tiny_data["images"]), reloaded.processor,
                            model_max_length=max_length, num_image_tokens=num_image_tokens)
        dataset = LazySupervisedDataset(str(tiny_data["instructions"]), reloaded.tokenizer, config)
        return len(dataset[0]["input_ids"])

    full = first_item_length(pargo_tokens, 4096)
    budget = full - 1 + pargo_tokens  # the text (one <image> sentinel) plus P + G visual tokens
    assert first_item_length(pargo_tokens, budget) == full
    assert first_item_length(mlp_tokens, budget) < full


def test_evaluation_answers_every_question(pargo_stage2, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (12, 10), (200, 20, 20)).save(images / "red.png")
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in [
        {"question_id": 1, "image": "red.png", "text": "What colour is this?"},
        {"question_id": 2, "text": "Say hello."}]) + "\n")
    answers = tmp_path / "answers.jsonl"
    argv = ["--model-path", str(pargo_stage2["out"]), "--question-file", str(questions), "--answers-file",
            str(answers), "--image-folder", str(images), "--max-new-tokens", "3", "--batch-size", "2",
            "--device", "cpu"]
    assert model_vqa_loader.main(argv) == 0
    records = [json.loads(line) for line in answers.read_text().splitlines()]
    assert sorted(r["question_id"] for r in records) == [1, 2] and all("error" not in r["metadata"] for r in records)
