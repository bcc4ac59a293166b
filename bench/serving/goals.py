"""The goals of issue 15, each checked against one run's results: (goal, measured, met)."""

from __future__ import annotations

Goal = tuple[str, str, bool]


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


def throughput(r: dict) -> list[Goal]:
    on, off, lit, ceil = r["batching_on"], r["batching_off"], r["litserve"]["rows"], r["ceiling"]
    codec = ceil["reconstruct"]["codec"]["images_per_s"]
    rec, lit64 = at(on["reconstruct_1"], 64), at(lit, 64)
    off64 = at(off["reconstruct_1"], 64)
    big = max(row["images_per_s"] for row in on["reconstruct_64"])
    gen = max(row["images_per_s"] for row in on["generate_64"])
    pairs = [
        (a["concurrency"], a["images_per_s"], b["images_per_s"])
        for a, b in zip(on["reconstruct_64"], off["reconstruct_64"], strict=True)
    ]
    vis = ceil["visualise"]
    return [
        _ratio("/reconstruct 1 image, c=64", rec["images_per_s"], codec, 0.55),
        (
            "... >= 2x LitServe's throughput",
            f"{rec['requests_per_s']} / {lit64['requests_per_s']} req/s = "
            f"{ratio(rec['requests_per_s'], lit64['requests_per_s']):.2f}x",
            rec["requests_per_s"] >= 2 * lit64["requests_per_s"],
        ),
        (
            "... with a lower p99 than LitServe",
            f"{rec['p99_ms']} vs {lit64['p99_ms']} ms",
            rec["p99_ms"] < lit64["p99_ms"],
        ),
        (
            "... >= 2x batching off",
            f"{rec['requests_per_s']} / {off64['requests_per_s']} req/s = "
            f"{ratio(rec['requests_per_s'], off64['requests_per_s']):.2f}x",
            rec["requests_per_s"] >= 2 * off64["requests_per_s"],
        ),
        _ratio("/reconstruct 64 images per request", big, codec, 0.85),
        (
            "... batching on >= 0.98x off at every concurrency",
            ", ".join(f"c={c}: {a} / {b} = {ratio(a, b):.3f}" for c, a, b in pairs),
            all(b > 0 and a >= 0.98 * b for _, a, b in pairs),
        ),
        _ratio("/generate n=64", gen, ceil["generate_64"]["codec"]["images_per_s"], 0.85),
        _ratio(
            "/visualise AlexNet layer 5, 640x480 JPEG, c=16",
            at(on["visualise_5"], 16)["images_per_s"],
            vis["alexnet_5"]["codec"]["images_per_s"],
            0.8,
        ),
        _ratio(
            "/visualise cnn layer 4, 640x480 JPEG, c=16",
            at(on["visualise_cnn"], 16)["images_per_s"],
            vis["cnn_4"]["codec"]["images_per_s"],
            0.8,
        ),
    ]


def latency(r: dict) -> list[Goal]:
    """p50 <= the naive peer's and p99 <= 1.5x its p99, one core busy, at each concurrency."""
    goals = []
    for key, title in (("reconstruct_1", "/reconstruct"), ("visualise_5", "/visualise")):
        for concurrency, pair in r["latency"][key].items():
            s, n = pair["service"], pair["naive"]
            goals.append(
                (
                    f"{title} c={concurrency}, one core busy: p50 <= naive p50, "
                    "p99 <= 1.5x naive p99",
                    f"p50 {s['p50_ms']} vs {n['p50_ms']} ms, p99 {s['p99_ms']} vs "
                    f"{n['p99_ms']} ms ({ratio(s['p99_ms'], n['p99_ms']):.2f}x)",
                    min(s["requests"], n["requests"]) > 0
                    and s["p50_ms"] <= n["p50_ms"]
                    and s["p99_ms"] <= 1.5 * n["p99_ms"],
                )
            )
    return goals


def service_rows(r: dict):
    for mode in ("batching_on", "batching_off"):
        for rows in r[mode].values():
            if isinstance(rows, list):
                yield from rows


def sanity(r: dict) -> list[Goal]:
    errors = sum(row["errors"] for row in service_rows(r))
    errors += sum(
        pair["service"]["errors"]
        for key in ("reconstruct_1", "visualise_5")
        for pair in r["latency"][key].values()
    )
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
    return throughput(r) + latency(r) + sanity(r) + gpu(r)
