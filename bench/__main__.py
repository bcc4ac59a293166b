"""``python -m bench`` (``make bench``): the serving benchmark of bench/serving/benchmark.py."""

from .serving.benchmark import main

if __name__ == "__main__":
    main()
