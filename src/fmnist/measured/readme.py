"""Rewrite the README's measured sections from the committed results files: ``make readme``.

    python -m fmnist.measured.readme            # rewrite README.md and benchmarks/README.md in place
    python -m fmnist.measured.readme --check    # exit 1, naming the section, if either is stale

A generated section sits between two markers; everything between them is replaced by what
its renderer makes of the results files, and nothing outside them is touched::

    <!-- generated: NAME (make readme) -->
    ...
    <!-- end generated: NAME -->

Each section names the command that measured its numbers, when, and at what load. Markers are
matched by their whole name (``study`` never matches inside ``study-notes``), and an unknown or
unclosed marker is an error rather than text left as it was.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fmnist.errors import FmnistError
from fmnist.measured import ACCURACY_PRESETS, MEASURED_DIR, load

ROOT = Path(__file__).resolve().parents[3]
DOCUMENTS = ("README.md", "benchmarks/README.md")
COMMAND = "make readme"

_MARKER = re.compile(
    r"(?P<open><!-- generated: (?P<name>[a-z0-9-]+) \(make readme\) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<close><!-- end generated: (?P=name) -->)", re.S)
_ANY_MARKER = re.compile(r"<!-- (?:end )?generated: ([^ >]+)")


class Results:
    """The results files of one folder, each loaded once (None: not measured yet)."""

    def __init__(self, directory: Path = MEASURED_DIR):
        self.directory = Path(directory)
        self._cache: dict[str, dict | None] = {}

    def __getitem__(self, name: str) -> dict[str, Any] | None:
        if name not in self._cache:
            self._cache[name] = load(name, self.directory)
        return self._cache[name]

    def path(self, name: str) -> str:
        return f"src/fmnist/measured/{name}.json"


# --- formatting ---------------------------------------------------------------------------------

def _s(seconds: float | None) -> str:
    """Seconds with about three significant figures."""
    if seconds is None:
        return "not measured"
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds:.3f} s"


def _x(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def _when(date: str, load_before: list[float], load_after: list[float] | None = None) -> str:
    """'2026-12-01 15:48 UTC, load average 3.6 -> 12.3'."""
    day, clock = date.rstrip("Z").split("T")
    load = f"{load_before[0]:.1f}" + (f" -> {load_after[0]:.1f}" if load_after else "")
    return f"{day} {clock[:5]} UTC, load average {load}"


def _machine(m: dict[str, Any]) -> str:
    return f"{m['cpus']} CPUs" + (f" ({m['processor']})" if m.get("processor") else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _missing(what: str, command: str) -> list[str]:
    return [f"{what}: not measured yet; run `{command}`, then `{COMMAND}`."]


# --- the sections -------------------------------------------------------------------------------

def study(results: Results) -> list[str]:
    """The tutorial's study: `fmnist reproduce`, our numbers beside the tutorial's."""
    rec = results["reproduce"]
    if rec is None:
        return _missing("The study", "python benchmarks/accuracy.py reproduce")
    res, m = rec["result"], rec["measured"]
    rows = [[r["experiment"], r["metric"], f"{r['tutorial']:.4f}", f"{r['ours']:.4f}", f"±{r['band']}",
             ("yes" if r["within_band"] else "**no**"),
             f"{r['test_accuracy']:.4f}" + (f" ({r['test_note'].removeprefix('test (t10k), ')})" if r.get("test_note") else "")]
            for r in res["rows"]]
    lines = _table(["experiment", "metric", "tutorial", "ours", "band", "in band", "test (t10k)"], rows)
    parts = ", ".join(f"{r['model']} {_s(r['time_s'])}" for r in res["rows"])
    lines += ["", f"Total time {_s(res['total_time_s'])} ({parts}), measured by `python benchmarks/accuracy.py "
                  f"reproduce` ({_when(m['date'], m['loadavg_before'], m['loadavg_after'])}; {_machine(m['machine'])}, "
                  f"fmnist {res['versions']['fmnist']}, torch {res['versions']['torch']}, scikit-learn "
                  f"{res['versions']['scikit-learn']}); a shared machine stretches the times, never the scores.",
              "", _source(results, "reproduce")]
    return lines


def presets(results: Results) -> list[str]:
    """Accuracy of the book's later chapters and our strong presets, one `fmnist train` each."""
    from fmnist.models import get_preset

    rec = (results["presets"] or {}).get("presets", {})
    rows, missing, stale = [], [], []
    for name in ACCURACY_PRESETS:
        preset = get_preset(name)
        r = rec.get(name)
        if r is None:
            missing.append(name)
            rows.append([f"`{name}`", "not measured", "–", preset.source, "–", "–", "–"])
            continue
        if r["spec"] != preset.spec.to_dict() or r["train"] != dict(preset.train):
            stale.append(name)
        epochs = f"{r['epochs_run']} of {r['config']['epochs']}"
        if r.get("stopped"):
            epochs += f" (early stop; weights of epoch {r['weights_epoch']})"
        rows.append([f"`{name}`" + (" (older recipe)" if name in stale else ""), f"{r['val_accuracy']:.4f}",
                     f"{r['test_accuracy']:.4f}", preset.source, epochs, _s(r["train_time_s"]),
                     _when(r["date"], r["loadavg_before"], r["loadavg_after"])])
    lines = _table(["preset", "validation", "test (t10k)", "source / target", "epochs", "training time",
                    "measured (load: the machine is shared)"], rows)
    lines += ["", "Each row is one `fmnist train PRESET` with the preset's own recipe, measured by "
                  "`python benchmarks/accuracy.py presets`; test (t10k) is reported apart and chose nothing."]
    if missing:
        lines += ["", "Not measured yet: " + ", ".join(f"`{n}`" for n in missing) + " (`python benchmarks/accuracy.py "
                  f"presets {' '.join(missing)}`, then `{COMMAND}`)."]
    if stale:
        lines += ["", "Measured with an earlier recipe than the preset's current one: " + ", ".join(
            f"`{n}`" for n in stale) + f" (measure again: `python benchmarks/accuracy.py presets {' '.join(stale)}`)."]
    return [*lines, "", _source(results, "presets")]


def speed(results: Results) -> list[str]:
    """README's performance summary: epochs against the floor, Keras/TF and plain PyTorch."""
    b = results["benchmark"]
    if b is None:
        return _missing("Speed", "python benchmarks/run.py --out src/fmnist/measured/benchmark.json")
    images = f"{b['images']:,}"
    rows = [[name, _s(r["epoch_s"]), _s(r["gemm_floor_s"]), "–", _s(r["keras_epoch_s"]), _x(r["keras_vs_ours"])]
            for name, r in b["presets"].items()]
    if c := b.get("conv"):
        rows.append([f"{c['preset']} ({c['train_threads']} threads)", _s(c["epoch_s"]), _s(c["floor_s"]),
                     f"{_s(c['eager_epoch_s'])} ({_x(c['eager_vs_ours'])})", _s(c["keras_epoch_s"]),
                     _x(c["keras_vs_ours"])])
    lines = _table([f"per epoch, {images} images, batch {b['batch']}", "fmnist", "arithmetic floor",
                    "plain PyTorch eager (/ fmnist)", "Keras/TF", "Keras / fmnist"], rows)
    lines += ["", f"Measured by `{b['command']}` in one run ({_when(b['date'], b['loadavg_before'], b['loadavg_after'])};"
                  f" {_machine(b['machine'])}, {_versions(b['versions'])}). Method and floors: "
                  "[benchmarks/README.md](benchmarks/README.md)."]
    ev = {name: r["eval_vs_floor"] for name, r in b["presets"].items()}
    mlp = b["presets"].get("mlp-200")
    d = b["data_load"]
    notes = [f"Evaluating {mlp['eval_images']:,} images takes {min(ev.values()):.2f}-{max(ev.values()):.2f}x the "
             f"forward pass's matrix-product floor ({_s(mlp['eval_s'])} for mlp-200, "
             f"{mlp['predict_images_per_s']:,.0f} predictions/s through `predict_proba`)" if mlp else None,
             f"the first verified load from the `.gz` files {_s(d['first_s'])}, later loads {_s(d['later_s'])}"]
    study_rec = results["reproduce"]
    if study_rec is not None:
        notes.append(f"`fmnist reproduce` {_s(study_rec['result']['total_time_s'])} end to end (load average "
                     f"{study_rec['measured']['loadavg_before'][0]:.1f} when it started)")
    lines += ["", "; ".join(n for n in notes if n) + ".", "", _source(results, "benchmark", "reproduce")]
    return lines


def benchmark(results: Results) -> list[str]:
    """benchmarks/README.md: every column of the run, the conv floor's products, the data load."""
    b = results["benchmark"]
    if b is None:
        return _missing("The benchmark", "python benchmarks/run.py --out src/fmnist/measured/benchmark.json")
    lines = [f"Measured by `{b['command']}` ({_when(b['date'], b['loadavg_before'], b['loadavg_after'])}; "
             f"{_machine(b['machine'])}, {b['machine']['train_threads']} thread(s) for dense training steps; "
             f"{_versions(b['versions'])}; medians of {b['repeats']}):", ""]
    rows = [[name, _s(r["gemm_floor_s"]), _s(r["epoch_s"]), _x(r["epoch_vs_floor"]), _s(r["eval_s"]),
             _s(r["eval_floor_s"]), _x(r["eval_vs_floor"]), f"{r['predict_images_per_s']:,.0f}",
             _s(r["keras_epoch_s"]), _x(r["keras_vs_ours"])] for name, r in b["presets"].items()]
    lines += _table(["preset", "GEMM floor", "our epoch", "x floor", "eval", "eval floor", "x floor", "predict/s",
                     "Keras epoch", "Keras / ours"], rows)
    if c := b.get("conv"):
        lines += [""] + _table(
            ["conv preset", "threads", "epoch GFLOP", "best sgemm", "floor", "our epoch", "x floor",
             f"PyTorch eager ({c['eager_threads']} threads)", "eager / ours", "Keras epoch", "Keras / ours"],
            [[c["preset"], str(c["train_threads"]), f"{c['epoch_gflop']:,.0f}", f"{c['best_sgemm_gflop_per_s']:.1f} GFLOP/s",
              _s(c["floor_s"]), _s(c["epoch_s"]), _x(c["epoch_vs_floor"]), _s(c["eager_epoch_s"]),
              _x(c["eager_vs_ours"]), _s(c["keras_epoch_s"]), _x(c["keras_vs_ours"])]])
        lines += ["", f"sgemm rates measured in that run on {c['preset']}'s products (batch {b['batch']}; the floor "
                      "uses the best):", ""]
        lines += _table(["product", "M x K x N", "GFLOP/s"],
                        [[p["product"], f"{p['m']} x {p['k']} x {p['n']}", f"{p['gflop_per_s']:.1f}"]
                         for p in c["products"]])
    d = b["data_load"]
    lines += ["", f"Data load: first (verified from the `.gz` files, empty cache) {_s(d['first_s'])}; later "
                  f"{_s(d['later_s'])}.", "", _source(results, "benchmark")]
    return lines


def _versions(v: dict[str, str]) -> str:
    keys = ("torch", "numba", "keras", "tensorflow")
    return ", ".join(f"{k} {v[k]}" for k in keys if k in v)


def _source(results: Results, *names: str) -> str:
    files = " and ".join(f"`{results.path(n)}`" for n in names)
    return f"<sub>Generated by `{COMMAND}` from {files}.</sub>"


SECTIONS: dict[str, Callable[[Results], list[str]]] = {
    "study": study,
    "presets": presets,
    "speed": speed,
    "benchmark": benchmark,
}


# --- rewriting documents ------------------------------------------------------------------------

def render(text: str, results: Results, *, where: str = "document") -> str:
    """``text`` with every generated section rewritten from ``results``; the rest unchanged."""
    names = [m.group("name") for m in _MARKER.finditer(text)]
    markers = _ANY_MARKER.findall(text)
    if len(markers) != 2 * len(names):
        unmatched = sorted(set(markers) - set(names)) or sorted(set(markers))
        raise FmnistError(f"{where}: generated-section marker without its pair ({', '.join(unmatched)}); "
                          "each section opens with '<!-- generated: NAME (make readme) -->' and closes with "
                          "'<!-- end generated: NAME -->'")
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise FmnistError(f"{where}: unknown generated section {', '.join(unknown)}; known: {', '.join(SECTIONS)}")

    def body(match: re.Match) -> str:
        return match.group("open") + "\n".join(SECTIONS[match.group("name")](results)) + "\n" + match.group("close")

    return _MARKER.sub(body, text)


def stale_sections(old: str, new: str) -> list[str]:
    """Names of the sections whose text differs between two renderings."""
    bodies = lambda text: {m.group("name"): m.group("body") for m in _MARKER.finditer(text)}  # noqa: E731
    before, after = bodies(old), bodies(new)
    return [name for name in after if before.get(name) != after[name]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmnist.measured.readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a section is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this checkout)")
    args = parser.parse_args(argv)
    results, stale = Results(), []
    try:
        for name in DOCUMENTS:
            path = args.root / name
            old = path.read_text(encoding="utf-8")
            new = render(old, results, where=name)
            if new == old:
                continue
            if args.check:
                stale += [f"{name}: {s}" for s in stale_sections(old, new)]
            else:
                from fmnist._files import atomic_write

                atomic_write(path, lambda tmp, new=new: tmp.write_text(new, encoding="utf-8"))
                print(f"rewrote {name}")
    except (FmnistError, json.JSONDecodeError, KeyError) as exc:
        print(f"make readme: error: {exc}", file=sys.stderr)
        return 1
    if stale:
        print("make readme: stale generated sections (run `make readme`): " + "; ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
