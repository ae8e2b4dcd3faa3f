"""The README's Install section installs what the documented commands need, and every install
command an error message gives installs the package it names (checked against setup.py's extras)."""

from __future__ import annotations

import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest
import setuptools

from llava import optional
from llava.tiny.sources import PIP_NAMES, missing_package_error

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def packaging() -> dict:
    """setup.py's keyword arguments, captured by running it with `setuptools.setup` replaced."""
    captured: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
        patch.chdir(REPO)
        runpy.run_path(str(REPO / "setup.py"))
    return captured


def distribution(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def installed_by(commands: str, packaging: dict) -> set[str]:
    """Distributions that `pip install ...` commands (joined by &&) install, this project's extras
    expanded; environment prefixes such as DS_BUILD_OPS=0 and options are skipped."""
    names: set[str] = set()
    for command in commands.split("&&"):
        words = [w for w in shlex.split(command) if "=" not in w or w.startswith((".", "-"))]
        assert words[:2] == ["pip", "install"], command
        for word in words[2:]:
            project = re.fullmatch(r"\.(?:\[(?P<extras>[\w,-]+)\])?", word)
            if project:
                names |= {distribution(r) for r in packaging["install_requires"]}
                for extra in (project.group("extras") or "").split(","):
                    names |= {distribution(r) for r in packaging["extras_require"].get(extra, [])} if extra else set()
            elif not word.startswith("-"):
                names.add(distribution(word))
    return names


def readme_install_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Install", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if "pip install" in line]


def test_readme_install_section_installs_every_asset_package_the_tiny_models_read(packaging):
    installed = set().union(*(installed_by(command, packaging) for command in readme_install_commands()))
    assert set(PIP_NAMES.values()) <= installed


@pytest.mark.parametrize("module", sorted(PIP_NAMES))
def test_missing_asset_message_gives_commands_that_install_the_package(module, packaging):
    message = str(missing_package_error(module, "The tiny models"))
    commands = re.findall(r"`([^`]*pip install[^`]*)`", message)
    assert commands and all(PIP_NAMES[module] in installed_by(c, packaging) for c in commands), message


@pytest.mark.parametrize("module", sorted(optional._EXTRAS))
def test_missing_optional_dependency_message_gives_a_command_that_installs_it(module, packaging, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # how Python marks a module as not importable
    with pytest.raises(ImportError) as err:
        optional.require(module)
    command = str(err.value).split("): ", 1)[1].split(" (", 1)[0]
    assert optional._EXTRAS[module][0] in installed_by(command, packaging), str(err.value)


def test_readme_install_block_runs_on_a_cpu(packaging):
    """The block a user pastes first holds no CUDA-only extra; the GPU line is a block of its own."""
    installed = set().union(*(installed_by(command, packaging) for command in readme_install_commands()))
    gpu_only = {distribution(r) for r in packaging["extras_require"]["gpu"]}
    assert gpu_only and not installed & gpu_only
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Install", 1)[1].split("\n## ", 1)[0]
    assert 'pip install -e ".[gpu]"' in section.split("```bash")[2]


def test_fast_moving_dependencies_are_capped_at_their_tested_release(packaging):
    requirements = packaging["install_requires"] + [r for extra in packaging["extras_require"].values() for r in extra]
    capped = {distribution(r): r for r in requirements if distribution(r) in {"transformers", "accelerate", "peft",
                                                                              "deepspeed", "gradio"}}
    assert set(capped) == {"transformers", "accelerate", "peft", "deepspeed", "gradio"}
    assert all("<=" in requirement for requirement in capped.values()), capped
