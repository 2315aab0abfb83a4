"""DuckDB over a generated pose table: each docs/queries.md recipe's time, and bytes per frame stored.

    python benchmarks/pose_tables.py [--rows 10000000] [--frames-per-clip 150]
    python benchmarks/pose_tables.py --real VIDEO [VIDEO ...]   # bytes per frame of real poses

Rows are one person per frame with smooth random motion (like real keypoints, which compress),
written with the pipeline's own Parquet settings (tables/schemas.py WRITE_OPTIONS) in parts of
about 1M rows; the catalog is the pipeline's. Results go to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from animate_anyone.tables import DataRoot, query, refresh_catalog, write_part  # noqa: E402
from benchmarks.pose import machine  # noqa: E402

PART_ROWS = 1_000_000


def fixed(a: np.ndarray, n: int) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), n)


def make_part(rng, first_clip: int, clips: int, fpc: int) -> tuple[pa.Table, list[dict]]:
    n = clips * fpc
    base = rng.random((clips, 1, 133, 2), dtype=np.float32) * 0.6 + 0.2
    drift = np.cumsum(rng.normal(0, 0.002, (clips, fpc, 133, 2)).astype(np.float32), axis=1)
    kp = (base + drift).reshape(n, 266).clip(0, 1)
    sc = (0.5 + 0.5 * rng.random((clips, 1, 133), dtype=np.float32) - np.abs(
        rng.normal(0, 0.05, (clips, fpc, 133)).astype(np.float32))).reshape(n, 133).clip(0, 1)
    ids = np.repeat([f"c{first_clip + i:015d}" for i in range(clips)], fpc)
    frame = np.tile(np.arange(fpc, dtype=np.int32), clips)
    parts = {"body_conf": sc[:, :17], "feet_conf": sc[:, 17:23], "face_conf": sc[:, 23:91],
             "left_hand_conf": sc[:, 91:112], "right_hand_conf": sc[:, 112:]}
    table = pa.table({
        "clip_id": ids, "frame_idx": frame, "t_s": frame / 30.0, "person_idx": np.zeros(n, np.int16),
        "num_persons": np.ones(n, np.int16), "bbox": fixed(np.tile([0.2, 0.1, 0.8, 0.9], (n, 1)).astype(np.float32), 4),
        "det_score": np.ones(n, np.float32), "keypoints": fixed(kp, 266), "scores": fixed(sc, 133),
        **{k: v.mean(1) for k, v in parts.items()}, "model": ["bench"] * n, "pose_version": ["1"] * n})
    summary = [{"clip_id": f"c{first_clip + i:015d}", "source_id": f"u{(first_clip + i) // 10:015d}", "split": "train",
                "num_frames": fpc, "fps": 30.0, "width": 576, "height": 1024, "frames_with_person": fpc,
                "frames_one_person": fpc, "one_person_ratio": 1.0, "max_persons": 1, "mean_persons": 1.0,
                "body_conf": float(sc[i * fpc:(i + 1) * fpc, :17].mean()), "face_conf": 0.5, "left_hand_conf": 0.5,
                "right_hand_conf": 0.5, "left_hand_visible_ratio": 0.9, "right_hand_visible_ratio": 0.9,
                "hands_visible_ratio": float(rng.random()), "motion_energy": float(rng.random()), "bbox_coverage": 0.3,
                "model": "bench", "pose_version": "1", "extracted_at": dt.datetime.now(dt.timezone.utc)} for i in range(clips)]
    return table, summary


def pose_bytes(path: Path) -> int:
    """The stored size of a Parquet file's column data (its footer and schema left out: with a few
    hundred frames those are most of a small file, and at scale they are not)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    return sum(meta.row_group(g).column(c).total_compressed_size
               for g in range(meta.num_row_groups) for c in range(meta.num_columns))


def real(videos: list[Path]) -> None:
    """Poses of real videos (MediaPipe, the pipeline's extraction and writer): bytes per frame."""
    from animate_anyone.config import Pose
    from animate_anyone.pose.backends import load_backend
    from animate_anyone.pose.extract import extract_clip, pose_rows

    work = HERE / "work" / "pose_tables_real"
    shutil.rmtree(work, ignore_errors=True)
    root = DataRoot.from_uri(work)
    backend = load_backend(Pose(), "mediapipe")
    per_video, rows_total, data_total = [], 0, 0
    try:
        for video in videos:
            poses = extract_clip(backend, video)
            rows = pose_rows(video.stem, poses, 30.0, backend.model_name)
            part = write_part(root, "pose_frames", "real", video.stem, rows)
            data = pose_bytes(part)
            per_video.append({"video": video.name, "frames": len(poses.frames), "rows": rows.num_rows,
                              "file_bytes": part.stat().st_size, "data_bytes": data,
                              "data_bytes_per_frame": round(data / max(len(poses.frames), 1), 1)})
            rows_total, data_total = rows_total + len(poses.frames), data_total + data
            print(per_video[-1], flush=True)
    finally:
        backend.close()
    result = {"videos": per_video, "frames": rows_total, "data_bytes_per_frame": round(data_total / rows_total, 1),
              "target_bytes_per_frame": 1000, "backend": "mediapipe", "machine": machine()}
    print(json.dumps(result, indent=1))
    (HERE / "results" / f"pose-tables-real-{result['machine']['date']}.json").write_text(json.dumps(result, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--frames-per-clip", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--real", type=Path, nargs="+", help="measure bytes per frame on these videos' poses instead")
    ap.add_argument("--reuse", action="store_true", help="time the recipes on the tables of the last run of the "
                                                          "same size instead of writing them again")
    args = ap.parse_args()
    if args.real:
        return real(args.real)
    fpc = args.frames_per_clip
    work = HERE / "work" / "pose_tables"
    clips_total = args.rows // fpc
    per_part = PART_ROWS // fpc
    size_file = work / "rows.txt"
    reuse = args.reuse and size_file.is_file() and size_file.read_text().strip() == str(args.rows)
    if not reuse:
        shutil.rmtree(work, ignore_errors=True)
    root = DataRoot.from_uri(work)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for k, first in enumerate(range(0, clips_total, per_part) if not reuse else []):
        clips = min(per_part, clips_total - first)
        table, summary = make_part(rng, first, clips, fpc)
        write_part(root, "pose_frames", "bench", f"p{k:04d}", table)
        write_part(root, "clip_pose_summary", "bench", f"p{k:04d}", summary)
        write_part(root, "clips", "bench", f"p{k:04d}", [
            {"clip_id": s["clip_id"], "source_id": s["source_id"], "fps": 30.0, "width": 576, "height": 1024,
             "num_frames": fpc, "split": "train", "sha256": s["clip_id"], "clip_uri": ""} for s in summary])
    write_s = None if reuse else time.perf_counter() - t
    size_file.write_text(f"{args.rows}\n")
    refresh_catalog(root)
    rows = args.rows - args.rows % fpc
    parts = sorted((root.tables_dir / "pose_frames").rglob("*.parquet"))
    size = sum(p.stat().st_size for p in parts)
    text = (HERE.parent / "docs" / "queries.md").read_text()
    text = text[:text.index("## Evaluation tables")]  # the pose recipes (evaluation tables are one row per clip)
    recipes = dict(re.findall(r"^## (\w+)\n.*?```sql\n(.*?)```", text, flags=re.S | re.M))
    params = {"limit": 10, "clip_id": f"c{clips_total // 2:015d}", "frame_idx": 7}
    timings = {}
    for name, sql in recipes.items():
        sql = sql.format(**params)
        runs = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            query(root, sql)
            runs.append(time.perf_counter() - t)
        timings[name] = round(sorted(runs)[len(runs) // 2], 3)
        print(f"{name:26s} {timings[name]:.3f} s", flush=True)
    result = {"rows": rows, "frames_per_clip": fpc, "clips": clips_total, "write_s": None if write_s is None else round(write_s, 1),
              "pose_frames_bytes": size, "bytes_per_frame": round(size / rows, 1),
              "data_bytes_per_frame": round(sum(pose_bytes(p) for p in parts) / rows, 1), "recipe_median_s": timings,
              "target_s": 1.0, "machine": machine()}
    print(json.dumps(result, indent=1))
    (HERE / "results" / f"pose-tables-{rows}-{result['machine']['date']}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
