"""docs/benchmarks.md from the benchmark's results, with every goal checked."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .attribution import report_lines
from .goals import ROUTES, all_goals, at, beside_medians, gpu, latency_pairs, ratio

COLUMNS = [
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
TITLES = {
    "reconstruct_1": "/reconstruct, one 28x28 PNG per request",
    "reconstruct_64": "/reconstruct, 64 PNGs per request",
    "generate_64": "/generate, n=64 (one grid PNG)",
    "visualise_5": "/visualise, AlexNet layer 5, one 640x480 JPEG photograph per request",
    "visualise_cnn": "/visualise, cnn layer 4, one 640x480 JPEG photograph per request",
}


def _table(rows: list[dict], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines


def _header(r: dict) -> list[str]:
    m = r["machine"]
    lines = [
        "# Serving benchmarks",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['cuda'] or 'no GPU'}; Python "
        f"{m['python']}, torch {m['torch']}; {m['date']}; load average "
        f"{m.get('load_average_at_start', float('nan')):.2f} at the start (other work on the "
        f"machine shows here). Command: `make bench` (`{r['command']}`), which also writes "
        "`docs/benchmarks.json`.",
        "",
        "The service runs as users start it (`python -m service`, defaults: a worker process "
        "per core, max batch 64, no batching delay) on loopback; after each load the bench "
        "waits until the server has finished what the load left in flight, so that no load "
        "runs beside the last one's leftovers. The main loads are driven by "
        f"**{r['generator']}** (`bench/serving/wrk.py`, a Lua script sending a prebuilt multipart "
        "body, one thread); the Python generator (`bench/serving/load.py`, async httpx) is a "
        "cross-check. Both are closed loops of `concurrency` connections and share the "
        "machine's cores with the server. Models have the default architectures with random "
        "weights. `server_cpu_ms` and `client_cpu_ms` are CPU time per request of the server "
        "process and of the generator in the measured window, `cpu_busy` the whole machine's; "
        "`mean_batch_images` comes from `/metrics`. docs/performance.md explains the figures.",
    ]
    if r.get("quick"):
        lines += ["", "**Quick smoke run (`--quick`): loads of a second; not figures to quote.**"]
    return lines


def _goal_table(goals: list) -> list[str]:
    lines = ["| goal | measured | met |", "|---|---|---|"]
    return lines + [f"| {g} | {v} | {'yes' if ok else '**no**'} |" for g, v, ok in goals]


def _goals(r: dict) -> list[str]:
    return ["", "## Goals", "", *_goal_table(all_goals(r))]


def _cpu_rows(r: dict) -> list[tuple[str, dict, float | None]]:
    on, lit, ceil = r["batching_on"], r["litserve"], r["ceiling"]
    codec = ceil["reconstruct"]["codec"]["images_per_s"]
    vis = ceil["visualise"]
    return [
        ("/reconstruct 1 image, c=64, service", at(on["reconstruct_1"], 64), 0.8 * codec),
        ("... same, httpx generator", on["httpx_reconstruct_1_c64"], None),
        ("/reconstruct 1 image, c=64, LitServe", at(lit["rows"], 64), None),
        ("... same, httpx generator", lit["httpx_c64"], None),
        ("/reconstruct 64 images, c=4", at(on["reconstruct_64"], 4), 0.85 * codec / 64),
        (
            "/generate n=64, c=4",
            at(on["generate_64"], 4),
            0.9 * ceil["generate_64"]["codec"]["images_per_s"] / 64,
        ),
        (
            "/visualise AlexNet 5, c=16",
            at(on["visualise_5"], 16),
            0.8 * vis["alexnet_5"]["codec"]["images_per_s"],
        ),
        (
            "/visualise cnn 4, c=16",
            at(on["visualise_cnn"], 16),
            0.8 * vis["cnn_4"]["codec"]["images_per_s"],
        ),
    ]


def _cpu(r: dict) -> list[str]:
    cores = r["machine"]["cores"]
    lines = [
        "",
        "## Where the CPU goes",
        "",
        "CPU time per request of the server process (all its threads) and of the load "
        f"generator. Server and generator share {cores} cores, so at that cost the machine "
        "allows at most `cores x 1000 / (server ms + generator ms)` requests/s, whatever the "
        "design does with latency; a goal that needs more cannot be met on this machine "
        "without spending less CPU per request:",
        "",
        "| load | generator | req/s | server ms | generator ms | machine busy | most req/s "
        "the cores allow | goal needs req/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row, needed in _cpu_rows(r):
        bound = ratio(cores * 1000, row["server_cpu_ms"] + row["client_cpu_ms"])
        lines.append(
            f"| {name} | {row.get('generator', 'httpx')} | {row['requests_per_s']} | "
            f"{row['server_cpu_ms']} | {row['client_cpu_ms']} | {row['cpu_busy']} | "
            f"{bound:.0f} | {'' if needed is None else round(needed, 1)} |"
        )
    return lines


def _ceiling(r: dict) -> list[str]:
    c = r["ceiling"]
    works = [
        ("AE reconstruction (28x28 PNG in and out)", c["reconstruct"]),
        ("VAE generation, n=64 (one grid PNG)", c["generate_64"]),
        ("AlexNet layer 5 visualisation (640x480 JPEG in, PNG out)", c["visualise"]["alexnet_5"]),
        ("cnn layer 4 visualisation (640x480 JPEG in, PNG out)", c["visualise"]["cnn_4"]),
    ]
    lines = [
        "",
        "## Ceiling: the same work in plain PyTorch + Pillow, no HTTP",
        "",
        "`bench/serving/ceiling.py` times each work at several batch sizes and splits of the "
        "cores: one pipeline whose forward pass uses every core and whose decoding and encoding "
        "run on as many threads as cores, or one single-threaded pipeline per core running side by "
        "side, each a process of its own as each of the service's workers is (`2x(...)` below: two "
        "pipelines). The best is the ceiling "
        "(`docs/benchmarks.json` has every configuration measured).",
        "",
        "| work | model only: img/s @ batch, split | model + codec: img/s @ batch, split |",
        "|---|---|---|",
    ]
    for name, v in works:
        m, k = v["model"], v["codec"]
        lines.append(
            f"| {name} | {m['images_per_s']} @ {m['batch_size']}, {m['split']} | "
            f"{k['images_per_s']} @ {k['batch_size']}, {k['split']} |"
        )
    return lines + _beside(r.get("ceiling_beside", {}))


def _beside(beside: dict) -> list[str]:
    """The ceiling's best configurations measured again beside the loads, round by round."""
    if not beside:
        return []
    lines = [
        "",
        "The machine's speed drifts between the sweep above and a load minutes later, so the "
        "shares of the ceiling in the goals come from rounds in which the load and the "
        "ceiling's best configuration of its work ran back to back (the order reversed every "
        "other round); the share is the median of the rounds' ratios:",
        "",
        "| load | concurrency | rounds: service / ceiling img/s | median share |",
        "|---|---|---|---|",
    ]
    for key, entry in beside.items():
        rounds = ", ".join(f"{x['service']} / {x['ceiling']}" for x in entry["rounds"])
        share = beside_medians(entry["rounds"])["share"]
        lines.append(f"| {key} | {entry['concurrency']} | {rounds} | {share:.0%} |")
    return lines


def _loads(r: dict) -> list[str]:
    lines = []
    for key, title in TITLES.items():
        for mode in ("batching_on", "batching_off"):
            lines += ["", f"## {title}: {mode.replace('_', ' ')}", ""]
            lines += _table(r[mode][key], COLUMNS)
    lit = r["litserve"]
    lines += [
        "",
        "## LitServe, same AE and PNG bytes (base64 JSON), max batch 64, 5 ms timeout",
        "",
        "`/reconstruct` one image at c=64, round by round: the service (batching on) and "
        "LitServe with one and with two inference workers (`workers_per_device`, the torch "
        "threads divided among them) are up at once and measured back to back in each round, "
        "the order reversed every other round; the goals take the median of the rounds' ratios.",
        "",
        "| round | service req/s | p99 ms | LitServe 1 worker req/s | p99 ms | ratio | "
        "LitServe 2 workers req/s | p99 ms | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rounds = lit.get("versus", {}).get("rounds", [])
    if not rounds:
        lines.append("| not measured in this run | | | | | | | | |")
    for i, x in enumerate(rounds, 1):
        s, one, two = x["service"], x["litserve_1"], x["litserve_2"]
        lines.append(
            f"| {i} | {s['requests_per_s']} | {s['p99_ms']} | {one['requests_per_s']} | "
            f"{one['p99_ms']} | {ratio(s['requests_per_s'], one['requests_per_s']):.2f}x | "
            f"{two['requests_per_s']} | {two['p99_ms']} | "
            f"{ratio(s['requests_per_s'], two['requests_per_s']):.2f}x |"
        )
    lines += ["", "LitServe with one inference worker at each concurrency:", ""]
    lines += _table([*lit["rows"], lit["httpx_c64"]], ["generator", *COLUMNS[:-1]])
    return lines


def _latency(r: dict) -> list[str]:
    lat = r["latency"]
    lines = [
        "",
        "## Low load, idle and with one core busy: the service and a naive peer",
        "",
        "Each route at c=1 on the idle machine, then with a CPU-bound process pinned to core "
        f"{lat['busy_core']} (`taskset`) standing in for a neighbour. The naive peer "
        "(`bench/serving/peer_naive.py`) is a FastAPI app with one sync route per endpoint, one "
        "forward pass per request on one torch thread. Both run side by side and the loads "
        "alternate between them; each figure is the median over the rounds, `requests` their "
        "sum.",
        "",
        "| route | c | machine | service p50 | p95 | p99 | naive p50 | p95 | p99 | requests each |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, c, condition, pair in latency_pairs(r):
        s, n = pair["service"], pair["naive"]
        lines.append(
            f"| {ROUTES[key]} | {c} | {condition} | {s['p50_ms']} | {s['p95_ms']} | "
            f"{s['p99_ms']} | {n['p50_ms']} | {n['p95_ms']} | {n['p99_ms']} | "
            f"{s['requests']}, {n['requests']} |"
        )
    return lines


def _gpu(r: dict) -> list[str]:
    g = r["gpu"]
    lines = ["", "## GPU", ""]
    if "skipped" in g:
        return [
            *lines,
            f"Skipped: {g['skipped']}. `make bench` runs it where CUDA is present; "
            "`python -m bench.serving.gpu` runs it alone, and docs/benchmarks-gpu.md holds the "
            "last such run.",
        ]
    rows = [{"batching": mode, **row} for mode, row in g["visualise_5_c64"].items()]
    alone = g["model_alone_images_per_s"]
    lines += [
        f"Device: {g['device']}. AlexNet layer 5's visualisation alone (no HTTP, no codec): "
        + ", ".join(f"{rate} img/s in batches of {size}" for size, rate in alone.items())
        + ". `/visualise` AlexNet layer 5, c=64:",
        "",
    ]
    lines += _table(rows, ["batching", *COLUMNS])
    lines += ["", f"`pytest -m gpu`: {g['tests']['summary']}"]
    return lines


def _memory(r: dict) -> list[str]:
    mem = r["batching_on"]["memory"]
    return [
        "",
        "## Start-up and memory",
        "",
        f"- Cold start, process start to `/readyz` = 200 (ae, vae, cnn, AlexNet): "
        f"{r['cold_start_seconds']} s.",
        f"- RSS {mem['rss_before_mb']} MB before and {mem['rss_after_mb']} MB after "
        f"{mem['requests']} more requests (peak {mem['rss_peak_mb']} MB), {mem['errors']} errors.",
        "",
    ]


def write_report(r: dict, path: Path) -> None:
    sections = [_header, _goals, _cpu, _ceiling, _loads, _latency, report_lines, _gpu, _memory]
    path.write_text("\n".join(line for section in sections for line in section(r)))


def write_gpu_report(r: dict, path: Path) -> None:
    """docs/benchmarks-gpu.md: the GPU section run alone (``python -m bench.serving.gpu``)."""
    m = r["machine"]
    lines = [
        "# Serving benchmarks on a GPU",
        "",
        f"Machine: {m['cuda'] or 'no GPU'}, {m['cpu']} with {m['cores']} cores; Python "
        f"{m['python']}, torch {m['torch']}; {m['date']}. Command: `{r['command']}` (the GPU "
        f"section of `make bench` alone); load generator: {r['generator']}. The service runs "
        "as users start it (`python -m service` with its defaults and `UNCONV_DEVICE=cuda`), "
        "batching off is `UNCONV_MAX_BATCH_SIZE=1`; AlexNet has random weights.",
        "",
        *_goal_table(gpu(r)),
        *_gpu(r),
        "",
    ]
    path.write_text("\n".join(lines))


def save(results: dict, out: Path, stem: str, write: Callable[[dict, Path], None]) -> None:
    """``out/stem.json`` (the raw results) and ``out/stem.md`` (the report ``write`` makes)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    write(results, out / f"{stem}.md")
    print(f"wrote {out / stem}.md and {out / stem}.json")
