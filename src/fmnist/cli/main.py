"""The ``fmnist`` command: parse, call one library function, print its result.

Every subcommand is a small function ``cmd_NAME(args) -> int``; the work itself lives in the
library so that everything the CLI does is also callable from Python. User mistakes
(``FmnistError``) print one line and exit 1; usage errors, argparse's included, print one line
``fmnist CMD: error: ... (see fmnist CMD --help)`` and exit 2; ``--debug`` shows the
traceback. Anything else is a bug and keeps its traceback.

Commands that write a user's output never replace finished work without ``--overwrite``; a
default output gets a fresh name (``runs/mlp-200-2``) and the command says where it wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from fmnist._text import shell
from fmnist.errors import FmnistError, UsageError

# Heavy imports (torch, sklearn, matplotlib) happen inside the commands: `fmnist --help` and
# `fmnist data` should not pay for them.


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line (not the whole usage) and exit status 2."""

    _argv: list[str] = []

    def parse_known_args(self, args=None, namespace=None):
        self._argv = [str(arg) for arg in (sys.argv[1:] if args is None else args)]
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        # argparse says "argument --epochs: invalid int value: 'abc'"; the option leads here.
        message = re.sub(r"^argument ", "", message)
        message = re.sub(r"invalid (\S+) value: ", r"invalid \1 value ", message)
        if message.endswith("required: COMMAND"):  # "fmnist --bogus": the option is the mistake
            unknown = [arg for arg in self._argv if arg.startswith("-") and arg not in ("--debug",)]
            if unknown:
                message = f"unrecognized arguments: {' '.join(unknown)}; a COMMAND is required"
        # argparse reads "--seeds -1,2" as an option with no value: say how to write the value.
        missing = re.fullmatch(r"(-\S+): expected one argument", message)
        if missing:
            for option, value in zip(self._argv, self._argv[1:]):
                if option == missing[1] and re.match(r"-[\d.]", value):
                    message += f" (a value starting with '-' is written {option}={value})"
                    break
        self.exit(2, f"{usage_line(self.prog, message)}\n")


def usage_line(prog: str, message: str) -> str:
    return f"{prog}: error: {message} (see {prog} --help)"


def _model_arg(text: str) -> str:
    """A MODEL argument: a preset name or a layer spec, checked while the command line is read."""
    from fmnist.models import get_preset

    try:
        get_preset(text)
    except FmnistError as exc:
        raise argparse.ArgumentTypeError(exc.cli_message) from None
    return text


# numpy's and scikit-learn's seeds are 32-bit; torch's and Ray's take any of these too.
SEED_MAX = 2 ** 32 - 1


def _seed(text: str) -> int:
    """``--seed S``: a whole number from 0 to 2**32 - 1 (argparse type)."""
    try:
        seed = int(text)
    except ValueError:
        seed = None
    if seed is None or not 0 <= seed <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {SEED_MAX}, got {text!r}")
    return seed


def _seed_list(text: str) -> list[int]:
    """``--seeds 1,2,3``: integers, comma-separated (the count and repeats are checked by compare)."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, e.g. 1,2,3, got {text!r}") \
            from None
    if not all(0 <= seed <= SEED_MAX for seed in seeds):
        raise argparse.ArgumentTypeError(f"expected seeds from 0 to {SEED_MAX}, got {text!r}")
    return seeds


def _interrupted(args, kept: str) -> int:
    """Ctrl-C during a long command: what is kept and how to go on, exit 130 (``--debug``: the
    traceback). Called from the ``except KeyboardInterrupt`` block, whose exception it re-raises."""
    if args.debug:
        raise  # noqa: PLE0704  (the KeyboardInterrupt being handled by the caller)
    print(f"\nfmnist: interrupted; {kept}", file=sys.stderr)
    return 130


def _or(value, default):
    """A flag's value, else its default: unlike ``value or default``, a given 0 stays 0 (and is refused)."""
    return default if value is None else value


def _add_overwrite_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace {what} already at --out (default: refuse, and leave it as it is)")


@contextlib.contextmanager
def _output(given: Path | None, default: Path) -> Iterator[Path]:
    """The output the user named, else a fresh one: ``default``, or ``default-2``... when taken.

    A fresh folder is claimed (created) at once, so two commands started together never share
    it, and removed again if the command ends with nothing in it.
    """
    if given is not None:
        yield given
        return
    from fmnist._files import next_free

    path = next_free(default)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):  # only an empty folder can be removed
            path.rmdir()


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", type=_path, default=None,
                   help="folder with the four MNIST-format files (default: $FMNIST_DATA, the user cache, "
                        "/usr/share/datasets/fashion-mnist, in that order)")
    g.add_argument("--fetch", action="store_true", help="download the data if it is not found (default: off)")
    g.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "custom"],
                   help="'custom' accepts any MNIST-format data: structural checks only, no Fashion-MNIST "
                        "checksums (default: fashion-mnist)")


def _load(args):
    from fmnist.data import load_dataset

    return load_dataset(args.data_dir, fetch=args.fetch, dataset=args.dataset)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (defaults: the model preset's, else Keras's)")
    g.add_argument("--epochs", type=int, help="passes over the training data (default: preset's, 5)")
    g.add_argument("--batch-size", type=int, help="images per step (default: preset's, 32 as Keras)")
    g.add_argument("--optimizer", help="rmsprop, sgd, adagrad, adam or adamw (default: preset's, rmsprop as Keras)")
    g.add_argument("--lr", type=float, help="learning rate (default: preset's, the optimizer's Keras default)")
    g.add_argument("--momentum", type=float, help="momentum for sgd/rmsprop (default: 0)")
    g.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum (sgd; default: off)")
    g.add_argument("--weight-decay", type=float,
                   help="weight decay, decoupled as Keras 3 applies it: p -= lr*wd*p (default: 0; adamw: 0.004)")
    g.add_argument("--seed", type=_seed, help="seed for weights and shuffling; a scikit-learn model's random_state "
                                            "(default: preset's, 42)")
    g.add_argument("--device", help="auto, cpu or cuda (default: auto = cuda when present)")
    g.add_argument("--threads", type=int, help="CPU threads to train with, at most the CPUs this process may use; "
                                               "small dense steps use one of them (default: $OMP_NUM_THREADS, else "
                                               "those CPUs)")
    g.add_argument("--schedule", help="learning-rate schedule: step (per epoch), cosine (per step, to 0), "
                                      "onecycle (per step; --lr is the peak) or none (default: preset's, none)")
    g.add_argument("--lr-step-epochs", type=int, help="step schedule: epochs between drops (default: 10)")
    g.add_argument("--lr-gamma", type=float, help="step schedule: factor at each drop (default: 0.1)")
    g.add_argument("--pct-start", type=float, help="onecycle: fraction of steps warming up (default: 0.3)")
    g.add_argument("--patience", type=int, help="early stopping: stop after N epochs without a better val_loss "
                                                "and restore the best epoch's weights; 0: off (default: preset's, off)")
    g.add_argument("--shift", type=int, help="augmentation: random shifts of up to N pixels (default: preset's, 0)")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="augmentation: random left-right mirroring (default: preset's, off)")
    g.add_argument("--erase", type=float, help="augmentation: probability of erasing a random rectangle "
                                               "(default: preset's, 0)")
    g.add_argument("--label-smoothing", type=float, help="smooth the targets towards uniform by this much; logged "
                                                         "losses stay plain cross-entropy (default: preset's, 0)")
    g.add_argument("--precision", choices=["auto", "float32", "bfloat16"],
                   help="training arithmetic: float32, or bfloat16 mixed precision (convolutions and matrix "
                        "products in bfloat16, weights and updates in float32; faster with AMX and on CUDA, and for "
                        "wide convolutions with AVX512-BF16; small ones, as the book's CNN, may be faster in float32 "
                        "there), or auto: bfloat16 where the device has it in hardware, float32 elsewhere "
                        "(default: preset's, float32)")


_TRAIN_KEYS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "seed", "device",
               "schedule", "lr_step_epochs", "lr_gamma", "pct_start", "patience", "shift", "flip", "erase",
               "label_smoothing", "precision", "threads")


def _train_overrides(args) -> dict:
    return {k: getattr(args, k) for k in _TRAIN_KEYS}


def cmd_data(args) -> int:
    from fmnist.data import dataset_summary

    summary = dataset_summary(_load(args))  # with --fetch, downloads what is not found, once
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"found:    {summary['source']} ({summary['origin']}{', fast cache' if summary['from_cache'] else ''})")
    print("verified: " + ("yes: the SHA-256 of every file matches Fashion-MNIST" if summary["verified"]
                          else "structure only (custom dataset: no checksums)"))
    names = summary["class_names"]
    for split in ("train", "test"):
        info = summary[split]
        print(f"{split:<5}  images {tuple(info['images_shape'])} {info['dtype']}, labels {tuple(info['labels_shape'])}")
        print(f"       np.unique(y_{split}, return_counts=True): classes {info['classes']}, counts {info['counts']}")
    print("first ten training labels: " + ", ".join(
        f"{y} ({names[y]})" if y < len(names) else str(y) for y in summary["first_train_labels"]))
    return 0


def cmd_explore(args) -> int:
    from fmnist.reporting.explore import explore, format_explore

    ds = _load(args)
    with _output(args.out, Path("explore")) as out:
        result = explore(ds.x_train, ds.y_train, ds.x_test, ds.y_test, out, class_names=ds.class_names,
                         overwrite=args.overwrite)
    print(format_explore(result))
    return 0


def cmd_models(args) -> int:
    from fmnist.models import count_parameters, get_preset, list_models

    if args.name:
        from fmnist.models.describe import describe

        print(describe(get_preset(args.name)))
        return 0
    for name in list_models():
        p = get_preset(name)
        params = f"{count_parameters(p.spec):>9,}" if p.spec else f"{'linear':>9}"
        print(f"{name:<16}{params}  {p.description}")
    return 0


def cmd_train(args) -> int:
    from fmnist._threads import check_threads
    from fmnist.models import get_preset
    from fmnist.runs import check_no_holdout, check_run_dir, resolve_config, resume_run, run_name, train_run
    from fmnist.training import ProgressLogger

    callbacks = [] if args.quiet else [ProgressLogger()]
    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k, v in _train_overrides(args).items() if v is not None]
        given += [name for name, v in (("MODEL", args.model), ("--out", args.out), ("--checkpoint", args.checkpoint),
                                       ("--overwrite", args.overwrite), ("--exclude", args.exclude),
                                       ("--no-holdout", not args.holdout)) if v]
        if given:
            raise UsageError(f"--resume continues a run with its own model and config; drop {', '.join(given)}")
        return _train_or_interrupted(args.resume, lambda: resume_run(args.resume, _load(args), callbacks=callbacks),
                                     args.debug, _data_flags(args))
    if not args.model:
        raise UsageError("fmnist train needs a MODEL (see 'fmnist models') or --resume RUN_DIR")
    preset = get_preset(args.model)
    config = resolve_config(preset, **_train_overrides(args))
    if args.out is not None:  # refused now, not after the data has loaded
        check_run_dir(args.out, overwrite=args.overwrite)
    if args.threads is not None:  # training would hold it to the CPUs; a typo is refused, not trained on
        check_threads(args.threads)
    if not args.holdout:
        check_no_holdout(config, args.checkpoint)
    if preset.family == "torch":
        from fmnist.training.loop import bfloat16_native, resolve_device

        device = resolve_device(config.device)  # refused now, not after the data has loaded
        if config.precision == "bfloat16" and not bfloat16_native(device):
            print("fmnist: note: this device has no bfloat16 arithmetic in hardware, so --precision bfloat16 is "
                  "emulated and slower than float32 here (--precision float32 trains in float32)", file=sys.stderr)
    data = _load(args)
    exclude = None
    if args.exclude:
        from fmnist.auditing import load_exclusion

        exclude = load_exclusion(args.exclude, data, "train")
        print(f"excluding {len(exclude.indices):,} training images flagged in {exclude.path} "
              f"({', '.join(exclude.kinds)})")
    with _output(args.out, Path("runs") / run_name(args.model)) as out:
        return _train_or_interrupted(out, lambda: train_run(
            args.model, data, config=config, out_dir=out, callbacks=callbacks, checkpoint_best=args.checkpoint,
            overwrite=args.overwrite, exclude=exclude, holdout=args.holdout), args.debug, _data_flags(args))


def _ray_flags(args) -> str:
    """The Ray options of this command line, as a resume must repeat them to run where it ran
    (a resume without them would continue on this machine, not on the cluster)."""
    flags = f" --address {shell(args.address)}" if getattr(args, "address", None) else ""
    if getattr(args, "ray", False) and not flags:
        flags = " --ray"
    if getattr(args, "cpus_per_run", None) is not None:  # a sweep's resume keeps its own per-trial CPUs
        flags += f" --cpus-per-run {args.cpus_per_run}"
    return flags


def _data_flags(args) -> str:
    """The data options of this command line, as a resume must repeat them (it checks the data)."""
    flags = f" --dataset {args.dataset}" if args.dataset != "fashion-mnist" else ""
    if args.data_dir is not None:
        flags += f" --data-dir {shell(args.data_dir)}"
    return flags


def _train_or_interrupted(out: Path, train, debug: bool, data_flags: str = "") -> int:
    """Run ``train()`` and print its scores; after Ctrl-C, say how to continue (exit 130)."""
    from fmnist.runs import CHECKPOINT

    try:
        result = train()
    except KeyboardInterrupt:
        if debug:
            raise
        where = Path(out) / CHECKPOINT
        if (Path(out) / "run.json").exists():  # --overwrite: the run it was replacing is back
            print(f"\nfmnist: interrupted; {shell(out)} holds the earlier run as it was (the replacement is "
                  "discarded)", file=sys.stderr)
        else:
            from fmnist._files import replaced_note

            # A replacement that a killed train --overwrite began: the run it replaces still waits aside.
            print(f"\nfmnist: interrupted; the last finished epoch is saved in {where}; continue with: "
                  f"fmnist train --resume {shell(out)}{data_flags}{replaced_note(out)}" if where.exists() else
                  "\nfmnist: interrupted before the first epoch ended; nothing saved to resume", file=sys.stderr)
        return 130
    m = result.metrics
    if "stopped" in m:
        print(m["stopped"])
    if "val" in m:
        print(f"val_loss: {m['val']['loss']:.4f} - val_accuracy: {m['val']['accuracy']:.4f} "
              f"(test, reported apart: {m['test']['accuracy']:.4f}) - {m['train_time_s']:.1f}s")
    else:
        print(f"test_loss: {m['test']['loss']:.4f} - test_accuracy: {m['test']['accuracy']:.4f} (trained on all "
              f"training images, no validation split) - {m['train_time_s']:.1f}s")
    print(f"saved run to {shell(result.run_dir)}")
    return 0


def cmd_evaluate(args) -> int:
    from fmnist.runs import evaluate_run

    result = evaluate_run(args.run_dir, _load(args), split=args.split, exclude=args.exclude)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    other = result.get("other_data")
    if other:
        print(f"note: {args.split} set of {other['dataset']} data from {other['source']}, not the data the run "
              f"trained on ({other['trained_on']['dataset']} from {other['trained_on']['source']}); to score it on "
              "its own, give that --data-dir", file=sys.stderr)
    print(f"{result['model']} on {args.split} ({result['n']} images): loss: {result['loss']:.4f} - "
          f"accuracy: {result['accuracy']:.4f}")
    if "cleaned" in result:
        c = result["cleaned"]
        print(f"{result['model']} on {args.split} without the {c['excluded']:,} flagged ({c['n']} images): "
              f"loss: {c['loss']:.4f} - accuracy: {c['accuracy']:.4f}")
    return 0


def _audit_epochs(args) -> int | None:
    """--epochs, else the audit's 15 for a network; a scikit-learn model trains without epochs."""
    from fmnist.auditing.core import EPOCHS
    from fmnist.models import get_preset

    if args.epochs is not None:
        return args.epochs
    return EPOCHS if get_preset(args.model).family == "torch" else None


def cmd_audit(args) -> int:
    import time

    from fmnist._files import check_free
    from fmnist.auditing import AUDIT_FILE, audit
    from fmnist.auditing.core import output_files

    if args.out is not None:  # refused now, not after the data has loaded
        check_free(output_files(args.out), overwrite=args.overwrite, what="an audit")
    start = time.perf_counter()  # the command's time: loading, the audit and its report
    data = _load(args)
    with _output(args.out, Path("audit")) as out:
        result = audit(data, model=args.model, folds=args.folds, epochs=_audit_epochs(args), seed=args.seed,
                       out_dir=out, overwrite=args.overwrite)
    s = result["summary"]
    ex, nd = s["exact_duplicates"], s["near_duplicates"]
    # Pairs, as audit.json lists them: three copies of one image are three pairs.
    print(f"exact duplicate pairs: {ex['train']} within train, {ex['test']} within test, {ex['train-test']} "
          f"train/test ({ex['with_different_labels']} with different labels)")
    for space in nd:
        print(f"near duplicate pairs ({space}, threshold {s['thresholds'][space]:.4f}): {nd[space]['train']} within "
              f"train, {nd[space]['train-test']} train/test leaks")
    print(f"likely label errors: {s['label_issues']['train']} in train, {s['label_issues']['test']} in test "
          f"(out-of-fold accuracy {s['accuracy']['train_out_of_fold']:.4f})")
    print(f"outliers: {s['outliers']['train']} in train, {s['outliers']['test']} in test")
    for note in s["notes"]:
        print(f"note: {note}")
    print(f"wrote {shell(out / AUDIT_FILE)} and {shell(out / 'audit.html')} in {time.perf_counter() - start:.0f} s")
    return 0


def cmd_reproduce(args) -> int:
    from fmnist._files import holds_work
    from fmnist.study import format_table, reproduce
    from fmnist.training import ProgressLogger

    data = _load(args)
    print(f"data: {data.source} ({'verified' if data.verified else 'structure checked'})", flush=True)

    started = []  # the experiments' run folders, from the first one's start on
    earlier = False  # whether --overwrite found a study (or its runs) to replace

    def on_start(exp):
        started.append(out / "runs" / exp.model)
        print(f"\n== {exp.name} [{exp.model}]: {exp.metric}, tutorial {exp.tutorial}", flush=True)

    out = args.out
    try:
        with _output(args.out, Path("results")) as out:
            earlier = args.overwrite and holds_work(out)
            result = reproduce(data, out, on_start=on_start, callbacks_for=lambda exp: [ProgressLogger()],
                               overwrite=args.overwrite)
    except KeyboardInterrupt:
        if earlier:  # reproduce put the earlier study back
            return _interrupted(args, f"{out} holds the earlier study as it was (the new one is discarded)")
        # Only this study's own run folders count: before its first started, an --out folder
        # still holds what it held (an earlier study's runs included).
        written = [run for run in started if holds_work(run)]
        if not written:
            return _interrupted(args, "nothing was written")
        finished = [run.name for run in written if (run / "run.json").exists()]
        kept = (f"the runs it finished are in {out / 'runs'} ({', '.join(finished)})" if finished else
                f"no run finished ({written[-1]} holds the unfinished one)")
        # The study is a minute or two end to end: it starts again rather than resuming.
        return _interrupted(args, f"{kept}; the study starts again with: fmnist reproduce --out {shell(out)} "
                                  f"--overwrite{_data_flags(args)}")
    print("\n" + format_table(result))
    print(f"\nwritten: {shell(out / 'results.md')}, {shell(out / 'results.json')}, runs in {shell(out / 'runs')}")
    return 0


def cmd_report(args) -> int:
    from fmnist.reporting.report import build_report

    data = _load(args)
    with _output(args.out, Path("report")) as out:
        try:
            path = build_report(args.run_dirs, out, data, embedding=args.embedding, split=args.split,
                                overwrite=args.overwrite)
        except KeyboardInterrupt:
            done = Path(out).is_dir() and any(Path(out).iterdir())
            return _interrupted(args, f"the report in {out} is unfinished (its figures so far, no report.html); "
                                      f"draw it again with: fmnist report {' '.join(map(shell, args.run_dirs))} "
                                      f"--out {shell(out)} --overwrite{_data_flags(args)}"
                                if done else "nothing written")
    print(f"wrote {shell(path)} (figures beside it in {shell(path.parent)})")
    return 0


def cmd_predict(args) -> int:
    from fmnist._text import plural
    from fmnist.inference.predict import (
        check_outputs,
        format_predictions,
        predict_files,
        save_plots,
        save_preprocessed,
    )

    if args.plot_limit < 1:  # before the predictions, which may take a while
        raise UsageError(f"--plot-limit must be at least 1, got {args.plot_limit}")
    result = predict_files(args.model, args.images, top_k=args.top_k)
    check_outputs(result.predictions, preprocessed=args.save_preprocessed or None, plot=args.plot or None,
                  plot_limit=args.plot_limit, overwrite=args.overwrite)
    for failure in result.failures:
        print(f"fmnist: error: {failure}", file=sys.stderr)
    # With --json, stdout carries only the JSON: where files went is said on stderr.
    log = sys.stderr if args.json else sys.stdout
    if args.save_preprocessed:
        written = save_preprocessed(result.predictions, args.save_preprocessed, overwrite=args.overwrite)
        print(f"wrote {plural(len(written), 'preprocessed 28x28 image')} to {shell(args.save_preprocessed)}", file=log)
    if args.plot:
        written = save_plots(result.predictions, args.plot, result.class_names, limit=args.plot_limit,
                             overwrite=args.overwrite)
        print(f"wrote {plural(len(written), 'probability chart')} to {shell(args.plot)}", file=log)
        skipped = len(result.predictions) - len(written)
        if skipped:
            print(f"fmnist: charted the first {len(written):,} of {len(result.predictions):,} images in {args.plot}; "
                  f"skipped {skipped:,} (raise --plot-limit to chart more)", file=sys.stderr)
    if args.json:  # the API's answer: a script reads which files failed, and why, from stdout too
        print(json.dumps({"predictions": [p.to_dict() for p in result.predictions],
                          "errors": [{"file": f.file, "error": f.reason} for f in result.failures]}, indent=2))
    elif result.predictions:
        print(format_predictions(result.predictions))
    return 1 if result.failures else 0


def cmd_serve(args) -> int:
    from fmnist.serve import serve
    from fmnist.serve.app import Settings

    settings = Settings(max_upload=args.max_upload, top_k=args.top_k, cors_origins=tuple(args.cors_origin))
    try:
        serve(args.model, host=args.host, port=args.port, workers=args.workers, settings=settings,
              on_ready=lambda url: print(f"fmnist: serving {args.model} at {url} (Ctrl-C stops)", flush=True),
              on_network=lambda urls: print(f"fmnist: from a phone or another machine on this network: "
                                            f"{', '.join(urls)}", flush=True))
    except KeyboardInterrupt:
        # Ctrl-C is how a server is meant to stop: uvicorn has already closed every connection.
        pass
    print("fmnist: server stopped", file=sys.stderr)
    return 0


def _path(text: str) -> Path:
    """A file or folder argument: an empty one (``--out ""``, an unset shell variable) would be
    read as the current folder, so it is refused (argparse type)."""
    return Path(_path_text(text))


def _path_text(text: str) -> str:
    """A path with a suffix of its own (``--exclude AUDIT:KINDS``), refused when empty as :func:`_path`
    does: an unset ``$AUDIT`` would otherwise train on every image while looking like a cleaned run."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; name a file or folder")
    return text


def _byte_size(text: str) -> int:
    """'10MB', '500k', '2MiB' or '1000000' as a number of bytes, 1 byte to 1 GiB (argparse type)."""
    import re

    from fmnist.serve.limits import MAX_UPLOAD_LIMIT as largest  # held in memory: see there why 1 GiB

    shown = text if len(text) <= 24 else f"{text[:20]}...({len(text)} characters)"
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)(i?)b?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size {shown!r}: use bytes or a unit, e.g. 10MB, 500kB, 2MiB")
    base = 1024 if m.group(3) else 1000
    # Compared before int(): digits past a float's range make it inf, which int() cannot take.
    value = float(m.group(1)) * base ** " kmg".index(m.group(2) or " ")
    if value > largest:
        raise argparse.ArgumentTypeError(f"size {shown!r} is too large: uploads are held in memory, "
                                         f"so at most 1GiB ({largest:,} bytes) per request")
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid size {shown!r}: must be at least 1 byte")
    return int(value)


def cmd_export(args) -> int:
    if not args.onnx:
        raise UsageError("export: choose a format: --onnx (the only one so far)")
    from fmnist.export import export_run, interface

    path = export_run(args.run_dir, args.out, overwrite=args.overwrite)
    described = interface(path)
    print(f"wrote {shell(path)}: input {described['input']}; outputs {described['outputs']}")
    return 0


def cmd_compare(args) -> int:
    from fmnist.compare import compare, format_table, resume_compare
    from fmnist.training import ProgressLogger

    on_ray = args.ray or args.address is not None
    if args.cpus_per_run is not None and not on_ray:
        raise UsageError("--cpus-per-run sets each run's CPUs on Ray; add --ray (or --address), or leave it out")
    if args.resume:
        given = [name for name, v in (("MODEL", args.models), ("--epochs", args.epochs), ("--seed", args.seed),
                                      ("--seeds", args.seeds), ("--out", args.out)) if v not in (None, [])]
        given += ["--overwrite"] if args.overwrite else []
        if given:
            raise UsageError(f"--resume finishes a comparison as it was started; drop {', '.join(given)}")
    elif not args.models:
        raise UsageError("fmnist compare needs one or more MODELs (see 'fmnist models') or --resume DIR")
    data = _load(args)
    # With --json, stdout carries only the JSON: progress goes to stderr.
    log = sys.stderr if args.json else sys.stdout

    def finished(i, total, run, result):
        # On Ray the runs train in workers, their epochs unseen here: one line per finished run
        # (and resuming, one per run finished before).
        m = result.metrics
        n = len(result.history)
        epochs = f" - {n} epoch{'s' if n != 1 else ''}" if n else ""
        print(f"[{i}/{total}] {run}{epochs} - {m['train_time_s']:.1f}s - val_loss: {m['val']['loss']:.4f} - "
              f"val_accuracy: {m['val']['accuracy']:.4f}", file=log, flush=True)

    options = dict(ray=args.ray, address=args.address, cpus_per_run=_or(args.cpus_per_run, 1),
                   on_finish=finished if on_ray or args.resume else None,
                   on_start=lambda i, total, run: print(f"\n== [{i}/{total}] {run}", file=log, flush=True),
                   callbacks_for=lambda name: [] if args.quiet else [ProgressLogger(stream=log)])
    out, earlier = args.resume, False  # earlier: whether --overwrite found a comparison to replace
    try:
        if args.resume:
            board = resume_compare(args.resume, data, **options)
        else:
            with _output(args.out, Path("compare")) as out:
                from fmnist._files import holds_work

                earlier = args.overwrite and holds_work(out)
                board = compare(args.models, data, epochs=args.epochs, seed=args.seed, seeds=args.seeds,
                                out_dir=out, overwrite=args.overwrite, **options)
    except KeyboardInterrupt:
        if earlier:  # compare put the earlier comparison back
            return _interrupted(args, f"{out} holds the earlier comparison as it was (the new one is discarded)")
        return _interrupted(args, f"finished runs are kept in {out}, and a network interrupted mid-run has its "
                                  f"last finished epoch there; "
                                  f"continue with: fmnist compare --resume {shell(out)}{_ray_flags(args)}"
                                  f"{_data_flags(args)}")
    if args.json:
        print(json.dumps(board, indent=2))
    else:
        print("\n" + format_table(board))
    print(f"\nwritten: {shell(out / 'leaderboard.md')}, {shell(out / 'leaderboard.json')}, "
          f"runs in {shell(out / 'runs')}", file=log)
    return 0


def cmd_sweep(args) -> int:
    from fmnist.errors import UsageError
    from fmnist.tuning.sweep import (
        LEADERBOARD_FILE,
        LEADERBOARD_MD,
        default_out,
        format_table,
        format_trial,
        plan_sweep,
        resume_sweep,
        sweep,
    )

    def on_start(cluster, trials):
        where = "a local Ray" if cluster.local else "the Ray cluster"
        print(f"{trials} trial{'s' if trials != 1 else ''} on {where} at {cluster.address} ({cluster.nodes} "
              f"node{'s' if cluster.nodes != 1 else ''}, {cluster.cpus} CPUs); Ray's logs: {cluster.log_dir}",
              flush=True)

    def on_trial(row):
        print(format_trial(row), flush=True)

    if args.resume:
        given = [name for name, v in (("MODEL", args.model), ("--param", args.param), ("--samples", args.samples),
                                      ("--epochs", args.epochs), ("--seed", args.seed), ("--seeds", args.seeds),
                                      ("--out", args.out),
                                      ("--cpus-per-trial", args.cpus_per_trial),
                                      ("--gpus-per-trial", args.gpus_per_trial))
                 if v is not None]
        given += [f"--{k}" for k in ("scheduler", "metric") if getattr(args, k) is not None]
        if given:
            raise UsageError(f"--resume finishes a sweep as it was started; drop {', '.join(given)}")
        out = args.resume
        run = lambda data, out: resume_sweep(out, data, address=args.address, on_trial=on_trial,  # noqa: E731
                                        on_start=on_start, progress=sys.stderr)
    else:
        if not args.model:
            raise UsageError("fmnist sweep needs a MODEL (see 'fmnist models') or --resume DIR")
        # Every flag is checked before the data loads and Ray starts.
        plan_sweep(args.model, args.param or (), samples=args.samples, scheduler=args.scheduler or "fifo",
                   metric=args.metric or "val_accuracy", epochs=args.epochs,
                   cpus_per_trial=_or(args.cpus_per_trial, 1), seed=args.seed, seeds=args.seeds,
                   gpus_per_trial=_or(args.gpus_per_trial, 0))
        out = args.out
        run = lambda data, out: sweep(args.model, args.param or (), data, samples=args.samples,  # noqa: E731
                                 scheduler=args.scheduler or "fifo", metric=args.metric or "val_accuracy",
                                 epochs=args.epochs, cpus_per_trial=_or(args.cpus_per_trial, 1),
                                 address=args.address, out_dir=out, seed=args.seed, seeds=args.seeds,
                                 gpus_per_trial=_or(args.gpus_per_trial, 0), on_trial=on_trial,
                                 on_start=on_start, progress=sys.stderr)
    data = _load(args)
    try:
        with _output(out, default_out(args.model) if not args.resume else None) as out:
            board = run(data, out)
    except KeyboardInterrupt:
        from fmnist.tuning.sweep import SWEEP_FILE, TUNE_DIR

        if out is None or not (Path(out) / SWEEP_FILE).exists() or not (Path(out) / TUNE_DIR).is_dir():
            return _interrupted(args, "before the sweep started: nothing to resume; start it again")
        return _interrupted(args, f"finished trials are kept in {out}; continue with: fmnist sweep --resume "
                                  f"{shell(out)}{_ray_flags(args)}{_data_flags(args)}")
    print("\n" + format_table(board))
    print(f"\nwritten: {shell(Path(out) / LEADERBOARD_MD)}, {shell(Path(out) / LEADERBOARD_FILE)}, "
          f"runs in {shell(Path(out) / 'trials')}")
    if board.get("best") is None:  # a script must not take a sweep with no result for a success
        print(f"fmnist: error: no trial finished (each one's error is in {shell(Path(out) / LEADERBOARD_MD)})",
              file=sys.stderr)
        return 1
    return 0


def _hours(hours: float) -> str:
    return f"{hours:,.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


def cmd_benchmark(args) -> int:
    from tqdm import tqdm

    from fmnist.benchmark import benchmark_classical, format_table
    from fmnist.benchmark.classical import outside_notes
    from fmnist.errors import UsageError

    if args.cpus_per_task < 1:
        raise UsageError(f"--cpus-per-task must be at least 1, got {args.cpus_per_task}")
    families = [f.strip() for f in args.families.split(",") if f.strip()] if args.families is not None else None
    data = _load(args)
    bar = None

    def on_plan(plan):
        nonlocal bar
        c = plan["cluster"]
        if c:
            print(f"Ray: {c['nodes']} node(s), {c['cpus']} CPUs at {c['address']}; its logs: {plan['log_dir']}")
        if plan["left_out"]:
            print(f"--quick leaves out {', '.join(plan['left_out'])}: hours per configuration on a small machine "
                  "(or no published result); run them with --families on a cluster (--address)")
        print(f"{plan['configs']} configurations of {len(plan['families'])} families, {plan['to_run']} to run"
              + (f" ({plan['finished_before']} finished before, kept)" if plan["finished_before"] else "")
              + (f"; estimated cost (rough): {_hours(plan['cpu_hours'])} of CPU, about {_hours(plan['wall_hours'])} "
                 f"on these {c['cpus']} CPUs" if c else "")
              + ("" if args.quick else "; the full grid is meant for a cluster: --address"), flush=True)
        # The bar on a terminal only: redirected, its redraws would fill the log; the lines stay.
        bar = tqdm(total=plan["to_run"], unit="config", file=sys.stderr, dynamic_ncols=True,
                   disable=not sys.stderr.isatty())

    def on_config(record, done, total):
        scores = " - ".join(f"{name}: {record[f'{name}_accuracy']:.4f}" for name in ("val", "test")
                            if f"{name}_accuracy" in record)
        seconds = record.get("val_time_s", 0.0) + record.get("test_time_s", 0.0)
        line = (f"[{done}/{total}] {record['key']} - {seconds:.0f}s - {scores}" if record["status"] == "finished"
                else f"[{done}/{total}] {record['key']} - {record['status'].replace('_', ' ')}: {record['error']}")
        bar.write(line, file=sys.stdout)
        bar.update()

    try:
        result = benchmark_classical(data, args.out, quick=args.quick, families=families, address=args.address,
                                     cpus_per_task=args.cpus_per_task, num_cpus=args.cpus, seed=args.seed,
                                     overwrite=args.overwrite, on_plan=on_plan, on_config=on_config)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"\nfmnist: interrupted; finished configurations are kept in {args.out / 'results.json'}; "
              "run the same command again to continue", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    print("\n" + format_table(result))
    for note in outside_notes(result):
        print("\n" + note.replace("**", ""))
    print(f"\nwall time {result['wall_time_s']:.0f} s; written: {shell(args.out / 'results.md')}, "
          f"{shell(args.out / 'results.json')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fmnist", description="Train, compare, inspect and use image classifiers on Fashion-MNIST "
                                   "and any MNIST-format data.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors (default: off)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("data", help="find, verify and describe the dataset")
    _add_data_args(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON (default: text)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("explore", help="what the study prints about the data, plus figures")
    _add_data_args(p)
    p.add_argument("--out", type=_path, help="folder for the PNGs (default: ./explore, or explore-2... when taken)")
    _add_overwrite_arg(p, "the figures of an earlier exploration")
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("models", help="list the model presets, or show one as a Keras-style summary")
    p.add_argument("name", nargs="?", type=_model_arg, metavar="MODEL",
                   help="a preset name or a layer spec (default: list all)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train", help="train a model and write a run folder")
    p.add_argument("model", nargs="?", type=_model_arg, metavar="MODEL",
                   help="a preset name (see 'fmnist models') or a layer spec such as 'flatten,dense:200:relu,dense:10'")
    _add_train_args(p)
    _add_data_args(p)
    p.add_argument("--out", type=_path, help="run folder to write (default: ./runs/MODEL, or MODEL-2... when taken; "
                                            "a layer spec is named after its layers)")
    _add_overwrite_arg(p, "a run (finished or interrupted) or other files")
    p.add_argument("--checkpoint", action="store_true",
                   help="also keep best.safetensors, the state at the best val_loss (default: off; "
                        "checkpoint.safetensors, the last epoch's, is always written)")
    p.add_argument("--resume", type=_path, metavar="RUN_DIR",
                   help="continue an interrupted run from its checkpoint, with its own model and config")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines (default: off)")
    p.add_argument("--exclude", type=_path_text, metavar="AUDIT[:KINDS]",
                   help="leave out the training images an audit flagged: DIR/audit.json, optionally with "
                        ":kinds from exact_duplicates,near_duplicates,label_issues,outliers (default: none)")
    p.add_argument("--no-holdout", dest="holdout", action="store_false",
                   help="train on all the training images (60,000), with no validation split: the final fit of a "
                        "recipe chosen on the split; only the test set is scored (default: hold out the study's "
                        "12,000)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="reload a run folder and score it")
    p.add_argument("run_dir", type=_path, help="a folder written by 'fmnist train'")
    p.add_argument("--split", default="val", choices=["val", "test", "train"],
                   help="val: the images the run held out (12,000 of Fashion-MNIST's); test: t10k; train: the "
                        "rest of the training images (default: val)")
    p.add_argument("--json", action="store_true", help="print JSON (default: text)")
    p.add_argument("--exclude", type=_path_text, metavar="AUDIT[:KINDS]",
                   help="also score the split without the images an audit flagged, beside the full split: "
                        "DIR/audit.json[:kinds] as for 'fmnist train --exclude' (default: none)")
    _add_data_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("audit", help="find duplicates, train/test leaks, likely label errors and outliers")
    p.add_argument("--model", default="mlp-200", type=_model_arg,
                   help="preset or layer spec trained on each fold for out-of-fold probabilities and the "
                        "embedding (default: mlp-200)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per fold model (default: 15; a scikit-learn model has none)")
    p.add_argument("--seed", type=_seed, default=42, help="seed for the folds and the models (default: 42)")
    p.add_argument("--out", type=_path,
                   help="folder for audit.json and audit.html (default: ./audit, or audit-2... when taken)")
    _add_overwrite_arg(p, "an earlier audit")
    _add_data_args(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("reproduce", help="the tutorial's four experiments, our numbers beside its")
    _add_data_args(p)
    p.add_argument("--out", type=_path,
                   help="folder for results.md, results.json and the run folders (default: ./results, or "
                        "results-2... when taken)")
    _add_overwrite_arg(p, "an earlier study's results and runs")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("report", help="one self-contained HTML page of figures for one or more runs")
    p.add_argument("run_dirs", nargs="+", type=_path, metavar="RUN_DIR",
                   help="folders written by 'fmnist train', or one folder of 'fmnist compare' or 'fmnist sweep'")
    p.add_argument("--out", type=_path,
                   help="folder for report.html and its PNGs (default: ./report, or report-2... when taken)")
    _add_overwrite_arg(p, "an earlier report")
    p.add_argument("--embedding", default="pca", choices=["pca", "tsne", "umap"],
                   help="2-D projection of the penultimate layer; umap needs umap-learn (default: pca)")
    p.add_argument("--split", default="test", choices=["test", "val"],
                   help="images for the confusion matrix, mistakes and embedding (default: test)")
    _add_data_args(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("predict", help="classify your own images (photos, 28x28 images, .npy or IDX batches)")
    p.add_argument("model", type=_path, metavar="RUN_DIR_OR_MODEL", help="a run folder or a saved model folder")
    p.add_argument("images", nargs="+", type=_path, metavar="IMAGE",
                   help="PNG/JPEG/WebP/BMP/GIF files, .npy arrays or IDX files; a folder: the images in it")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default: 3)")
    p.add_argument("--json", action="store_true",
                   help='print JSON: {"predictions": [one object per image], "errors": [...]} (default: text)')
    p.add_argument("--save-preprocessed", type=_path, metavar="DIR",
                   help="write each image as the model saw it, 28x28 PNG (default: off)")
    p.add_argument("--plot", type=_path, metavar="DIR",
                   help="write a probability bar chart per image, up to --plot-limit (default: off)")
    p.add_argument("--plot-limit", type=int, default=100, metavar="N",
                   help="--plot: chart only the first N images; the rest are counted on stderr (default: 100)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace images of the same names in the --plot and --save-preprocessed folders "
                        "(default: refuse, and write nothing)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="a prediction web page and JSON API for a model, until Ctrl-C")
    p.add_argument("model", type=_path, metavar="RUN_DIR_OR_MODEL", help="a run folder or a saved model folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 (or :: for IPv6 too) lets other machines (a phone) connect, "
                        "at the addresses printed (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (default: 8000)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes, each with its own copy of the model (default: 1)")
    p.add_argument("--max-upload", type=_byte_size, default="10MB", metavar="SIZE",
                   help="largest request body, all its files together, e.g. 10MB, 500kB (default: 10MB)")
    p.add_argument("--top-k", type=int, default=3, help="classes per image unless a request asks (default: 3)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let pages from ORIGIN, scheme://host[:port] as a browser sends it (e.g. https://example.org, "
                        "no path), call the API; repeat for more (default: none, CORS off)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="write a run's model in a format other tools run (ONNX)")
    p.add_argument("run_dir", type=_path, help="a run folder written by 'fmnist train' (or a model folder)")
    p.add_argument("--onnx", action="store_true", help="write ONNX, checked against onnxruntime (default: off)")
    p.add_argument("--out", type=_path, help="file to write (default: RUN_DIR/model.onnx, or model-2.onnx... when "
                                            "taken)")
    _add_overwrite_arg(p, "the file")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compare", help="train several models on the same split and seed; print a leaderboard")
    p.add_argument("models", nargs="*", type=_model_arg, metavar="MODEL",
                   help="preset names or layer specs (see 'fmnist models')")
    p.add_argument("--epochs", type=int, help="epochs for every torch model (default: each preset's)")
    p.add_argument("--seed", type=_seed, help="seed for every model: torch weights and shuffling, scikit-learn "
                                            "random_state (default: each preset's, 42)")
    p.add_argument("--seeds", type=_seed_list, metavar="S,S,...",
                   help="train every model once per seed (two or more, e.g. 1,2,3) and rank by the mean; each gap "
                        "to the leader is paired by seed, with its standard error (default: one run per model)")
    p.add_argument("--out", type=_path,
                   help="folder for leaderboard.md/.json and runs/NAME (runs/NAME-seedS with --seeds) (default: "
                        "./compare, or compare-2... when taken)")
    p.add_argument("--ray", action="store_true",
                   help="train the runs as Ray tasks, several at once: on a local Ray on this machine's cores, or "
                        "on the cluster at --address or $RAY_ADDRESS (default: one after another, in this process)")
    p.add_argument("--address", help="an existing Ray cluster for the runs: auto or HOST:PORT (implies --ray)")
    p.add_argument("--cpus-per-run", type=int, help="Ray CPUs (and torch threads) per run, with --ray (default: 1)")
    p.add_argument("--resume", type=_path, metavar="DIR",
                   help="finish an interrupted comparison: its finished runs are kept, an interrupted run continues "
                        "from its checkpoint")
    _add_overwrite_arg(p, "an earlier comparison's leaderboard and runs")
    p.add_argument("--json", action="store_true", help="print the leaderboard as JSON (default: a table)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines (default: off)")
    _add_data_args(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("sweep", help="hyperparameter sweep on Ray Tune: one run folder per trial, one leaderboard")
    p.add_argument("model", nargs="?", type=_model_arg, metavar="MODEL",
                   help="a preset name or a layer spec, as for 'fmnist train'")
    p.add_argument("--param", action="append", metavar="NAME=SPEC",
                   help="a training option to search (e.g. lr, batch_size, optimizer; a refusal lists them all); "
                        "SPEC: a,b,c (grid), uniform:LO:HI, loguniform:LO:HI, randint:LO:HI (both ends included), "
                        "choice:a,b,c; repeat for more options (default: none)")
    p.add_argument("--samples", type=int, help="draws of the random SPECs; grids combine in full "
                                               "(default: 10 with random SPECs, else 1)")
    p.add_argument("--scheduler", help="fifo (every trial trains to the end) or asha (weak trials stop early, "
                                       "judged on --metric each epoch) (default: fifo)")
    p.add_argument("--metric", help="val_accuracy or val_loss, on the validation split (default: val_accuracy)")
    p.add_argument("--epochs", type=int, help="epochs for every trial (default: the preset's)")
    p.add_argument("--cpus-per-trial", type=int, help="Ray CPUs (and torch threads) per trial (default: 1)")
    p.add_argument("--gpus-per-trial", type=float, help="Ray GPUs per trial, which then trains on CUDA; a fraction "
                                                        "such as 0.25 shares one (default: 0, trials train on CPUs)")
    p.add_argument("--address", help="an existing Ray cluster: auto or HOST:PORT (default: $RAY_ADDRESS, else "
                                      "a local Ray on this machine's cores)")
    p.add_argument("--seed", type=_seed, help="seeds the random draws and (without --seeds) every trial's training "
                                            "(default: draws 42, training the preset's)")
    p.add_argument("--seeds", type=_seed_list, metavar="S,S,...",
                   help="train every point once per seed and rank the points by their mean over the seeds, each "
                        "with its gap to #1 paired by seed (not with --scheduler asha) (default: one run per point)")
    p.add_argument("--out", type=_path, help="sweep folder, new or empty (default: ./sweeps/MODEL, or MODEL-2... "
                                            "when taken)")
    p.add_argument("--resume", type=_path, metavar="DIR",
                   help="finish an interrupted sweep; its finished trials are not trained again")
    _add_data_args(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("benchmark",
                       help="re-run a published benchmark on Ray (the paper's classical scikit-learn grid)")
    bench = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    p = bench.add_parser("classical", help="the Fashion-MNIST paper's 143 scikit-learn configurations in 14 families, "
                                           "its Table 3 beside ours")
    p.add_argument("--quick", action="store_true",
                   help="each family's published best configuration only, without SVC, GradientBoosting and "
                        "GaussianProcess (hours each on a small machine) (default: the full grid)")
    p.add_argument("--families", metavar="A,B",
                   help="only these families, e.g. SGDClassifier,LinearSVC (default: all 14)")
    p.add_argument("--address", help="an existing Ray cluster, e.g. one started with 'ray start --head' "
                                     "(default: $RAY_ADDRESS, else a local Ray for this command)")
    p.add_argument("--cpus", type=int, help="CPUs of the local Ray (default: the cores this process may use)")
    p.add_argument("--cpus-per-task", type=int, default=1,
                   help="CPUs (and threads) of each configuration's task (default: 1)")
    p.add_argument("--seed", type=_seed, default=42,
                   help="random_state of every estimator that takes one (default: 42)")
    p.add_argument("--out", type=_path, default=Path("benchmark-classical"),
                   help="folder for results.json and results.md; finished configurations there are kept and "
                        "not run again (default: ./benchmark-classical)")
    _add_overwrite_arg(p, "results computed on other data or with another seed")
    _add_data_args(p)
    p.set_defaults(func=cmd_benchmark)
    return parser


def _version() -> str:
    from fmnist import __version__

    return __version__


@contextlib.contextmanager
def _stopped_by_signals(stopped: list[int]) -> Iterator[None]:
    """SIGTERM (``timeout``, ``kill``, a batch scheduler, ``docker stop``) and SIGHUP (the terminal
    closed) stop a command as Ctrl-C does: the same clean-up, message and resume hint, where the
    default would end the process mid-write with no word. ``stopped`` gets the signal's number."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may
        yield
        return

    def stop(signum, frame):
        stopped.append(signum)
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the command they were given to, whose --help lists what it takes
            prog = f"fmnist {args.command}" if getattr(args, "command", None) else "fmnist"
            message = f"unrecognized arguments: {' '.join(extra)}"
            if "--debug" in extra:
                message += f" (--debug goes before the command: fmnist --debug {args.command} ...)"
            parser.exit(2, usage_line(prog, message) + "\n")
    except SystemExit as exc:  # --help, --version (0) and usage errors (2, already printed)
        return exc.code if isinstance(exc.code, int) else 2
    # A terminal without UTF-8 (LC_ALL=C) shows a "?" for a dash or a Greek letter of a table,
    # where printing it would raise after the work is done.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="replace")
    stopped = []
    try:
        # serve's uvicorn stops on SIGTERM itself (and a SIGHUP raised inside its event loop would
        # be logged as a lifespan error): it keeps the signals' own handling.
        with _stopped_by_signals(stopped) if args.command != "serve" else contextlib.nullcontext():
            code = args.func(args)
        return 128 + stopped[0] if stopped and code in (0, 130) else code
    except FmnistError as exc:
        if args.debug:
            raise
        if isinstance(exc, UsageError):
            print(usage_line(f"fmnist {args.command}", exc.cli_message), file=sys.stderr)
        else:
            print(f"fmnist: error: {exc.cli_message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("fmnist: interrupted", file=sys.stderr)
        return 128 + stopped[0] if stopped else 130
    except BrokenPipeError:
        # `fmnist models | head`: the reader left early, which is no error. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        # What the checks before the work cannot foresee: a disk that fills, a folder made
        # read-only or removed while a command runs. Each is about a file, not a bug.
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename is not None else ""
        print(f"fmnist: error: {where}{exc.strerror or exc}; check the path, its permissions and the free space",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
