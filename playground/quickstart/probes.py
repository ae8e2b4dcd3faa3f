"""Learning curves of stages 1 and 2: the held-out probe set scored every N training steps.

The probe items (`probe.json` of the easy-VQA build, `playground.easyvqa.probes`) are tokenized
exactly as training tokenizes them (`llava.data.preprocess`): captions in stage 1's `plain`
template, questions in stage 2's chat template, whatever the stage being trained. An item is right
when greedy next-token prediction, teacher-forced, gets every supervised token of its answer
(the closing token included; see `playground.quickstart.curves.answer_is_right`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from transformers import TrainerCallback

from llava.constants import IGNORE_INDEX
from llava.conversation import get_conv_template
from llava.data.preprocess import conversation_pieces, tokenize_pieces
from llava.mm_utils import process_images
from playground.easyvqa.translations import load_table
from playground.quickstart.curves import CurveLog, answer_is_right, caption_first_tokens

CAPTION_TEMPLATE = "plain"
PROBE_BATCH = 48


class ImageProbe:
    """Probe items of `probe_file` (images under `image_folder`), tokenized once, scored on demand."""

    def __init__(self, probe_file: Path, image_folder: Path, tokenizer, image_processor, chat_template: str) -> None:
        items = json.loads(probe_file.read_text(encoding="utf-8"))
        self.keys = [(item["skill"], item["lang"]) for item in items]
        self.samples = []
        for item in items:
            template = get_conv_template(CAPTION_TEMPLATE if item["skill"] == "caption" else chat_template)
            self.samples.append(tokenize_pieces(conversation_pieces(item["conversations"], template), tokenizer))
        self.images = [Image.open(image_folder / item["image"]).convert("RGB") for item in items]
        self.image_processor = image_processor
        self.pad_id = tokenizer.pad_token_id
        self.first_choices = caption_first_tokens(tokenizer, load_table())

    @torch.no_grad()
    def score(self, model) -> dict[tuple[str, str], tuple[int, int]]:
        """(skill, language) -> (right, asked) for `model` (a `LlavaForCausalLM`)."""
        was_training = model.training
        model.eval()
        tallies: dict[tuple[str, str], list[int]] = {}
        for start in range(0, len(self.samples), PROBE_BATCH):
            rows = range(start, min(start + PROBE_BATCH, len(self.samples)))
            right = self._score_batch(model, rows)
            for row, hit in zip(rows, right):
                tally = tallies.setdefault(self.keys[row], [0, 0])
                tally[0] += hit
                tally[1] += 1
        model.train(was_training)
        return {key: (hits, asked) for key, (hits, asked) in tallies.items()}

    def _score_batch(self, model, rows: range) -> list[bool]:
        samples = [self.samples[i] for i in rows]
        width = max(len(sample.input_ids) for sample in samples)
        input_ids = torch.full((len(samples), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(samples), width), dtype=torch.long)
        for row, sample in enumerate(samples):
            input_ids[row, : len(sample.input_ids)] = torch.tensor(sample.input_ids)
            labels[row, : len(sample.labels)] = torch.tensor(sample.labels)
            mask[row, : len(sample.input_ids)] = 1
        pixels = process_images([self.images[i] for i in rows], self.image_processor, model.config)
        pixels = pixels.to(model.device, model.dtype)
        merged = model.prepare_inputs_embeds(input_ids.to(model.device), pixels, mask.to(model.device), labels.to(model.device))
        logits = model.language_model(
            inputs_embeds=merged.inputs_embeds, attention_mask=merged.attention_mask, position_ids=merged.position_ids
        ).logits
        targets = merged.labels[:, 1:]
        right = []
        for number, row in enumerate(rows):
            skill, lang = self.keys[row]
            positions = (targets[number] != IGNORE_INDEX).nonzero().squeeze(1)
            choices = self.first_choices[lang] if skill == "caption" else None
            right.append(answer_is_right(logits[number, positions], targets[number, positions], choices))
        return right


class ProbeCallback(TrainerCallback):
    """Scores `probe` at step 0, every `every` steps and at the end of training, into `curves`."""

    def __init__(self, probe: ImageProbe, stage: str, every: int, curves: CurveLog) -> None:
        self.probe, self.stage, self.every, self.curves = probe, stage, every, curves
        self.scored: set[int] = set()

    def _score(self, step: int, model) -> None:
        if step not in self.scored and model is not None:
            self.scored.add(step)
            self.curves.add(self.stage, step, self.probe.score(model))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._score(0, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every > 0 and state.global_step % self.every == 0:
            self._score(state.global_step, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._score(state.global_step, model)
