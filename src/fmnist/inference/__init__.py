"""Use a trained model on your own images: photo preparation (the Fashion-MNIST recipe) and prediction."""

from fmnist.inference.predict import (
           PredictResult,
           format_predictions,
           load_inputs,
           predict_files,
)
from fmnist.inference.preprocess import (
           is_dataset_style,
           photo_to_dataset,
           prepare_image,
)

__all__ = ["PredictResult", "format_predictions", "is_dataset_style", "load_inputs", "photo_to_dataset",
           "predict_files", "prepare_image"]
