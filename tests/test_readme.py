"""The README as a new user reads it: its Python snippets run, every command it names answers `--help`,
every repository path it names exists, and the evaluation data examples load through the real loaders."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
REPO_ROOTS = ("llava/", "parrot_moe/", "pargo/", "playground/", "scripts/", "bench/", "tests/", "docs/")


def fenced(text: str, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang == language]


def prose(text: str) -> str:
    """The text outside fenced blocks."""
    return FENCE.sub("", text)


def commands(text: str) -> set[tuple[str, ...]]:
    """Every command named in the text, as the argv that asks it for help (without `--help`)."""
    found: set[tuple[str, ...]] = set()
    for match in re.finditer(r"python -m ([A-Za-z_][\w.]*)(?: ([a-z][a-z-]*)(?=[\s`]|$))?", text):
        found.add(("python", "-m", match[1]))
        if match[2]:  # a subcommand: `python -m llava.model.convert from-parrot`
            found.add(("python", "-m", match[1], match[2]))
    for match in re.finditer(r"python -m llava\.model\.convert \{([a-z,-]+)\}", text):
        found.update(("python", "-m", "llava.model.convert", sub) for sub in match[1].split(","))
    for match in re.finditer(r"\bpython ((?:bench|scripts|llava)/[\w/]+\.py)", text):
        found.add(("python", match[1]))
    for match in re.finditer(r"\bbash (scripts/[\w/.-]+\.sh)", text):
        found.add(("bash", match[1]))
    return found


def expand_braces(path: str) -> list[str]:
    match = re.search(r"\{([^{}]+)\}", path)
    if not match:
        return [path]
    return [p for part in match[1].split(",") for p in expand_braces(path[: match.start()] + part + path[match.end() :])]


def named_paths(text: str, folder: Path) -> set[Path]:
    """Repository paths in inline code spans outside fenced blocks (from the repository root) and the
    targets of markdown links and images (from the document's folder)."""
    spans = [span.split(":")[0] for span in re.findall(r"`([^`\s]+)`", prose(text))]
    paths = {ROOT / p for span in spans if span.startswith(REPO_ROOTS) for p in expand_braces(span)}
    links = re.findall(r"\]\(([^)\s#]+)\)", text)
    paths |= {(folder / link).resolve() for link in links if not link.startswith(("http://", "https://"))}
    return paths


README_COMMANDS = sorted(commands(README) | {c for doc in DOCS for c in commands(doc.read_text(encoding="utf-8"))})


def offline_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", WANDB_MODE="offline", SKIP_INSTALL="1")
    env.update(extra)
    return env


def test_the_readme_names_the_commands_it_documents():
    named = {" ".join(c) for c in README_COMMANDS}
    for expected in ("python -m llava.train.train", "python -m llava.serve.api", "bash scripts/quickstart.sh",
                     "python -m llava.model.convert from-parrot", "python -m llava.eval.model_vqa_loader",
                     "python -m parrot_moe.analysis", "bash scripts/parrot/finetune.sh"):
        assert expected in named


PYTHON_MODULES = [c for c in README_COMMANDS if c[:2] == ("python", "-m")]
OTHER_COMMANDS = [c for c in README_COMMANDS if c[:2] != ("python", "-m")]

# Runs each module as `python -m MODULE [SUB] --help` would (run_module with __main__), in one process so
# that torch and transformers load once; prints one JSON line per command: its exit status and output.
HELP_RUNNER = r"""
import contextlib, io, json, runpy, sys, warnings
warnings.simplefilter("ignore")
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    sys.argv = [argv[0], *argv[1:], "--help"]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException as err:
        code, _ = 1, out.write(f"{type(err).__name__}: {err}")
    text = out.getvalue()
    print(json.dumps({"argv": argv, "code": code, "usage": "usage:" in text.lower(), "out": text[-2000:]}), flush=True)
"""


def test_every_python_module_the_readme_names_answers_help():
    argvs = [list(c[2:]) for c in PYTHON_MODULES]
    result = subprocess.run([sys.executable, "-c", HELP_RUNNER, json.dumps(argvs)], cwd=ROOT, env=offline_env(),
                            capture_output=True, text=True, timeout=600)
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [a["argv"] for a in answers] == argvs, result.stderr[-3000:]
    for answer in answers:
        assert answer["code"] == 0, f"python -m {' '.join(answer['argv'])} --help: {answer['out']}"
        assert answer["usage"], f"python -m {' '.join(answer['argv'])} --help printed no usage"


@pytest.mark.parametrize("command", OTHER_COMMANDS, ids=" ".join)
def test_every_script_the_readme_names_answers_help(command, tmp_path):
    assert (ROOT / command[1]).is_file(), f"{' '.join(command)}: {command[1]} does not exist"
    argv = [sys.executable if command[0] == "python" else command[0], *command[1:], "--help"]
    # PYTHON for the shell scripts: were anything but help to run, this python would fail the command.
    result = subprocess.run(argv, cwd=ROOT, env=offline_env(PYTHON=sys.executable), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"{' '.join(command)} --help: {result.stderr[-2000:]}"
    assert result.stdout.strip(), f"{' '.join(command)} --help printed nothing"


def test_every_repository_path_the_docs_name_exists():
    paths = named_paths(README, ROOT) | {p for doc in DOCS for p in named_paths(doc.read_text(encoding="utf-8"), doc.parent)}
    assert ROOT / "llava/serve/scheduler.py" in paths and ROOT / "docs/evaluation_data.md" in paths
    assert ROOT / "docs/examples/eval/mmmb/mmmb_en.tsv" in paths  # a link of docs/evaluation_data.md
    missing = sorted(str(p.relative_to(ROOT)) for p in paths if not glob.glob(str(p)))
    assert not missing, f"README/docs name paths that are not in the repository: {missing}"


def test_no_file_cites_documents_outside_the_repository():
    sources = [ROOT / "README.md", ROOT / "setup.py", ROOT / "pyproject.toml"]
    for folder in ("llava", "parrot_moe", "pargo", "playground", "scripts", "bench", "tests", "docs"):
        sources += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".md", ".sh", ".yaml", ".json"}]
    outside = ("DESIGN" + ".md", "../" + "shared", "/work/" + "shared")  # split, so this file does not cite them
    citing = [str(p.relative_to(ROOT)) for p in sources if any(s in p.read_text(encoding="utf-8") for s in outside)]
    assert not citing, f"these files cite documents that are not in the repository: {citing}"


def test_the_python_snippets_run(tmp_path, tiny_assets):
    """Each ```python block as a script, in a folder laid out as after the quickstart: the README's
    `outputs/quickstart/checkpoint` is a tiny checkpoint built here, `docs/` the repository's."""
    from llava.tiny import save_tiny_llava

    snippets = fenced(README, "python")
    assert len(snippets) >= 2
    checkpoint = save_tiny_llava(tiny_assets, tmp_path / "checkpoint")
    work = tmp_path / "work"
    (work / "outputs" / "quickstart").mkdir(parents=True)
    (work / "outputs" / "quickstart" / "checkpoint").symlink_to(checkpoint)
    # The remote-code snippet's `ckpt/stage2-moe-hf`: a tiny parrot_moe checkpoint through to-hf.
    import parrot_moe  # noqa: F401  (registers the projector)
    from llava.model.convert.to_hf import convert_to_hf

    moe = save_tiny_llava(tiny_assets, tmp_path / "moe", llm="llama", mm_projector_type="parrot_moe", moe_num_experts=2)
    convert_to_hf(moe, work / "ckpt" / "stage2-moe-hf")
    (work / "docs").symlink_to(ROOT / "docs")
    for number, snippet in enumerate(snippets):
        script = tmp_path / f"snippet{number}.py"
        script.write_text(snippet, encoding="utf-8")
        result = subprocess.run([sys.executable, str(script)], cwd=work, env=offline_env(), capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, f"README python snippet {number}:\n{snippet}\n{result.stderr[-3000:]}"


def test_evaluation_examples_load_through_the_real_loaders():
    from llava.eval.benchmark import expand_benchmark, read_benchmark
    from llava.eval.model_vqa_loader import read_questions
    from llava.eval.scoring import default_rule

    examples = ROOT / "docs" / "examples" / "eval"
    (mmmb,) = expand_benchmark("MMMB_en", examples / "mmmb")
    bench = read_benchmark(mmmb)
    assert bench.language == "en" and len(bench.items) == 4 and not any(i.issues for i in bench.items)
    assert [i.image_key for i in bench.items] == [0, 0, 2, 2]  # two yes/no pairs, one image each
    assert default_rule(bench.name) == "pair"
    (mmbench,) = expand_benchmark("MMBench_dev_en", examples / "mmbench")
    bench = read_benchmark(mmbench)
    assert default_rule(bench.name) == "circular" and not any(i.issues for i in bench.items)
    assert {i.index % 1_000_000 for i in bench.items} == {0, 1}
    for item in bench.items:
        assert bench.load_image(item).size == (32, 32)
    questions = read_questions(examples / "vqa" / "questions.jsonl")
    assert [q.question_id for q in questions] == [0, 1, "text-only-2"]
    for question in questions:
        assert question.image is None or (examples / "vqa" / "images" / question.image).is_file()
