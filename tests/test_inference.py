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


def test_map_zips_several_sequences_of_equal_length():
    pool = CodecPool(2)
    try:
        assert pool.map(lambda a, b: a + b, [1, 2, 3], [10, 20, 30]) == [11, 22, 33]
        with pytest.raises(ValueError):
            pool.map(lambda a, b: a + b, [1, 2], [10])
    finally:
        pool.shutdown()
