"""A Mooncake-style prefill-to-decode KV handoff through a staging buffer.

Each step, on the compute stream, a prefill stand-in projects the batch's tokens to KV (one GEMM) and
writes it into the paged KV pool (each page strided across layers). The KV connector then hands one
request, whose pages lie scattered over the pool, to the transfer engine, which runs on its own
thread: there it gathers the request's pages into a contiguous staging buffer with one strided copy
per page, on the compute stream, and reads the staging buffer into the peer's receive buffer on its
own stream (a peer copy into the next rank's GPU through CUDA IPC; a device copy when there is one GPU
or none), standing in for the NIC's RDMA read, which ignores stream order. Rank r sends to rank r+1
and receives from rank r−1; every receiver checks every byte it received.

Variants (what orders the read after the gather):
- unsynced: nothing, the race of ROCm/ATOM PR #1121: the read starts while the GPU is still busy with
  the prefill GEMM, copies last step's pages until the gather overtakes it, and so overlaps the gather.
- synced: torch.cuda.current_stream().synchronize() on the compute stream first, the fix of PR #1121.
- event: an event recorded after the gather, waited on by the transfer stream: the GPU orders the
  read and no host thread stalls. The read is then stream-ordered GPU work, and marked as such.

The values are exact small integers (a 0/1 input with at most 128 ones per row times a −1/0/1
weight), so the same bytes come out on any device and in any summation order, and step t's input is
the base input rolled by t rows, so each step's pages differ from the previous step's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from overlapscope.instrument import accesses, region

from . import registered
from .common import RankContext, StepResult, Streams
from .transfer_engine import TransferEngine

DEFAULTS: dict[str, Any] = {
    "pool_slots": 32,  # pages of the pool, all written by the prefill batch (32 x 256 = 8192 tokens)
    "slots": 10,  # pages of the request handed off, scattered over the pool (94 MB of staging)
    "block_tokens": 256,
    "layers": 32,
    "kv_dim": 576,  # MLA: 512 latent + 64 RoPE dims
    "hidden": 4096,  # width of the prefill stand-in's input
    "seed": 0,
}
SMALL: dict[str, Any] = {"slots": 4, "pool_slots": 8, "block_tokens": 4, "layers": 2, "kv_dim": 8, "hidden": 32}
VARIANTS = ("synced", "unsynced", "event")
MAX_ONES_PER_ROW = 128  # keeps every partial sum an integer of magnitude <= 128: exact in bfloat16


class StagingTransfer:
    def __init__(self, config: dict[str, Any], ctx: RankContext, variant: str):
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {', '.join(VARIANTS)}")
        validate(config, ctx.world_size)
        self.cfg, self.ctx, self.variant = config, ctx, variant
        self.streams: Streams = ctx.streams
        dev, block = ctx.device, config["block_tokens"]
        self.tokens = config["pool_slots"] * block
        page = (config["layers"], block, config["kv_dim"])
        self.pool = torch.zeros(config["layers"], config["pool_slots"], block, config["kv_dim"],
                                device=dev, dtype=torch.bfloat16)
        self.pages = self._request_pages(ctx.rank)  # host-side page ids, as a connector holds them
        self.x, self.w = self._inputs(ctx.rank)
        self.staging = torch.empty(config["slots"], *page, device=dev, dtype=torch.bfloat16)
        self.received = torch.zeros(config["slots"], *page, device=dev, dtype=torch.bfloat16)
        # (staging page, pool page) views made once: under the Execution Trace every op the engine
        # launches costs the host tens of µs, and the read must start before the prefill ends.
        self.page_copies = [(self.staging[i], self.pool[:, p]) for i, p in enumerate(self.pages)]
        peer_copy = self.streams.cuda and ctx.world_size > 1
        source = (ctx.rank - 1) % ctx.world_size if peer_copy else ctx.rank  # whose pages land here
        self.target = self._peer_buffer() if peer_copy else self.received
        self.source_x, self.source_w = self._inputs(source)
        rows = [p * block + j for p in self._request_pages(source) for j in range(block)]
        self.source_rows = torch.tensor(rows, device=dev)  # the sender's request tokens, in page order
        self.compute = self.streams.current()
        self.gathered = self.streams.event()
        self.engine = TransferEngine(self.streams)

    # ---- the model's API -------------------------------------------------------------------------
    def forward(self, step: int) -> None:
        self.ctx.barrier()  # every receiver has checked last step's bytes before anyone overwrites them
        with region("staging/prefill"), self.streams.use(self.compute):
            kv = torch.roll(self.x, step, 0) @ self.w
            self.pool.copy_(self._as_pages(kv, pool_order=True))
        self.engine.submit(self._handoff).result()
        self.ctx.barrier()  # every transfer into a peer has completed

    def check(self, step: int) -> StepResult:
        rows = (self.source_rows - step).remainder(self.tokens)  # row r of roll(x, t) is row r - t of x
        expected = self._as_pages(self.source_x[rows] @ self.source_w, pool_order=False)
        wrong = (self.received.view(torch.int16) != expected.view(torch.int16)).flatten(1).any(1)
        bad = int(wrong.sum().item())
        err = float((self.received.float() - expected.float()).abs().max().item())
        return StepResult(bad == 0, err, f"received pages: {bad} of {len(self.pages)} differ from the sender's")

    def components(self) -> dict[str, Callable[[], None]]:
        def gather() -> None:
            for staging_page, pool_page in self.page_copies:
                staging_page.copy_(pool_page)

        return {
            "prefill GEMM + pool write": lambda: self.pool.copy_(self._as_pages(self.x @ self.w, pool_order=True)),
            "per-page gather into staging": gather,
            "transfer read (peer copy)": lambda: self.target.copy_(self.staging),
        }

    def close(self) -> None:
        self.engine.close()
        self.target = self.received  # drop the peer's IPC mapping before the peer frees its buffer
        self.ctx.barrier()

    # ---- the transfer engine's job (runs on the engine's thread) ---------------------------------
    def _handoff(self, transfer_stream: Any) -> None:
        with self.streams.use(self.compute):
            with region("staging/gather"), accesses(writes={"staging": self.staging}, label="page_gather"):
                for staging_page, pool_page in self.page_copies:
                    staging_page.copy_(pool_page)
            if self.variant == "synced":
                with region("staging/sync"):
                    self.streams.current().synchronize()  # torch.cuda.current_stream().synchronize()
            elif self.variant == "event":
                self.gathered.record(self.compute)
        with region("staging/transfer"), self.streams.use(transfer_stream):
            if self.variant == "event":
                transfer_stream.wait_event(self.gathered)
            # The NIC-like read happens during this range, outside stream order, except in the event
            # variant, where the transfer stream's wait orders the copy on the GPU.
            on = "gpu" if self.variant == "event" else "host"
            with accesses(reads={"staging": self.staging}, label="rdma_read", on=on):
                self.target.copy_(self.staging, non_blocking=True)
                transfer_stream.synchronize()

    # ---- data ------------------------------------------------------------------------------------
    def _seed(self, rank: int) -> int:
        return 3_000_000 + 1000 * self.cfg["seed"] + rank

    def _request_pages(self, rank: int) -> list[int]:
        order = torch.randperm(self.cfg["pool_slots"], generator=torch.Generator().manual_seed(self._seed(rank)))
        return [int(p) for p in order[:self.cfg["slots"]]]

    def _inputs(self, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The prefill stand-in's 0/1 input and −1/0/1 weight of `rank`, the same on every device."""
        cfg = self.cfg
        g = torch.Generator().manual_seed(self._seed(rank) + 1)
        ones = min(MAX_ONES_PER_ROW, max(1, cfg["hidden"] // 4))
        where = torch.rand(self.tokens, cfg["hidden"], generator=g).argsort(dim=1)[:, :ones]
        x = torch.zeros(self.tokens, cfg["hidden"]).scatter_(1, where, 1.0)
        w = torch.randint(-1, 2, (cfg["hidden"], cfg["layers"] * cfg["kv_dim"]), generator=g).float()
        return x.to(self.ctx.device, torch.bfloat16), w.to(self.ctx.device, torch.bfloat16)

    def _as_pages(self, kv: torch.Tensor, pool_order: bool) -> torch.Tensor:
        """(tokens, layers·kv_dim) as pages: (layers, page, block, kv_dim) for the pool, else
        (page, layers, block, kv_dim) as in the staging buffer."""
        cfg = self.cfg
        pages = kv.view(-1, cfg["block_tokens"], cfg["layers"], cfg["kv_dim"])
        return pages.permute(2, 0, 1, 3) if pool_order else pages.permute(0, 2, 1, 3)

    def _peer_buffer(self) -> torch.Tensor:
        """The next rank's receive buffer, mapped into this process through CUDA IPC."""
        from torch.multiprocessing.reductions import reduce_tensor

        handles: list[Any] = [None] * self.ctx.world_size
        dist.all_gather_object(handles, reduce_tensor(self.received), group=self.ctx.control)
        rebuild, args = handles[(self.ctx.rank + 1) % self.ctx.world_size]
        return rebuild(*args)


def validate(cfg: dict[str, Any], world_size: int) -> None:
    """ValueError naming the first setting that cannot work (any world size can)."""
    for key in DEFAULTS:
        if key != "seed" and cfg[key] < 1:
            raise ValueError(f"{key}={cfg[key]} must be positive")
    if cfg["slots"] > cfg["pool_slots"]:
        raise ValueError(f"slots={cfg['slots']} must not exceed pool_slots={cfg['pool_slots']}")


@registered("staging_transfer", DEFAULTS, SMALL, validate)
def build(config: dict[str, Any], ctx: RankContext, variant: str) -> StagingTransfer:
    return StagingTransfer(config, ctx, variant)
