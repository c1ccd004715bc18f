"""The README's audit section, rendered from the committed results file ``src/fmnist/measured/audit.json``.

``benchmarks/audit.py`` measures and records; :func:`readme_lines` turns the record into
Markdown, which ``make readme`` (:mod:`fmnist.measured.readme`) puts between the README's markers. A part
not measured yet says which command measures it, never a number typed by hand.
"""

from __future__ import annotations

from typing import Any

__all__ = ["readme_lines"]

_FILE = "src/fmnist/measured/audit.json"


def _when(r: dict[str, Any]) -> str:
    return (f"{r['date'][:16].replace('T', ' ')} UTC, {r['cpus']} CPUs, load {r['loadavg_before'][0]:.1f} -> "
            f"{r['loadavg_after'][0]:.1f}")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def _kinds(name: str) -> tuple[str, ...]:
    from fmnist.auditing import planted

    return getattr(planted, name)


def readme_lines(results: dict[str, Any] | None) -> list[str]:
    """Markdown lines for the README from audit.json's entries ``audit``, ``planted`` and ``effect``."""
    results = results or {}
    lines: list[str] = []
    a = results.get("audit")
    if a:
        t, c = a["times_s"], a["counts"]
        ex, nd = c["exact_duplicates"], c["near_duplicates"]
        lines += [
            f"`{a['command']}` (model {a['model']}, {a['folds']} folds, {a['epochs']} epochs) took {a['wall_s']:.0f} s "
            f"({a['cpu_s']:.0f} CPU-s; {_when(a)}). Phases: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in t.items() if k != "total") + ".",
            "",
            "| finding | within train | within test | train/test |",
            "|---|---|---|---|",
            f"| exact duplicate pairs | {ex['train']} | {ex['test']} | {ex['train-test']} |",
            *(f"| near duplicate pairs, {space} (threshold {a['thresholds'][space]:.4f}) | {nd[space]['train']} "
              f"| – | {nd[space]['train-test']} |" for space in nd),
            f"| likely label errors | {c['label_issues']['train']} | {c['label_issues']['test']} | – |",
            f"| outliers | {c['outliers']['train']} | {c['outliers']['test']} | – |",
            "",
            f"Out-of-fold accuracy of the fold models: {a['accuracy']['train_out_of_fold']:.4f} (train), "
            f"{a['accuracy']['test_fold_mean']:.4f} (their mean on test).",
        ]
    else:
        lines.append(f"Not measured yet: `python benchmarks/audit.py audit --keep DIR` records it in {_FILE}.")
    lines.append("")
    planted = results.get("planted") or {}
    if planted:
        near, outl = _kinds("NEAR_KINDS"), _kinds("OUTLIER_KINDS")
        lines += ["Faults planted at random in a copy of Fashion-MNIST (`python benchmarks/audit.py planted "
                  "--seed S`: each kind in turn, described in `fmnist.auditing.planted`), and the share the audit "
                  "found:", "",
                  "| seed | exact leaks | near leaks | in-train duplicates (exact / near) | flipped train labels "
                  "among the first n flagged | flipped test labels | outliers | audit (model, folds, epochs) | "
                  "audit time |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for seed, p in sorted(planted.items()):
            f, n = p["found"], p["planted"]
            lines.append(
                f"| {seed} | {_pct(f['exact_leaks'])} of {n['exact_leaks']} | {_pct(f['near_leaks'])} of "
                f"{n['near_leaks']} | {_pct(f['duplicates'])} of {n['duplicates']} / "
                f"{_pct(f.get('near_duplicates'))} of {n.get('near_duplicates', 0)} | "
                f"{_pct(f['flips_train']['recall_first_n'])} of {n['flips']} | "
                f"{_pct(f['flips_test']['recall_first_n'])} of {n['test_flips']} | "
                f"{_pct(f.get('outliers'))} of {n.get('outliers', 0)} | "
                f"{p['model']}, {p['folds']}, {p['epochs']}{' (' + p['code'] + ')' if 'code' in p else ''} | "
                f"{p['wall_s']:.0f} s ({_when(p)}) |")
        lines += ["", "Per kind (near leaks; rotated and rescaled copies are planted beside them and not promised: "
                  "a copy turned by 3-10 degrees or rescaled by up to 10 % is as far from its original as another "
                  "garment of its class):", "",
                  "| seed | " + " | ".join(k.replace("_", " + ") for k in near) + " | rotate | scale | "
                  + " | ".join(f"outliers: {k}" for k in outl) + " |",
                  "|---|" + "---|" * (len(near) + 2 + len(outl))]
        for seed, p in sorted(planted.items()):
            f = p["found"]
            lines.append(f"| {seed} | " + " | ".join(_pct(f.get(f"near_leaks_{k}")) for k in near) + " | "
                         + " | ".join(_pct(f.get(f"hard_leaks_{k}")) for k in ("rotate", "scale")) + " | "
                         + " | ".join(_pct(f.get(f"outliers_{k}")) for k in outl) + " |")
    else:
        lines.append(f"Planted faults not measured yet: `python benchmarks/audit.py planted` records them in {_FILE}.")
    lines.append("")
    effect = {k: v for k, v in (results.get("effect") or {}).items() if isinstance(v, dict)}
    if effect:
        lines += [f"Training without the flagged images (`fmnist train MODEL --exclude audit/audit.json`, seed "
                  f"{results['effect']['seed']}, `python benchmarks/audit.py effect`), scored on the full test set "
                  "and on the test set without its flagged images:", "",
                  "| model | trained on | training images left out | test accuracy (10,000) | "
                  "cleaned test accuracy | validation accuracy (the run's own, less its flagged) |", "|---|---|---|---|---|---|"]
        for model, e in effect.items():
            for name in ("full", "cleaned"):
                r = e[name]
                lines.append(f"| {model} | {'all images' if name == 'full' else 'without the flagged'} | "
                             f"{r['train_images']:,} | {r['test_accuracy']:.4f} | {r['cleaned_test_accuracy']:.4f} "
                             f"({r['cleaned_test_n']:,}) | {r['val_accuracy']:.4f} |")
    else:
        lines.append("The effect of excluding the flagged images is not measured yet: "
                     f"`python benchmarks/audit.py effect --audit DIR/audit.json mlp-200 cnn-book` records it in {_FILE}.")
    lines += ["", f"Generated by `make readme` from `{_FILE}` (measured by `benchmarks/audit.py`)."]
    return lines
