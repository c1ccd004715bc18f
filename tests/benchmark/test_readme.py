"""The README's benchmark section is what the committed results file renders to, never typed by hand."""

import json
import re
from pathlib import Path

from fmnist.benchmark.classical import MEASURED, format_readme

ROOT = Path(__file__).resolve().parents[2]
SECTION = re.compile(r"<!-- generated: classical \(make readme\) -->\n(.*?)<!-- end generated: classical -->", re.S)


def test_readme_section_is_generated_from_the_committed_results():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    body = SECTION.search(readme).group(1)
    path = ROOT / MEASURED
    result = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    assert body == "\n".join(format_readme(result)) + "\n"


def test_the_section_renders_each_family_beside_the_paper(tmp_path):
    result = {"sessions": [{"started": "2026-12-01T16:00:00Z", "loadavg_start": [3.0], "loadavg_end": [5.5],
                            "wall_time_s": 100.0}, {"wall_time_s": 20.0}],
              "cluster": {"cpus": 2, "nodes": 1}, "wall_time_s": 120.0,
              "selection": {"quick": True, "left_out": ["SVC"], "cpus_per_task": 1},
              "families": [{"family": "Perceptron", "published": 0.782, "ours": 0.8, "band": 0.02, "within_band": True,
                            "best_params": {"penalty": "l1"}, "published_params": {"penalty": "l1"},
                            "configs": {"run": 1, "cannot_run": 0}},
                           {"family": "GaussianNB", "published": 0.511, "ours": None, "band": 0.015,
                            "within_band": None, "best_params": None, "published_params": {"priors": [0.1]},
                            "configs": {"run": 1, "cannot_run": 0}}]}
    lines = format_readme(result)
    assert lines[0] == ("`fmnist benchmark classical --quick` on 2 CPUs (1 node), 2026-12-01, load average 3.0-5.5 "
                        "(a shared machine): wall time 120 s to the last finished configuration, over 2 sessions "
                        "(resumed); each configuration one Ray "
                        "task of 1 CPU.")
    assert "| Perceptron | 0.782 | 0.800 | +0.018 | ±0.02 (within) | penalty=l1 |" in lines
    assert "| GaussianNB | 0.511 | — | — | — | priors=[0.1] |" in lines
    assert any("Left out by `--quick`: SVC" in line for line in lines)
    assert any(line.startswith("Not finished in this run: GaussianNB (") for line in lines)
    assert "Not measured yet" in format_readme(None)[0]


def test_a_family_outside_its_band_says_why_when_the_reason_is_known():
    row = {"family": "GaussianNB", "published": 0.511, "ours": 0.57, "band": 0.015, "within_band": False,
           "best_params": {"priors": [0.1]}, "published_params": {"priors": [0.1]},
           "configs": {"run": 1, "cannot_run": 0}, "differs": "the data changed"}
    result = {"sessions": [{"wall_time_s": 5.0}], "cluster": {"cpus": 2, "nodes": 1}, "wall_time_s": 5.0,
              "selection": {"quick": True, "left_out": [], "cpus_per_task": 1}, "families": [row]}
    lines = format_readme(result)
    assert "| GaussianNB | 0.511 | 0.570 | +0.059 | ±0.015 (outside) | priors=[0.1] |" in lines
    # The difference of the columns as shown, without a sign on nothing: 0.836 beside 0.836.
    level = {**row, "published": 0.8362, "ours": 0.8358, "within_band": True}
    assert "| GaussianNB | 0.836 | 0.836 | +0.000 | ±0.015 (within) | priors=[0.1] |" in format_readme(
        {**result, "families": [level]})
    assert "**GaussianNB** is outside its band: the data changed" in lines
    inside = {**row, "ours": 0.52, "within_band": True}
    assert not any("outside its band" in line for line in format_readme({**result, "families": [inside]}))
