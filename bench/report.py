"""docs/benchmarks.md from the benchmark's results, with every goal checked."""

from __future__ import annotations

from pathlib import Path


def _table(rows: list[dict], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines


def _at(rows: list[dict], concurrency: int) -> dict:
    return next(r for r in rows if r["concurrency"] == concurrency)


def goals(r: dict) -> list[tuple[str, str, bool]]:
    on, off, lit, ceil = r["batching_on"], r["batching_off"], r["litserve"], r["ceiling"]
    codec = ceil["reconstruct"]["codec"]["images_per_s"]
    rec64 = _at(on["reconstruct_1"], 64)
    lit64 = _at(lit, 64)
    big = max(row["images_per_s"] for row in on["reconstruct_64"])
    gen = max(row["images_per_s"] for row in on["generate_64"])
    vis = _at(on["visualise_5"], 16)["images_per_s"]
    vis_ceiling = ceil["visualise"]["layer5"]["model"]["images_per_s"]
    errors = sum(
        row["errors"]
        for mode in (on, off)
        for key, rows in mode.items()
        if isinstance(rows, list)
        for row in rows
    )
    memory = on["memory"]
    growth = memory["rss_after_mb"] - memory["rss_before_mb"]
    p50 = [(key, v["p50_ms_on"] - v["p50_ms_off"]) for key, v in r["paired_c1"].items()]
    return [
        (
            "/reconstruct 1 image, c=64: >= 50% of the codec ceiling",
            f"{rec64['images_per_s']} / {codec} img/s = {rec64['images_per_s'] / codec:.0%}",
            rec64["images_per_s"] >= 0.5 * codec,
        ),
        (
            "... >= 1.5x LitServe's throughput",
            f"{rec64['requests_per_s']} / {lit64['requests_per_s']} req/s = "
            f"{rec64['requests_per_s'] / lit64['requests_per_s']:.2f}x",
            rec64["requests_per_s"] >= 1.5 * lit64["requests_per_s"],
        ),
        (
            "... with a lower p99 than LitServe",
            f"{rec64['p99_ms']} vs {lit64['p99_ms']} ms",
            rec64["p99_ms"] < lit64["p99_ms"],
        ),
        (
            "... better than batching off",
            f"{rec64['requests_per_s']} vs {_at(off['reconstruct_1'], 64)['requests_per_s']} req/s",
            rec64["requests_per_s"] > _at(off["reconstruct_1"], 64)["requests_per_s"],
        ),
        (
            "/reconstruct 64 images per request: >= 70% of the codec ceiling",
            f"{big} / {codec} img/s = {big / codec:.0%}",
            big >= 0.7 * codec,
        ),
        (
            "/generate n=64: >= 70% of its ceiling",
            f"{gen} / {ceil['generate_64']['codec']['images_per_s']} img/s = "
            f"{gen / ceil['generate_64']['codec']['images_per_s']:.0%}",
            gen >= 0.7 * ceil["generate_64"]["codec"]["images_per_s"],
        ),
        (
            "/visualise AlexNet layer 5, c=16: >= 70% of the forward + undo ceiling",
            f"{vis} / {vis_ceiling} img/s = {vis / vis_ceiling:.0%}",
            vis >= 0.7 * vis_ceiling,
        ),
        (
            "c=1: p50 with batching on within 1 ms of off (servers side by side)",
            ", ".join(f"{k} {d:+.2f} ms" for k, d in p50),
            all(abs(d) <= 1 for _, d in p50),
        ),
        ("no errors at any concurrency", f"{errors} errors", errors == 0),
        (
            "RSS growth < 50 MB over 10,000 requests",
            f"{growth:+.1f} MB over {memory['requests']}",
            growth < 50,
        ),
    ]


def cpu_budget(r: dict) -> list[str]:
    """Whether a goal fits in the machine's CPU at all: the most requests/s the cores allow at
    the CPU per request measured (server plus load generator), against what the goal needs."""
    cores = r["machine"]["cores"]
    ceil = r["ceiling"]
    rows = [
        (
            "/reconstruct 1 image, c=64 (service)",
            _at(r["batching_on"]["reconstruct_1"], 64),
            0.5 * ceil["reconstruct"]["codec"]["images_per_s"],
        ),
        ("/reconstruct 1 image, c=64 (LitServe)", _at(r["litserve"], 64), None),
        (
            "/visualise layer 5, c=16 (service)",
            _at(r["batching_on"]["visualise_5"], 16),
            0.7 * ceil["visualise"]["layer5"]["model"]["images_per_s"],
        ),
    ]
    lines = [
        "",
        "## Where the CPU goes",
        "",
        "CPU time per request, of the server process (with its threads and children) and of "
        "the load generator, measured from `/proc` during each load; `cpu_busy` is the whole "
        f"machine. At that cost the {cores} cores allow at most `cores / (server + generator)` "
        "requests/s, whatever the design does with latency:",
        "",
        "| load | req/s | server ms | generator ms | machine busy | most req/s the cores "
        "allow | goal needs |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row, needed in rows:
        bound = cores * 1000 / (row["server_cpu_ms"] + row["client_cpu_ms"])
        lines.append(
            f"| {name} | {row['requests_per_s']} | {row['server_cpu_ms']} | "
            f"{row['client_cpu_ms']} | {row['cpu_busy']} | {bound:.0f} | "
            f"{'' if needed is None else round(needed)} |"
        )
    rec = ceil["reconstruct"]["codec"]["images_per_s"]
    vis = ceil["visualise"]["layer5"]
    lines += [
        "",
        f"For comparison, the plain-PyTorch ceilings spend {cores * 1000 / rec:.2f} ms of CPU "
        f"per AE image with the codec, {cores * 1000 / vis['model']['images_per_s']:.1f} ms per "
        f"AlexNet layer-5 image without it and {cores * 1000 / vis['codec']['images_per_s']:.1f}"
        " ms with it (all cores busy).",
    ]
    return lines


def write_report(r: dict, path: Path) -> None:
    m = r["machine"]
    columns = [
        "concurrency",
        "requests_per_s",
        "images_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "errors",
        "server_cpu_ms",
        "client_cpu_ms",
        "cpu_busy",
        "mean_batch_images",
    ]
    lines = [
        "# Serving benchmarks",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['cuda'] or 'no GPU'}; Python "
        f"{m['python']}, torch {m['torch']}; {m['date']}. Command: `make bench` "
        "(`python -m bench`), which also writes `docs/benchmarks.json`.",
        "",
        "The service runs as users start it (`python -m service`, defaults: max batch 64, no "
        "batching delay) on loopback; the load generator (`bench/load.py`, bounded async httpx, "
        "one keep-alive connection per worker) shares the same two cores, so absolute numbers "
        "are low and only ratios within this run mean much. Models have the default "
        "architectures with random weights. `mean_batch_images` comes from `/metrics`; "
        "`server_cpu_ms` and `client_cpu_ms` are CPU time per request of the server process "
        "and of the load generator in the measured window, `cpu_busy` the whole machine's. "
        "docs/performance.md explains the figures and what was done about them.",
        "",
        "## Goals",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
    ]
    lines += [f"| {g} | {v} | {'yes' if ok else '**no**'} |" for g, v, ok in goals(r)]
    lines += cpu_budget(r)
    c = r["ceiling"]
    lines += [
        "",
        "## Ceiling: the same work in plain PyTorch, best batch size",
        "",
        "| work | model only (img/s @ batch) | model + PNG codec (img/s @ batch) |",
        "|---|---|---|",
        f"| AE reconstruction | {c['reconstruct']['model']['images_per_s']} @ "
        f"{c['reconstruct']['model']['batch_size']} | {c['reconstruct']['codec']['images_per_s']}"
        f" @ {c['reconstruct']['codec']['batch_size']} |",
        f"| VAE generation, n=64 | {c['generate_64']['model']['images_per_s']} | "
        f"{c['generate_64']['codec']['images_per_s']} (one grid PNG) |",
    ]
    for layer, v in c["visualise"].items():
        lines.append(
            f"| AlexNet visualisation, {layer} | {v['model']['images_per_s']} @ "
            f"{v['model']['batch_size']} | {v['codec']['images_per_s']} @ "
            f"{v['codec']['batch_size']} |"
        )
    titles = {
        "reconstruct_1": "/reconstruct, one 28x28 PNG per request",
        "reconstruct_64": "/reconstruct, 64 PNGs per request",
        "generate_64": "/generate, n=64 (one grid PNG)",
        "visualise_5": "/visualise, AlexNet layer 5, one 320x240 JPEG per request",
    }
    for key, title in titles.items():
        for mode in ("batching_on", "batching_off"):
            lines += ["", f"## {title}: {mode.replace('_', ' ')}", ""]
            lines += _table(r[mode][key], columns)
    lines += [
        "",
        "## LitServe, same AE and PNG bytes (base64 JSON), max batch 64, 5 ms timeout",
        "",
    ]
    lines += _table(r["litserve"], [c for c in columns if c != "mean_batch_images"])
    lines += [
        "",
        "## Concurrency 1, batching on and off side by side",
        "",
        "Both servers run at once and 1-second loads alternate between them, 7 rounds; the "
        "median p50 of each:",
        "",
        "| request | p50 batching on (ms) | p50 batching off (ms) |",
        "|---|---|---|",
    ]
    lines += [
        f"| {key} | {v['p50_ms_on']} | {v['p50_ms_off']} |" for key, v in r["paired_c1"].items()
    ]
    mem = r["batching_on"]["memory"]
    lines += [
        "",
        "## Start-up and memory",
        "",
        f"- Cold start, process start to `/readyz` = 200 (ae, vae, cnn, AlexNet): "
        f"{r['cold_start_seconds']} s.",
        f"- RSS {mem['rss_before_mb']} MB before and {mem['rss_after_mb']} MB after "
        f"{mem['requests']} more requests (peak {mem['rss_peak_mb']} MB), {mem['errors']} errors.",
        "",
    ]
    path.write_text("\n".join(lines))
