"""The serving goals, each checked against one run's results: (goal, measured, met)."""

from __future__ import annotations

import statistics

from .attribution import goals as attribution_goals

Goal = tuple[str, str, bool]

# the low-load comparisons with the naive peer: one request of each route
ROUTES = {
    "reconstruct_1": "/reconstruct 1 image",
    "visualise_5": "/visualise AlexNet layer 5",
    "generate_64": "/generate n=64",
}


def ratio(a: float, b: float) -> float:
    """a / b; not a number when b is 0 (a load too short to finish a request), so that no
    comparison with it holds."""
    return a / b if b else float("nan")


def at(rows: list[dict], concurrency: int) -> dict:
    return next(r for r in rows if r["concurrency"] == concurrency)


def _ratio(name: str, measured: float, ceiling: float, share: float) -> Goal:
    return (
        f"{name}: >= {share:.0%} of the ceiling",
        f"{measured} / {ceiling} img/s = {ratio(measured, ceiling):.0%}",
        measured > 0 and measured >= share * ceiling,
    )


def _share(r: dict, key: str, name: str, measured: float, ceiling: float, share: float) -> Goal:
    """``name``'s share of its ceiling: the median of per-round ratios where the ceiling's best
    configuration ran beside the load (``ceiling_beside``), else the load over the sweep's
    ceiling (a run from before those rounds)."""
    rounds = r.get("ceiling_beside", {}).get(key, {}).get("rounds", [])
    if not rounds:
        return _ratio(name, measured, ceiling, share)
    m = beside_medians(rounds)
    return (
        f"{name}: >= {share:.0%} of the ceiling",
        f"{m['share']:.0%}, the median of {len(rounds)} rounds of the load and the ceiling's "
        f"best configuration back to back (medians {m['service']} / {m['ceiling']} img/s; the "
        f"sweep's ceiling {ceiling}, the load's figure below {measured})",
        m["share"] >= share,
    )


def beside_medians(rounds: list[dict]) -> dict:
    """The medians over rounds of a load and its ceiling back to back: ``share``, of the
    per-round ratios, and the ``service``'s and the ``ceiling``'s img/s."""
    return {
        "share": round(statistics.median(ratio(x["service"], x["ceiling"]) for x in rounds), 4),
        "service": statistics.median(x["service"] for x in rounds),
        "ceiling": statistics.median(x["ceiling"] for x in rounds),
    }


LITSERVE_RATIO = (
    "... >= 2.5x the better of LitServe at 1 and 2 inference workers (median of per-round ratios)"
)
LITSERVE_P99 = "... with a lower p99 than LitServe at either worker count"


def versus_litserve(r: dict) -> list[Goal]:
    """/reconstruct c=64 against LitServe at one and at two inference workers, each round the
    service and both peers back to back: each ratio is the median of the rounds' ratios, the
    goal's against the better peer of each round; p99 by the medians over the rounds."""
    rounds = r["litserve"].get("versus", {}).get("rounds", [])
    peers = {"litserve_1": "1 worker", "litserve_2": "2 workers"}
    if not rounds:  # a run from before these goals
        return [(LITSERVE_RATIO, "not measured", False), (LITSERVE_P99, "not measured", False)]

    def median(values) -> float:
        return statistics.median(values) if values else float("nan")

    def rates(round_: dict) -> tuple[float, ...]:
        return tuple(round_[name]["requests_per_s"] for name in ("service", *peers))

    each = {
        name: median([ratio(x[0], x[1 + i]) for x in map(rates, rounds)])
        for i, name in enumerate(peers)
    }
    better = median([ratio(x[0], max(x[1:])) for x in map(rates, rounds)])
    p99 = {name: median([x[name]["p99_ms"] for x in rounds]) for name in ("service", *peers)}
    rate = {
        name: median([x[name]["requests_per_s"] for x in rounds]) for name in ("service", *peers)
    }
    return [
        (
            LITSERVE_RATIO,
            f"{better:.2f}x over {len(rounds)} rounds; service {rate['service']} req/s, "
            + ", ".join(
                f"LitServe {label} {rate[name]} ({each[name]:.2f}x)"
                for name, label in peers.items()
            ),
            better >= 2.5,
        ),
        (
            LITSERVE_P99,
            f"{p99['service']} vs {p99['litserve_1']} and {p99['litserve_2']} ms",
            all(p99["service"] < p99[name] for name in peers),
        ),
    ]


def throughput(r: dict) -> list[Goal]:
    on, off, ceil = r["batching_on"], r["batching_off"], r["ceiling"]
    codec = ceil["reconstruct"]["codec"]["images_per_s"]
    rec = at(on["reconstruct_1"], 64)
    big = max(row["images_per_s"] for row in on["reconstruct_64"])
    gen = max(row["images_per_s"] for row in on["generate_64"])
    pairs = [
        (a["concurrency"], a["images_per_s"], b["images_per_s"])
        for a, b in zip(on["reconstruct_64"], off["reconstruct_64"], strict=True)
    ]
    vis = ceil["visualise"]
    return [
        _share(r, "reconstruct_1", "/reconstruct 1 image, c=64", rec["images_per_s"], codec, 0.8),
        *versus_litserve(r),
        _share(
            r,
            "visualise_cnn",
            "/visualise cnn layer 4, 640x480 JPEG, c=16",
            at(on["visualise_cnn"], 16)["images_per_s"],
            vis["cnn_4"]["codec"]["images_per_s"],
            0.8,
        ),
        _share(
            r,
            "generate_64",
            "/generate n=64",
            gen,
            ceil["generate_64"]["codec"]["images_per_s"],
            0.9,
        ),
        # many images in one request batch as well as many requests do
        _ratio("/reconstruct 64 images per request", big, codec, 0.85),
        (
            "... batching on >= 0.98x off at every concurrency",
            ", ".join(f"c={c}: {a} / {b} = {ratio(a, b):.3f}" for c, a, b in pairs),
            all(b > 0 and a >= 0.98 * b for _, a, b in pairs),
        ),
        _share(
            r,
            "visualise_5",
            "/visualise AlexNet layer 5, 640x480 JPEG, c=16",
            at(on["visualise_5"], 16)["images_per_s"],
            vis["alexnet_5"]["codec"]["images_per_s"],
            0.8,
        ),
    ]


def _latency_goal(title: str, condition: str, s: dict, n: dict, p99_factor: float) -> Goal:
    bound = "p99 <= naive p99" if p99_factor == 1 else f"p99 <= {p99_factor:g}x naive p99"
    return (
        f"{title}, {condition}: p50 <= naive p50, {bound}",
        f"p50 {s['p50_ms']} vs {n['p50_ms']} ms, p99 {s['p99_ms']} vs "
        f"{n['p99_ms']} ms ({ratio(s['p99_ms'], n['p99_ms']):.2f}x)",
        min(s["requests"], n["requests"]) > 0
        and s["p50_ms"] <= n["p50_ms"]
        and s["p99_ms"] <= p99_factor * n["p99_ms"],
    )


def latency_pairs(r: dict):
    """(route key, concurrency, condition, pair) of every low-load comparison with the naive
    peer: c=1 on the idle machine, then each concurrency with one core busy."""
    lat = r["latency"]
    for key, levels in lat.get("idle", {}).items():
        for concurrency, pair in levels.items():
            yield key, concurrency, "idle", pair
    for key in ROUTES:
        for concurrency, pair in lat.get(key, {}).items():
            yield key, concurrency, "one core busy", pair


def latency(r: dict) -> list[Goal]:
    """At c=1, idle and with one core busy: p50 and p99 no worse than the naive peer's; at
    higher concurrency with a core busy: p50 no worse, p99 <= 1.5x."""
    return [
        _latency_goal(
            f"{ROUTES[key]} c={concurrency}",
            condition,
            pair["service"],
            pair["naive"],
            1 if concurrency == "1" else 1.5,
        )
        for key, concurrency, condition, pair in latency_pairs(r)
    ]


def service_rows(r: dict):
    for mode in ("batching_on", "batching_off"):
        for rows in r[mode].values():
            if isinstance(rows, list):
                yield from rows


def sanity(r: dict) -> list[Goal]:
    errors = sum(row["errors"] for row in service_rows(r))
    errors += sum(pair["service"]["errors"] for *_, pair in latency_pairs(r))
    errors += sum(x["service"]["errors"] for x in r["litserve"].get("versus", {}).get("rounds", []))
    memory = r["batching_on"]["memory"]
    growth = memory["rss_after_mb"] - memory["rss_before_mb"]
    ceil = r["ceiling"]
    bounds = {
        "reconstruct_1": ceil["reconstruct"]["codec"]["images_per_s"],
        "reconstruct_64": ceil["reconstruct"]["codec"]["images_per_s"],
        "generate_64": ceil["generate_64"]["codec"]["images_per_s"],
        "visualise_5": ceil["visualise"]["alexnet_5"]["codec"]["images_per_s"],
        "visualise_cnn": ceil["visualise"]["cnn_4"]["codec"]["images_per_s"],
    }
    above = [
        f"{key} c={row['concurrency']} ({mode})"
        for mode in ("batching_on", "batching_off")
        for key, bound in bounds.items()
        for row in r[mode][key]
        if row["images_per_s"] > bound
    ]
    return [
        ("zero errors (service, every load)", f"{errors} errors", errors == 0),
        (
            "RSS growth < 50 MB over 10,000 requests",
            f"{growth:+.1f} MB over {memory['requests']}",
            growth < 50 and memory["requests"] >= 10_000,
        ),
        (
            "cold start to ready <= 5 s (checkpoints present)",
            f"{r['cold_start_seconds']} s",
            r["cold_start_seconds"] <= 5,
        ),
        (
            "no load beats its ceiling (else the ceiling is wrong)",
            ", ".join(above) or "none does",
            not above,
        ),
    ]


def gpu(r: dict) -> list[Goal]:
    g = r["gpu"]
    if "skipped" in g:
        return []
    on, off = g["visualise_5_c64"]["on"], g["visualise_5_c64"]["off"]
    gain = ratio(on["images_per_s"], off["images_per_s"])
    return [
        (
            "GPU: /visualise AlexNet layer 5, c=64, batching on >= 5x off",
            f"{on['images_per_s']} / {off['images_per_s']} img/s = {gain:.1f}x",
            gain >= 5,
        ),
        (
            "GPU: pytest -m gpu passes, none skipped",
            g["tests"]["summary"],
            g["tests"]["returncode"] == 0 and "skipped" not in g["tests"]["summary"],
        ),
    ]


def all_goals(r: dict) -> list[Goal]:
    return throughput(r) + latency(r) + attribution_goals(r) + sanity(r) + gpu(r)
