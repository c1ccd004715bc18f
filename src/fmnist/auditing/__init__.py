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

from fmnist.auditing.core import AUDIT_FILE, audit
from fmnist.auditing.exclude import KINDS, load_exclusion, parse_exclude

__all__ = ["AUDIT_FILE", "KINDS", "audit", "load_exclusion", "parse_exclude"]
