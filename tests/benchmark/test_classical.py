"""The runner: one configuration's record, the honest choice, results.json, resume; on a local Ray, tiny data."""

import json
import stat

import numpy as np
import pytest

from fmnist.benchmark import classical, grid, mapping
from fmnist.benchmark.classical import benchmark_classical, run_config, summarize
from fmnist.benchmark.grid import Config
from fmnist.errors import FmnistError

NB = Config("GaussianNB", {"priors": [0.1] * 10})


def arrays(data):
    return data.x_train, data.y_train, data.x_test, data.y_test


def test_one_configuration_scores_validation_and_test_on_their_own_fits(tiny_data):
    from fmnist.data import train_val_split

    record = run_config(NB, ("val", "test"), 42, 1, *arrays(tiny_data))
    assert record["status"] == "finished" and record["cpus"] == 1
    # The same numbers by hand: scaler + GaussianNB fitted on the 80 % split / on everything.
    x_tr, x_val, y_tr, y_val = train_val_split(tiny_data.x_train.reshape(200, -1), tiny_data.y_train)
    by_hand = mapping.build_pipeline(NB).fit(x_tr, y_tr).score(x_val, y_val)
    assert record["val_accuracy"] == pytest.approx(by_hand)
    full = mapping.build_pipeline(NB).fit(tiny_data.x_train.reshape(200, -1), tiny_data.y_train)
    assert record["test_accuracy"] == pytest.approx(full.score(tiny_data.x_test.reshape(50, -1), tiny_data.y_test))
    assert record["val_time_s"] > 0 and record["test_time_s"] > 0
    only_test = run_config(NB, ("test",), 42, 1, *arrays(tiny_data))
    assert "val_accuracy" not in only_test and only_test["test_accuracy"] == record["test_accuracy"]


def test_refused_and_failing_configurations_are_records_not_crashes(tiny_data, monkeypatch):
    refused = Config("LogisticRegression", {"penalty": "l1", "C": 1.0, "multi_class": "multinomial"})
    record = run_config(refused, ("test",), 42, 1, *arrays(tiny_data))
    assert record["status"] == "cannot_run" and "liblinear" in record["error"] and "test_accuracy" not in record

    class Broken:
        def fit(self, x, y):
            raise RuntimeError("no memory\nfor this")

    monkeypatch.setattr(mapping, "build_pipeline", lambda config, seed: Broken())
    record = run_config(NB, ("val", "test"), 42, 1, *arrays(tiny_data))
    assert record["status"] == "failed" and record["error"] == "RuntimeError: no memory for this"


def _constant_feature_data():
    """Feature 0 is 0 in every class-0 training image and feature 1 varies: class 0's variance of
    feature 0 is exactly 0 when naive Bayes has no variance floor."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    y = np.arange(40) % 2
    x[y == 0, 0] = 0.0
    return x, y


def test_predictions_from_nan_scores_count_as_wrong_and_are_reported():
    from sklearn.naive_bayes import GaussianNB

    x, y = _constant_feature_data()
    # Class 0's score is log(0) terms and x**2 / 0: NaN for every image, and numpy's argmax of a
    # row with NaN is class 0, so the two class-0 images would silently count as right.
    x_test, y_test = np.array([[0.0, 0.3], [0.0, -0.2], [1.5, 0.1]]), np.array([0, 0, 1])
    model = GaussianNB(var_smoothing=0.0).fit(x, y)
    with np.errstate(all="ignore"):
        assert (model.predict(x_test) == [0, 0, 0]).all()
        assert classical.scored(model, x_test, y_test) == (0.0, 3)
    # With 2017's floor the same images are decided, and none is undecided.
    floored = GaussianNB().fit(x, y)
    assert classical.scored(floored, x_test, y_test) == (pytest.approx(np.mean(floored.predict(x_test) == y_test)), 0)


def test_a_run_records_its_undecided_images(tiny_data, monkeypatch):
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline

    # Tiny data has pixels that never vary (its noise stops at 59 and its bands at 230), so an
    # unfloored naive Bayes leaves NaN scores: they are counted wrong and recorded.
    monkeypatch.setattr(mapping, "build_pipeline", lambda config, seed: make_pipeline(GaussianNB(var_smoothing=0.0)))
    record = run_config(NB, ("val", "test"), 42, 1, *arrays(tiny_data))
    assert record["status"] == "finished"
    assert record["test_undecided"] > 0 and record["val_undecided"] > 0
    assert record["test_accuracy"] <= 1 - record["test_undecided"] / 50


@pytest.mark.parametrize("cpus", [1, 2])
def test_threads_follow_the_tasks_cpu_allotment(tiny_data, monkeypatch, cpus):
    seen = {}

    class Probe:
        def fit(self, x, y):
            from joblib.parallel import get_active_backend
            from threadpoolctl import threadpool_info

            seen["blas"] = {pool["num_threads"] for pool in threadpool_info()}
            # What scikit-learn's n_jobs=None resolves to: threads, as many as the task's CPUs.
            backend, seen["joblib"] = get_active_backend()
            seen["backend"] = type(backend).__name__
            return self

        def score(self, x, y):
            return 0.5

    monkeypatch.setattr(mapping, "build_pipeline", lambda config, seed: Probe())
    run_config(NB, ("test",), 42, cpus, *arrays(tiny_data))
    assert seen["blas"] and max(seen["blas"]) <= cpus
    assert seen["joblib"] == cpus and seen["backend"] == "ThreadingBackend"


def record(key, val, test, status="finished"):
    return {"key": key, "family": "X", "params": {"k": key}, "status": status, "val_accuracy": val,
            "test_accuracy": test}


def test_the_honest_column_is_chosen_by_validation_never_by_test():
    records = [record("a", 0.90, 0.80), record("b", 0.85, 0.86), record("c", 0.70, 0.84)]
    row = summarize("LogisticRegression", records)
    assert row["ours"] == 0.86 and row["best_params"] == {"k": "b"}  # the paper's protocol: best by test
    assert row["ours_val_chosen"] == 0.80 and row["val_chosen_params"] == {"k": "a"}  # best by validation
    assert row["val_accuracy"] == 0.90
    assert row["published"] == 0.842 and row["within_band"] is (abs(0.86 - 0.842) <= 0.015)
    assert row["configs"]["grid"] == 12 and row["configs"]["finished"] == 3
    # Only finished configurations count, and quick runs (no validation) leave the column empty.
    failed = {**record("d", 0.99, 0.99, status="failed")}
    assert summarize("LogisticRegression", records + [failed])["ours"] == 0.86
    no_val = [{k: v for k, v in r.items() if k != "val_accuracy"} for r in records]
    assert summarize("LogisticRegression", no_val)["ours_val_chosen"] is None


def test_bands_are_wider_for_the_5_epoch_sgd_families():
    assert summarize("Perceptron", [record("a", 0.5, 0.782 - 0.019)])["within_band"] is True
    assert summarize("DecisionTreeClassifier", [record("a", 0.5, 0.798 - 0.019)])["within_band"] is False


ROW_KEYS = {"family", "published", "ours", "ours_val_chosen", "best_params", "time_s"}


def test_results_json_and_md_on_a_local_ray(ray_cluster, tiny_data, tmp_path):
    seen = []
    plans = []
    result = benchmark_classical(tiny_data, tmp_path / "b", families=["GaussianNB", "Perceptron"],
                                 on_plan=plans.append, on_config=lambda rec, done, total: seen.append(rec["key"]))
    keys = [c.key for c in grid.expand_grid() if c.family in ("Perceptron", "GaussianNB")]
    assert sorted(seen) == sorted(keys) and plans[0]["to_run"] == 4 and plans[0]["cluster"]["cpus"] == 2
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    assert saved["families"] == json.loads(json.dumps(result["families"]))
    assert [row["family"] for row in saved["families"]] == ["Perceptron", "GaussianNB"]
    for row in saved["families"]:
        assert ROW_KEYS <= set(row) and row["published"] == grid.published_best(row["family"])[0]
        assert 0 <= row["ours"] <= 1 and 0 <= row["ours_val_chosen"] <= 1
    assert [c["key"] for c in saved["configs"]] == keys  # the paper's order, whatever finished first
    for config in saved["configs"]:
        assert config["status"] == "finished" and 0 <= config["val_accuracy"] <= 1 and 0 <= config["test_accuracy"] <= 1
        assert config["estimator"].startswith(("Perceptron(", "GaussianNB("))
    assert saved["data"]["n_train"] == 200 and saved["seed"] == 42 and saved["wall_time_s"] > 0
    markdown = (tmp_path / "b" / "results.md").read_text()
    assert "| Perceptron | 0.782 |" in markdown and "max_iter=5" in markdown
    # Table 3 is Fashion-MNIST's: on other data no family is in or outside its band.
    assert all(row["within_band"] is None for row in saved["families"]) and "outside ±" not in markdown
    assert "the published accuracies are Fashion-MNIST's, shown for reference" in markdown
    for name in ("results.json", "results.md"):
        assert stat.S_IMODE((tmp_path / "b" / name).stat().st_mode) & 0o644 == 0o644


def test_resume_runs_only_what_is_not_finished(ray_cluster, tiny_data, tmp_path):
    out = tmp_path / "b"
    benchmark_classical(tiny_data, out, families=["Perceptron"])
    first = json.loads((out / "results.json").read_text())
    # An interruption: one configuration never finished, another failed.
    saved = json.loads((out / "results.json").read_text())
    saved["configs"][0] = {k: v for k, v in saved["configs"][0].items() if k not in ("val_accuracy", "test_accuracy")}
    saved["configs"][0]["status"] = "pending"
    saved["configs"][1]["status"] = "failed"
    (out / "results.json").write_text(json.dumps(saved))
    seen = []
    result = benchmark_classical(tiny_data, out, families=["Perceptron"],
                                 on_config=lambda rec, done, total: seen.append(rec["key"]))
    assert sorted(seen) == sorted(c["key"] for c in first["configs"][:2])
    assert result["configs"][2] == first["configs"][2]  # the finished one, untouched
    assert [c["test_accuracy"] for c in result["configs"]] == [c["test_accuracy"] for c in first["configs"]]
    assert len(result["sessions"]) == 2
    # Everything finished: nothing runs, and no Ray is needed for it.
    seen.clear()
    plans = []
    benchmark_classical(tiny_data, out, families=["Perceptron"], on_plan=plans.append,
                        on_config=lambda rec, done, total: seen.append(rec["key"]))
    assert seen == [] and plans[0]["to_run"] == 0 and plans[0]["finished_before"] == 3
    assert len(json.loads((out / "results.json").read_text())["sessions"]) == 2  # no empty session added


def test_a_quick_result_is_completed_by_a_full_run_without_refitting(ray_cluster, tiny_data, tmp_path):
    out = tmp_path / "b"
    quick = benchmark_classical(tiny_data, out, quick=True, families=["Perceptron"])
    assert [c["key"] for c in quick["configs"]] == ["Perceptron(penalty='l1')"]
    assert quick["families"][0]["ours_val_chosen"] is None and quick["selection"]["quick"]
    seen = []
    full = benchmark_classical(tiny_data, out, families=["Perceptron"],
                               on_config=lambda rec, done, total: seen.append(rec["key"]))
    assert len(seen) == 3  # the quick one still needs its validation fit
    assert full["configs"][0]["test_accuracy"] == quick["configs"][0]["test_accuracy"]
    assert full["families"][0]["ours_val_chosen"] is not None
    assert not full["selection"]["quick"] and not full["selection"]["mixed"]  # Perceptron's grid is whole now


def test_results_of_several_selections_say_what_each_family_had(ray_cluster, tiny_data, tmp_path):
    out = tmp_path / "b"
    benchmark_classical(tiny_data, out, quick=True, families=["Perceptron", "GaussianNB"])
    result = benchmark_classical(tiny_data, out, families=["PassiveAggressiveClassifier"])
    selection = result["selection"]
    assert selection["families"] == [r["family"] for r in result["families"]]
    assert set(selection["families"]) == {"Perceptron", "GaussianNB", "PassiveAggressiveClassifier"}
    assert selection["mixed"] and not selection["quick"]
    assert "the full grid of some families" in (out / "results.md").read_text()
    sessions = json.loads((out / "results.json").read_text())["sessions"]
    assert [s["selection"]["quick"] for s in sessions] == [True, False]


def test_results_of_other_data_or_seed_are_not_overwritten_without_the_flag(ray_cluster, tiny_data, tmp_path):
    out = tmp_path / "b"
    benchmark_classical(tiny_data, out, families=["GaussianNB"])
    before = (out / "results.json").read_bytes()
    with pytest.raises(FmnistError, match=r"results.json: holds results for another seed.*--overwrite"):
        benchmark_classical(tiny_data, out, families=["GaussianNB"], seed=1)
    tiny_data.x_train[0, 0, 0] ^= 1
    with pytest.raises(FmnistError, match="another data"):
        benchmark_classical(tiny_data, out, families=["GaussianNB"])
    assert (out / "results.json").read_bytes() == before
    result = benchmark_classical(tiny_data, out, families=["GaussianNB"], overwrite=True)
    assert result["data"]["fingerprint"] == classical.data_fingerprint(tiny_data) and len(result["sessions"]) == 1
    for text in ("{not json", "[1, 2]"):
        (out / "results.json").write_text(text)
        with pytest.raises(FmnistError, match="not a results file"):
            benchmark_classical(tiny_data, out, families=["GaussianNB"])


def test_data_fingerprint_sees_any_changed_pixel(tiny_data):
    before = classical.data_fingerprint(tiny_data)
    tiny_data.x_test[-1, -1, -1] ^= 1
    assert classical.data_fingerprint(tiny_data) != before


def test_estimated_cost_counts_the_validation_fit_and_the_cpus():
    configs = [Config("SVC", {"C": 1.0})] * 2
    both = classical.estimate(configs, ("val", "test"), 60_000, 2)
    test = classical.estimate(configs, ("test",), 60_000, 2)
    assert both["cpu_hours"] == pytest.approx(test["cpu_hours"] * 1.8)
    assert test["wall_hours"] == pytest.approx(test["cpu_hours"] / 2)
    assert np.isclose(classical.estimate(configs, ("test",), 60_000, 4)["wall_hours"], test["wall_hours"] / 2)


def test_an_interrupted_run_keeps_what_finished_and_resumes(ray_cluster, tiny_data, tmp_path):
    out = tmp_path / "b"

    def stop(rec, done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        benchmark_classical(tiny_data, out, families=["Perceptron"], on_config=stop)
    saved = json.loads((out / "results.json").read_text())
    finished = [c["key"] for c in saved["configs"] if c["status"] == "finished"]
    assert len(finished) == 1 and sum(c["status"] == "pending" for c in saved["configs"]) == 2
    seen = []
    benchmark_classical(tiny_data, out, families=["Perceptron"], on_config=lambda rec, d, t: seen.append(rec["key"]))
    assert len(seen) == 2 and finished[0] not in seen


@pytest.mark.integration
def test_the_fast_families_land_near_table_3_on_the_real_data(ray_cluster, real_data, tmp_path):
    # The linear models' 2017 defaults (5 epochs, no tolerance, PA as SGD) and the tree's, on the real data.
    result = benchmark_classical(real_data, tmp_path / "b", quick=True,
                                 families=["PassiveAggressiveClassifier", "SGDClassifier", "Perceptron",
                                           "ExtraTreeClassifier"])
    for row in result["families"]:
        assert row["within_band"], row


def test_results_md_is_what_results_json_reads_back_as(ray_cluster, tiny_data, tmp_path):
    """A configuration fitted now and one read back from the file spell their settings alike
    (MLPClassifier's hidden_layer_sizes: a tuple when fitted, a list in JSON)."""
    out = tmp_path / "b"
    benchmark_classical(tiny_data, out, quick=True, families=["MLPClassifier"])
    saved = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text() == classical.format_markdown(saved)
