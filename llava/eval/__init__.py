"""Multilingual evaluation: MMMB and six-language MMBench, batched, no GPT judge needed.

Model-free modules (usable on predictions alone):
- `languages`: language codes, detection, the answer instruction in six languages.
- `benchmark`: reading VLMEvalKit TSVs (image references, bad rows), benchmark-name expansion.
- `prompts`: the multiple-choice prompt in the item's language.
- `extraction`: rule-based answer extraction; `judge`: the optional judge hook.
- `scoring`: vanilla / circular / pair rules and accuracy; `reports`: output files and the radar.
- `score`: `python -m llava.eval.score PRED.tsv [...]`.

Model-facing modules: `run_benchmark` (MCQ benchmarks) and `model_vqa_loader` (open QA JSONL).
"""
