"""The demo's gradio layout and event wiring; the behaviour lives in `playground.demo.handlers`."""

from __future__ import annotations

from llava.eval.languages import LANGUAGE_NAMES, LANGUAGES
from llava.optional import require_gradio
from llava.serve.engine import ChatEngine, SamplingParams
from playground.demo import handlers

# easy-VQA questions (what the quickstart model was trained on), from the reviewed translation table.
EXAMPLE_TEMPLATES = ("color_what_generic", "shape_contain")


def example_prompts() -> list[tuple[str, str]]:
    """(language name, prompt) pairs: every example template in each of the six languages."""
    from playground.easyvqa.translations import load_table

    table = load_table()
    return [
        (LANGUAGE_NAMES[lang], table.question(table.template(template_id), lang))
        for template_id in EXAMPLE_TEMPLATES
        for lang in LANGUAGES
    ]


def offline_theme(gr):
    """The default theme with system fonts: nothing is fetched from a font CDN."""
    sans = ["ui-sans-serif", "system-ui", "Noto Sans", "DejaVu Sans", "sans-serif"]
    return gr.themes.Default(font=sans, font_mono=["ui-monospace", "DejaVu Sans Mono", "monospace"])


def build_demo(engine: ChatEngine, defaults: SamplingParams | None = None):
    """The gradio Blocks app for `engine`; `defaults` seeds the temperature/top-p/length controls."""
    gr = require_gradio()
    defaults = (defaults or SamplingParams()).checked()
    with gr.Blocks(title=f"Parrot demo: {engine.name}") as demo:
        image_state = gr.State(None)
        turns_state = gr.State([])
        gr.Markdown(f"## Parrot multilingual chat · `{engine.name}`")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Upload an image", file_count="single", type="filepath", elem_id="image-upload")
                preview = gr.Image(label="Image", interactive=False, height=220, elem_id="image-preview")
                with gr.Accordion("Generation settings", open=False):
                    temperature = gr.Slider(0.0, 2.0, value=defaults.temperature, step=0.05, label="Temperature")
                    top_p = gr.Slider(0.05, 1.0, value=defaults.top_p, step=0.05, label="Top-p")
                    max_new_tokens = gr.Slider(1, 1024, value=defaults.max_new_tokens, step=1, label="Max new tokens")
            with gr.Column(scale=2):
                chatbot = gr.Chatbot(label="Chat", height=380, elem_id="chat")
                message = gr.Textbox(label="Message", placeholder="Ask about the image, in any of the six languages",
                                     elem_id="message")
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    regenerate = gr.Button("Regenerate", elem_id="regenerate")
                    clear = gr.Button("Clear", elem_id="clear")
                status = gr.Markdown("Upload an image, then ask a question.", elem_id="status")
                gr.Examples(
                    examples=[[prompt] for _, prompt in example_prompts()],
                    inputs=[message],
                    examples_per_page=len(EXAMPLE_TEMPLATES) * len(LANGUAGES),
                    label="Example prompts (en, zh, pt, ar, tr, ru)",
                )
            with gr.Column(scale=1, elem_id="routing-panel"):
                gr.Markdown("### Expert routing")
                chart = gr.BarPlot(
                    value=handlers.routing_table(None),
                    x="expert",
                    y="weight",
                    x_title="expert",
                    y_title="router probability",
                    y_lim=[0, 1],
                    label="Router probability per expert",
                    visible=engine.routes_experts,
                    elem_id="routing-chart",
                )
                note = gr.Markdown(handlers.routing_note(engine, None, ""), elem_id="routing-note")

        def params(t: float, p: float, n: float) -> SamplingParams:
            return SamplingParams(max_new_tokens=int(n), temperature=float(t), top_p=float(p))

        def on_upload(path):
            return handlers.upload(engine, path)

        def on_send(text, image, turns, history, t, p, n):
            yield from handlers.chat(engine, text, image, turns, history, params(t, p, n))

        def on_regenerate(image, turns, history, t, p, n):
            yield from handlers.regenerate(engine, image, turns, history, params(t, p, n))

        def on_clear():
            return (*handlers.clear(engine), None)

        upload_outputs = [image_state, preview, status, chatbot, turns_state, chart, note]
        chat_outputs = [chatbot, turns_state, message, status, chart, note]
        controls = [temperature, top_p, max_new_tokens]
        upload.upload(on_upload, [upload], upload_outputs)
        upload.clear(on_upload, [upload], upload_outputs)
        for trigger in (send.click, message.submit):
            trigger(on_send, [message, image_state, turns_state, chatbot, *controls], chat_outputs)
        regenerate.click(on_regenerate, [image_state, turns_state, chatbot, *controls], chat_outputs)
        clear.click(on_clear, None, [*upload_outputs, upload])
    return demo
