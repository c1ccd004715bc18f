"""What fmnist measured, as committed results files: the source of every number the README shows.

The JSON files beside this module are written by the commands that measure (see each file's
``command``: ``benchmarks/accuracy.py``, ``benchmarks/run.py``), never by hand, and each
records when and on what machine it was measured, with the load average. ``make readme``
(:mod:`fmnist.measured.readme`) rewrites the README's tables from them; ``fmnist models NAME``
shows a preset's entry. Reading them needs only ``json``: ``fmnist models`` stays light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MEASURED_DIR = Path(__file__).resolve().parent
# The presets whose accuracy the README reports beyond the study (the study's own rows are in
# reproduce.json); ``benchmarks/accuracy.py presets`` trains these by default.
ACCURACY_PRESETS = ("mlp-100-sigmoid", "mlp-100-dropout", "mlp-best", "cnn-book", "cnn-best")


# The widest vector arithmetic a CPU has, by its /proc/cpuinfo flag, best first: the same code's
# speed differs most between these (bfloat16 dot products double the convolutions' rate, and
# without them bfloat16 is emulated), so every record names it beside the CPU's model.
_VECTOR_UNITS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 with bfloat16 dot products"),
                 ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def processor(cpuinfo: str | None = None) -> str:
    """The CPU a measurement ran on, e.g. ``"AMD EPYC (AVX2)"``: its model name and widest vector
    unit, from ``/proc/cpuinfo`` (``cpuinfo``: its text); elsewhere what :mod:`platform` knows."""
    import platform

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    unit = next((words for flag, words in _VECTOR_UNITS if flag in flags), None)
    return f"{name} ({unit})" if unit else name


def load(name: str, directory: Path | None = None) -> dict[str, Any] | None:
    """The results file ``NAME.json`` (in ``directory``, default :data:`MEASURED_DIR`) as a dict; None if absent."""
    path = Path(directory if directory is not None else MEASURED_DIR) / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def preset_results(name: str, directory: Path | None = None) -> dict[str, Any] | None:
    """What was measured for the preset ``name``: its own training run, or its row of the study.

    Returns ``{"val_accuracy", "test_accuracy", "metric", "train_time_s", "study_time_s", "date",
    "loadavg", "command", "spec", "train", "precision"}`` (``spec``/``train``: the recipe that was
    measured, ``precision``: what it trained in, "auto" resolved; None for the study's rows, whose
    recipe is the preset's own by construction), or None if nothing about ``name`` has been recorded.
    ``train_time_s`` is the training alone, where a run recorded it; the study records only the
    wall time of each experiment (the linear one's is its whole cross-validation, and every one's
    includes scoring and saving), which is ``study_time_s``, the other being None.
    """
    presets = (load("presets", directory) or {}).get("presets", {})
    if name in presets:
        r = presets[name]
        return {"val_accuracy": r["val_accuracy"], "test_accuracy": r["test_accuracy"],
                "metric": "validation accuracy", "train_time_s": r["train_time_s"], "study_time_s": None,
                "epochs_run": r["epochs_run"], "date": r["date"], "loadavg": r["loadavg_before"][0],
                "command": r["command"], "spec": r["spec"], "train": r["train"],
                "precision": r["config"].get("precision", "float32")}  # older runs had no other
    study = load("reproduce", directory)
    for row in (study or {}).get("result", {}).get("rows", []):
        if row["model"] == name:
            m = study["measured"]
            return {"val_accuracy": row["ours"], "test_accuracy": row["test_accuracy"], "metric": row["metric"],
                    "train_time_s": None, "study_time_s": row["time_s"],
                    "epochs_run": len(row.get("history") or []) or None,
                    "date": m["date"], "loadavg": m["loadavg_before"][0], "command": m["command"],
                    "spec": None, "train": None, "precision": None}
    return None
