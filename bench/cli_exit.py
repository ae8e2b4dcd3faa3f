"""How often `python -m llava.serve.cli --query ...` answers and exits 0 (not 134, an abort at exit).

Builds a tiny offline checkpoint, then runs the CLI `--runs` times as a script would, and prints the
count of clean exits and every other exit code seen:

    python bench/cli_exit.py --runs 20
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image
from tqdm import tqdm


def build_checkpoint(root: Path) -> Path:
    from llava.tiny import build_tiny_assets
    from llava.tiny.llava_checkpoint import save_tiny_llava

    return save_tiny_llava(build_tiny_assets(root / "assets", seed=0), root / "checkpoint")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("TOKENIZERS_PARALLELISM", None)  # as a user's shell has it
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = build_checkpoint(root)
        Image.new("RGB", (64, 64), (200, 30, 30)).save(root / "red.png")
        command = [sys.executable, "-m", "llava.serve.cli", "--model-path", str(checkpoint),
                   "--image-file", str(root / "red.png"), "--query", "What colour is the shape?",
                   "--max-new-tokens", "16"]
        codes = collections.Counter()
        for _ in tqdm(range(args.runs), desc="cli runs"):
            codes[subprocess.run(command, env=env, capture_output=True, timeout=300).returncode] += 1
    print(f"clean exits: {codes[0]} of {args.runs}; exit codes seen: {dict(codes)}")
    return 0 if codes[0] == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
