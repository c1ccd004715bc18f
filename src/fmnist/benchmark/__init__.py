"""Published benchmarks re-run: the Fashion-MNIST paper's classical scikit-learn grid (``classical``).

The grid and the paper's results are data (``_data/``), read by one runner that sends each
configuration to Ray as its own task.
"""

from fmnist.benchmark.classical import benchmark_classical, format_markdown, format_table

__all__ = ["benchmark_classical", "format_markdown", "format_table"]
