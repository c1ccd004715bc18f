"""One model, many requests: the images of requests that arrive together go through one forward pass.

While the model works on a batch, the next requests' images pile up; when it is free it
takes all of them (up to ``max_batch`` images) at once. Nothing waits on purpose: a lone
request is answered as soon as the model is free, and under load a forward pass of 64 images
costs far less than 64 passes of one. The model runs in one thread of its own, so the event
loop keeps accepting, reading and preparing uploads meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fmnist.inference.predict import Input, Prediction, predict_inputs


class Batcher:
    """``await batcher.predict(inputs)`` -> the :class:`Prediction` of each input, in order."""

    def __init__(self, model, *, class_names: Sequence[str], max_batch: int, labels: Sequence | None = None) -> None:
        self.model = model
        self.class_names = list(class_names)
        self.labels = labels  # each column's label, where the model does not know them (predict_inputs)
        self.max_batch = max(1, int(max_batch))
        self._waiting: list[tuple[list[Input], int, asyncio.Future]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0  # forward passes run: how much batching happened

    async def predict(self, inputs: Sequence[Input], top_k: int) -> list[Prediction]:
        loop = asyncio.get_running_loop()
        # One worker task per event loop: a test client may run each request in a loop of its own.
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._work())
        future = loop.create_future()
        self._waiting.append((list(inputs), top_k, future))
        self._wake.set()
        return await future

    def _take(self) -> list[tuple[list[Input], int, asyncio.Future]]:
        """The requests of the next batch: at least one, then more while they fit in max_batch."""
        taken = [self._waiting.pop(0)]
        size = len(taken[0][0])
        while self._waiting and size + len(self._waiting[0][0]) <= self.max_batch:
            size += len(self._waiting[0][0])
            taken.append(self._waiting.pop(0))
        return taken

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                taken = self._take()
                images = [i for inputs, _, _ in taken for i in inputs]
                top_k = max(k for _, k, _ in taken)
                try:
                    predictions = await asyncio.to_thread(predict_inputs, self.model, images, top_k=top_k,
                                                          class_names=self.class_names, labels=self.labels)
                except Exception as exc:  # a bug in the model's code: every waiting request hears of it
                    for _, _, future in taken:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches += 1
                start = 0
                for inputs, k, future in taken:
                    mine = predictions[start:start + len(inputs)]
                    start += len(inputs)
                    for p in mine:
                        p.top_k = p.top_k[:k]
                    if not future.done():  # the client may have gone away
                        future.set_result(mine)
