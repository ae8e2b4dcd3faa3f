"""Model package; importing it registers `parrot_llava` with the transformers Auto classes."""

from transformers import AutoConfig, AutoModelForCausalLM

from llava.model.configuration_llava import LlavaConfig
from llava.model.modeling_llava import LlavaForCausalLM

AutoConfig.register(LlavaConfig.model_type, LlavaConfig, exist_ok=True)
AutoModelForCausalLM.register(LlavaConfig, LlavaForCausalLM, exist_ok=True)

__all__ = ["LlavaConfig", "LlavaForCausalLM"]
