"""A DeepSeek V4 block slice under two-batch overlap (TBO), DP attention and TP MoE.

Each rank's tokens form two micro-batches. Per layer and micro-batch: attention on the rank's own
tokens (q LoRA, one key/value head shared by all query heads), the DP all-gather of the hidden states
(and, in hash-routed layers, of the input ids), an MoE over all ranks' tokens (a router with
sqrt(softplus) scores, top-k routed experts sharded over the TP ranks, a shared expert sharded the same
way), and `combine_outputs`, which ends in the TP all-reduce and keeps the rank's own rows. The host
enqueues the micro-batches ping-pong (attention 0, gather 0, attention 1, gather 1, MoE 0, combine 0,
MoE 1, combine 1), so one micro-batch's collective can run under the other's compute, and the ping-pong
goes on across the `layers` layers with no join between them: layer L+1's attention 0 needs only
micro-batch 0's output of layer L, so layer L's last collective (combine 1) runs under it. Only the
last layer's combine 1 has no compute left to hide under (its share of the block's communication is
1 / (4 · layers)).

Streams, per variant (the forward starts on the "forward-top" stream, the stream current on entry):
- inline: everything, collectives included, on the forward-top stream: no overlap (ATOM before #1121).
- comm-stream: each micro-batch runs on its own stream, and its heavy stages (attention, experts) take
  turns with the other micro-batch's through an event baton, which keeps the ping-pong order that one
  compute stream would (as two-stream TBO/DBO implementations do); the light router, which consumes
  the gathered ids and hidden states, runs as soon as they are there. Collectives run on one auxiliary
  stream that waits for the micro-batch's stream before (side.wait_stream(main)) and is waited on after
  (main.wait_stream(side)), as ROCm/ATOM PR #1121.
- wrong-join: as comm-stream, but the all-gather's join makes the forward-top stream wait instead of
  the micro-batch's stream (ATOM #1208): the router, enqueued right after on that stream, which is
  otherwise idle, reads the gathered ids and hidden states while the all-gather is still writing them.
  The receive buffers are filled with a sentinel (NaN, id -1) before every gather, so a premature read
  shows up in the numerics instead of reading last step's identical data.

MoE experts are evaluated densely with a routing-weight mask (zero for tokens not routed to the expert):
the result is that of top-k routing, without the data-dependent token counts whose host sync would
serialise the host and hide the very overlap being measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from overlapscope.instrument import accesses, region

from . import registered
from .common import RankContext, StepResult, Streams, all_gather_into, compare, dtype_of, weight, worst

DEFAULTS: dict[str, Any] = {
    "layers": 4,
    "hash_layers": 1,  # the first layers route by token id (hash routing), the rest by score
    "tokens_per_microbatch": 8192,  # per rank
    "hidden": 4096,
    "heads": 16,
    "head_dim": 128,
    "q_lora_rank": 1024,
    "experts_per_rank": 2,  # routed experts, sharded over the TP ranks
    "top_k": 2,
    "moe_intermediate": 256,
    "shared_intermediate": 512,  # sharded over the TP ranks like the routed experts
    "vocab": 32768,
    "routed_scale": 1.5,
    "dtype": "bfloat16",
    "seed": 0,
}
SMALL: dict[str, Any] = {
    "layers": 2, "tokens_per_microbatch": 16, "hidden": 64, "heads": 2, "head_dim": 16, "q_lora_rank": 32,
    "moe_intermediate": 32, "shared_intermediate": 32, "vocab": 128, "dtype": "float32",
}
VARIANTS = ("inline", "comm-stream", "wrong-join")
MICROBATCHES = 2


@dataclass
class _Plan:
    """Which stream does what in one forward."""

    top: Any  # the forward-top stream
    microbatch: list[Any]  # the stream each micro-batch computes (and consumes its gathers) on
    comm: Any  # the stream the collectives are issued on
    join_on_top: bool  # the wrong-join bug: the gather's join waits on `top`
    baton: Any = None  # event recorded after the last heavy stage, and the stream it ran on
    baton_stream: Any = None


@dataclass
class _Layer:
    wq_a: torch.Tensor
    wq_b: torch.Tensor
    wkv: torch.Tensor
    wo: torch.Tensor
    gate: torch.Tensor  # float32 router weights, replicated
    bias: torch.Tensor  # steers the top-k selection only (auxiliary-loss-free balancing)
    tid2eid: torch.Tensor | None  # hash routing: token id -> its top_k experts
    w1: torch.Tensor  # local routed experts (E_local, hidden, inter)
    w3: torch.Tensor
    w2: torch.Tensor  # (E_local, inter, hidden)
    shared_w1: torch.Tensor  # this rank's shard of the shared expert
    shared_w3: torch.Tensor
    shared_w2: torch.Tensor


@dataclass
class _Buffers:
    """One layer and micro-batch: fixed allocations, so no tensor crosses streams through the allocator."""

    send: torch.Tensor  # the attention output: all-gather input and residual (tokens, hidden)
    gathered: torch.Tensor  # all ranks' hidden states (world * tokens, hidden)
    gathered_ids: torch.Tensor | None  # all ranks' input ids, in hash-routed layers
    partial: torch.Tensor  # this rank's MoE contribution for all tokens, all-reduced in place
    out: torch.Tensor  # the layer's output for this rank's tokens


class TboBlock:
    def __init__(self, config: dict[str, Any], ctx: RankContext, variant: str):
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {', '.join(VARIANTS)}")
        self.cfg = config
        self.ctx = ctx
        self.streams: Streams = ctx.streams
        self.dtype = dtype_of(config["dtype"])
        self.tokens = config["tokens_per_microbatch"]
        self.experts = config["experts_per_rank"] * ctx.world_size
        validate(config, ctx.world_size)
        self.layers = [self._make_layer(i) for i in range(config["layers"])]
        self.inputs = [self._make_input(m) for m in range(MICROBATCHES)]
        self.ids = [self._make_ids(m) for m in range(MICROBATCHES)]
        self.buffers = [[self._make_buffers(i) for _ in range(MICROBATCHES)] for i in range(config["layers"])]
        self.serial = self._plan("inline")
        self.plan = self._plan(variant)
        self._run(self.serial)
        self.streams.synchronize()
        self.expected = [b.out.clone() for b in self.buffers[-1]]

    # ---- the model's API -------------------------------------------------------------------------
    def forward(self, step: int) -> None:
        self._run(self.plan)

    def check(self, step: int) -> StepResult:
        return worst([compare(b.out, ref, f"micro-batch {m} output")
                      for m, (b, ref) in enumerate(zip(self.buffers[-1], self.expected))])

    def components(self) -> dict[str, Callable[[], None]]:
        s, h = self.serial, self.inputs[0]
        return {
            "attention (1 micro-batch)": lambda: self._attention(0, 0, h, s),
            "dp_allgather (1 micro-batch)": lambda: self._dp_allgather(0, 0, s),
            "moe (1 micro-batch)": lambda: self._moe(0, 0, s),
            "combine_outputs all-reduce (1 micro-batch)": lambda: self._combine(0, 0, s),
        }

    def close(self) -> None:
        """Nothing to release: buffers and streams go with the process."""

    # ---- the forward ----------------------------------------------------------------------------
    def _plan(self, variant: str) -> _Plan:
        top = self.streams.current()
        if variant == "inline":
            return _Plan(top, [top] * MICROBATCHES, top, join_on_top=False)
        return _Plan(top, [self.streams.new() for _ in range(MICROBATCHES)], self.streams.new(),
                     join_on_top=variant == "wrong-join")

    def _run(self, plan: _Plan) -> None:
        plan.baton = plan.baton_stream = None
        for stream in plan.microbatch:
            self.streams.wait(stream, plan.top)
        hidden = list(self.inputs)
        with region("tbo/block"):
            for layer in range(len(self.layers)):
                # No join between layers: layer L+1's micro-batch 0 waits only for its own input and
                # for the baton, so it runs under layer L's micro-batch 1 combine all-reduce.
                with region(f"tbo/l{layer}"):
                    for m in range(MICROBATCHES):
                        self._attention(layer, m, hidden[m], plan)
                        self._dp_allgather(layer, m, plan)
                    for m in range(MICROBATCHES):
                        self._moe(layer, m, plan)
                        self._combine(layer, m, plan)
                hidden = [b.out for b in self.buffers[layer]]
        for stream in plan.microbatch:
            self.streams.wait(plan.top, stream)

    def _take_turn(self, plan: _Plan, stream: Any) -> None:
        """A heavy stage waits for the other micro-batch's last heavy stage (TBO's ping-pong order)."""
        if plan.baton is not None and plan.baton_stream is not stream:
            stream.wait_event(plan.baton)

    def _pass_turn(self, plan: _Plan, stream: Any) -> None:
        if plan.microbatch[0] is not plan.microbatch[1]:
            plan.baton, plan.baton_stream = self.streams.event(), stream
            plan.baton.record(stream)

    def _attention(self, layer: int, m: int, h: torch.Tensor, plan: _Plan) -> None:
        w, buf, cfg = self.layers[layer], self.buffers[layer][m], self.cfg
        heads, head_dim = cfg["heads"], cfg["head_dim"]
        self._take_turn(plan, plan.microbatch[m])
        with region(f"tbo/l{layer}/mb{m}/attention"), self.streams.use(plan.microbatch[m]):
            x = F.rms_norm(h, (cfg["hidden"],))
            q = F.rms_norm(x @ w.wq_a, (cfg["q_lora_rank"],)) @ w.wq_b
            q = q.view(self.tokens, heads, head_dim).transpose(0, 1).unsqueeze(0)
            kv = F.rms_norm(x @ w.wkv, (head_dim,))  # one head, used as key and as value by every query head
            kv = kv.view(1, 1, self.tokens, head_dim)
            o = F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
            o = o.squeeze(0).transpose(0, 1).reshape(self.tokens, heads * head_dim) @ w.wo
            torch.add(h, o, out=buf.send)
        self._pass_turn(plan, plan.microbatch[m])

    def _gathered(self, layer: int, m: int) -> dict[str, torch.Tensor]:
        buf = self.buffers[layer][m]
        out = {f"l{layer}.mb{m}.gathered_hidden": buf.gathered}
        if buf.gathered_ids is not None:
            out[f"l{layer}.mb{m}.gathered_ids"] = buf.gathered_ids
        return out

    def _dp_allgather(self, layer: int, m: int, plan: _Plan) -> None:
        buf, mine, comm = self.buffers[layer][m], plan.microbatch[m], plan.comm
        gathered = self._gathered(layer, m)
        sources = {f"l{layer}.mb{m}.hidden_send": buf.send}
        with region(f"tbo/l{layer}/mb{m}/dp_allgather"):
            # The sentinel goes in on the micro-batch's stream, so it is ordered before the gather
            # (which waits for that stream) and before the consumer (which runs on it).
            with self.streams.use(mine), accesses(writes=gathered, label="sentinel_fill"):
                buf.gathered.fill_(float("nan"))
                if buf.gathered_ids is not None:
                    buf.gathered_ids.fill_(-1)
            self.streams.wait(comm, mine)
            if buf.gathered_ids is not None:
                sources[f"mb{m}.input_ids"] = self.ids[m]
            with self.streams.use(comm), accesses(reads=sources, writes=gathered, label="dp_allgather"):
                all_gather_into(buf.gathered, buf.send)
                if buf.gathered_ids is not None:
                    all_gather_into(buf.gathered_ids, self.ids[m])
            self.streams.wait(plan.top if plan.join_on_top else mine, comm)

    def _moe(self, layer: int, m: int, plan: _Plan) -> None:
        w, buf, cfg, mine = self.layers[layer], self.buffers[layer][m], self.cfg, plan.microbatch[m]
        with region(f"tbo/l{layer}/mb{m}/moe"):
            # The router is the only reader of the gathered buffers: the experts read its normalised copy.
            with self.streams.use(mine), accesses(reads=self._gathered(layer, m), label="moe_router"):
                x = F.rms_norm(buf.gathered, (cfg["hidden"],))
                combine = self._route(w, x, buf.gathered_ids).to(self.dtype)  # (tokens, E_local)
            self._take_turn(plan, mine)
            with self.streams.use(mine):
                y = torch.matmul(F.silu(torch.matmul(x, w.w1)) * torch.matmul(x, w.w3), w.w2)
                routed = (y * combine.t().unsqueeze(-1)).sum(0)
                shared = (F.silu(x @ w.shared_w1) * (x @ w.shared_w3)) @ w.shared_w2
                torch.add(routed, shared, out=buf.partial)
            self._pass_turn(plan, mine)

    def _route(self, w: _Layer, x: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
        """Routing weights of every token for this rank's experts (zero where not routed)."""
        scores = F.softplus(x.float() @ w.gate).sqrt()
        if ids is not None:
            # A premature read sees the -1 sentinel: keep the lookup in bounds so that the wrong
            # routing shows in the numbers instead of as a device-side assert.
            chosen = w.tid2eid[ids.remainder(self.cfg["vocab"])]
        else:
            chosen = (scores + w.bias).topk(self.cfg["top_k"], dim=-1).indices
        picked = scores.gather(1, chosen)
        picked = picked / picked.sum(-1, keepdim=True) * self.cfg["routed_scale"]
        dense = torch.zeros_like(scores).scatter_(1, chosen, picked)
        first = self.ctx.rank * self.cfg["experts_per_rank"]
        return dense[:, first:first + self.cfg["experts_per_rank"]]

    def _combine(self, layer: int, m: int, plan: _Plan) -> None:
        buf, mine, comm = self.buffers[layer][m], plan.microbatch[m], plan.comm
        own = slice(self.ctx.rank * self.tokens, (self.ctx.rank + 1) * self.tokens)
        with region(f"tbo/l{layer}/mb{m}/combine_outputs"):
            self.streams.wait(comm, mine)
            with self.streams.use(comm):
                dist.all_reduce(buf.partial)
            self.streams.wait(mine, comm)
            with self.streams.use(mine):
                torch.add(buf.send, buf.partial[own], out=buf.out)

    # ---- weights, inputs, buffers (seeded: replicated weights agree on every rank) ------------------
    def _make_layer(self, i: int) -> _Layer:
        cfg, ctx, dt = self.cfg, self.ctx, self.dtype
        hid, lora, hd, heads = cfg["hidden"], cfg["q_lora_rank"], cfg["head_dim"], cfg["heads"]
        inter, per_rank = cfg["moe_intermediate"], cfg["experts_per_rank"]
        seed = 1_000_000 * (cfg["seed"] + 1) + 10_000 * i

        def experts(offset: int, fan_in: int, rows: int, cols: int) -> torch.Tensor:
            first = ctx.rank * per_rank
            return torch.stack([weight(ctx, seed + 100 + 3 * e + offset, fan_in, rows, cols, dtype=dt)
                                for e in range(first, first + per_rank)])

        shard = cfg["shared_intermediate"] // ctx.world_size
        cols = slice(ctx.rank * shard, (ctx.rank + 1) * shard)
        tid2eid = None
        if i < cfg["hash_layers"]:
            noise = torch.rand(cfg["vocab"], self.experts, generator=ctx.generator(seed + 7), device=ctx.device)
            tid2eid = noise.argsort(dim=1)[:, :cfg["top_k"]]
        return _Layer(
            wq_a=weight(ctx, seed + 1, hid, hid, lora, dtype=dt),
            wq_b=weight(ctx, seed + 2, lora, lora, heads * hd, dtype=dt),
            wkv=weight(ctx, seed + 3, hid, hid, hd, dtype=dt),
            wo=weight(ctx, seed + 4, heads * hd, heads * hd, hid, dtype=dt),
            gate=weight(ctx, seed + 5, hid, hid, self.experts, dtype=torch.float32),
            bias=weight(ctx, seed + 6, 1, self.experts, dtype=torch.float32) * 0.1,
            tid2eid=tid2eid,
            w1=experts(0, hid, hid, inter),
            w3=experts(1, hid, hid, inter),
            w2=experts(2, inter, inter, hid),
            shared_w1=weight(ctx, seed + 8, hid, hid, cfg["shared_intermediate"], dtype=dt)[:, cols].contiguous(),
            shared_w3=weight(ctx, seed + 9, hid, hid, cfg["shared_intermediate"], dtype=dt)[:, cols].contiguous(),
            shared_w2=weight(ctx, seed + 10, cfg["shared_intermediate"], cfg["shared_intermediate"], hid,
                             dtype=dt)[cols].contiguous(),
        )

    def _make_input(self, m: int) -> torch.Tensor:
        seed = 7_000_000 + 1000 * self.cfg["seed"] + 10 * self.ctx.rank + m
        return weight(self.ctx, seed, 1, self.tokens, self.cfg["hidden"], dtype=self.dtype)

    def _make_ids(self, m: int) -> torch.Tensor:
        g = self.ctx.generator(8_000_000 + 1000 * self.cfg["seed"] + 10 * self.ctx.rank + m)
        return torch.randint(0, self.cfg["vocab"], (self.tokens,), generator=g, device=self.ctx.device)

    def _make_buffers(self, layer: int) -> _Buffers:
        n, hid, dev = self.tokens * self.ctx.world_size, self.cfg["hidden"], self.ctx.device
        return _Buffers(
            send=torch.empty(self.tokens, hid, device=dev, dtype=self.dtype),
            gathered=torch.empty(n, hid, device=dev, dtype=self.dtype),
            gathered_ids=torch.empty(n, device=dev, dtype=torch.int64) if layer < self.cfg["hash_layers"] else None,
            partial=torch.empty(n, hid, device=dev, dtype=self.dtype),
            out=torch.empty(self.tokens, hid, device=dev, dtype=self.dtype),
        )


def validate(cfg: dict[str, Any], world_size: int) -> None:
    """ValueError naming the first setting that cannot work on `world_size` ranks."""
    experts = cfg["experts_per_rank"] * world_size
    if not 0 < cfg["top_k"] <= experts:
        raise ValueError(f"top_k={cfg['top_k']} must be between 1 and the {experts} routed experts")
    if cfg["shared_intermediate"] % world_size:
        raise ValueError(f"shared_intermediate={cfg['shared_intermediate']} must divide by world size {world_size}")
    if not 0 <= cfg["hash_layers"] <= cfg["layers"]:
        raise ValueError(f"hash_layers={cfg['hash_layers']} must be between 0 and layers={cfg['layers']}")
    for key in ("layers", "tokens_per_microbatch", "hidden", "heads", "head_dim", "q_lora_rank",
                "experts_per_rank", "moe_intermediate", "vocab"):
        if cfg[key] < 1:
            raise ValueError(f"{key}={cfg[key]} must be positive")
    dtype_of(cfg["dtype"])


@registered("deepseek_v4_tbo", DEFAULTS, SMALL, validate)
def build(config: dict[str, Any], ctx: RankContext, variant: str) -> TboBlock:
    return TboBlock(config, ctx, variant)
