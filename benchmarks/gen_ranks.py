"""Generate a run directory of N ranks' Kineto traces for the scale benchmark: each rank-R.json.gz is
gen_kineto's trace (K kernels, one NCCL all-reduce per 8) with its own distributedInfo.rank, so the
files differ and HTA and overlapscope both read one rank per file.

    python benchmarks/gen_ranks.py OUT_DIR --ranks 16 --kernels 200000
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path

import gen_kineto


def write_run(folder: Path, ranks: int, n_kernels: int) -> Path:
    """Write rank 0 once, then each other rank as the same events under its own header."""
    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "events.tmp"
    gen_kineto.write(text, n_kernels)  # plain text: the header names rank 0
    header_end = text.read_bytes()[:4096].index(b'"traceEvents":[') + len(b'"traceEvents":[')
    for rank in range(ranks):
        with open(text, "rb") as src, gzip.open(folder / f"rank-{rank}.json.gz", "wb", compresslevel=1) as dst:
            # spelt as PyTorch writes it: HTA finds a file's rank only with a space after the colon
            head = src.read(header_end).replace(b'"distributedInfo":{"backend":"nccl","rank":0,"world_size":8}',
                                                f'"distributedInfo": {{"backend": "nccl", "rank": {rank}, '
                                                f'"world_size": {ranks}}}'.encode())
            dst.write(head)
            shutil.copyfileobj(src, dst, 1 << 24)
    text.unlink()
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--ranks", type=int, default=16)
    ap.add_argument("--kernels", type=int, default=200_000)
    args = ap.parse_args()
    write_run(args.out, args.ranks, args.kernels)


if __name__ == "__main__":
    main()
