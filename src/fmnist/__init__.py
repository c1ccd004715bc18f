"""fmnist: train, compare, inspect and use image classifiers on Fashion-MNIST."""

__version__ = "0.1.0"
