"""Whether `from_pretrained` swaps in kernels from the Hugging Face Hub: decided here, off by default.

transformers 5.x applies Hub kernels (the `kernels` package, which it installs) at every
`from_pretrained` unless `use_kernels` is given. Those kernels are downloaded at load time, they
are built for CUDA (on a CPU or a `meta` device map they fail to load), and this project runs
offline. So every load in the codebase passes `use_kernels` explicitly, False unless the user asks
for them (`--use-hub-kernels` on the loading CLIs, `--use_hub_kernels True` in training).
"""

from __future__ import annotations

import importlib.util


def hub_kernel_kwargs(use_hub_kernels: bool = False) -> dict:
    """The keyword arguments that settle Hub kernels for one `from_pretrained` call."""
    if use_hub_kernels and importlib.util.find_spec("kernels") is None:
        raise ImportError(
            "--use-hub-kernels needs the `kernels` package (pip install kernels) and network access to the Hub; "
            "leave the flag off to load without Hub kernels"
        )
    return {"use_kernels": bool(use_hub_kernels)}
