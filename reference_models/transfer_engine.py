"""A stand-in for a Mooncake-like transfer engine: its own host thread and its own CUDA stream.

A real engine hands a buffer address to the NIC, whose RDMA read ignores CUDA stream order; what
orders it after the kernels that filled the buffer is whatever the caller did before handing it over.
Jobs are closures that receive the engine's stream; they run one at a time, in submission order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import torch

from .common import Streams

Job = Callable[[Any], None]


class TransferEngine:
    def __init__(self, streams: Streams):
        self._streams = streams
        self.stream = streams.new()
        self._jobs: queue.Queue[tuple[Job, Future[None]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="transfer-engine", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future[None]:
        done: Future[None] = Future()
        self._jobs.put((job, done))
        return done

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        if self._streams.cuda:
            torch.cuda.set_device(self._streams.device)  # the current device is per thread
        while (item := self._jobs.get()) is not None:
            job, done = item
            try:
                job(self.stream)
            except BaseException as e:  # handed to the submitter, which re-raises it
                done.set_exception(e)
            else:
                done.set_result(None)
