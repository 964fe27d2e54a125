"""CPU time per call: the server's processes, PostgreSQL's and the load client's, read from /proc
over a row's measured window.

A ratio says how far from a ceiling a row is; CPU per call says where the distance is: in the
server's Python process (one core at most per worker), in PostgreSQL, or in the client (all three
share this machine's cores, so a costlier client leaves less to the others). Sampled every ``INTERVAL_S`` in a thread and interpolated at the window
the client measured (wall clock), so warm-up and process start-up are left out. Linux only: where
/proc cannot be read the figures are None.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

INTERVAL_S = 0.1
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
POSTGRES_NAMES = frozenset({"postgres", "postmaster"})
CPU_KEYS = ("server_us_per_call", "postgres_us_per_call", "client_us_per_call")


def _stat(pid_dir: Path) -> tuple[str, int, int] | None:
    """(command name, parent pid, CPU ticks) of one /proc/<pid>, or None when it is gone."""
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1: text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    # After the name: state ppid pgrp ... utime (14th field of the line) stime (15th).
    return name, int(fields[1]), int(fields[11]) + int(fields[12])


def read_process_ticks(server_roots: Sequence[int],
                       client_roots: Sequence[int] = ()) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """CPU ticks so far, by pid, of the server (``server_roots`` with all their descendants), of
    every PostgreSQL process, and of the clients (``client_roots`` with theirs)."""
    procs = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (st := _stat(d)) is not None:
            procs[int(d.name)] = st
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)

    def tree(roots: Sequence[int]) -> dict[int, int]:
        found: dict[int, int] = {}
        stack = [p for p in roots if p in procs]
        while stack:
            pid = stack.pop()
            if pid in found:
                continue
            found[pid] = procs[pid][2]
            stack += children.get(pid, [])
        return found

    postgres = {pid: t for pid, (name, _, t) in procs.items() if name in POSTGRES_NAMES}
    return tree(server_roots), postgres, tree(client_roots)


def read_ticks(server_roots: Sequence[int], client_roots: Sequence[int] = ()) -> tuple[int, int, int]:
    """``read_process_ticks`` summed: the server's, PostgreSQL's and the clients' ticks so far."""
    server, postgres, clients = read_process_ticks(server_roots, client_roots)
    return sum(server.values()), sum(postgres.values()), sum(clients.values())


class CpuSampler:
    """Samples (wall time, server ticks, PostgreSQL ticks, client ticks) while in its ``with`` block."""

    def __init__(self, server_pids: Callable[[], list[int]], client_pids: Callable[[], list[int]] = list) -> None:
        self.server_pids = server_pids
        self.client_pids = client_pids
        self.samples: list[tuple[float, int, int, int]] = []
        # The last ticks seen of every process of each group: one that exits during the window (a
        # client done early, a PostgreSQL backend closed) keeps what it spent, so no group's sum
        # ever goes down.
        self._seen: tuple[dict[int, int], dict[int, int], dict[int, int]] = ({}, {}, {})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self.available = Path("/proc/self/stat").exists()

    def _sample(self) -> None:
        now = time.time()
        for seen, ticks in zip(self._seen, read_process_ticks(self.server_pids(), self.client_pids()), strict=True):
            seen.update(ticks)
        self.samples.append((now, *(sum(seen.values()) for seen in self._seen)))

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            self._sample()

    def __enter__(self) -> CpuSampler:
        if self.available:
            self._sample()
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()
            self._sample()

    def _at(self, t: float, column: int) -> float:
        times = [s[0] for s in self.samples]
        i = bisect_left(times, t)
        if i == 0:
            return float(self.samples[0][column])
        if i >= len(self.samples):
            return float(self.samples[-1][column])
        (t0, *a), (t1, *b) = self.samples[i - 1], self.samples[i]
        share = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
        return a[column - 1] + (b[column - 1] - a[column - 1]) * share

    def per_call(self, window: tuple[float, float] | None, calls: int, *, server: bool = True) -> dict[str, float | None]:
        """µs of CPU per call in ``window`` (wall clock): the server's (None without one),
        PostgreSQL's and the clients'."""
        if not self.available or window is None or calls <= 0 or len(self.samples) < 2:
            return dict.fromkeys(CPU_KEYS)
        start, end = window

        def us(column: int) -> float:
            return round((self._at(end, column) - self._at(start, column)) / TICKS_PER_S / calls * 1e6, 1)

        return {"server_us_per_call": us(1) if server else None, "postgres_us_per_call": us(2),
                "client_us_per_call": us(3)}
