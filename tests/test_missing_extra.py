"""An entry point whose extra is not installed says which extra to install, without a traceback."""

import subprocess
import sys

import pytest

from llava.optional import require_extra

BLOCK = "import sys; sys.modules['{module}'] = None; import runpy; runpy.run_module('{entry}', run_name='__main__')"


@pytest.mark.parametrize(("entry", "module", "args"), [
    ("llava.serve.api", "fastapi", ["--model-path", "x"]),
    ("llava.serve.api", "uvicorn", ["--model-path", "x"]),
    ("playground.demo", "gradio", []),
])
def test_an_entry_point_without_its_extra_names_the_install_command(entry, module, args):
    code = BLOCK.format(module=module, entry=entry)
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "pip install -e '.[serve]'" in result.stderr and module in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_a_library_import_without_the_extra_raises_import_error_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"'serve' extra \(prometheus-client missing\)"):
        require_extra("serve")


def test_an_installed_extra_passes():
    require_extra("serve")  # the test environment has it; nothing is raised
