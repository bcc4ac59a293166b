"""The generation report's tables (bench/studies/generation.py) on made-up verdicts."""

from __future__ import annotations

from bench.studies.generation import fidelity_table, temperature_table


def _row(t, precision, recall, fid):
    return {
        "temperature": t,
        "precision": precision,
        "recall": recall,
        "fid": fid,
        "score": 9.0,
        "confident": 0.9,
        "agreement_min": 0.955,
    }


def test_the_temperature_table_marks_the_served_temperature_only():
    rows = [_row(0.5, 0.98, 0.31, 23.44), _row(0.7, 0.946, 0.613, 21.58)]
    lines = temperature_table(rows, served=0.7).splitlines()
    assert lines[2] == "| 0.5 | 0.98 | 0.31 | 23.4 | 9.00 | 90.0% | 95.5% |"
    assert lines[3] == "| **0.7 (served)** | 0.95 | 0.61 | 21.6 | 9.00 | 90.0% | 95.5% |"


def test_the_fidelity_table_names_the_real_baseline_for_what_it_is():
    rows = [
        ("real held-out digits (1,000)", _row(1, 0.886, 0.871, 9.06)),
        ("`vae`", _row(1, 0.5, 0.25, 30)),
    ]
    lines = fidelity_table(rows).splitlines()
    assert lines[2] == "| 1,000 real training digits (100 per digit) | 0.89 | 0.87 | 9.1 |"
    assert lines[3] == "| `vae` | 0.50 | 0.25 | 30.0 |"
