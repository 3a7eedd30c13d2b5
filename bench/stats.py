"""Small statistics and table helpers shared by the benchmarks."""

from __future__ import annotations

import statistics

from rich.console import Console
from rich.table import Table


def percentile(samples: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def summary(samples: list[float]) -> tuple[float, float, float]:
    """Median, p99 and max in milliseconds of samples given in seconds."""
    return (statistics.median(samples) * 1000, percentile(samples, 99) * 1000,
            max(samples) * 1000)


def print_table(title: str, rows: list[tuple[str, int, list[float], str]]) -> None:
    """Print ``(measure, n, samples-in-seconds, target)`` rows as a table."""
    table = Table(title=title)
    for column in ("measure", "n", "median ms", "p99 ms", "max ms", "target"):
        table.add_column(column, justify="right" if column not in ("measure", "target") else "left")
    for name, n, samples, target in rows:
        med, p99, top = summary(samples)
        table.add_row(name, str(n), f"{med:.2f}", f"{p99:.2f}", f"{top:.2f}", target)
    Console(width=110).print(table)
