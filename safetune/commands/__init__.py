"""The command-line commands, one module per family, each registering its own parsers (as
diffusers' `commands/` does). Nothing here imports torch until a command runs."""
from . import assets, lora, sample, stages, study

FAMILIES = (sample, assets, stages, lora, study)
