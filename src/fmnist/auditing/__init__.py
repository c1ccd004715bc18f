"""Does the data deserve trust? Duplicates, train/test leaks, likely label errors, outliers.

    >>> import fmnist
    >>> result = fmnist.audit(out_dir="audit")      # also writes audit/audit.json and audit.html
    >>> result["summary"]["label_issues"]
    {'train': ..., 'test': ...}

:func:`audit` (in :mod:`fmnist.auditing.core`) runs every phase; :mod:`.neighbours` finds
nearest neighbours in bounded memory, :mod:`.labels` trains the fold models and asks cleanlab,
:mod:`.exclude` turns an audit into the images ``--exclude`` leaves out, :mod:`.planted`
plants faults to measure what the audit finds.
"""

import importlib

# Resolved on first use, as in ``fmnist`` itself: ``fmnist.runs`` reads an audit's exclusions
# (.exclude, numpy only) and must not pull in the audit's fold training (.core -> .labels ->
# fmnist.runs) on the way.
_EXPORTS = {"AUDIT_FILE": "core", "audit": "core", "KINDS": "exclude", "load_exclusion": "exclude",
            "parse_exclude": "exclude"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"fmnist.auditing.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'fmnist.auditing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
