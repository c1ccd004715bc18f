"""`fmnist audit`, then `train --exclude` and `evaluate --exclude` with its audit.json, on tiny data."""

import json
import warnings

import pytest

from fmnist.cli.main import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_audit_then_act_on_it(capsys, tiny_dir, tmp_path):
    data = ["--data-dir", tiny_dir, "--dataset", "custom"]
    code, out, err = run(capsys, "audit", "--folds", "2", "--epochs", "1", "--out", tmp_path / "audit", *data)
    assert code == 0, err
    assert "likely label errors:" in out and f"wrote {tmp_path / 'audit' / 'audit.json'}" in out
    # audit.json lists duplicates as pairs, and the summary says so (three copies are three pairs).
    assert "exact duplicate pairs: 0 within train" in out and "near duplicate pairs (pixel, threshold" in out
    audit = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert audit["summary"]["folds"] == 2 and audit["summary"]["training"]["epochs"] == 1
    assert (tmp_path / "audit" / "audit.html").exists()
    # Mark two training images and one test image, so the exclusion has something to do.
    audit["outliers"] = [{"split": "train", "index": 0, "label": 0, "distance": 1.0},
                         {"split": "train", "index": 1, "label": 1, "distance": 1.0},
                         {"split": "test", "index": 0, "label": 0, "distance": 1.0}]
    (tmp_path / "audit" / "audit.json").write_text(json.dumps(audit))
    # A finished audit is not replaced without --overwrite.
    code, _, err = run(capsys, "audit", "--folds", "2", "--out", tmp_path / "audit", *data)
    assert code == 1 and "pass --overwrite" in err and json.loads((tmp_path / "audit" / "audit.json").read_text()) == audit

    code, out, _ = run(capsys, "train", "softmax", "--epochs", "1", "--quiet", "--out", tmp_path / "run",
                       "--exclude", f"{tmp_path / 'audit' / 'audit.json'}:outliers", *data)
    assert code == 0 and "excluding 2 training images" in out
    run_info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_info["data"]["exclude"]["indices"] == [0, 1]

    code, out, _ = run(capsys, "evaluate", tmp_path / "run", "--split", "test", "--exclude", tmp_path / "audit",
                       *data)
    lines = out.splitlines()
    assert code == 0 and "on test (50 images)" in lines[0] and "without the 1 flagged (49 images)" in lines[1]


@pytest.mark.parametrize("argv, fragment, status", [
    (["audit", "--folds", "1"], "at least 2 folds", 2),
    (["audit", "--model", "mlp200"], "--model: unknown model 'mlp200'", 2),
    (["train", "softmax", "--exclude", "nowhere/audit.json"], "no such file", 2),
    (["train", "--resume", "somewhere", "--exclude", "a.json"], "drop --exclude", 2),
])
def test_usage_errors_are_one_line(capsys, tiny_dir, argv, fragment, status):
    code, out, err = run(capsys, *argv, "--data-dir", tiny_dir, "--dataset", "custom")
    assert code == status and fragment in err and len(err.strip().splitlines()) == 1


def test_the_models_settings_are_checked_before_the_neighbour_search(capsys, tiny_dir, tmp_path, monkeypatch):
    from fmnist.auditing import neighbours

    def searched(*args, **kwargs):
        raise AssertionError("the neighbour search started")

    data = ["--data-dir", tiny_dir, "--dataset", "custom"]
    with monkeypatch.context() as m:
        m.setattr(neighbours, "fit_projection", searched)
        code, _, err = run(capsys, "audit", "--epochs", "0", "--out", tmp_path / "a", *data)
        assert code == 2 and "--epochs must be at least 1, got 0" in err, err
    # A scikit-learn model trains without epochs: the audit's own 15 are not put on it; its
    # expected ConvergenceWarning (max_iter=5) stays off the terminal, as in a run of it.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code, out, err = run(capsys, "audit", "--model", "sgd-logreg", "--folds", "2", "--out", tmp_path / "b", *data)
    assert code == 0 and "likely label errors" in out, err
    assert [str(w.message) for w in seen if "converge" in str(w.message)] == []


def test_the_time_printed_is_the_whole_commands(capsys, tiny_dir, tmp_path, monkeypatch):
    import time

    from fmnist.auditing import core

    def audit(data, **kwargs):  # an audit whose own clock stops before its report is written
        time.sleep(1.6)
        nothing = {"train": 0, "test": 0}
        return {"summary": {"exact_duplicates": {**nothing, "train-test": 0, "with_different_labels": 0},
                            "near_duplicates": {}, "thresholds": {}, "label_issues": nothing, "outliers": nothing,
                            "accuracy": {"train_out_of_fold": 1.0}, "notes": [], "times_s": {"total": 0.1}}}

    monkeypatch.setattr(core, "audit", audit)
    code, out, err = run(capsys, "audit", "--out", tmp_path / "a", "--data-dir", tiny_dir, "--dataset", "custom")
    assert code == 0, err
    assert int(out.splitlines()[-1].rsplit(" in ", 1)[1].removesuffix(" s")) >= 2  # not the audit's own 0.1 s
