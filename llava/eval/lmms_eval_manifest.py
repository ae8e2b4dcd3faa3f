"""The entry point lmms-eval (0.7.x) reads to find `--model parrot_llava` (setup.py's
`lmms_eval.models` group). Only lmms-eval's stdlib-only registry is imported here."""

from lmms_eval.models.registry_v2 import ModelManifest

MANIFEST = ModelManifest(model_id="parrot_llava", simple_class_path="llava.eval.lmms_eval_model.ParrotLlava")
