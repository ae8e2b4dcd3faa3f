"""Our checkpoints as an lmms-eval model (`--model parrot_llava`): any checkpoint that
`llava.model.builder.load_pretrained_model` loads, parrot_moe and pargo included.

    python -m lmms_eval --model parrot_llava --model_args pretrained=CKPT --tasks mmbench_en_dev

`generate_until` answers through `llava.inference.generate_batch` (the serving engine: the batching,
sampling, stop rules and text-guided routing of the CLI, the API and the demo); `loglikelihood`
scores a continuation through the model's forward with the image spliced in
(`llava.eval.loglikelihood`). Install lmms-eval without its dependencies (they pull torchvision and
a CUDA torch): `pip install --no-deps lmms-eval==0.7.3 loguru`.
"""

from __future__ import annotations

import logging

from tqdm import tqdm

try:
    from lmms_eval.api.model import lmms
except ImportError as err:
    raise ImportError(
        "llava.eval.lmms_eval_model needs lmms-eval (extra 'lmms'): pip install --no-deps lmms-eval==0.7.3 loguru "
        "(without --no-deps pip installs torchvision and a CUDA torch, which break this environment)"
    ) from err

from llava.eval.lmms_eval_kwargs import read_gen_kwargs
from llava.eval.loglikelihood import continuation_logprob
from llava.inference import generate_batch

logger = logging.getLogger(__name__)


def _batch_size(value) -> int:
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if size < 1:
        raise ValueError(f"parrot_llava: --batch_size {value!r} is not supported; pass a whole number of 1 or more")
    return size


class ParrotLlava(lmms):
    """lmms-eval's `lmms` interface over a Parrot/LLaVA checkpoint.

    model_args: `pretrained` (the checkpoint folder), `model_base` (the base of a LoRA adapter),
    `device` (default: a GPU when visible, else the CPU), `dtype` (float32, bfloat16, float16),
    `batch_size` (requests answered together, default 1). One image per request at most."""

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        model_base: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
    ) -> None:
        from llava.eval.generation import load_model

        super().__init__()
        self.batch_size = _batch_size(batch_size)
        if max_batch_size is not None:
            raise ValueError(
                f"parrot_llava: --max_batch_size {max_batch_size} only bounds --batch_size auto, which parrot_llava "
                "does not support; drop --max_batch_size and pass --batch_size N"
            )
        loaded = load_model(pretrained, model_base=model_base, device=device, dtype=dtype)
        self.model, self.tokenizer, self.image_processor = loaded.model, loaded.tokenizer, loaded.image_processor

    # ---- the visuals of a request -----------------------------------------------------------
    def _image(self, doc_to_visual, doc_id, task: str, split: str):
        """The request's one image (None for a text-only document)."""
        if doc_to_visual is None:
            return None
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        visuals = [v for v in (visuals or []) if v is not None]
        if len(visuals) > 1:
            raise ValueError(
                f"parrot_llava: task {task}, doc {doc_id} has {len(visuals)} images; "
                "our models read one image per question, so run a single-image task"
            )
        if visuals and not hasattr(visuals[0], "convert"):
            raise ValueError(f"parrot_llava: task {task}, doc {doc_id}: the visual is {type(visuals[0]).__name__}, not an image")
        return visuals[0].convert("RGB") if visuals else None

    # ---- lmms interface ---------------------------------------------------------------------
    def generate_until(self, requests) -> list[str]:
        """Answers in request order; requests with the same generation settings are batched."""
        answers: list[str | None] = [None] * len(requests)
        groups: dict = {}
        for index, request in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            decoding = read_gen_kwargs(gen_kwargs, task)
            groups.setdefault(decoding, []).append((index, context, self._image(doc_to_visual, doc_id, task, split)))
        progress = tqdm(total=len(requests), disable=self.rank != 0, desc="parrot_llava answering")
        for decoding, rows in groups.items():
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                texts = generate_batch(
                    self.model,
                    self.tokenizer,
                    self.image_processor,
                    [context for _, context, _ in chunk],
                    [image for _, _, image in chunk],
                    **decoding.as_kwargs(),
                )
                for (index, _, _), text in zip(chunk, texts):
                    answers[index] = text
                progress.update(len(chunk))
        progress.close()
        return answers

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        """(sum of the continuation's token log-probabilities, whether it is the greedy answer)."""
        results = []
        for request in tqdm(requests, disable=self.rank != 0, desc="parrot_llava scoring"):
            context, doc_to_target, doc_to_visual, doc_id, task, split = request.args
            if isinstance(doc_to_target, str):
                continuation = doc_to_target
            else:
                continuation = doc_to_target(self.task_dict[task][split][doc_id])
            image = self._image(doc_to_visual, doc_id, task, split)
            results.append(
                continuation_logprob(self.model, self.tokenizer, self.image_processor, context, continuation, image)
            )
        return results

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError(
            "parrot_llava does not run lmms-eval's multi-round tasks (generate_until_multi_round); "
            "choose single-round tasks (generate_until or loglikelihood)"
        )
