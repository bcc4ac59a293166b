"""The codec pool that decodes and encodes a batch, and the threads a batch gets
(service/inference.py)."""

import threading
import time

import pytest
import torch

from service import inference
from service.inference import CodecPool, ThreadShare


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


def test_a_lone_batch_gets_every_thread_and_concurrent_ones_a_share(monkeypatch):
    monkeypatch.setattr(inference.torch, "set_num_threads", lambda n: None)
    share = ThreadShare(4)
    with share() as first:
        with share() as second, share() as third:
            assert (first, second, third) == (4, 2, 1)
            assert share.running == 3
        with share() as again:
            assert again == 2
    assert share.running == 0
    with share() as alone:
        assert alone == 4


def test_the_share_is_set_for_the_calling_thread_only():
    before = torch.get_num_threads()
    seen = []

    def batch():
        with ThreadShare(before + 1)():
            seen.append(torch.get_num_threads())

    worker = threading.Thread(target=batch)
    worker.start()
    worker.join()
    assert seen == [before + 1]
    assert torch.get_num_threads() == before  # OpenMP's count is per thread
