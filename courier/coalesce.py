"""Concurrent calls gathered into one: a burst of single calls costs one store transaction,
not one each.

A group is not closed when it is handed to the store but when its transaction starts:
`run` gets a `take` that it calls at that moment (in the store's writer thread), and every
call made until then joins. While one group's transaction runs, the next group already waits
in the writer's queue, so the writer finds it there together with other waiting writes (the
replies of the devices) and commits them all at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")
Take = Callable[[], list[In]]


class Coalescer(Generic[In, Out]):
    """`run(take)` takes the group with `take()` when its transaction starts (at most once)
    and answers one result per item taken, in order: a value, or an exception for that item
    alone. If `run` itself raises, every item of the group fails.

    At most one group waits to be taken; an idle coalescer starts one on the next loop
    iteration, once the calls already made in this one have joined it."""

    def __init__(self, run: Callable[[Take[In]], Awaitable[list[Out | Exception]]]) -> None:
        self._run = run
        self._lock = threading.Lock()  # `take` runs in the writer's thread
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._queued = False  # a group waits to be taken
        self._groups: set[asyncio.Task[None]] = set()  # referenced until done

    async def submit(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        with self._lock:
            self._waiting.append((item, future))
            start, self._queued = not self._queued, True
        if start:
            task = loop.create_task(self._group())
            self._groups.add(task)
            task.add_done_callback(self._groups.discard)
        return await future

    async def _group(self) -> None:
        taken: list[list[tuple[In, asyncio.Future[Out]]]] = []

        def take() -> list[In]:
            """The group, the first time; nothing after that (nor after it was given up)."""
            with self._lock:
                if taken:
                    return []
                group, self._waiting = self._waiting, []
                self._queued = False
                taken.append(group)
            return [item for item, _ in group]

        try:
            results = await self._run(take)
        except BaseException as exc:  # every caller of the group is told
            take()  # refused or given up before it started: nothing else may take it now
            for _, future in taken[0]:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:  # cancelled (shut down): its callers are too
                    future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(taken[0], results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
