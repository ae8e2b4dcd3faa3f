"""Hub kernels are decided by this project, off unless asked for: transformers 5.x would otherwise
apply them at every load whenever the `kernels` package is importable (it installs it)."""

import importlib.util

import pytest

from llava.model.builder import load_pretrained_model
from llava.model.hub_kernels import hub_kernel_kwargs
from llava.train.arguments import ModelArguments


@pytest.fixture
def kernels_env_unset(monkeypatch):
    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)  # transformers' own switch must not decide for us


def test_a_load_without_the_flag_applies_no_hub_kernels(tiny_llava_checkpoint, kernels_env_unset):
    _, model, _, _ = load_pretrained_model(str(tiny_llava_checkpoint))
    assert model.use_kernels is False


def test_asking_for_hub_kernels_without_the_package_names_what_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(ImportError, match="pip install kernels"):
        hub_kernel_kwargs(True)


def test_the_flag_is_passed_as_given():
    assert hub_kernel_kwargs() == {"use_kernels": False}
    assert ModelArguments().use_hub_kernels is False
