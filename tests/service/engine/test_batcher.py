"""The dynamic batcher on its own: batch forming, limits, deadlines, errors and shutdown."""

import asyncio
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.engine.batcher import (
    Batcher,
    DeadlineExceeded,
    QueueFull,
    ShuttingDown,
    _Request,
    take_batch,
)


class Recorder:
    """A predict that doubles numbers, records every call and can be held or made to fail."""

    def __init__(self, fail_on=None):
        self.calls: list[tuple] = []
        self.entered = self.entered_items = 0  # calls (and their items) that reached the gate
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on = fail_on

    def __call__(self, key, payloads):
        with self.lock:
            self.entered += 1
            self.entered_items += len(payloads)
        self.gate.wait()
        self.calls.append((key, list(payloads)))
        if self.fail_on is not None and self.fail_on in payloads:
            raise ValueError(f"bad payload {self.fail_on}")
        return [p * 2 for p in payloads]


async def until(condition, timeout_s: float = 10.0) -> None:
    """Wait for ``condition()`` to hold (a call at the gate, requests queued): no fixed sleep."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the awaited state never came"
        await asyncio.sleep(0.001)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(1) as pool:
        yield pool


def make(executor, predict, **kw):
    options = {"max_batch_size": 8, "max_delay_s": 0.0, "max_queue": 100} | kw
    return Batcher(predict, executor=executor, **options)


def _request(key, size=1, dropped=False):
    return _Request(key, None, size, asyncio.get_running_loop().create_future(), dropped=dropped)


async def test_take_batch_groups_one_key_in_order_up_to_the_limit():
    a1, b1, a2, a3, a4 = (
        _request("a", 2),
        _request("b"),
        _request("a", 3),
        _request("a", 4),
        _request("a", 1),
    )
    dropped = _request("a", dropped=True)
    queue = deque([dropped, a1, b1, a2, a3, a4])
    assert take_batch(queue, 6) == [a1, a2, a4]
    assert list(queue) == [b1, a3]
    assert take_batch(queue, 6) == [b1] and take_batch(queue, 6) == [a3]


async def test_first_request_goes_even_when_larger_than_the_limit():
    big = _request("a", 50)
    queue = deque([big, _request("a")])
    assert take_batch(queue, 8) == [big] and len(queue) == 1


async def test_concurrent_requests_share_one_call(executor):
    predict = Recorder()
    batcher = make(executor, predict, max_delay_s=0.2)
    results = await asyncio.gather(*(batcher.submit(i, key="k") for i in range(5)))
    assert results == [0, 2, 4, 6, 8]
    assert predict.calls == [("k", [0, 1, 2, 3, 4])]
    await batcher.close()


async def test_requests_queued_while_busy_form_the_next_batch_without_delay(executor):
    predict = Recorder()
    predict.gate.clear()
    batcher = make(executor, predict)
    first = asyncio.ensure_future(batcher.submit(0, key="k"))
    await until(lambda: predict.entered == 1)  # the first call is running, held at the gate
    rest = [asyncio.ensure_future(batcher.submit(i, key="k")) for i in range(1, 4)]
    await until(lambda: batcher.waiting == 3)
    predict.gate.set()
    await asyncio.gather(first, *rest)
    assert [payloads for _, payloads in predict.calls] == [[0], [1, 2, 3]]
    await batcher.close()


async def test_keys_never_mix_and_items_are_counted(executor):
    predict = Recorder()
    batcher = make(executor, predict, max_batch_size=4, max_delay_s=0.2)
    await asyncio.gather(
        batcher.submit(1, size=3, key="a"),
        batcher.submit(2, size=3, key="a"),
        batcher.submit(3, size=1, key="b"),
    )
    calls = sorted((key, payloads) for key, payloads in predict.calls)
    assert calls == [("a", [1]), ("a", [2]), ("b", [3])]
    await batcher.close()


async def test_full_queue_refuses(executor):
    predict = Recorder()
    predict.gate.clear()
    batcher = make(executor, predict, max_queue=3)
    running = asyncio.ensure_future(batcher.submit(0))
    await until(lambda: predict.entered == 1)
    waiting = [asyncio.ensure_future(batcher.submit(i, size=1)) for i in (1, 2, 3)]
    await until(lambda: batcher.waiting == 3)
    with pytest.raises(QueueFull, match=r"3 items are already waiting \(limit 3\)"):
        await batcher.submit(9)
    predict.gate.set()
    assert await asyncio.gather(running, *waiting) == [0, 2, 4, 6]
    await batcher.close()


async def test_deadline_drops_the_request_before_it_runs(executor):
    predict = Recorder()
    predict.gate.clear()
    batcher = make(executor, predict)
    running = asyncio.ensure_future(batcher.submit(0))
    await until(lambda: predict.entered == 1)
    with pytest.raises(DeadlineExceeded, match=r"no answer within 0\.05 s"):
        await batcher.submit(1, timeout=0.05)
    assert batcher.waiting == 0
    predict.gate.set()
    await running
    await batcher.close()
    assert [payloads for _, payloads in predict.calls] == [[0]]


async def test_cancelled_request_is_dropped(executor):
    predict = Recorder()
    predict.gate.clear()
    batcher = make(executor, predict)
    running = asyncio.ensure_future(batcher.submit(0))
    await until(lambda: predict.entered == 1)
    gone = asyncio.ensure_future(batcher.submit(1))
    await until(lambda: batcher.waiting == 1)
    gone.cancel()
    predict.gate.set()
    await running
    await batcher.close()
    assert [payloads for _, payloads in predict.calls] == [[0]]


async def test_an_error_fails_only_its_own_request(executor):
    predict = Recorder(fail_on=3)
    batcher = make(executor, predict, max_delay_s=0.2)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(6)), return_exceptions=True)
    assert results[:3] == [0, 2, 4] and results[4:] == [8, 10]
    assert isinstance(results[3], ValueError) and "bad payload 3" in str(results[3])
    assert predict.calls[0][1] == [0, 1, 2, 3, 4, 5]  # one try together, then halves
    await batcher.close()


async def test_an_exception_as_a_result_fails_only_its_request(executor):
    def predict(key, payloads):
        return [ValueError(f"odd {p}") if p % 2 else p for p in payloads]

    batcher = make(executor, predict, max_delay_s=0.2)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 2
    assert [str(r) for r in results[1::2]] == ["odd 1", "odd 3"]
    await batcher.close()


async def test_close_answers_everything_accepted_then_refuses(executor):
    predict = Recorder()
    predict.gate.clear()
    batcher = make(executor, predict, max_batch_size=2)
    accepted = [asyncio.ensure_future(batcher.submit(i)) for i in range(5)]
    await until(lambda: predict.entered == 1 and batcher.waiting == 3)
    closing = asyncio.ensure_future(batcher.close())
    await until(lambda: batcher._closing)
    with pytest.raises(ShuttingDown):
        await batcher.submit(9)
    predict.gate.set()
    await closing
    assert [f.result() for f in accepted] == [0, 2, 4, 6, 8]


async def test_observer_sees_batches_waits_and_depth(executor):
    seen = {"batch": [], "wait": 0, "depth": []}

    class Observer:
        def batch(self, items, requests, seconds):
            seen["batch"].append((items, requests))

        def queue_wait(self, seconds):
            seen["wait"] += 1

        def depth(self, items):
            seen["depth"].append(items)

    batcher = make(executor, Recorder(), max_delay_s=0.2, observer=Observer())
    await asyncio.gather(batcher.submit(1, size=2), batcher.submit(2, size=3))
    await batcher.close()
    assert seen["batch"] == [(5, 2)] and seen["wait"] == 2
    assert max(seen["depth"]) == 5 and seen["depth"][-1] == 0


class Overlap:
    """A predict that records how many of its calls run at the same time."""

    def __init__(self):
        self.running = self.most = 0
        self.lock = threading.Lock()

    def __call__(self, key, payloads):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        threading.Event().wait(0.05)
        with self.lock:
            self.running -= 1
        return payloads


@pytest.mark.parametrize("concurrency", [1, 2, 3])
async def test_at_most_concurrency_batches_run_at_once(concurrency):
    predict = Overlap()
    with ThreadPoolExecutor(4) as pool:
        batcher = make(pool, predict, max_batch_size=1, concurrency=concurrency)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(6)))
        await batcher.close()
    assert results == list(range(6))
    assert predict.most == concurrency


async def test_a_batch_is_taken_only_when_it_can_start():
    predict = Recorder()
    predict.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        batcher = make(pool, predict, concurrency=2)
        first = []
        for i in (1, 2):  # each runs as a batch of its own, held at the gate
            first.append(asyncio.ensure_future(batcher.submit(i)))
            await until(lambda i=i: predict.entered == i)
        later = [asyncio.ensure_future(batcher.submit(i)) for i in (3, 4, 5, 6)]
        await until(lambda: batcher.waiting == 4)
        predict.gate.set()
        assert await asyncio.gather(*first, *later) == [2, 4, 6, 8, 10, 12]
        await batcher.close()
    # the first batch to start after the gate takes its half of the four that waited
    assert sorted(predict.calls) == [
        (None, [1]),
        (None, [2]),
        (None, [3, 4]),
        (None, [5]),
        (None, [6]),
    ]


@pytest.mark.parametrize(
    "concurrency, sizes",
    [
        # the two free slots take a third of the 7, then half of the 4 left; the rest wait
        (3, [1, 1, 1, 2, 3]),
        (1, [1, 7]),  # one batch at a time takes everything that waits
    ],
)
async def test_a_burst_is_shared_out_between_the_batches(concurrency, sizes):
    predict = Recorder()
    predict.gate.clear()
    with ThreadPoolExecutor(3) as pool:
        batcher = make(pool, predict, max_batch_size=64, concurrency=concurrency)
        held = asyncio.ensure_future(batcher.submit(0))
        await until(lambda: predict.entered == 1)
        burst = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 8)]
        # every slot busy, and all 8 items either held at the gate or queued
        await until(
            lambda: predict.entered == concurrency and predict.entered_items + batcher.waiting == 8
        )
        predict.gate.set()
        await asyncio.gather(held, *burst)
        await batcher.close()
    assert sorted(len(p) for _, p in predict.calls) == sizes


async def test_close_waits_for_every_running_batch():
    predict = Recorder()
    predict.gate.clear()
    with ThreadPoolExecutor(2) as pool:
        batcher = make(pool, predict, max_batch_size=1, concurrency=2)
        accepted = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        await until(lambda: predict.entered == 2)
        closing = asyncio.ensure_future(batcher.close())
        await until(lambda: batcher._closing)
        await asyncio.sleep(0.05)  # not a wait for an event: the time close() has to end early
        assert not closing.done()
        predict.gate.set()
        await closing
        assert [a.result() for a in accepted] == [0, 2, 4]
