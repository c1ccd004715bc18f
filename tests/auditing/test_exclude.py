"""--exclude: which images an audit leaves out, and refusing an audit of other data."""

import numpy as np
import pytest

from fmnist._files import write_json
from fmnist.auditing.core import AUDIT_FORMAT, data_checksums
from fmnist.auditing.exclude import KINDS, flagged_indices, load_exclusion, parse_exclude
from fmnist.errors import UsageError
from tests.auditing.conftest import as_dataset, garments


def ref(split, index):
    return {"split": split, "index": index}


AUDIT = {
    "exact_duplicates": [{"a": ref("train", 1), "b": ref("test", 2), "labels": [3, 3]},
                         {"a": ref("train", 4), "b": ref("train", 5), "labels": [0, 0]},
                         {"a": ref("train", 6), "b": ref("train", 7), "labels": [0, 1]}],
    "near_duplicates": [{"a": ref("train", 8), "b": ref("test", 9), "distance": 0.01, "space": "pixel"},
                        {"a": ref("test", 10), "b": ref("test", 11), "distance": 0.01, "space": "shifted"}],
    "label_issues": [{"split": "train", "index": 12, "given": 0, "suggested": 1, "score": 0.01},
                     {"split": "test", "index": 13, "given": 0, "suggested": 1, "score": 0.02}],
    "outliers": [{"split": "train", "index": 14, "label": 0, "distance": 0.5}],
}


def test_each_finding_leaves_out_the_right_copy():
    # Leaks: the training copy when training, the test copy when scoring; within a split the
    # second copy, or both when their labels disagree.
    assert flagged_indices(AUDIT, "train").tolist() == [1, 5, 6, 7, 8, 12, 14]
    assert flagged_indices(AUDIT, "test").tolist() == [2, 9, 11, 13]
    assert flagged_indices(AUDIT, "train", ("label_issues",)).tolist() == [12]
    assert flagged_indices(AUDIT, "test", ("exact_duplicates", "outliers")).tolist() == [2]


@pytest.mark.parametrize("spec, kinds", [
    ("a/audit.json", KINDS),
    ("a/audit.json:labels,outliers", ("label_issues", "outliers")),
    ("a/audit.json:near_duplicates", ("near_duplicates",)),
])
def test_parse_exclude(spec, kinds):
    path, got = parse_exclude(spec)
    assert str(path) == "a/audit.json" and got == kinds


def test_a_folder_means_its_audit_json(tmp_path):
    assert parse_exclude(str(tmp_path))[0] == tmp_path / "audit.json"


def test_unknown_kind_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown kind typo"):
        parse_exclude("a/audit.json:labels,typo")


@pytest.fixture
def data():
    y = np.arange(40) % 10
    return as_dataset(garments(y, 0), y, garments(y[:20], 1), y[:20])


def test_load_exclusion_checks_the_audit_is_of_this_data(data, tmp_path):
    sums = data_checksums(data.x_train, data.y_train, data.x_test, data.y_test)
    write_json(tmp_path / "audit.json", {**AUDIT, "data": {"sha256": sums}, "summary": {"format": AUDIT_FORMAT}})
    ex = load_exclusion(f"{tmp_path / 'audit.json'}:labels", data, "test")
    assert ex.indices.tolist() == [13] and ex.kinds == ("label_issues",) and ex.to_dict()["count"] == 1
    data.x_test[0, 0, 0] ^= 1  # one pixel of the test set differs from what the audit saw
    with pytest.raises(UsageError, match="other test data"):
        load_exclusion(str(tmp_path / "audit.json"), data, "test")
    assert load_exclusion(str(tmp_path), data, "train").indices.tolist() == [1, 5, 6, 7, 8, 12, 14]


@pytest.mark.parametrize("damage, message", [
    (lambda a: a.update(data={"sha256": "x"}), r"not a complete audit \(no data checksums"),
    (lambda a: a["label_issues"][1].pop("index"), r"not a complete audit \(a finding without its images"),
    (lambda a: a["label_issues"][1].update(index=10_000), r"not a complete audit \(it flags image 10000 of a test"),
])
def test_an_audit_missing_its_parts_is_one_line(data, tmp_path, damage, message):
    import copy

    sums = data_checksums(data.x_train, data.y_train, data.x_test, data.y_test)
    audit = copy.deepcopy({**AUDIT, "data": {"sha256": sums}, "summary": {"format": AUDIT_FORMAT}})
    damage(audit)
    write_json(tmp_path / "audit.json", audit)
    with pytest.raises(UsageError, match=message):
        load_exclusion(str(tmp_path / "audit.json"), data, "test")


@pytest.mark.parametrize("content, message", [(None, "no such file"), ("{oops", "not a readable"),
                                              ("{}", "not an audit"), ('{"summary": [1]}', "not an audit")])
def test_bad_audit_files_are_one_line_errors(data, tmp_path, content, message):
    if content is not None:
        (tmp_path / "audit.json").write_text(content)
    with pytest.raises(UsageError, match=message):
        load_exclusion(str(tmp_path / "audit.json"), data, "train")
