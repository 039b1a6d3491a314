"""Prometheus text exposition (format 0.0.4), written by hand: request counts, a latency
histogram per route, errors, refusals and the index generation."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Callable

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(**labels: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


class Metrics:
    """Thread-safe counters; ``gauges`` are read when the page is rendered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.buckets: dict[tuple[str, str], list[int]] = {}
        self.sums: dict[tuple[str, str], float] = defaultdict(float)
        self.errors: dict[tuple[str, str], int] = defaultdict(int)
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, str(status))] += 1
            counts = self.buckets.setdefault((method, route), [0] * (len(BUCKETS) + 1))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self.sums[(method, route)] += seconds
            if status >= 400:
                self.errors[(route, "client" if status < 500 else "server")] += 1

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP cascade_http_requests_total HTTP requests answered.",
                     "# TYPE cascade_http_requests_total counter"]
            lines += [f"cascade_http_requests_total{_labels(method=m, route=r, status=s)} {n}"
                      for (m, r, s), n in sorted(self.requests.items())]
            lines += ["# HELP cascade_http_request_seconds Time to answer a request.",
                      "# TYPE cascade_http_request_seconds histogram"]
            for (m, r), counts in sorted(self.buckets.items()):
                for bound, n in zip([*map(str, BUCKETS), "+Inf"], counts):
                    lines.append(f"cascade_http_request_seconds_bucket{_labels(method=m, route=r, le=bound)} {n}")
                lines.append(f"cascade_http_request_seconds_sum{_labels(method=m, route=r)} {self.sums[(m, r)]:.6f}")
                lines.append(f"cascade_http_request_seconds_count{_labels(method=m, route=r)} {counts[-1]}")
            lines += ["# HELP cascade_http_errors_total Answers with status 4xx (client) or 5xx (server).",
                      "# TYPE cascade_http_errors_total counter"]
            lines += [f"cascade_http_errors_total{_labels(route=r, kind=k)} {n}" for (r, k), n in sorted(self.errors.items())]
        for name, (help_text, read) in sorted(self.gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"
