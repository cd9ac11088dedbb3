"""The DeepSeek V3.2 NSA (lightning) indexer in prefill under context parallelism (CP).

The sequence is cut into 2·cp blocks; rank r holds blocks r and 2·cp−1−r (the zig-zag layout that
balances causal work). Each rank projects its tokens: the query `wq_b` (q_lora → heads × 128) with RoPE
on the first 64 dims, the key `wk` (hidden → 128) with LayerNorm and RoPE, and the per-head weights.
Query and key both go through `rotate_activation` (a Walsh-Hadamard transform scaled by d^-1/2). The
keys are all-gathered across the CP ranks and re-arranged from rank order into sequence order, then
every local query scores every earlier key, sum over heads of w · relu(q · k), and keeps its top-k.

Streams, per variant:
- serial: the key all-gather and its re-arrangement on the main stream, before the query rotation.
- alt-stream: the all-gather and re-arrangement on an alternate stream that waits for the main
  stream, under the query's RoPE and rotation on the main stream; the main stream waits for the
  alternate stream before the logits (sglang PR #20438).
- missing-join: as alt-stream without that last wait: the logits can read the gathered keys before
  the gather (or the re-arrangement) wrote them. The key buffers are filled with NaN before every
  gather so a premature read shows in the numerics. It bites only in the steps where gather plus
  re-arrangement outlast the query's RoPE and rotation; the numerics check records how often. At the
  default sizes they never did (the race stays latent); `straggler_us` (the last rank reaches the
  gather late, as a peer slowed by uneven work does) makes every rank's gather end later, so it bites.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from overlapscope.instrument import accesses, region

from . import registered
from .common import RankContext, StepResult, Streams, all_gather_into, compare, dtype_of, weight, worst

DEFAULTS: dict[str, Any] = {
    "tokens_per_rank": 16384,  # two zig-zag blocks of 8192
    "hidden": 7168,
    "q_lora_rank": 1536,
    "index_heads": 16,
    "index_head_dim": 128,
    "rope_dim": 64,
    "index_topk": 2048,
    "query_chunk": 2048,  # queries scored at once: bounds the (chunk, heads, keys) intermediate
    "rope_theta": 10000.0,
    "dtype": "bfloat16",
    "seed": 0,
    # A straggler: the last rank reaches the key all-gather this many µs late (a spin on the gather's
    # stream, standing for a peer slowed by uneven work), so every rank's gather ends that much later.
    # The race of missing-join stays latent at 0 (the logits start ~195 µs after the re-arrangement
    # ends, measured on 2 x H200); beyond that margin it bites (docs/reference_models.md).
    "straggler_us": 0,
}
SMALL: dict[str, Any] = {
    "tokens_per_rank": 32, "hidden": 64, "q_lora_rank": 32, "index_heads": 4, "index_head_dim": 32,
    "rope_dim": 16, "index_topk": 8, "query_chunk": 16, "dtype": "float32",
}
VARIANTS = ("serial", "alt-stream", "missing-join")


def hadamard_matrix(d: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The d×d Sylvester Walsh-Hadamard matrix scaled by d^-1/2 (orthonormal, symmetric)."""
    if d < 1 or d & (d - 1):
        raise ValueError(f"the Hadamard transform needs a power-of-two size, not {d}")
    h = torch.ones(1, 1, dtype=torch.float32)
    while h.shape[0] < d:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return (h / math.sqrt(d)).to(device=device, dtype=dtype)


def rotate_activation(x: torch.Tensor, hadamard: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """x · H over the last dim: one GEMM pass, memory-bound like the fused CUDA transform it stands for."""
    flat = x.reshape(-1, x.shape[-1])
    if out is None:
        return (flat @ hadamard).view(x.shape)
    torch.matmul(flat, hadamard, out=out.view(-1, x.shape[-1]))
    return out


def zigzag_positions(rank: int, cp: int, block: int) -> torch.Tensor:
    """Sequence positions of the tokens rank `rank` holds: blocks rank and 2·cp−1−rank."""
    return torch.cat([torch.arange(rank * block, (rank + 1) * block),
                      torch.arange((2 * cp - 1 - rank) * block, (2 * cp - rank) * block)])


def zigzag_order(cp: int) -> torch.Tensor:
    """For each sequence block, where it lies in the rank-ordered all-gather output."""
    return torch.tensor([2 * b if b < cp else 2 * (2 * cp - 1 - b) + 1 for b in range(2 * cp)])


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Non-interleaved RoPE on the first 2·cos.shape[-1] dims of the last axis (the indexer's layout)."""
    half = cos.shape[-1]
    x1, x2, rest = x[..., :half], x[..., half:2 * half], x[..., 2 * half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)


class NsaIndexerCP:
    def __init__(self, config: dict[str, Any], ctx: RankContext, variant: str):
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {', '.join(VARIANTS)}")
        validate(config, ctx.world_size)
        self.cfg, self.ctx = config, ctx
        self.streams: Streams = ctx.streams
        dt = dtype_of(config["dtype"])
        cp, dev = ctx.world_size, ctx.device
        tokens, d, heads = config["tokens_per_rank"], config["index_head_dim"], config["index_heads"]
        self.tokens, self.seq = tokens, tokens * cp
        self.block = tokens // 2
        seed = 1_000_000 * (config["seed"] + 1)
        self.wq_b = weight(ctx, seed + 1, config["q_lora_rank"], config["q_lora_rank"], heads * d, dtype=dt)
        self.wk = weight(ctx, seed + 2, config["hidden"], config["hidden"], d, dtype=dt)
        self.weights_proj = weight(ctx, seed + 3, config["hidden"], config["hidden"], heads, dtype=dt)
        self.hadamard = hadamard_matrix(d, dev, dt)
        local_seed = 2_000_000 + 1000 * config["seed"] + ctx.rank
        self.x = weight(ctx, local_seed, 1, tokens, config["hidden"], dtype=dt)
        self.q_lora = weight(ctx, local_seed + 500, 1, tokens, config["q_lora_rank"], dtype=dt)
        positions = zigzag_positions(ctx.rank, cp, self.block)
        self.query_pos = positions.to(dev)
        self.key_pos = torch.arange(self.seq, device=dev)
        inv_freq = config["rope_theta"] ** (-torch.arange(0, config["rope_dim"], 2).float() / config["rope_dim"])
        angles = positions.float()[:, None] * inv_freq[None, :]
        self.cos, self.sin = angles.cos().to(dev, dt), angles.sin().to(dev, dt)
        self.order = zigzag_order(cp).to(dev)
        # Fixed buffers for everything that crosses streams (the caching allocator would otherwise
        # recycle a tensor freed on one stream while the other still reads it).
        self.key_send = torch.empty(tokens, d, device=dev, dtype=dt)
        self.keys_by_rank = torch.empty(self.seq, d, device=dev, dtype=dt)
        self.keys = torch.empty(self.seq, d, device=dev, dtype=dt)
        self.logits = torch.empty(tokens, self.seq, device=dev, dtype=torch.float32)
        self.straggler = ctx.rank == cp - 1 and config["straggler_us"] > 0
        self._cycles_per_us = _spin_rate(dev) if self.straggler and self.streams.cuda else 0.0
        self.main = self.streams.current()
        self.alt = self.main if variant == "serial" else self.streams.new()
        self.join = variant != "missing-join"
        self._run(self.main, join=True)  # the serial baseline, from the same seeds
        self.streams.synchronize()
        self.expected_values, self.expected_index = self.topk_values.clone(), self.topk_index.clone()

    # ---- the model's API -------------------------------------------------------------------------
    def forward(self, step: int) -> None:
        self._run(self.alt, join=self.join)

    def check(self, step: int) -> StepResult:
        values = compare(self.topk_values, self.expected_values, "top-k index scores")
        moved = int((self.topk_index != self.expected_index).any(dim=-1).sum().item())
        index = StepResult(moved == 0, 0.0 if moved == 0 else float("inf"),
                           f"top-k indices: {moved} of {self.tokens} queries select other keys")
        return worst([values, index])

    def components(self) -> dict[str, Callable[[], None]]:
        q = self._query()
        return {
            "key all-gather + re-arrangement": lambda: self._gather_keys(self.main),
            "query RoPE + rotation": lambda: self._rotate_query(q),
            "projections (query, key path, head weights)": lambda: (self._query(), self._key(), self._head_weights()),
            "logits + top-k": lambda: self._logits(self._rotate_query(q), self._head_weights()),
        }

    def close(self) -> None:
        """Nothing to release: buffers and streams go with the process."""

    # ---- the forward ----------------------------------------------------------------------------
    def _run(self, alt: Any, join: bool) -> None:
        with region("nsa_cp/indexer"), self.streams.use(self.main):
            q = self._query()
            self._key()
            head_weights = self._head_weights()
            self._gather_keys(alt)
            q = self._rotate_query(q)
            if join:
                self.streams.wait(self.main, alt)
            self._logits(q, head_weights)

    def _query(self) -> torch.Tensor:
        with region("nsa_cp/indexer/query"):
            return (self.q_lora @ self.wq_b).view(self.tokens, self.cfg["index_heads"], self.cfg["index_head_dim"])

    def _key(self) -> None:
        with region("nsa_cp/indexer/key"):
            k = F.layer_norm(self.x @ self.wk, (self.cfg["index_head_dim"],))
            rotate_activation(apply_rope(k, self.cos, self.sin), self.hadamard, out=self.key_send)

    def _head_weights(self) -> torch.Tensor:
        with region("nsa_cp/indexer/weights"):
            scale = self.cfg["index_heads"] ** -0.5 * self.cfg["index_head_dim"] ** -0.5
            return (self.x @ self.weights_proj) * scale

    def _gather_keys(self, alt: Any) -> None:
        gathered = {"keys_by_rank": self.keys_by_rank, "keys": self.keys}
        with region("nsa_cp/indexer/key_allgather"):
            # NaN first, on the main stream: ordered before the gather (which waits for main) and before
            # the logits (which run on main), so a read that comes too early sees NaN, not old keys.
            with accesses(writes=gathered, label="sentinel_fill"):
                self.keys_by_rank.fill_(float("nan"))
                self.keys.fill_(float("nan"))
            self.streams.wait(alt, self.main)
            with self.streams.use(alt):
                if self.straggler:
                    self._arrive_late(self.cfg["straggler_us"])
                with accesses(reads={"key_send": self.key_send}, writes={"keys_by_rank": self.keys_by_rank},
                              label="cp_allgather"):
                    all_gather_into(self.keys_by_rank, self.key_send)
                with accesses(reads={"keys_by_rank": self.keys_by_rank}, writes={"keys": self.keys},
                              label="zigzag_rearrange"):
                    blocks = self.keys_by_rank.view(2 * self.ctx.world_size, self.block, -1)
                    torch.index_select(blocks, 0, self.order, out=self.keys.view_as(blocks))

    def _arrive_late(self, us: int) -> None:
        """The straggler's delay before the gather, on the gather's stream (on a CPU: the host sleeps)."""
        with region("nsa_cp/indexer/straggler"):
            if self.streams.cuda:
                torch.cuda._sleep(int(us * self._cycles_per_us))
            else:
                time.sleep(us / 1e6)

    def _rotate_query(self, q: torch.Tensor) -> torch.Tensor:
        """RoPE and rotate_activation of the query: the work the key all-gather hides under. Its short
        elementwise kernels come first, so the gather's NCCL kernel finds free SMs; a GEMM that is
        already resident on every SM would hold it back until the GEMM ends."""
        with region("nsa_cp/indexer/query_rotation"):
            q = apply_rope(q, self.cos[:, None, :], self.sin[:, None, :])
            return rotate_activation(q, self.hadamard)

    def _logits(self, q: torch.Tensor, head_weights: torch.Tensor) -> None:
        heads, chunk = self.cfg["index_heads"], self.cfg["query_chunk"]
        with region("nsa_cp/indexer/logits"):
            with accesses(reads={"keys": self.keys}, writes={"index_logits": self.logits}, label="index_logits"):
                keys_t = self.keys.t()
                for start in range(0, self.tokens, chunk):
                    rows = slice(start, min(start + chunk, self.tokens))
                    n = rows.stop - rows.start
                    scores = (q[rows].reshape(n * heads, -1) @ keys_t).view(n, heads, self.seq).relu_()
                    summed = torch.bmm(head_weights[rows].unsqueeze(1), scores).squeeze(1)
                    later = self.key_pos[None, :] > self.query_pos[rows, None]
                    self.logits[rows] = summed.float().masked_fill_(later, float("-inf"))
            values, index = self.logits.topk(min(self.cfg["index_topk"], self.seq), dim=-1)
            self.topk_values = values
            self.topk_index = index.masked_fill_(values == float("-inf"), -1)  # fewer earlier keys than k


def _spin_rate(device: torch.device) -> float:
    """GPU clock cycles per µs of torch.cuda._sleep on this device."""
    cycles = 2_000_000
    with torch.cuda.device(device):
        torch.cuda._sleep(cycles)  # the first launch loads the kernel
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        torch.cuda._sleep(cycles)
        end.record()
        end.synchronize()
    return cycles / (begin.elapsed_time(end) * 1000)


def validate(cfg: dict[str, Any], world_size: int) -> None:
    """ValueError naming the first setting that cannot work (any world size can)."""
    if cfg["straggler_us"] < 0:
        raise ValueError(f"straggler_us={cfg['straggler_us']} must not be negative")
    if cfg["tokens_per_rank"] < 2 or cfg["tokens_per_rank"] % 2:
        raise ValueError(f"tokens_per_rank={cfg['tokens_per_rank']} must be even (two zig-zag blocks)")
    if not 0 < cfg["rope_dim"] <= cfg["index_head_dim"] or cfg["rope_dim"] % 2:
        raise ValueError(f"rope_dim={cfg['rope_dim']} must be even and at most index_head_dim")
    for key in ("hidden", "q_lora_rank", "index_heads", "index_head_dim", "index_topk", "query_chunk"):
        if cfg[key] < 1:
            raise ValueError(f"{key}={cfg[key]} must be positive")
    d = cfg["index_head_dim"]
    if d & (d - 1):
        raise ValueError(f"index_head_dim={d} must be a power of two (Hadamard transform)")
    dtype_of(cfg["dtype"])


@registered("deepseek_v32_nsa_cp", DEFAULTS, SMALL, validate)
def build(config: dict[str, Any], ctx: RankContext, variant: str) -> NsaIndexerCP:
    return NsaIndexerCP(config, ctx, variant)
