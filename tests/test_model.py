"""LlavaForCausalLM over real tiny backbones: identity without images, round trips, generation."""

import pytest
import torch
import torch.nn as nn
from conftest import build_tiny_llava
from PIL import Image
from transformers import AutoModelForCausalLM

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.inference import build_prompt, generate_batch
from llava.mm_utils import process_images, tokenizer_image_token
from llava.model import LlavaForCausalLM
from llava.model.multimodal_projector import Projector, ProjectorOutput, register_projector


def prompt_ids(tokenizer, text="<image>\nWhat colour is the shape?"):
    return tokenizer_image_token(text, tokenizer, return_tensors="pt")[None]


@pytest.mark.parametrize("llm", ["qwen2", "llama"])
def test_logits_equal_bare_llm_without_image(tiny_assets, llm):
    model, tokenizer, _ = build_tiny_llava(tiny_assets, llm=llm)
    bare = AutoModelForCausalLM.from_pretrained(tiny_assets[llm], dtype=torch.float32).eval()
    ids = tokenizer("Hello, Merhaba, 你好, Привет, مرحبا, Olá!", return_tensors="pt").input_ids
    with torch.no_grad():
        diff = (model(input_ids=ids).logits - bare(input_ids=ids).logits).abs().max()
    assert diff <= 1e-5


@pytest.mark.slow
def test_logits_equal_real_smollm2_without_image(tiny_assets):
    """The real 135M SmolLM2 weights (GGUF) wrapped as the LLM of a LLaVA model."""
    from llava.model import LlavaConfig
    from llava.model.multimodal_encoder.vision_tower import load_vision_config
    from llava.tiny import build_smollm2_tokenizer, smollm2_gguf_path

    gguf = smollm2_gguf_path()
    bare = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    config = LlavaConfig(
        text_config=bare.config,
        vision_config=load_vision_config(str(tiny_assets["clip"])),
        attn_implementation=bare.config._attn_implementation,
    )
    model = LlavaForCausalLM(config, language_model=bare).eval()
    tokenizer = build_smollm2_tokenizer()
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        wrapped = model(input_ids=ids).logits
        reference = bare(input_ids=ids).logits
    assert (wrapped - reference).abs().max() <= 1e-5
    assert tokenizer.decode(wrapped[0, -1].argmax()) .strip() == "Paris"


def test_save_then_from_pretrained_gives_identical_logits(tiny_assets, tmp_path):
    model, tokenizer, processor = build_tiny_llava(tiny_assets)
    ids = prompt_ids(tokenizer)
    pixels = process_images([Image.new("RGB", (40, 30), "red")], processor, model.config)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, LlavaForCausalLM)
    assert reloaded.config.mm_projector_type == "mlp2x_gelu"
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, images=pixels).logits, reloaded(input_ids=ids, images=pixels).logits)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in {".safetensors", ".bin"}) == ["model.safetensors"]


@pytest.mark.parametrize("feature, expected", [("patch", 16), ("cls_patch", 17)])
def test_visual_token_count_follows_select_feature(tiny_assets, feature, expected):
    model, tokenizer, processor = build_tiny_llava(tiny_assets, mm_vision_select_feature=feature)
    ids = prompt_ids(tokenizer)
    pixels = process_images([Image.new("RGB", (32, 32), "blue")], processor, model.config)
    with torch.no_grad():
        logits = model(input_ids=ids, images=pixels).logits
    assert logits.shape[1] == ids.shape[1] - 1 + expected == ids.shape[1] - 1 + model.num_image_tokens


def test_siglip_tower_works(tiny_assets):
    model, tokenizer, processor = build_tiny_llava(tiny_assets, vision="siglip")
    pixels = process_images([Image.new("RGB", (32, 32), "green")], processor, model.config)
    with torch.no_grad():
        out = model(input_ids=prompt_ids(tokenizer), images=pixels)
    assert torch.isfinite(out.logits).all()


def test_batched_generation_equals_one_at_a_time(tiny_assets):
    model, tokenizer, processor = build_tiny_llava(tiny_assets)
    questions = ["What colour?", "这个形状是什么颜色？", "Qual é a forma desta imagem, por favor?", "Hi"]
    images = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "green")] + [None]
    batched = generate_batch(model, tokenizer, processor, questions, images, max_new_tokens=6)
    single = [generate_batch(model, tokenizer, processor, [q], [i], max_new_tokens=6)[0] for q, i in zip(questions, images)]
    assert batched == single
    assert all(isinstance(a, str) for a in batched)


def test_generation_uses_kv_cache_and_image_once(tiny_assets):
    model, tokenizer, processor = build_tiny_llava(tiny_assets)
    calls = []
    model.vision_tower.register_forward_hook(lambda *a: calls.append(1))
    prompt = build_prompt(model, "Describe.", has_image=True)
    ids = tokenizer_image_token(prompt, tokenizer, return_tensors="pt")[None]
    pixels = process_images([Image.new("RGB", (32, 32), "red")], processor, model.config)
    out = model.generate(ids, images=pixels, attention_mask=torch.ones_like(ids), max_new_tokens=5,
                         min_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape == (1, 5) and len(calls) == 1


class RecordingGuidedProjector(Projector):
    """A text-guided projector that records what the core hands it."""

    requires_text_guidance = True
    seen: dict = {}

    def __init__(self, config):
        super().__init__()
        self.proj = nn.Linear(config.mm_hidden_size, config.hidden_size)

    def forward(self, image_features, text_embeds=None, text_mask=None):
        RecordingGuidedProjector.seen = {"embeds": text_embeds, "mask": text_mask, "features": image_features}
        return ProjectorOutput(self.proj(image_features))


def test_text_guided_projector_gets_prompt_embeddings_without_answers_or_padding(tiny_assets):
    register_projector("recording_guided", RecordingGuidedProjector, overwrite=True)
    model, tokenizer, processor = build_tiny_llava(tiny_assets, mm_projector_type="recording_guided")
    ids = torch.tensor([[11, IMAGE_TOKEN_INDEX, 12, 13, 14, 0], [IMAGE_TOKEN_INDEX, 21, 22, 23, 24, 25]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, 4], labels[1, 4:] = 14, torch.tensor([24, 25])
    pixels = torch.randn(2, 3, 32, 32)
    model(input_ids=ids, attention_mask=mask, labels=labels, images=pixels)
    seen = RecordingGuidedProjector.seen
    embed = model.get_input_embeddings().weight
    guidance = [seen["embeds"][image][seen["mask"][image].bool()] for image in range(2)]
    assert torch.equal(guidance[0], embed[[11, 12, 13]]) and torch.equal(guidance[1], embed[[21, 22, 23]])
    assert seen["features"].shape[1] == 16  # patch mode: CLS dropped for projectors that do not ask for it


def test_text_only_generation_is_not_stopped_by_the_stop_string_in_the_prompt(tiny_assets):
    model, tokenizer, processor = build_tiny_llava(tiny_assets)
    torch.manual_seed(0)  # an untrained model samples near-uniformly: it will not emit <|im_end|> by chance
    [answer] = generate_batch(model, tokenizer, processor, ["Again?"], [None], max_new_tokens=8, temperature=1.0)
    assert len(tokenizer(answer, add_special_tokens=False).input_ids) > 1
