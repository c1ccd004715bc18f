"""Errors name each setting in the words of whoever reads them: Python's or the command line's."""

from __future__ import annotations

from fmnist.errors import DataError, UsageError, option, spelled


def test_option_spellings():
    cases = {option("data_dir"): ("data_dir", "--data-dir"), option("fetch", True): ("fetch=True", "--fetch"),
             option("top_k", 0): ("top_k=0", "--top-k 0"), option("out_dir", cli="--out"): ("out_dir", "--out"),
             spelled("resume_run(d)", "fmnist train --resume d"): ("resume_run(d)", "fmnist train --resume d")}
    for text, (python, cli) in cases.items():
        err = UsageError(f"use {text} here")
        assert (str(err), err.cli_message) == (f"use {python} here", f"use {cli} here")


def test_plain_messages_read_the_same_everywhere():
    err = DataError("/data/x.gz: truncated; fetch it again")
    assert str(err) == err.cli_message == "/data/x.gz: truncated; fetch it again"
    assert err.exit_code == 1 and UsageError("x").exit_code == 2
