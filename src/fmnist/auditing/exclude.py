"""Acting on an audit: the images of a split that ``--exclude AUDIT[:KINDS]`` leaves out.

What each finding removes from a split:

- ``label_issues``, ``outliers``: the image named, in its own split;
- ``exact_duplicates``, ``near_duplicates``: for a train/test pair, the training copy when
  training and the test copy when scoring (either way the test score no longer rewards
  memory); within one split, the second copy (the first stays), or both copies when their
  labels differ, since one of the two labels is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from fmnist.errors import UsageError, option

__all__ = ["AUDIT_FORMAT", "KINDS", "Exclusion", "data_checksums", "parse_exclude", "load_exclusion", "flagged_indices"]

AUDIT_FORMAT = "fmnist-audit"


def data_checksums(x_train, y_train, x_test, y_test) -> dict[str, str]:
    """SHA-256 of each array's bytes: an audit applies only to the data it looked at."""
    return {name: hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()
            for name, a in (("train_images", x_train), ("train_labels", y_train),
                            ("test_images", x_test), ("test_labels", y_test))}


KINDS = ("exact_duplicates", "near_duplicates", "label_issues", "outliers")
_ALIASES = {"exact": "exact_duplicates", "duplicates": "exact_duplicates", "near": "near_duplicates",
            "leaks": "near_duplicates", "labels": "label_issues"}


@dataclasses.dataclass(frozen=True)
class Exclusion:
    """Indices (sorted int64) of one split to leave out, and the audit and kinds they came from."""

    path: str
    kinds: tuple[str, ...]
    split: str
    indices: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"audit": self.path, "kinds": list(self.kinds), "split": self.split, "count": int(len(self.indices)),
                "indices": self.indices.tolist()}


def parse_exclude(spec: str) -> tuple[Path, tuple[str, ...]]:
    """``"DIR/audit.json:label_issues,outliers"`` -> (path, kinds); no kinds means all four.

    The path may also be the audit's folder. Kinds: the audit.json keys, or ``exact``,
    ``near``, ``labels``, ``outliers``.
    """
    path, kinds = str(spec), KINDS
    head, sep, tail = path.rpartition(":")
    if sep and head and "/" not in tail and "\\" not in tail:
        path, names = head, [k.strip() for k in tail.split(",") if k.strip()]
        unknown = [k for k in names if _ALIASES.get(k, k) not in KINDS]
        if unknown or not names:
            raise UsageError(f"{option('exclude')} {spec}: unknown kind {', '.join(unknown) or '(none)'}; choose from "
                             f"{', '.join(KINDS)} (or exact, near, labels), comma-separated")
        kinds = tuple(dict.fromkeys(_ALIASES.get(k, k) for k in names))
    p = Path(path)
    return (p / "audit.json" if p.is_dir() else p), kinds


def _read_audit(path: Path) -> dict[str, Any]:

    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{option('exclude')} {path}: no such file; write one with 'fmnist audit --out DIR'") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise UsageError(f"{option('exclude')} {path}: not a readable audit.json ({exc}); write one with 'fmnist audit'") from None
    summary = result.get("summary") if isinstance(result, dict) else None
    if not isinstance(summary, dict) or summary.get("format") != AUDIT_FORMAT:
        raise UsageError(f"{option('exclude')} {path}: not an audit written by 'fmnist audit'")
    return result


def flagged_indices(result: dict[str, Any], split: str, kinds=KINDS) -> np.ndarray:
    """Sorted unique int64 indices of ``split`` that the findings of ``kinds`` leave out (module docstring)."""
    out: set[int] = set()
    for kind in kinds:
        for item in result.get(kind, []):
            if "a" in item:
                a, b = item["a"], item["b"]
                if a["split"] != b["split"]:
                    out |= {ref["index"] for ref in (a, b) if ref["split"] == split}
                elif a["split"] == split:
                    labels = item.get("labels")
                    both = labels is not None and labels[0] != labels[1]
                    out |= {a["index"], b["index"]} if both else {b["index"]}
            elif item["split"] == split:
                out.add(item["index"])
    return np.array(sorted(out), dtype=np.int64)


def load_exclusion(spec: str, data, split: str) -> Exclusion:
    """The images of ``data``'s ``split`` (``"train"``: the 60,000; ``"test"``) an audit file excludes.

    Refuses an audit of other data (its content checksums must match ``data``'s).
    """

    path, kinds = parse_exclude(spec)
    result = _read_audit(path)
    ours = data_checksums(data.x_train, data.y_train, data.x_test, data.y_test)
    wanted = ("train_images", "train_labels") if split == "train" else ("test_images", "test_labels")
    # A file that says it is an audit but lacks a part of one (edited, cut short) is one line too.
    broken = f"{option('exclude')} {path}: not a complete audit"
    try:
        theirs = result["data"]["sha256"]
        other = any(ours[k] != theirs.get(k) for k in wanted)
    except (KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{broken} (no data checksums: {exc!r}); write it again with 'fmnist audit'") from None
    if other:
        raise UsageError(f"{option('exclude')} {path}: that audit looked at other {split} data than this (checksums differ); "
                         "pass the same --data-dir/--dataset, or audit this data first")
    try:
        indices = flagged_indices(result, split, kinds)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UsageError(f"{broken} (a finding without its images: {exc!r}); write it again with 'fmnist audit'") \
            from None
    n = len(data.y_train if split == "train" else data.y_test)
    if len(indices) and (indices[0] < 0 or indices[-1] >= n):
        raise UsageError(f"{broken} (it flags image {int(indices[-1] if indices[-1] >= n else indices[0])} of a "
                         f"{split} split of {n}); write it again with 'fmnist audit'")
    return Exclusion(str(path), kinds, split, indices)
