"""Arrow schemas of the tables (DESIGN.md §3). The ``dataset`` column comes from the partition."""
from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

SOURCES = pa.schema([
    ("source_id", pa.string()), ("url", pa.string()), ("extractor", pa.string()), ("video_id", pa.string()),
    ("title", pa.string()), ("duration_s", pa.float64()), ("fps", pa.float64()), ("width", pa.int32()),
    ("height", pa.int32()), ("num_frames", pa.int32()), ("sha256", pa.string()), ("file_uri", pa.string()),
    ("status", pa.string()),  # ok | failed | duplicate
    ("error", pa.string()), ("duplicate_of", pa.string()), ("num_clips", pa.int32()), ("fetched_at", TS),
])

SHOTS = pa.schema([
    ("source_id", pa.string()), ("shot_idx", pa.int32()), ("start_frame", pa.int32()), ("end_frame", pa.int32()),
    ("start_s", pa.float64()), ("end_s", pa.float64()), ("num_clips", pa.int32()), ("drop_reason", pa.string()),
    ("shot_detector", pa.string()),
])

CLIPS = pa.schema([
    ("clip_id", pa.string()), ("source_id", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()),
    ("start_frame", pa.int32()), ("end_frame", pa.int32()), ("fps", pa.float64()), ("width", pa.int32()),
    ("height", pa.int32()), ("num_frames", pa.int32()), ("shot_idx", pa.int32()), ("shot_detector", pa.string()),
    ("shot_params", pa.string()), ("clip_uri", pa.string()), ("sha256", pa.string()), ("split", pa.string()),
])

FAILURES = pa.schema([
    ("stage", pa.string()), ("item_id", pa.string()), ("source", pa.string()), ("error_class", pa.string()),
    ("reason", pa.string()), ("message", pa.string()), ("retryable", pa.bool_()), ("attempt", pa.int32()),
    ("at", TS),
])

SCHEMAS: dict[str, pa.Schema] = {"sources": SOURCES, "shots": SHOTS, "clips": CLIPS, "failures": FAILURES}
