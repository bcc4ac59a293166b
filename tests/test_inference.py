"""The codec pool that decodes and encodes a batch (service/inference.py)."""

import threading
import time

import pytest

from service.inference import CodecPool


@pytest.mark.parametrize("threads, items", [(1, 10), (3, 10), (4, 2), (4, 1), (2, 0)])
def test_map_keeps_order_and_uses_the_threads(threads, items):
    pool = CodecPool(threads)
    seen = set()

    def work(i):
        seen.add(threading.get_ident())
        time.sleep(0.005)  # long enough that no thread finishes a chunk before all have started
        return i * i

    try:
        assert pool.map(work, list(range(items))) == [i * i for i in range(items)]
    finally:
        pool.shutdown()
    assert len(seen) == min(threads, items)


def test_an_exception_reaches_the_caller():
    pool = CodecPool(2)

    def work(i):
        if i == 3:
            raise ValueError("broken")
        return i

    with pytest.raises(ValueError, match="broken"):
        pool.map(work, list(range(4)))
    pool.shutdown()
