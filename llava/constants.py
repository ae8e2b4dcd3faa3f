"""Constants shared with upstream LLaVA: data files and checkpoints rely on these exact values."""

IGNORE_INDEX = -100
IMAGE_TOKEN_INDEX = -200  # sentinel in input_ids; spliced out before the LLM ever sees it

DEFAULT_IMAGE_TOKEN = "<image>"
DEFAULT_IMAGE_PATCH_TOKEN = "<im_patch>"
DEFAULT_IM_START_TOKEN = "<im_start>"
DEFAULT_IM_END_TOKEN = "<im_end>"

# Projector weights of a stage-1 run, named as upstream LLaVA names them.
MM_PROJECTOR_FILE = "mm_projector.bin"
MM_PROJECTOR_PREFIX = "model.mm_projector."
# Beside it when the vision tower trained too: the whole tower, keys `vision_tower.*` (safetensors).
VISION_TOWER_FILE = "vision_tower.safetensors"
# The files that hold a whole model's weights (a folder with none of them holds only some parts).
MODEL_WEIGHT_FILES = frozenset(
    {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"}
)
