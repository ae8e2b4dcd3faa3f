"""LLaVA-compatible multimodal core. Plugins (such as parrot_moe) register projectors; the core never imports them."""
