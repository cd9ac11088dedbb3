"""Tell SQLite trace databases apart by their tables, before choosing a reader.

Four profilers write SQLite, and a user hands any of them to us as "the trace":
- "nsys": Nsight Systems exports (CUPTI_ACTIVITY_KIND_* tables, StringIds, TARGET_INFO_*);
- "rocpd": rocprofv3's database (ROCm 7): rocpd_* tables with a `_<uuid>` suffix;
- "rpd": the older rocmProfileData format (SGLang's RPD activity, rpd_tracer): rocpd_op,
  rocpd_api, rocpd_string ... without a suffix;
- "rocprof-v1": rocprof (v1)'s results.db, whose tables are named after the trace files it
  merged (A for kernel results, HIP, HSA, COPY, OPS, KFD).
The last two are not read; FOREIGN_FORMATS says so in one line and names what to use instead.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

_SQLITE_MAGIC = b"SQLite format 3\x00"
_UUID_SUFFIX = re.compile(r"_[0-9a-fA-F]{8}_[0-9a-fA-F]{4}_[0-9a-fA-F]{4}_[0-9a-fA-F]{4}_[0-9a-fA-F]{12}$")
_RPD_TABLES = {"rocpd_op", "rocpd_api"}
_ROCPROF_V1_TABLES = {"A", "HIP", "HSA", "COPY", "OPS", "KFD"}

FOREIGN_FORMATS: dict[str, str] = {
    "rocprof-v1": "rocprof v1 results.db: not read; capture with rocprofv3 --kernel-trace --hip-runtime-trace "
                  "--marker-trace --rccl-trace --memory-copy-trace (its rocpd database or --output-format json), "
                  "or with the torch profiler",
    "rocprof-v1-json": "rocprof v1 results.json: not read; capture with rocprofv3 --kernel-trace --hip-runtime-trace "
                       "--marker-trace --rccl-trace --memory-copy-trace, or with the torch profiler",
    "rpd": "rocmProfileData (RPD) database, as SGLang's RPD activity writes it: not read; capture with the torch "
           "profiler (SGLANG_TORCH_PROFILER_DIR) or rocprofv3 --kernel-trace --hip-runtime-trace --marker-trace "
           "--rccl-trace",
}


def sqlite_kind(path: Path) -> str | None:
    """"nsys", "rocpd", "rpd", "rocprof-v1", or None for another (or unreadable) SQLite file."""
    try:
        with open(path, "rb") as f:
            if f.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                return None
        with closing(sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)) as con:
            tables = {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except (OSError, sqlite3.DatabaseError):
        return None
    return kind_of_tables(tables)


def kind_of_tables(tables: set[str]) -> str | None:
    """The format a set of table names belongs to."""
    if any(t.startswith("CUPTI_ACTIVITY_KIND_") for t in tables) or {"StringIds", "TARGET_INFO_GPU"} & tables:
        return "nsys"
    suffixed = {_UUID_SUFFIX.sub("", t) for t in tables if t.startswith("rocpd_") and _UUID_SUFFIX.search(t)}
    if suffixed & {"rocpd_kernel_dispatch", "rocpd_info_agent", "rocpd_region", "rocpd_metadata"}:
        return "rocpd"
    if _RPD_TABLES <= tables:
        return "rpd"
    if len(_ROCPROF_V1_TABLES & tables) >= 2 or tables == {"A"}:
        return "rocprof-v1"
    return None
