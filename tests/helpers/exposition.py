"""Reading Prometheus' text exposition format (what `/metrics` answers) in tests."""

from __future__ import annotations


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus text exposition's samples of `name` that carry `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
