"""Our conversation templates as Jinja chat templates, and the reverse look-up.

`chat_template_for(name)` renders exactly what `llava.conversation` renders for template `name`, from
transformers-style messages (`{"role": "user", "content": "..." | [{"type": "image"}, {"type":
"text", "text": "..."}]}`): an image part becomes `<image>\n`, as `llava.inference.build_prompt` puts
it before the user's text, and a leading `system` message replaces the template's default system
prompt. `matching_template(render)` finds which of our templates a foreign chat template reproduces.
"""

from __future__ import annotations

from collections.abc import Callable

from llava.constants import DEFAULT_IMAGE_TOKEN
from llava.conversation import Conversation, conv_templates, get_conv_template

_CONTENT_MACRO = (
    "{%- macro content(message) -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ IMAGE }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
)
_SYSTEM = (
    "{%- if messages and messages[0]['role'] == 'system' -%}{%- set system = content(messages[0]) -%}"
    "{%- else -%}{%- set system = DEFAULT_SYSTEM -%}{%- endif -%}"
)


def _literal(text: str) -> str:
    """`text` as a single-quoted Jinja string literal."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def _turns(user: str, assistant: str) -> str:
    """A loop over the non-system messages; `user`/`assistant` are Jinja expressions using `message`."""
    return (
        "{%- for message in messages if message['role'] != 'system' -%}"
        f"{{%- if message['role'] == 'user' -%}}{{{{ {user} }}}}"
        f"{{%- elif message['role'] == 'assistant' -%}}{{{{ {assistant} }}}}{{%- endif -%}}"
        "{%- endfor -%}"
    )


def _chatml(conv: Conversation) -> str:
    start = lambda role: _literal(f"<|im_start|>{role}\n")  # noqa: E731
    end = _literal(conv.stop_str + "\n")
    return (
        f"{{%- if system -%}}{{{{ {start('system')} + system + {end} }}}}{{%- endif -%}}"
        + _turns(f"{start(conv.roles[0])} + content(message) + {end}", f"{start(conv.roles[1])} + content(message) + {end}")
        + f"{{%- if add_generation_prompt -%}}{{{{ {start(conv.roles[1])} }}}}{{%- endif -%}}"
    )


def _vicuna(conv: Conversation) -> str:
    user, assistant = _literal(f"{conv.roles[0]}: "), _literal(f"{conv.roles[1]}:")
    return (
        "{{ system + ' ' }}"
        + _turns(f"{user} + content(message) + ' '", f"{assistant} + ' ' + content(message) + {_literal(conv.stop_str)}")
        + f"{{%- if add_generation_prompt -%}}{{{{ {assistant} }}}}{{%- endif -%}}"
    )


def _llama3(conv: Conversation) -> str:
    header = lambda role: _literal(f"<|start_header_id|>{role}<|end_header_id|>\n\n")  # noqa: E731
    end = _literal(conv.stop_str)
    return (
        f"{{%- if system -%}}{{{{ {header('system')} + system + {end} }}}}{{%- endif -%}}"
        + _turns(f"{header(conv.roles[0])} + content(message) + {end}", f"{header(conv.roles[1])} + content(message) + {end}")
        + f"{{%- if add_generation_prompt -%}}{{{{ {header(conv.roles[1])} }}}}{{%- endif -%}}"
    )


def _plain(conv: Conversation) -> str:
    # Stage-1 captions: the user turn shrinks to its image, the caption follows.
    has_image = "(message['content'] is not string and message['content'] | selectattr('type', 'equalto', 'image') | list)"
    user = f"(IMAGE_ONLY if ({has_image} or IMAGE_ONLY in content(message)) else '')"
    return _turns(user, f"content(message) + {_literal(conv.stop_str)}")


_STYLES: dict[str, Callable[[Conversation], str]] = {
    "chatml": _chatml,
    "vicuna": _vicuna,
    "llama3": _llama3,
    "plain": _plain,
}


def chat_template_for(name: str) -> str:
    """The Jinja chat template that renders our conversation template `name` (the `--version` flag)."""
    conv = get_conv_template(name)
    header = (
        f"{{%- set IMAGE = {_literal(DEFAULT_IMAGE_TOKEN + chr(10))} -%}}"
        f"{{%- set IMAGE_ONLY = {_literal(DEFAULT_IMAGE_TOKEN)} -%}}"
        f"{{%- set DEFAULT_SYSTEM = {_literal(conv.system)} -%}}"
    )
    return header + _CONTENT_MACRO + _SYSTEM + _STYLES[conv.style](conv)


PROBE = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the picture?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A red square."}]},
    {"role": "user", "content": [{"type": "text", "text": "And its colour?"}]},
]


def render_ours(name: str, messages: list[dict] = PROBE) -> str:
    """What `llava.conversation` renders for `messages` under template `name`, with a generation prompt."""
    conv = get_conv_template(name)
    for message in messages:
        parts = message["content"]
        text = parts if isinstance(parts, str) else "".join(
            DEFAULT_IMAGE_TOKEN + "\n" if part["type"] == "image" else part.get("text", "") for part in parts
        )
        conv.append_message(conv.roles[0] if message["role"] == "user" else conv.roles[1], text)
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


def matching_template(render: Callable[[list[dict]], str]) -> str | None:
    """The first of our templates whose rendering of a probe conversation `render` reproduces exactly."""
    rendered = render(PROBE)
    for name in conv_templates:
        if render_ours(name) == rendered:
            return name
    return None
