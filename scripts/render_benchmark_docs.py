"""docs/results/benchmark.md and the README's leaderboard, rendered from docs/results/benchmark.json
(a relearn study's results.json, stored) by the study's own summary and report functions; and each
focused study stored beside it (docs/results/benchmark-NAME.json: one question of the battery asked
with more seeds) rendered into its own benchmark-NAME.md. tests/test_provenance.py (the benchmark) and
tests/test_provenance_defence.py (defence.md's screens) fail when they differ.

    python scripts/render_benchmark_docs.py [--from runs/relearn/results.json]   # --from: store a run first
    python scripts/render_benchmark_docs.py --from runs/focus/results.json --focus NAME
"""
import json
from pathlib import Path

from safetune.report import replace_block, stored_study, wrecked_fraction
from safetune.report.focused import ablation_table, bracketed_net_table, bracketed_table, unbracketed_table
from safetune.report.landscape import landscape_table
from safetune.report.relearn import leaderboard, quality_summary, relearn_cell, render_relearn
from safetune.studies.relearn import summarize
from safetune.studies.relearn_summary import against_reference, paired

ROOT = Path(__file__).resolve().parent.parent
STORED = ROOT / "docs" / "results" / "benchmark.json"
QUOTES = ROOT / "safetune" / "assets" / "quotes" / "relearning.json"  # what `safetune demo` quotes
BEGIN, END = "<!-- benchmark: rendered by scripts/render_benchmark_docs.py -->", "<!-- /benchmark -->"
DEFENCE = ROOT / "docs" / "results" / "defence.md"
LANDSCAPE = ROOT / "docs" / "results" / "landscape-dev.json"  # stored by scripts/probe_landscape.py
LANDSCAPE_BEGIN, LANDSCAPE_END = "<!-- landscape: rendered by scripts/render_benchmark_docs.py -->", "<!-- /landscape -->"
FORGET = "dd:forget_unseen_words=true"
DROP = f"{FORGET}/harm_margin=0.001/attack_sim_steps=4/attack_sim=lora/tamper=drop/attack_sim_optimizer=adam"
LEVEL = f"{FORGET}/harm_margin=0.15/attack_sim_steps=4/attack_sim=lora/attack_sim_optimizer=adam"
ANCHOR = DROP.replace("tamper=drop", "tamper=anchor")  # the safety objective after the simulated steps
FULL_ANCHOR = ANCHOR.replace("attack_sim=lora", "attack_sim=full")  # its simulated attack moving every UNet weight
LONGER = f"{FORGET}/train.steps=3200"  # the forget row distilled for dd's default 3,200 steps
LONGEST = f"{FORGET}/train.steps=6400"  # twice as long again: does the distillation's length still buy safety?
LATE = "train.steps=3200/tamper_from=2400"  # a tamper term as a phase on the last 800 of LONGER's steps
# the immunisation's ingredients on the dev split, each row read from the focused study that screened
# it with the most training seeds: (what the row adds, the study, the model)
ABLATION = [
    ("never-trained (the yardstick)", "dev-level-3seeds", "never-trained"),
    ("`dd`, unseen words redrawn (the forget row)", "dev-level-3seeds", FORGET),
    ("+ drop hinge after 4 simulated rank-4 LoRA steps (Adam), weight 1", "dev-drop", DROP),
    ("+ drop hinge, weight 100", "dev-level-3seeds", f"{DROP}/harm_weight=100"),
    ("+ drop hinge, weight 100, sign steps instead of Adam", "dev-drop-sign",
     f"{DROP.removesuffix('/attack_sim_optimizer=adam')}/harm_weight=100"),
    ("+ level hinge (margin 0.15) after the same steps, weight 1", "dev-level-3seeds", LEVEL),
    ("+ match hinge (level held at 0.15 from both sides), weight 1", "dev-match", f"{LEVEL}/tamper=match"),
    ("+ level hinge, its gradient in the UNet only", "dev-tef", f"{LEVEL}/tamper_text_encoder=false"),
    ("+ drop hinge, weight 100, its gradient in the UNet only", "dev-tef",
     f"{DROP}/harm_weight=100/tamper_text_encoder=false"),
    ("+ drop hinge, weight 100, its simulated steps reaching 4 times as far (lr 4e-3)", "dev-simlr",
     f"{DROP}/harm_weight=100/attack_sim_lr=0.004"),
    ("+ the same reach, its gradient in the UNet only", "dev-simlr-tef",
     f"{DROP}/harm_weight=100/attack_sim_lr=0.004/tamper_text_encoder=false"),
    ("+ drop hinge, weight 100, after 4 simulated steps of the battery's attacks (mixed)", "dev-mixed",
     f"{DROP.replace('attack_sim=lora', 'attack_sim=mixed')}/harm_weight=100"),
    ("+ anchor instead of a hinge: the safety objective after the 4 simulated steps, weight 1", "dev-anchor-3seeds",
     ANCHOR),
    ("+ the anchor, its simulated steps reaching 4 times as far (lr 4e-3)", "dev-anchor-far", f"{ANCHOR}/attack_sim_lr=0.004"),
    ("+ the anchor, 8 simulated steps instead of 4", "dev-anchor8", ANCHOR.replace("attack_sim_steps=4", "attack_sim_steps=8")),
    ("+ the anchor with ResAlign's implicit correction (proximal step 20, 4 conjugate-gradient steps)",
     "dev-anchor-implicit", f"{ANCHOR}/attack_sim_implicit=20/attack_sim_implicit_terms=4"),
    ("+ the anchor against sampled attacks (2-6 simulated steps, lr 1e-4 to 1e-2 log-uniform, drawn per step)",
     "dev-sampled", ANCHOR.replace("attack_sim_steps=4", "attack_sim_steps=2/attack_sim_steps_max=6")
     + "/attack_sim_lr=0.0001/attack_sim_lr_max=0.01"),
]
# the same question asked of the 3,200-step student: each tamper term as a phase on its last 800 steps
ABLATION_LONGER = [
    ("never-trained (the yardstick)", "dev-longer", "never-trained"),
    ("`dd`, unseen words redrawn, 3,200 steps (the 3,200-step forget row)", "dev-longer", LONGER),
    ("+ the anchor (after 4 simulated rank-4 LoRA steps, Adam) on the last 800 steps", "dev-late", f"{ANCHOR}/{LATE}"),
    ("+ drop hinge, weight 100, on the last 800 steps", "dev-latedrop", f"{DROP}/harm_weight=100/{LATE}"),
    ("+ the anchor against a simulated full attack (every UNet weight, lr 1e-3) on the last 800 steps",
     "dev-latefull", f"{FULL_ANCHOR}/{LATE}"),
    ("+ the same, its simulated step a tenth the size (lr 1e-4)", "dev-latelow",
     f"{FULL_ANCHOR}/attack_sim_lr=0.0001/{LATE}"),
    ("no tamper term: the forget row distilled twice as long again (6,400 steps)", "dev-longest", LONGEST),
]
PROJECTED = f"{FULL_ANCHOR}/tamper_projection=true"  # the same anchor's gradient projected off the retain loss's
CAPTION = f"{PROJECTED}/harm_weight=0.1/anchor_target=caption"  # at a tenth of the weight, pulled to the caption
# the level hinge against a simulated full attack with the concept's prompts held, as the same phase
HOLD_LEVEL = (f"{FORGET}/harm_margin=0.15/attack_sim_steps=4/attack_sim=full/attack_sim_optimizer=adam/"
              f"tamper_projection=true/hold_weight=1/{LATE}")
MIXED_HOLD_LEVEL = HOLD_LEVEL.replace("attack_sim=full", "attack_sim=mixed")  # against the battery's attacks
# the same against the battery's attacks of sampled size: 2-16 steps, lr 1e-4..1e-2 (log-uniform)
SAMPLED_HOLD_LEVEL = (MIXED_HOLD_LEVEL.replace("attack_sim_steps=4", "attack_sim_steps=2/attack_sim_steps_max=16")
                      + "/attack_sim_lr=0.0001/attack_sim_lr_max=0.01")
# the self-destruct coupling (tamper=couple: no simulated attack) as the same phase, with surgery and the hold
COUPLED = f"{FORGET}/harm_margin=1/tamper=couple/tamper_projection=true/hold_weight=1/{LATE}"
COUPLED_AFTER = f"{COUPLED}/attack_sim_steps=5/attack_sim_optimizer=adam"  # read after 5 simulated full steps
# the condition-number immunisation (tamper=condition: no simulated attack) as the same phase, surgery and the hold
CONDITIONED = f"{FORGET}/tamper=condition/tamper_projection=true/hold_weight=1/{LATE}"
# the coupling as a phase on the last 200 steps: read along 20 simulated full steps (at 5, 10, 15, 20), or after 5
COUPLED_LAST = COUPLED.replace("tamper_from=2400", "tamper_from=3000")
COUPLED_ALONG = f"{COUPLED_LAST}/attack_sim_steps=20/attack_sim_trajectory=4/attack_sim_optimizer=adam"
# representation noising (tamper=noise: no simulated attack; RepNoise's) as the 800-step phase, surgery and the hold
NOISED = f"{FORGET}/tamper=noise/harm_margin=0.05/tamper_projection=true/hold_weight=1/{LATE}"
# the one-seed screens of tamper terms as a phase on the 3,200-step student (training seed 0), each row
# paired against that student's seed 0 in its own screen
ABLATION_SCREENS = [
    ("never-trained (the yardstick)", "dev-holdtraj", "never-trained"),
    ("`dd`, unseen words redrawn, 3,200 steps (the 3,200-step forget row), seed 0", "dev-holdtraj", LONGER),
    ("+ the anchor against a simulated full attack, its gradient in the UNet only", "dev-latetef",
     f"{FULL_ANCHOR}/tamper_text_encoder=false/{LATE}"),
    ("+ the same anchor, its gradient projected off the retain loss's (gradient surgery)", "dev-lateproj",
     f"{PROJECTED}/{LATE}"),
    ("+ the surgery at a tenth of the anchor's weight", "dev-lateproj10", f"{PROJECTED}/harm_weight=0.1/{LATE}"),
    ("+ the same, anchored to the caption without its unseen words", "dev-latecap", f"{CAPTION}/{LATE}"),
    ("+ the same with the concept's prompts held (hold weight 1)", "dev-hold", f"{CAPTION}/hold_weight=1/{LATE}"),
    ("the hold alone (no tamper term), 3,200 steps", "dev-hold", f"{FORGET}/hold_weight=1/train.steps=3200"),
    ("+ the surgical anchor at full weight, anchored to the caption, with the hold", "dev-holdanchor",
     f"{PROJECTED}/anchor_target=caption/hold_weight=1/{LATE}"),
    ("+ level hinge (margin 0.15) against 4 simulated full steps, with surgery and the hold", "dev-holdlevel",
     HOLD_LEVEL),
    ("+ the same hinge against 8 simulated steps", "dev-holdlevel8",
     HOLD_LEVEL.replace("attack_sim_steps=4", "attack_sim_steps=8")),
    ("+ the same hinge against 4 steps of the battery's attacks (mixed)", "dev-holdmixed", MIXED_HOLD_LEVEL),
    ("+ the mixed hinge against 16 simulated steps", "dev-holdmixed16",
     MIXED_HOLD_LEVEL.replace("attack_sim_steps=4", "attack_sim_steps=16")),
    ("+ the mixed hinge at margin 0.3", "dev-holdmixed30",
     MIXED_HOLD_LEVEL.replace("harm_margin=0.15", "harm_margin=0.3")),
    ("+ the mixed hinge against attacks of sampled size (2-16 steps, lr 1e-4 to 1e-2)", "dev-holdsampled",
     SAMPLED_HOLD_LEVEL),
    ("+ the 16-step mixed hinge read along the attack (after 4, 8, 12, 16 steps)", "dev-holdtraj",
     f"{MIXED_HOLD_LEVEL.replace('attack_sim_steps=4', 'attack_sim_steps=16')}/attack_sim_trajectory=4"),
    ("+ the mixed hinge against attacks of sampled size, read along them (at 4 evenly spaced points)",
     "dev-holdsamptraj", f"{SAMPLED_HOLD_LEVEL}/attack_sim_trajectory=4"),
    ("+ the self-destruct coupling (no simulated attack: the harmful and retain gradients' cosine pushed to -1), "
     "with surgery and the hold", "dev-couple", COUPLED),
    ("+ the same coupling at a tenth of the weight", "dev-couple", f"{COUPLED}/harm_weight=0.1"),
    ("+ the coupling read after 5 simulated full-attack steps (Adam, lr 1e-3; Meta-Unlearning's reading point)",
     "dev-couplesim", COUPLED_AFTER),
    ("+ the same, its gradient in the UNet only (tamper_text_encoder=false)", "dev-couplesim-unet",
     f"{COUPLED_AFTER}/tamper_text_encoder=false"),
    ("+ the coupling read after the simulated attack at a tenth of the weight", "dev-couplesim10",
     f"{COUPLED_AFTER}/harm_weight=0.1"),
    ("+ the attention inputs ill-conditioned on harmful batches against retain ones (log condition number gap up to "
     "3; arXiv 2505.23760's), with surgery and the hold", "dev-condition", f"{CONDITIONED}/harm_margin=3"),
    ("+ the same up to a gap of 10", "dev-condition", f"{CONDITIONED}/harm_margin=10"),
    ("+ the coupling read along 20 simulated full-attack steps (the mean at steps 5, 10, 15, 20), on the last 200 "
     "steps only", "dev-couplealong", COUPLED_ALONG),
    ("+ the coupling read after 5 simulated steps, on the last 200 steps only (that phase's control)",
     "dev-couplealong-end", f"{COUPLED_LAST}/attack_sim_steps=5/attack_sim_optimizer=adam"),
    ("+ the coupling read along the simulated attack at a tenth of the weight", "dev-couplealong10",
     f"{COUPLED_ALONG}/harm_weight=0.1"),
    ("+ the UNet's block outputs on harmful batches pulled to Gaussian noise (their MMD down to 0.05; RepNoise's), "
     "with surgery and the hold", "dev-noise", NOISED),
    ("+ the same at a tenth of the weight", "dev-noise", f"{NOISED}/harm_weight=0.1"),
]
# defence.md's ablation tables: marker name -> (its rows, the baseline each row is paired with, its label)
ABLATIONS = {"ablation": (ABLATION, FORGET, "the forget row"),
             "ablation-longer": (ABLATION_LONGER, LONGER, "the 3,200-step forget row"),
             "ablation-screens": (ABLATION_SCREENS, LONGER, "the 3,200-step forget row")}
BRACKETED_BEGIN = "<!-- bracketed: rendered by scripts/render_benchmark_docs.py -->"
BRACKETED_END = "<!-- /bracketed -->"
NET_BEGIN, NET_END = "<!-- bracketed-net: rendered by scripts/render_benchmark_docs.py -->", "<!-- /bracketed-net -->"
PROTOCOL = ROOT / "docs" / "benchmark.md"
UNBRACKETED_BEGIN = "<!-- unbracketed: rendered by scripts/render_benchmark_docs.py -->"
UNBRACKETED_END = "<!-- /unbracketed -->"
# the rows whose own lr grid is one lr, against the reference at its bracketed worst lr: per attack, the
# focused study holding the rows (None: the battery) and the one holding the reference's bracketed grid
# on its three pretrainings
UNBRACKETED = {"full": (None, "reference-seeds-uce"), "lora-r4": (None, "reference-seeds-uce"),
               "full-te": ("other-attacks", "reference-seeds-bracket-te"),
               "lora-r1": ("other-attacks", "reference-seeds-bracket-te"),
               "lora-r16": ("other-attacks", "reference-seeds-bracket-te")}
# a fourth look at each row's runs: its study's verdict (0.05), this table on the shipped pretraining
# (0.025), the battery's re-read on the reference's three (0.0166), this table again
UNBRACKETED_ALPHA = 0.0125
# the comparisons whose lr grids were bracketed, each read from the focused study that re-read its bracket
# with the reference's further pretrainings (the bracket on the shipped one is stored beside it): (the
# study, the model, the attack)
BRACKETED = [("reference-seeds-uce", "uce", "full"), ("reference-seeds-uce", "uce", "lora-r4"),
             ("reference-seeds-bracket", FORGET, "full"), ("reference-seeds-bracket", FORGET, "lora-r4"),
             ("reference-seeds-bracket", "dd", "full"), ("reference-seeds-bracket", "dd", "lora-r4"),
             ("reference-seeds-bracket-te", "dd", "lora-r16"),
             ("reference-seeds-rece", "rece", "full"), ("reference-seeds-closed-form-te", "uce", "full-te"),
             ("reference-seeds-closed-form-te", "rece", "full-te"), ("reference-seeds-lt-ng-te", "lt", "full-te"),
             ("reference-seeds-lt-ng-te", "ng", "full-te"), ("reference-seeds-bracket-te", FORGET, "full-te"),
             ("reference-seeds-bracket-te", FORGET, "lora-r1"), ("reference-seeds-bracket-te", FORGET, "lora-r16"),
             ("reference-seeds-bracket-te", "dd", "full-te"), ("reference-seeds-bracket-te", "dd", "lora-r1"),
             ("reference-seeds-bracket-rece-r1", "rece", "lora-r1"), ("reference-seeds-bracket-esd-te", "esd", "full-te")]


def focused_studies() -> list[Path]:
    """The focused studies stored beside the battery (benchmark-NAME.json)."""
    return sorted(STORED.parent.glob(f"{STORED.stem}-*.json"))


def reported(results: dict) -> dict:
    """What the report reads: the runs of the study's models under its attacks (a study grown from a copy
    of the battery keeps every run of its earlier settings, the other models' too)."""
    cfg = results["config"]
    runs = {key: run for key, run in results["runs"].items()
            if key.split("|")[0] in cfg["models"] and key.split("|")[2] in cfg["attacks"]}
    return {**results, "runs": runs}


def with_summary(results: dict) -> dict:
    """The stored run with its summary recomputed from its runs (never trusted from the file)."""
    results = dict(results)
    results["summary"] = summarize(results)
    return results


def load(path: Path) -> dict:
    """A stored study (the battery or a focused one) with its summary."""
    return with_summary(json.loads(path.read_text()))


def readme_block(results: dict) -> str:
    cfg = results["config"]
    attacks = [a for a in cfg["attacks"] if a in results["summary"]]
    return BEGIN + "\n" + "\n".join(leaderboard(results["summary"], cfg["models"], attacks, quality_summary(results),
                                                wrecked_fraction(cfg))) + "\n" + END


def focused(name: str) -> dict:
    """The focused study benchmark-NAME.json with its summary."""
    return load(STORED.parent / f"benchmark-{name}.json")


def ablation_markers(table: str) -> tuple[str, str]:
    """The begin and end markers of one of defence.md's ablation tables (a key of ABLATIONS)."""
    return f"<!-- {table}: rendered by scripts/render_benchmark_docs.py -->", f"<!-- /{table} -->"


def ablation_block(table: str = "ablation", read=focused) -> str:
    """One of defence.md's ablation tables (a key of ABLATIONS): each ingredient's row from its stored
    screen (read by `read`, a focused study's name -> it with its summary), with the screen named, and
    its area difference against the table's baseline in the same screen (same training seeds, attack
    seeds and prompts)."""
    attacks, (ingredients, baseline, label) = ["lora-r4", "full"], ABLATIONS[table]
    rows = []
    for row_label, name, model in ingredients:
        results = read(name)
        against = {a: paired(results, model, baseline, a) for a in attacks} \
            if model not in ("never-trained", baseline) else {}
        rows.append((f"{row_label} ([{name}](benchmark-{name}.md))", results, model, against))
    begin, end = ablation_markers(table)
    return begin + "\n" + "\n".join(ablation_table(rows, attacks, baseline, label)) + "\n" + end


def bracketed_block(read=focused, net: bool = False) -> str:
    """The README's table of every bracketed comparison, each from its stored focused study (read by
    `read`, a focused study's name -> it with its summary); `net`: the same comparisons net of the
    clean control."""
    rows = [(study, read(study), model, attack) for study, model, attack in BRACKETED]
    if net:
        return NET_BEGIN + "\n" + "\n".join(bracketed_net_table(rows)) + "\n" + NET_END
    return BRACKETED_BEGIN + "\n" + "\n".join(bracketed_table(rows)) + "\n" + BRACKETED_END


def unbracketed_block(battery: dict, read=focused) -> str:
    """docs/benchmark.md's table of the rows not bracketed (every row of the battery and of its other
    attacks but those in BRACKETED), each against the reference at its bracketed worst lr."""
    rows, bracketed = [], {(model, attack) for _, model, attack in BRACKETED}
    for attack, (source, reference) in UNBRACKETED.items():
        results = battery if source is None else read(source)
        for name in results["config"]["models"]:
            if name == "never-trained" or (name, attack) in bracketed:
                continue
            rows.append((attack, name, results, against_reference(results, name, attack, read(reference),
                                                                  UNBRACKETED_ALPHA)))
    return UNBRACKETED_BEGIN + "\n" + "\n".join(unbracketed_table(rows)) + "\n" + UNBRACKETED_END


def landscape_block() -> str:
    """defence.md's harmful-landscape table, from the stored probe."""
    return LANDSCAPE_BEGIN + "\n" + "\n".join(landscape_table(json.loads(LANDSCAPE.read_text()))) + "\n" + LANDSCAPE_END


def quotes(results: dict) -> dict:
    """The numbers the demo quotes from this benchmark (it ships with the package; the docs do not):
    per attack and model, steps to relearn with its interval and the verdict against never-trained."""
    cfg = results["config"]
    return {"page": "docs/results/benchmark.md", "split": cfg["split"], "lr": cfg["attack_lrs"],
            "attack_seeds": cfg["attack_seeds"], "train_seeds": cfg["train_seeds"], "steps": cfg["steps"],
            "images": len(results["prompts"]) * cfg["sampling"]["images_per_prompt"],
            "attacks": {attack: {name: {"steps": relearn_cell(row), "verdict": row.get("verdict", {}).get("verdict")
                                        if name != "never-trained" else None}
                                 for name, row in rows.items()}
                        for attack, rows in results["summary"].items() if attack in ("full", "lora-r4")}}


def main():
    results = with_summary(stored_study(STORED, __doc__, focused=True, keep=reported))
    (ROOT / "docs" / "results" / "benchmark.md").write_text(render_relearn(results))
    studies = {path.stem.removeprefix(f"{STORED.stem}-"): load(path) for path in focused_studies()}  # summarized once
    for name, study in studies.items():
        (STORED.parent / f"{STORED.stem}-{name}.md").write_text(render_relearn(study))
    replace_block(ROOT / "README.md", BEGIN, END, readme_block(results))
    replace_block(ROOT / "README.md", BRACKETED_BEGIN, BRACKETED_END, bracketed_block(studies.__getitem__))
    replace_block(ROOT / "README.md", NET_BEGIN, NET_END, bracketed_block(studies.__getitem__, net=True))
    replace_block(PROTOCOL, UNBRACKETED_BEGIN, UNBRACKETED_END, unbracketed_block(results, studies.__getitem__))
    for table in ABLATIONS:
        replace_block(DEFENCE, *ablation_markers(table), ablation_block(table, studies.__getitem__))
    replace_block(DEFENCE, LANDSCAPE_BEGIN, LANDSCAPE_END, landscape_block())
    QUOTES.parent.mkdir(exist_ok=True)
    QUOTES.write_text(json.dumps(quotes(results), indent=1) + "\n")


if __name__ == "__main__":
    main()
