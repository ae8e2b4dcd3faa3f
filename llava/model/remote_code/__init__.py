"""Code that `python -m llava.model.convert to-hf` ships in remote-code folders (transformers'
`trust_remote_code=True`). Every file here except this one imports nothing from `llava` (only torch,
transformers and each other, relatively), so an exported folder loads without this package;
`text_guidance` is also what `llava.model.multimodal_merge` runs."""
