"""Concurrent calls gathered into one: what arrives while a group is being written joins the
next group, so a burst of single calls costs one store transaction, not one each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Coalescer(Generic[In, Out]):
    """`run` takes a group of items and answers one result per item, in order: a value, or
    an exception for that item alone. If `run` itself raises, every item of the group fails.

    One group is written at a time. An idle coalescer starts a group on the next loop
    iteration, once the calls already made in this one have joined it."""

    def __init__(self, run: Callable[[list[In]], Awaitable[list[Out | Exception]]]) -> None:
        self._run = run
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._waiting.append((item, future))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    results = await self._run([item for item, _ in group])
                except BaseException as exc:  # every caller of the group is told
                    for _, future in group:
                        if future.done():
                            continue
                        if isinstance(exc, Exception):
                            future.set_exception(exc)
                        else:  # cancelled (shut down): its callers are too
                            future.cancel()
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(group, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._task = None
