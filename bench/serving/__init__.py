"""The serving benchmark (``python -m bench``, bench/serving/benchmark.py): the service under
load beside the honest ceiling and its peers, docs/benchmarks.md; ``bench.serving.stress``,
``bench.serving.gpu`` and ``bench.serving.cpu_per_request`` run parts of it alone."""
