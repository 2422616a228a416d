"""The safety-alignment methods, in one registry. Each declares its name, what it does and where it
comes from, its settings dataclass and default training recipe, what it needs (the concept's
prompts, retain images, harmful images), what it returns (a LoRA on W0, or the trained model) and
its runner. The API's `align`, the CLI's `align` (its --method choices and help are generated from
here) and the studies read it. Adding a method is one module with its runner plus one `register`
call below (docs: README, "Adding a method").
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..config import (DISTILL, ESD_X, LT_NG, MACE, SALUN, AblationConfig, DistillConfig, ForgettingConfig,
                      InferenceSafetyConfig, MACEConfig, SafetyLoraConfig, SalUnConfig, TrainConfig, UCEConfig)
from ..errors import SafetuneError

OUTPUTS = ("lora", "model", "either", "inference")  # either: a LoRA or the trained model, by its recipe's mode;
# inference: the pipeline, unchanged in its weights, marked to sample differently (models.inference)


@dataclass
class Inputs:
    """What a runner gets besides the pipeline (which it trains in place, or leaves as it was)."""
    concepts: list[str]
    settings: object
    train: TrainConfig
    clean: tuple | None = None  # (images, captions) of retain data
    harmful: tuple | None = None  # (images, captions) of the concept's images
    checkpoint_dir: Path | None = None
    identity: dict | None = None


@dataclass(frozen=True)
class Method:
    """One safety-alignment method."""
    name: str
    summary: str  # one line, for --help
    paper: str  # where it comes from
    make_settings: Callable[[], object]  # its settings, defaults filled in
    recipe: TrainConfig  # its default training
    output: str  # one of OUTPUTS
    run: Callable[..., object]  # run(pipe, Inputs) -> a LoRA, or None when the pipeline was trained in place
    fixed: tuple[str, ...] = ()  # training settings the method sets itself (the CLI refuses them as flags)
    prepare: Callable[[TrainConfig], TrainConfig] = lambda train: train  # the recipe as the method trains it
    data: Callable[[object], tuple[str, ...]] = lambda settings: ()  # the image data it needs: clean, harmful
    trains: bool = True  # False: a closed-form edit; training flags do not apply

    def returns_lora(self, train: TrainConfig) -> bool:
        """Whether this run returns a LoRA (else the trained model)."""
        return self.output == "lora" or (self.output == "either" and self.prepare(train).mode == "lora")


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry (its name must be new)."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is registered twice")
    if method.output not in OUTPUTS:
        raise ValueError(f"method {method.name!r}: output {method.output!r} is not one of {OUTPUTS}")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method `name`, or a clear error listing them."""
    if name not in METHODS:
        raise SafetuneError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def safety_loras() -> list[str]:
    """Methods that return a safety LoRA on W0 from the concept's prompts alone (what Modular LoRA
    composes and the backfire study compares)."""
    return [name for name, m in METHODS.items() if m.output == "lora" and not m.data(m.make_settings())]


# ---------------------------------------------------------------- the built-in methods


# runners import their stage when they run: the CLI reads this registry for --help, without torch
def _safety_lora(name: str, summary: str, paper: str) -> Method:
    targets = {"esd-u": "non-xattn"}.get(name, "xattn")

    def run(pipe, inputs: Inputs):
        from .safety import align_lora

        return align_lora(pipe, name, inputs.concepts, inputs.train, inputs.settings, inputs.checkpoint_dir,
                          inputs.identity)

    return Method(name, summary, paper, SafetyLoraConfig, ESD_X, "lora", run, fixed=("mode", "targets"),
                  prepare=lambda train: replace(train, mode="lora", targets=targets))


def _lt_ng(variant: str, summary: str) -> Method:
    def run(pipe, inputs: Inputs):
        from .lt_ng import forgetting_train

        return forgetting_train(pipe, inputs.clean, inputs.harmful, inputs.settings, inputs.train,
                                checkpoint_dir=inputs.checkpoint_dir, identity=inputs.identity)

    return Method(variant, summary, "Pan et al. 2024, forgetting-based safe training (../shared/PAPERS.md)",
                  lambda: ForgettingConfig(variant=variant), LT_NG, "either", run,
                  data=lambda settings: ("clean", "harmful"))


def _uce(name: str, summary: str, paper: str, settings: Callable[[], UCEConfig]) -> Method:
    def run(pipe, inputs: Inputs):
        from .uce import uce_lora

        return uce_lora(pipe, inputs.concepts, inputs.settings)

    return Method(name, summary, paper, settings, ESD_X, "lora", run, fixed=("mode", "targets"),
                  prepare=lambda train: replace(train, mode="lora", targets="xattn"), trains=False)


def _ablation() -> Method:
    def run(pipe, inputs: Inputs):
        from .ablation import ablate_lora

        return ablate_lora(pipe, inputs.concepts, inputs.train, inputs.settings, inputs.checkpoint_dir,
                           inputs.identity)

    return Method("ca", "concept ablation: the concept's prompts draw what an anchor prompt draws (a LoRA on "
                  "cross-attention)", "Kumari et al. 2023, Ablating Concepts in Text-to-Image Diffusion Models "
                  "(arXiv 2303.13516)", AblationConfig, ESD_X, "lora", run, fixed=("mode",),
                  prepare=lambda train: replace(train, mode="lora"))


def _mace() -> Method:
    def run(pipe, inputs: Inputs):
        from .mace import mace_lora

        return mace_lora(pipe, inputs.concepts, inputs.train, inputs.settings, inputs.checkpoint_dir, inputs.identity)

    return Method("mace", "mass concept erasure: a closed-form refinement of cross-attention, one attention-"
                  "suppressing LoRA per concept, fused in closed form (a LoRA on W0)", "Lu et al. 2024, MACE: Mass "
                  "Concept Erasure in Diffusion Models (arXiv 2403.06135)", MACEConfig, MACE, "lora", run,
                  fixed=("mode", "targets"), prepare=lambda train: replace(train, mode="lora", targets="xattn-kv"))


def _salun() -> Method:
    def run(pipe, inputs: Inputs):
        from .salun import salun_train

        salun_train(pipe, inputs.concepts, inputs.clean, inputs.harmful, inputs.settings, inputs.train,
                    inputs.checkpoint_dir, inputs.identity)

    return Method("salun", "saliency unlearning: the concept's prompts give an anchor's prediction on its images, "
                  "training only the UNet weights most salient to the concept", "Fan et al. 2024, SalUn: Empowering "
                  "Machine Unlearning via Gradient-based Weight Saliency (arXiv 2310.12508)", SalUnConfig, SALUN,
                  "model", run, fixed=("mode", "targets", "train_text_encoder"),
                  prepare=lambda train: replace(train, mode="full"), data=lambda settings: ("clean", "harmful"))


def _inference(name: str, kind: str, summary: str, paper: str) -> Method:
    def run(pipe, inputs: Inputs):
        from .inference import inference_safety

        inference_safety(pipe, kind, inputs.concepts, inputs.settings)

    return Method(name, summary, paper, InferenceSafetyConfig, ESD_X, "inference", run, trains=False)


def _distill() -> Method:
    def run(pipe, inputs: Inputs):
        from .distill import distill_train

        distill_train(pipe, inputs.clean, inputs.concepts, inputs.settings, inputs.train,
                      checkpoint_dir=inputs.checkpoint_dir, identity=inputs.identity, harmful=inputs.harmful)

    return Method("dd", "distort-and-distill: a model a malicious fine-tuning relearns slowly (beyond the papers)",
                  "after UNDO, Distillation Robustifies Unlearning (arXiv 2506.06278)", DistillConfig, DISTILL,
                  "model", run, fixed=("mode", "targets"), prepare=lambda train: replace(train, mode="full"),
                  data=lambda settings: ("clean", "harmful") if settings.harm_margin > 0 or settings.hold_weight > 0
                  else ("clean",))


ESD_PAPER = "Gandikota et al. 2023, Erasing Concepts from Diffusion Models (arXiv 2303.07345)"
for _method in (
    _safety_lora("esd-x", "a safety LoRA on cross-attention (the default)", ESD_PAPER),
    _safety_lora("esd-u", "a safety LoRA on the rest of the UNet", ESD_PAPER),
    _safety_lora("esd", "the same as esd-x", ESD_PAPER),
    _safety_lora("sdd", "self-distillation to the unconditional prediction, a LoRA on cross-attention",
                 "Kim et al. 2023, Towards Safe Self-Distillation of Text-to-Image Diffusion (arXiv 2307.16880)"),
    _uce("uce", "Unified Concept Editing: a closed-form edit of cross-attention keys and values, no training (as a "
         "LoRA on W0)", "Gandikota et al. 2024, Unified Concept Editing in Diffusion Models (arXiv 2308.14761)",
         UCEConfig),
    # one round: chosen on the dev split (rounds 0-3, ridge 0.1-10; more rounds cost clean fidelity)
    _uce("rece", "UCE that also erases the text states regenerating the concept through its edit, in closed form "
         "(a LoRA on W0)", "Gong et al. 2024, Reliable and Efficient Concept Erasure (arXiv 2407.12383)",
         lambda: UCEConfig(rece_rounds=1)),
    _ablation(),
    _mace(),
    _salun(),
    _inference("np", "negative", "no training: the concept as the negative prompt at inference (SD-NP)",
               "the negative-prompt baseline of the NSFW benchmarks (e.g. arXiv 2502.12527)"),
    _inference("sld", "sld", "no training: Safe Latent Diffusion at inference (diffusers' StableDiffusionPipelineSafe, "
               "SD 1.x/2.x)", "Schramowski et al. 2023, Safe Latent Diffusion (arXiv 2211.05105)"),
    _lt_ng("lt", "forgetting-based safe training, latent transformation"),
    _lt_ng("ng", "forgetting-based safe training, noise guidance"),
    _distill(),
):
    register(_method)
