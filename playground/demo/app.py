"""Gradio demo: `python -m playground.demo [--model-path CKPT]`.

Upload an image and chat about it in any language, with streamed answers, sampling controls,
regenerate and clear. For a Parrot checkpoint (`--mm_projector_type parrot_moe`) a panel charts the
expert distribution the text-guided router chose for the current prompt.

Without `--model-path` it serves the quickstart checkpoint (`outputs/quickstart/checkpoint`,
written by `bash scripts/quickstart.sh`). It binds 127.0.0.1 unless `--host 0.0.0.0` is given,
creates no public share link unless `--share` is given, and queues requests: `--concurrency-limit`
generate at once (default 1), at most `--max-queue` wait. With `--api-key` (or `PARROT_API_KEY`)
the page asks for it at login (gradio's `auth`, any user name); a non-loopback `--host` or `--share`
without a key refuses to start unless `--allow-no-auth` is given, as the API does.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from llava.generation_defaults import GENERATION_DEFAULTS

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICKSTART_CHECKPOINT = REPO_ROOT / "outputs" / "quickstart" / "checkpoint"

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry calls from an offline demo

logger = logging.getLogger("playground.demo")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m playground.demo", description="Gradio chat demo for a LLaVA/Parrot checkpoint"
    )
    parser.add_argument("--model-path", default=None, help=f"checkpoint directory (default: {QUICKSTART_CHECKPOINT})")
    parser.add_argument("--model-base", default=None, help="base model for LoRA or stage-1 projector checkpoints")
    parser.add_argument("--model-name", default=None, help="name shown in the page title (default: folder name)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--conv-mode", default=None, help="override the chat template saved in the checkpoint")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind; 0.0.0.0 exposes the demo to the network")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link (needs internet)")
    parser.add_argument("--api-key", default=None, help="password of the login page (default: $PARROT_API_KEY)")
    parser.add_argument("--allow-no-auth", action="store_true",
                        help="serve a non-loopback --host (or --share) without an API key (refused otherwise)")
    parser.add_argument("--concurrency-limit", type=int, default=1, help="generations that run at the same time")
    parser.add_argument("--max-queue", type=int, default=16, help="requests that may wait; more are turned away")
    parser.add_argument("--max-file-mb", type=float, default=20.0, help="largest upload accepted")
    parser.add_argument("--max-image-pixels", type=int, default=None, help="default: Pillow's decompression-bomb limit")
    parser.add_argument("--temperature", type=float, default=GENERATION_DEFAULTS.temperature,
                        help="initial temperature slider value")
    parser.add_argument("--top-p", type=float, default=GENERATION_DEFAULTS.top_p, help="initial top-p slider value")
    parser.add_argument("--max-new-tokens", type=int, default=GENERATION_DEFAULTS.max_new_tokens,
                        help="initial max-new-tokens slider value")
    return parser.parse_args(argv)


def resolve_model_path(model_path: str | None, default: Path = QUICKSTART_CHECKPOINT) -> str:
    """`model_path`, else the quickstart checkpoint `default`; exits with instructions when there is neither."""
    if model_path:
        if not os.path.isdir(model_path):
            sys.exit(f"error: --model-path {model_path} is not a directory; pass a trained checkpoint folder")
        return model_path
    if (default / "config.json").is_file():
        return str(default)
    sys.exit(
        f"error: no model to serve. The default, the quickstart checkpoint {default}, does not exist.\n"
        "  Make it with `bash scripts/quickstart.sh` (the README's main command), then run this demo again,\n"
        "  or pass --model-path DIR with a trained LLaVA/Parrot checkpoint."
    )


def start_demo(engine, args: argparse.Namespace, block: bool = True):
    """Build the app for `engine`, put it behind a queue and serve it as `args` say.

    With `block=False` it returns the running `gr.Blocks` (call `.close()` to stop it).
    """
    from llava.optional import require_gradio
    from llava.serve.auth import key_matches, resolve_api_key
    from llava.serve.engine import SamplingParams
    from playground.demo.ui import build_demo, offline_theme

    gr = require_gradio()
    defaults = SamplingParams(args.max_new_tokens, args.temperature, args.top_p).checked()
    api_key = resolve_api_key(args.api_key)
    demo = build_demo(engine, defaults)
    demo.queue(default_concurrency_limit=args.concurrency_limit, max_size=args.max_queue)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=int(args.max_file_mb * 2**20),
        ssr_mode=False,
        theme=offline_theme(gr),
        prevent_thread_lock=not block,
        quiet=not block,
        auth=(lambda _user, password: key_matches(password, api_key)) if api_key else None,
        auth_message="Log in with any user name and the server's API key as the password." if api_key else None,
    )
    return demo


def main(argv: list[str] | None = None) -> None:
    from llava.optional import require_extra
    from llava.serve.auth import InsecureBindError, check_network_exposure, resolve_api_key

    args = parse_args(argv)
    require_extra("serve", "python -m playground.demo")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:  # before the (slow) model load
        check_network_exposure("0.0.0.0" if args.share else args.host, resolve_api_key(args.api_key), args.allow_no_auth, "the demo")
    except InsecureBindError as err:
        sys.exit(f"error: {err}")
    model_path = resolve_model_path(args.model_path)

    import torch

    from llava.serve.engine import ChatEngine

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    logger.info("loading %s on %s", model_path, device)
    engine = ChatEngine.from_pretrained(
        model_path, args.model_base, device, args.conv_mode, args.model_name, args.max_image_pixels
    )
    if engine.routing_unavailable_reason():
        logger.info("routing view off: %s", engine.routing_unavailable_reason())
    start_demo(engine, args)

