"""One evaluation path for every model, scikit-learn or torch."""

from fmnist.evaluation.metrics import evaluate, predict_log_proba, predict_proba

__all__ = ["evaluate", "predict_log_proba", "predict_proba"]
