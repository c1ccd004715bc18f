"""What ``fmnist models NAME`` prints: a preset's full spec, its training recipe, and what it measured.

The measured numbers come from the committed results files (:mod:`fmnist.measured`), the same
ones the README's tables are generated from, so the two never disagree.
"""

from __future__ import annotations

from typing import Any

from fmnist.models.registry import Preset, list_models


def describe(preset: Preset) -> str:
    """Lines about ``preset``: what it is, its recipe, a Keras-style summary (networks), its results."""
    lines = [f"{preset.name}: {preset.description}"]
    if preset.source:
        lines.append(f"source:     {preset.source}")
    if preset.spec is None:
        params = dict(preset.params)
        lines.append(f"estimator:  scikit-learn {params.pop('estimator')}")
        lines.append("parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    else:
        from fmnist.models.spec import format_layers, summary

        lines.append(f"spec:       {format_layers(list(preset.spec.layers), full=True)}")
        lines.append(f"training:   {recipe(preset.train)}")
        if preset.spec.tta == "flip":
            lines.append("predicting: the mean log-probability of each image and its mirror (test-time flip)")
        lines += ["", summary(preset.spec, preset.name)]
    lines += ["", measured_line(preset)]
    return "\n".join(lines)


def recipe(train: dict[str, Any]) -> str:
    """A preset's training defaults in words, Keras's where the preset sets none."""
    from fmnist.training import TrainConfig

    c = TrainConfig(**train).resolved()  # every default spelled out, as training uses it
    default = lambda key: "" if train.get(key) is not None else " as Keras"  # noqa: E731
    lr = c.lr
    words = [f"{c.epochs} epoch{'s' if c.epochs != 1 else ''}", f"batch {c.batch_size}",
             f"{c.optimizer} (lr {lr:g}{default('lr')}"
             + (f", momentum {c.momentum:g}" if c.momentum else "") + (", Nesterov" if c.nesterov else "")
             + (f", weight decay {c.weight_decay:g}{default('weight_decay')}" if c.weight_decay else "") + ")"]
    if c.schedule == "onecycle":
        words.append(f"one-cycle schedule (peak lr {lr:g}, warm-up {c.pct_start:.0%} of the steps)")
    elif c.schedule == "cosine":
        words.append("cosine schedule to 0")
    elif c.schedule == "step":
        words.append(f"lr x{c.lr_gamma:g} every {c.lr_step_epochs} epochs")
    if c.patience:
        words.append(f"early stopping on val_loss (patience {c.patience}, best epoch's weights restored)")
    augment = [w for w, on in ((f"shifts up to {c.shift} px", c.shift), ("mirroring", c.flip),
                               (f"random erasing p={c.erase:g}", c.erase)) if on]
    if augment:
        words.append("augmentation: " + ", ".join(augment))
    if c.label_smoothing:
        words.append(f"label smoothing {c.label_smoothing:g}")
    if c.precision == "auto":
        words.append("bfloat16 mixed precision where the hardware has it (float32 elsewhere)")
    elif c.precision != "float32":
        words.append(f"{c.precision} mixed precision")
    return ", ".join(words)


def measured_line(preset: Preset) -> str:
    """What the committed results files hold for ``preset``, or how to measure it."""
    from fmnist.measured import preset_results

    r = preset_results(preset.name)
    if r is None:
        if preset.name not in list_models():  # a layer spec: measured by training it
            return f"measured:   nothing recorded (a layer spec: fmnist train '{preset.spec}' measures it)"
        return f"measured:   nothing recorded yet (python benchmarks/accuracy.py presets {preset.name})"
    recorded = r["spec"] is None or (r["spec"] == preset.spec.to_dict() and r["train"] == dict(preset.train))
    epochs = f", {r['epochs_run']} epochs" if r.get("epochs_run") else ""
    # A preset that sets its precision ("auto": bfloat16 only where the hardware has it) took
    # the time it did in the precision it got.
    precision = f" in {r['precision']}" if r["train"] and "precision" in r["train"] else ""
    if r["train_time_s"] is not None:
        took, what = f"{r['train_time_s']:.0f} s training{precision}", ""
    else:  # the study's row: its experiment's wall time, of which training is only a part
        took = f"{r['study_time_s']:.0f} s wall time of its whole experiment in the study"
        what = (f"{r['metric'].split()[0]} cross-validation" if "-fold" in r["metric"] else "training") \
            + ", scoring and saving; "
    return (f"measured:   {r['metric']} {r['val_accuracy']:.4f}, test (t10k, reported apart) "
            f"{r['test_accuracy']:.4f}{epochs}, {took} "
            f"({what}{r['date'][:10]}, load average {r['loadavg']:.1f}; `{r['command']}`)"
            + ("" if recorded else "; NOTE: measured with an earlier recipe than the one above"))
