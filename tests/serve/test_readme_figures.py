"""The README's serve and photo figures are what the benchmark scripts make of the committed results."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script, section, results", [
    ("serve", "serve", "serve.json"), ("photos", "photo", "photos.json")])
def test_readme_section_is_generated_from_the_results(script, section, results):
    readme = _module("_readme")
    shown = readme.section((ROOT / "README.md").read_text(), section)
    path = ROOT / "benchmarks" / "results" / results
    if not path.exists():
        assert shown == "", f"README shows {section} figures but {path} is missing"
        return
    expected = _module(script).table(json.loads(path.read_text()))
    assert shown == expected.rstrip("\n") + "\n", (
        f"README's {section} figures are stale: run python benchmarks/{script}.py --table {path} --readme")


def test_replace_touches_only_its_section():
    readme = _module("_readme")
    text = ("a\n<!-- serve figures: cmd -->\nold\n<!-- end serve figures -->\n"
            "<!-- photo figures: cmd -->\nkeep\n<!-- end photo figures -->\nz\n")
    new = readme.replace(text, "serve", "new 1\nnew 2")
    assert readme.section(new, "serve") == "new 1\nnew 2\n" and readme.section(new, "photo") == "keep\n"
    assert new.startswith("a\n") and new.endswith("z\n")
    with pytest.raises(ValueError, match="no '<!-- bench figures"):
        readme.section(text, "bench")
