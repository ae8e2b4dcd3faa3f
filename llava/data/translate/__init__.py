"""Semi-automatic translation of LLaVA data with any OpenAI-compatible chat endpoint.

    python -m llava.data.translate INPUT --langs zh,pt --base-url URL --model NAME --out DIR
    python -m llava.data.translate apply-review DIR/review/<stem>_zh.csv

Modules by concern: `protect` (<image> split, protected spans), `languages` (codes, prompts),
`checks` (named rejects), `client` (openai, retries, budget), `journal` (resume), `engine`
(workers and cache), `outputs` (final files), `review` and `review_page` (review sheets), `cli`.
"""
