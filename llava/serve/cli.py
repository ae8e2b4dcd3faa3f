"""Chat with a model in the terminal: `python -m llava.serve.cli --model-path CKPT --image-file IMG`.

Multi-turn (history is kept; `/clear` starts over), streamed output. `--query` answers one message
and exits, for scripts. Nothing steers the answer's language: the prompt goes to the model as typed,
so a model trained on multilingual data (Parrot) answers in the question's language. Input and
output are read and written as UTF-8 whatever the terminal locale, so Chinese, Arabic or Russian
text survives a `C` locale.

Bad input never ends an interactive session: an empty line or a message that does not fit the
model's context prints why and asks again. A bad `--image-file` or `--query` exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

import torch

from llava.generation_defaults import GENERATION_DEFAULTS
from llava.inference import conversation_for
from llava.model.builder import parse_device_map
from llava.serve.engine import ChatEngine, SamplingParams
from llava.serve.inputs import BadInputError, open_image

CLEAR_COMMAND = "/clear"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Chat with a LLaVA/Parrot checkpoint in the terminal")
    parser.add_argument("--model-path", required=True, help="checkpoint directory (config.json + weights)")
    parser.add_argument("--model-base", default=None, help="base model for LoRA or stage-1 projector checkpoints")
    parser.add_argument("--image-file", default=None, help="image to talk about (optional)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--conv-mode", default=None, help="override the template saved in the checkpoint")
    parser.add_argument("--temperature", type=float, default=GENERATION_DEFAULTS.temperature, help="0 = greedy decoding")
    parser.add_argument("--top-p", type=float, default=GENERATION_DEFAULTS.top_p)
    parser.add_argument("--max-new-tokens", type=int, default=GENERATION_DEFAULTS.max_new_tokens)
    parser.add_argument("--max-image-pixels", type=int, default=None, help="default: Pillow's decompression-bomb limit")
    parser.add_argument("--load-8bit", action="store_true", help="bitsandbytes 8-bit weights (CUDA only)")
    parser.add_argument("--load-4bit", action="store_true", help="bitsandbytes 4-bit weights (CUDA only)")
    parser.add_argument("--use-hub-kernels", action="store_true",
                        help="let transformers swap in kernels downloaded from the Hub (off: offline and CPU-safe)")
    parser.add_argument("--device-map", default=None,
                        help="spread the model over devices with accelerate: 'auto' or a JSON dict (replaces --device)")
    parser.add_argument("--query", default=None, help="answer this one message and exit")
    return parser.parse_args(argv)


def _use_utf8() -> None:
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")


def answer(engine: ChatEngine, message: str, history: list[tuple[str, str]], image, params: SamplingParams) -> str:
    """Print the streamed answer to `message` and return it; BadInputError if the message is refused."""
    prepared = engine.prepare(message, history, image)
    roles = engine_roles(engine)
    print(f"{roles[1]}: ", end="", flush=True)
    text = ""
    for delta in engine.stream(prepared, params):
        text += delta
        print(delta, end="", flush=True)
    print(flush=True)
    return text


def engine_roles(engine: ChatEngine) -> tuple[str, str]:
    user, assistant = conversation_for(engine.model).roles
    return user or "user", assistant or "assistant"


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def chat_loop(engine: ChatEngine, image, params: SamplingParams, read=input) -> list[tuple[str, str]]:
    """The interactive session: read messages until EOF; returns the conversation it ended with."""
    history: list[tuple[str, str]] = []
    user_role = engine_roles(engine)[0]
    print(f"Chatting with {engine.name}. {CLEAR_COMMAND} starts over, Ctrl-D quits.", flush=True)
    while True:
        try:
            message = read(f"{user_role}: ")
        except EOFError:
            print()
            return history
        if message.strip() == CLEAR_COMMAND:
            history.clear()
            print("(conversation cleared)", flush=True)
            continue
        try:
            reply = answer(engine, message, history, image, params)
        except BadInputError as err:
            print(f"({err})", flush=True)
            continue
        history.append((message, reply))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _use_utf8()
    params = SamplingParams(args.max_new_tokens, args.temperature, args.top_p)
    # Everything that can be checked without the model is checked before the (slow) load.
    try:
        params.checked()
    except BadInputError as err:
        fail(f"{err} (--max-new-tokens / --temperature / --top-p)")
    if args.query is not None and not args.query.strip():
        fail("--query is empty; pass the question to ask")
    image = None
    if args.image_file:
        try:
            image = open_image(args.image_file, name=f"--image-file {args.image_file}", max_pixels=args.max_image_pixels)
        except BadInputError as err:
            fail(str(err))
    try:
        engine = ChatEngine.from_pretrained(
            args.model_path,
            args.model_base,
            args.device,
            args.conv_mode,
            max_image_pixels=args.max_image_pixels,
            load_8bit=args.load_8bit,
            use_hub_kernels=args.use_hub_kernels,
            load_4bit=args.load_4bit,
            device_map=parse_device_map(args.device_map),
        )
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as err:
        fail(str(err))
    try:
        return _converse(engine, args, image, params)
    finally:
        engine.close()  # the generation thread ends before the interpreter does


def _converse(engine: ChatEngine, args: argparse.Namespace, image, params: SamplingParams) -> int:
    if image is not None and not engine.accepts_images:
        fail(f"{args.model_path} is a text-only model; drop --image-file")
    if image is not None:
        try:
            engine.check_image(image, name=f"--image-file {args.image_file}")
        except BadInputError as err:
            fail(str(err))
    if args.query is None:
        chat_loop(engine, image, params)
        return 0
    try:
        answer(engine, args.query, [], image, params)
    except BadInputError as err:
        fail(f"--query: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
