"""The README's audit section as rendered from src/fmnist/measured/audit.json (make readme)."""

import re

from fmnist.auditing.measured import readme_lines



def _record(**extra):
    return {"command": "fmnist audit --out x", "date": "2026-12-01T16:00:00Z", "cpus": 2,
            "loadavg_before": [3.0, 0, 0], "loadavg_after": [4.5, 0, 0], "wall_s": 300.4, "cpu_s": 250.0, **extra}


def test_numbers_land_in_their_cells():
    spaces = {"pixel": {"train": 11, "train-test": 12}, "aligned": {"train": 13, "train-test": 14},
              "embedding": {"train": 15, "train-test": 16}}
    results = {
        "audit": _record(model="mlp-200", folds=5, epochs=15, times_s={"pixel": 20.0, "folds": 100.0, "total": 300.0},
                         thresholds={"pixel": 0.0496, "aligned": 0.0141, "embedding": 0.0138},
                         counts={"exact_duplicates": {"train": 1, "test": 2, "train-test": 3},
                                 "near_duplicates": spaces, "label_issues": {"train": 3778, "test": 542},
                                 "outliers": {"train": 7, "test": 8}},
                         accuracy={"train_out_of_fold": 0.87381, "test_fold_mean": 0.8737}),
        "planted": {"1": _record(model="mlp-200", folds=5, epochs=15,
                                 planted={"exact_leaks": 50, "near_leaks": 120, "duplicates": 50, "near_duplicates": 60,
                                          "flips": 600, "test_flips": 100, "outliers": 50},
                                 found={"exact_leaks": 1.0, "near_leaks": 0.95, "near_leaks_noise": 1.0,
                                        "near_leaks_shift": 0.85, "near_leaks_jpeg": 0.9, "near_leaks_contrast": 0.8,
                                        "near_leaks_mirror": 0.75, "near_leaks_shift_noise": 0.7,
                                        "hard_leaks_rotate": 0.1, "hard_leaks_scale": 0.2, "duplicates": 0.98,
                                        "near_duplicates": 0.9, "outliers": 0.8, "outliers_blank": 0.6,
                                        "outliers_constant": 0.55, "outliers_inverted": 0.5, "outliers_noise": 0.45,
                                        "outliers_glyph": 0.4,
                                        "flips_train": {"recall_first_n": 0.71}, "flips_test": {"recall_first_n": 0.7}})},
        "effect": {"seed": 42, "mlp-200": {
            name: {"train_images": n, "test_accuracy": acc, "cleaned_test_accuracy": acc + 0.01,
                   "cleaned_test_n": 9400, "val_accuracy": 0.88} for name, n, acc in (("full", 0, 0.8734),
                                                                                   ("cleaned", 4100, 0.8801))}},
    }
    text = "\n".join(readme_lines(results))
    assert "(model mlp-200, 5 folds, 15 epochs) took 300 s (250 CPU-s; 2026-12-01 16:00 UTC, 2 CPUs, load 3.0 -> 4.5)" in text
    assert "| exact duplicate pairs | 1 | 2 | 3 |" in text
    assert "| near duplicate pairs, aligned (threshold 0.0141) | 13 | – | 14 |" in text
    assert "| likely label errors | 3778 | 542 | – |" in text
    assert ("| 1 | 100 % of 50 | 95 % of 120 | 98 % of 50 / 90 % of 60 | 71 % of 600 | 70 % of 100 | 80 % of 50 | "
            "mlp-200, 5, 15 | 300 s") in text
    # Per kind, in the order of the header.
    assert "| noise | shift | jpeg | contrast | mirror | shift + noise | rotate | scale | outliers: blank |" in text
    assert ("| 1 | 100 % | 85 % | 90 % | 80 % | 75 % | 70 % | 10 % | 20 % | 60 % | 55 % | 50 % | 45 % | 40 % |"
            in text)
    assert "| mlp-200 | without the flagged | 4,100 | 0.8801 | 0.8901 (9,400) | 0.8800 |" in text
    assert "| mlp-200 | all images | 0 | 0.8734 | 0.8834 (9,400) | 0.8800 |" in text


def test_unmeasured_parts_name_their_command():
    text = "\n".join(readme_lines(None))
    assert "python benchmarks/audit.py audit" in text and "python benchmarks/audit.py planted" in text
    assert not re.search(r"\d+\.\d+", text)  # no number where nothing was measured
