"""The codec pool that decodes and encodes a batch, and the threads a batch gets
(service/engine/runner.py)."""

import re
import threading
import time

import pytest
import torch

from service.engine import runner as inference
from service.engine.registry import ServedModel
from service.engine.runner import CodecPool, ThreadShare
from tests.helpers import png_bytes


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
    counts = []
    monkeypatch.setattr(inference.torch, "set_num_threads", counts.append)
    share = ThreadShare(4)
    with share.batch():
        with share.forward(8) as alone:
            assert alone == 4 and counts[-1] == 4
        with share.batch(), share.batch(), share.forward(8) as third:
            assert third == 1 and share.running == 3
        with share.batch(), share.forward(8) as second:
            assert second == 2
    assert share.running == 0
    with share.forward(8) as outside_any_batch:
        assert outside_any_batch == 4


def test_a_batch_of_one_item_runs_on_one_thread_even_alone(monkeypatch):
    counts = []
    monkeypatch.setattr(inference.torch, "set_num_threads", counts.append)
    share = ThreadShare(4)
    with share.batch():
        with share.forward(1) as one:
            assert one == 1 and counts[-1] == 1
        with share.forward(2) as two:
            assert two == 4
    fewer_than_five = ThreadShare(4, min_items=5)
    with fewer_than_five.batch(), fewer_than_five.forward(4) as four:
        assert four == 1


async def test_a_request_s_forward_pass_runs_on_threads_by_its_image_count(
    make_client, monkeypatch
):
    client, app = await make_client(torch_threads=2)
    ae = app.state.engine.models["ae"].checkpoint.model
    reconstruct, seen = ae.reconstruct, []

    def recording(x):
        seen.append((len(x), torch.get_num_threads()))
        return reconstruct(x)

    monkeypatch.setattr(ae, "reconstruct", recording)
    digit = png_bytes()
    for count in (1, 3):
        files = [("file", (f"{i}.png", digit, "image/png")) for i in range(count)]
        assert (await client.post("/reconstruct", files=files)).status_code == 200
    assert seen == [(1, 1), (3, 2)]


def test_the_share_is_set_for_the_calling_thread_only_and_put_back():
    before = torch.get_num_threads()
    seen = []

    def batch():
        own = torch.get_num_threads()
        share = ThreadShare(own + before)
        with share.batch(), share.forward(2):
            seen.append(torch.get_num_threads() - own)
        seen.append(torch.get_num_threads() - own)

    worker = threading.Thread(target=batch)
    worker.start()
    worker.join()
    assert seen == [before, 0]
    assert torch.get_num_threads() == before  # OpenMP's count is per thread


async def test_inference_and_codec_threads_run_tensor_ops_on_one_thread(make_client):
    _, app = await make_client()
    service = app.state.engine
    assert service.executor.submit(torch.get_num_threads).result() == 1
    # the codec pool's own threads; the caller (an inference thread) does the first item
    assert service.codec.map(lambda _: torch.get_num_threads(), [0, 1])[1:] == [1]


def test_an_unknown_operation_is_an_error_not_a_visualisation():
    pool = CodecPool(1)
    threads = inference.ThreadShare(1)
    predict = inference.make_predict(
        ServedModel("vae", "vae"), torch.device("cpu"), 100, pool, threads
    )
    expected = "expected an operation in ['generate', 'reconstruct', 'visualise'] but received"
    with pytest.raises(ValueError, match=re.escape(f"{expected} 'visualize'")):
        predict(("visualize", 1, 9, None), [])
