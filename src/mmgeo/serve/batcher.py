"""Dynamic batching of concurrent searches (as Ray Serve's ``@serve.batch``, Triton's dynamic batcher).

Requests wait in a bounded queue; when the worker is free, the batcher collects what is waiting for up to
``wait_s`` (or until ``max_batch`` searches are there) and runs them as one batch through the bulk pipeline
(:meth:`~mmgeo.search.geolocator.Geolocator.prepare_many`, then
:meth:`~mmgeo.search.geolocator.Geolocator.rank_many` per distinct settings) on the one worker thread that
owns the models and the engine. Each answer is what a search of that request alone gives. A full queue
refuses at once (:class:`QueueFull`: the app answers 503 with ``Retry-After``) instead of letting latency
grow without limit; a request that times out gives its slot back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from mmgeo.search.features import Photo
from mmgeo.search.geolocator import Geolocator, SearchSettings
from mmgeo.search.result import SearchResult


class QueueFull(Exception):
    """Every slot is taken: come back in ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the server is busy (all queue slots taken); retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class Job:
    """One request's search: its decoded photos, upload problems, settings, and what to do with the answer."""

    photos: list[Photo]
    problems: list[str]
    settings: SearchSettings
    finish: Callable[[SearchResult], Any]
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    released: bool = False


class SearchBatcher:
    """Collects concurrent searches and runs them in batches on ``worker`` (see the module docstring).

    Args:
        max_batch: searches per batch; wait_s: how long a free worker waits for more before it runs a batch;
        max_queue: searches accepted and not finished (queued or running) before new ones are refused.
    """

    def __init__(self, geolocator: Geolocator, worker: Executor, *, max_batch: int = 16, wait_s: float = 0.005,
                 max_queue: int = 64) -> None:
        if max_batch < 1 or max_queue < 1 or wait_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and wait_s >= 0")
        self.geolocator, self.worker = geolocator, worker
        self.max_batch, self.wait_s, self.max_queue = max_batch, wait_s, max_queue
        self.waiting: deque[Job] = deque()
        self.active = 0
        self.batch_seconds = 0.5  # the last batch's wall time: what Retry-After is estimated from
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def submit(self, job: Job) -> asyncio.Future:
        """Queue ``job``; its future gets the ``finish`` value (or the search's error).

        Raises:
            QueueFull: ``max_queue`` searches are already accepted and not finished.
        """
        if self.active >= self.max_queue:
            batches_ahead = math.ceil(self.active / self.max_batch)
            raise QueueFull(max(1, math.ceil(batches_ahead * self.batch_seconds)))
        self.active += 1
        self.waiting.append(job)
        assert self._wake is not None, "start() the batcher first (in the app's lifespan)"
        self._wake.set()
        return job.future

    def release(self, job: Job) -> None:
        """Give ``job``'s slot back (finished or timed out); a released job still waiting is dropped."""
        if not job.released:
            job.released = True
            self.active -= 1

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            deadline = loop.time() + self.wait_s
            while self._live() < self.max_batch and (left := deadline - loop.time()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), left)
                self._wake.clear()
            batch = self._take()
            if not batch:
                continue
            t0 = time.perf_counter()
            outcomes = await loop.run_in_executor(self.worker, self._search, batch)
            self.batch_seconds = time.perf_counter() - t0
            for job, outcome in zip(batch, outcomes):
                self.release(job)
                if not job.future.done():
                    (job.future.set_exception if isinstance(outcome, BaseException) else job.future.set_result)(outcome)
            if self.waiting:
                self._wake.set()

    def _live(self) -> int:
        return sum(not j.released for j in self.waiting)

    def _take(self) -> list[Job]:
        batch: list[Job] = []
        while self.waiting and len(batch) < self.max_batch:
            job = self.waiting.popleft()
            if not job.released:  # timed out while waiting: dropped
                batch.append(job)
        return batch

    def _search(self, batch: Sequence[Job]) -> list[Any]:
        """The worker thread's part: the batch's searches, grouped by settings; a failing group is re-run one
        search at a time, so one bad request never fails the others."""
        outcomes: list[Any] = [None] * len(batch)
        groups: dict[SearchSettings, list[int]] = {}
        for i, job in enumerate(batch):
            groups.setdefault(job.settings, []).append(i)
        for settings, members in groups.items():
            try:
                results = self._rank([batch[i] for i in members], settings)
            except Exception:
                results = []
                for i in members:
                    try:
                        results += self._rank([batch[i]], settings)
                    except Exception as exc:  # this request's error, answered to it alone
                        results.append(exc)
            for i, result in zip(members, results):
                try:
                    outcomes[i] = result if isinstance(result, BaseException) else batch[i].finish(result)
                except Exception as exc:
                    outcomes[i] = exc
        return outcomes

    def _rank(self, jobs: Sequence[Job], settings: SearchSettings) -> list[SearchResult]:
        prepared = self.geolocator.prepare_many([(j.photos, j.problems) for j in jobs], settings.top_k_hypotheses)
        return self.geolocator.rank_many(prepared, settings)
