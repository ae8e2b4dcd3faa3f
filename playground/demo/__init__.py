"""The gradio demo: `python -m playground.demo [--model-path CKPT]`.

- `app`: command line, model loading and serving (`start_demo`);
- `ui`: the gradio layout and event wiring;
- `handlers`: what each event does (chat, regenerate, upload, the routing view).
"""
