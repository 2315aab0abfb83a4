"""Arrow schemas of the tables (docs/design.md §3). The ``dataset`` column comes from the partition."""
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

F32 = pa.float32()

# one row per clip x frame x person; person_idx 0 is the frame's main subject (largest, most confident).
# Coordinates are normalised to [0, 1] by the clip's width and height; scores are kept raw.
POSE_FRAMES = pa.schema([
    ("clip_id", pa.string()), ("frame_idx", pa.int32()), ("t_s", pa.float64()), ("person_idx", pa.int16()),
    ("num_persons", pa.int16()), ("bbox", pa.list_(F32, 4)), ("det_score", F32),
    ("keypoints", pa.list_(F32, 266)),  # x0, y0, x1, y1, ... in COCO-WholeBody-133 order
    ("scores", pa.list_(F32, 133)),
    ("body_conf", F32), ("feet_conf", F32), ("face_conf", F32), ("left_hand_conf", F32), ("right_hand_conf", F32),
    ("model", pa.string()), ("pose_version", pa.string()),
])
POSE_LIST_COLUMNS = ["bbox", "keypoints", "scores"]

# one row per clip: what training-data filters select on (see docs/queries.md)
CLIP_POSE_SUMMARY = pa.schema([
    ("clip_id", pa.string()), ("source_id", pa.string()), ("split", pa.string()), ("num_frames", pa.int32()),
    ("fps", pa.float64()), ("width", pa.int32()), ("height", pa.int32()),
    ("frames_with_person", pa.int32()), ("frames_one_person", pa.int32()), ("one_person_ratio", F32),
    ("max_persons", pa.int16()), ("mean_persons", F32),
    ("body_conf", F32), ("face_conf", F32), ("left_hand_conf", F32), ("right_hand_conf", F32),
    ("left_hand_visible_ratio", F32), ("right_hand_visible_ratio", F32), ("hands_visible_ratio", F32),
    ("motion_energy", F32),  # main subject's body points, box heights per second
    ("bbox_coverage", F32),  # main subject's box area over the frame's, mean over frames with a person
    ("model", pa.string()), ("pose_version", pa.string()), ("extracted_at", TS),
])

# one row per training run of one stage (rewritten as it goes: running → finished | failed)
TRAIN_RUNS = pa.schema([
    ("run_id", pa.string()), ("pipeline", pa.string()), ("stage", pa.int8()), ("snapshot_id", pa.string()),
    ("config", pa.string()),  # the stage's and the run's resolved settings, JSON
    ("code_version", pa.string()), ("started_at", TS), ("ended_at", TS), ("start_step", pa.int64()),
    ("final_step", pa.int64()), ("steps", pa.int64()), ("status", pa.string()), ("output", pa.string()),
    ("error", pa.string()),
])

# one row per optimizer step of a run; val_* only on the steps that validated
TRAIN_METRICS = pa.schema([
    ("run_id", pa.string()), ("stage", pa.int8()), ("step", pa.int64()), ("loss", F32), ("lr", F32),
    ("grad_norm", F32), ("samples_per_s", F32), ("memory_mb", F32),
    ("val_psnr", F32), ("val_ssim", F32), ("val_psnr_still", F32), ("val_ssim_still", F32),
])

# one row per evaluation: one model (or baseline) scored on one clip set with one set of settings.
# `bench` names the clip set and settings without the model: rows of one bench are comparable.
EVAL_RUNS = pa.schema([
    ("eval_id", pa.string()), ("bench", pa.string()), ("pipeline", pa.string()), ("model", pa.string()),
    ("model_name", pa.string()), ("kind", pa.string()),  # model | checkpoint | baseline
    ("model_fingerprint", pa.string()), ("train_run_id", pa.string()), ("stage", pa.int8()),
    ("checkpoint_step", pa.int64()), ("snapshot_id", pa.string()), ("split", pa.string()),
    ("num_clips", pa.int32()), ("clips_done", pa.int32()), ("clips_failed", pa.int32()),
    ("settings", pa.string()),  # JSON: seed, steps, guidance, size, frames, metrics' weights
    ("timings", pa.string()),  # JSON: seconds per metric group, and the clip-seconds scored
    ("code_version", pa.string()), ("status", pa.string()),  # running | finished | partial | failed
    ("error", pa.string()), ("started_at", TS), ("ended_at", TS),
])

# one row per evaluation x clip x metric (frame_idx null: the clip's value) or per frame where the
# metric has per-frame values; clip_id null: a value over the whole clip set (FID, FVD).
# `moved`: the frame's driving pose differs clearly from the reference's (evaluate.moved)
EVAL_RESULTS = pa.schema([
    ("eval_id", pa.string()), ("clip_id", pa.string()), ("metric", pa.string()), ("frame_idx", pa.int32()),
    ("value", pa.float64()), ("moved", pa.bool_()),
])

SCHEMAS: dict[str, pa.Schema] = {"sources": SOURCES, "shots": SHOTS, "clips": CLIPS, "failures": FAILURES,
                                 "pose_frames": POSE_FRAMES, "clip_pose_summary": CLIP_POSE_SUMMARY,
                                 "train_runs": TRAIN_RUNS, "train_metrics": TRAIN_METRICS,
                                 "eval_runs": EVAL_RUNS, "eval_results": EVAL_RESULTS}

# Parquet settings per table (docs/design.md §3, measured in benchmarks/pose_tables.py): float lists
# without dictionary encoding and with byte-stream split; row groups of 64 Ki rows.
ROW_GROUP_ROWS = 65536
WRITE_OPTIONS: dict[str, dict] = {
    "pose_frames": {
        "use_dictionary": ["clip_id", "model", "pose_version"],
        "use_byte_stream_split": [f"{c}.list.element" for c in POSE_LIST_COLUMNS] + ["t_s", "det_score", "body_conf", "feet_conf",
                                  "face_conf", "left_hand_conf", "right_hand_conf"],
        "row_group_size": ROW_GROUP_ROWS,
    },
}
# the precision float list columns are stored with: each value rounded to a multiple of 1/STEP
# (still float32). Coordinates are shares of the frame, so 1/8192 is under 0.15 px on a 1080 px
# frame, far below any detector's error; scores to 1/1024. With byte-stream split the zeroed low
# bits compress: 607 instead of 1,204 bytes per frame (benchmarks/pose_tables.py).
STORED_PRECISION: dict[str, dict[str, int]] = {
    "pose_frames": {"bbox": 8192, "keypoints": 8192, "scores": 1024},
}
