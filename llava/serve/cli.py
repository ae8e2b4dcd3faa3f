"""Chat with a model in the terminal: `python -m llava.serve.cli --model-path CKPT --image-file IMG`.

Multi-turn (history is kept), streamed output. `--query` answers one message and exits, for scripts.
"""

from __future__ import annotations

import argparse
import sys
from threading import Thread

import torch
from PIL import Image
from transformers import TextIteratorStreamer

from llava.inference import StopOnText, build_prompt, conversation_for, generation_inputs, strip_stop
from llava.model.builder import load_pretrained_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--model-base", default=None)
    parser.add_argument("--image-file", default=None, help="image to talk about (optional)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--conv-mode", default=None, help="override the template saved in the checkpoint")
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--load-8bit", action="store_true")
    parser.add_argument("--load-4bit", action="store_true")
    parser.add_argument("--query", default=None, help="answer this one message and exit")
    return parser.parse_args(argv)


def load_image(path: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (FileNotFoundError, OSError) as err:
        raise SystemExit(f"--image-file {path}: cannot read the image ({err})") from err


def stream_answer(model, tokenizer, image_processor, prompt: str, image, args) -> str:
    """Generate for one prompt, printing text as it arrives; returns the full answer."""
    conv = conversation_for(model)
    ids, mask, pixels = generation_inputs(model, tokenizer, image_processor, [prompt], [image])
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=False, timeout=600)
    sampling = args.temperature > 0
    kwargs = dict(
        images=pixels,
        attention_mask=mask,
        max_new_tokens=args.max_new_tokens,
        do_sample=sampling,
        temperature=args.temperature if sampling else None,
        top_p=None,
        top_k=None,
        pad_token_id=tokenizer.pad_token_id,
        stopping_criteria=[StopOnText(tokenizer, conv.stop_str)],
        streamer=streamer,
    )
    thread = Thread(target=model.generate, args=(ids,), kwargs=kwargs, daemon=True)
    thread.start()
    text = ""
    for chunk in streamer:
        shown = strip_stop(text, conv.stop_str, tokenizer)
        text += chunk
        visible = strip_stop(text, conv.stop_str, tokenizer)
        print(visible[len(shown) :], end="", flush=True)
    thread.join()
    print(flush=True)
    return strip_stop(text, conv.stop_str, tokenizer)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tokenizer, model, image_processor, _ = load_pretrained_model(
        args.model_path, args.model_base, load_8bit=args.load_8bit, load_4bit=args.load_4bit, device=args.device
    )
    if args.conv_mode:
        model.config.conv_template = args.conv_mode
    image = load_image(args.image_file) if args.image_file else None
    if image is not None and image_processor is None:
        raise SystemExit(f"{args.model_path} has no vision tower; drop --image-file")
    roles = conversation_for(model).roles
    history: list[tuple[str, str]] = []
    while True:
        if args.query is not None:
            message = args.query
        else:
            try:
                message = input(f"{roles[0] or 'user'}: ")
            except EOFError:
                print()
                break
        if not message.strip():
            if args.query is not None:
                raise SystemExit("--query is empty")
            continue
        print(f"{roles[1] or 'assistant'}: ", end="", flush=True)
        prompt = build_prompt(model, message, image is not None, history)
        answer = stream_answer(model, tokenizer, image_processor, prompt, image, args)
        history.append((message if history or image is None else f"<image>\n{message}", answer))
        if args.query is not None:
            break


if __name__ == "__main__":
    sys.exit(main())
