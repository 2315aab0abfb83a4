"""Ingest speed: a 60 s 720p30 multi-shot video, end to end, against real time.

    python benchmarks/ingest.py [--seconds 60] [--size 1280x720] [--pipeline demo] [--repeat 3]

Steps timed (the same library functions the Prefect tasks call): download through yt-dlp from a
loopback server, probe and shot detection, clip cutting (decode + H.264 encode), table writes and
catalog refresh. Video generation is not timed. Detection speed is also measured with
PySceneDetect's own defaults (``scenedetect.detect(path, ContentDetector())``) on the same file.
Results go to ``benchmarks/results/ingest-<date>.json`` and are printed as a table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from animate_anyone import synthetic  # noqa: E402
from animate_anyone.config import load_config  # noqa: E402
from animate_anyone.ingest import stages  # noqa: E402
from animate_anyone.ingest.serve import serve_directory  # noqa: E402
from animate_anyone.tables import DataRoot, refresh_catalog  # noqa: E402
from animate_anyone.tables.io import Dataset  # noqa: E402


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo")
    models = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
              if ln.startswith("model name")] if cpuinfo.exists() else []
    cpu = models[0] if models else platform.processor() or "unknown"
    import av
    import scenedetect
    import yt_dlp

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "pyav": av.__version__, "ffmpeg": ".".join(map(str, av.library_versions["libavcodec"])),
            "scenedetect": scenedetect.__version__, "yt_dlp": yt_dlp.version.__version__}


def make_video(work: Path, seconds: float, width: int, height: int) -> Path:
    spec = synthetic.plan_video("bench", 2024, seconds, width, height)
    video = work / "served" / "bench.mp4"
    if not (work / "served" / "bench.truth.json").exists():
        print(f"generating {seconds:g} s {width}x{height} puppet video (not timed)...", flush=True)
        synthetic.write_video(spec, work / "served")
    return video


def bench_config(pipeline: str):
    """The pipeline, with the puppets' shot settings: the benchmark video is the puppet world's."""
    pipe = load_config(pipeline)
    puppets = pipe.sources.puppets
    ingest = pipe.ingest.model_copy(update={"shots": puppets.shots}) if puppets and puppets.shots else pipe.ingest
    return pipe.model_copy(update={"ingest": ingest})


def run_once(video: Path, work: Path, pipeline: str) -> dict:
    pipe = bench_config(pipeline)
    root = DataRoot.from_uri(work / "data")
    shutil.rmtree(root.path, ignore_errors=True)
    t = {}
    with serve_directory(video.parent) as base:
        t0 = time.perf_counter()
        fetched = stages.download(f"{base}/{video.name}", root, pipe.ingest)
        t1 = time.perf_counter()
        detected = stages.detect(fetched, pipe.ingest)
        t2 = time.perf_counter()
        cut = stages.cut(detected, root, pipe.ingest)
        t3 = time.perf_counter()
        stages.write(cut, Dataset(root, pipe.dataset), pipe.ingest)
        refresh_catalog(root)
        t4 = time.perf_counter()
    t.update(download_s=t1 - t0, detect_s=t2 - t1, cut_s=t3 - t2, tables_s=t4 - t3, total_s=t4 - t0)
    truth, _ = synthetic.load_truth(video)
    t["cuts_found"] = detected.shots.cuts
    t["cuts_true"] = truth["cuts"]
    t["clips"] = len(cut.clips)
    t["clip_frames"] = sum(c.num_frames for c in cut.clips)
    t["detect_fps"] = detected.shots.num_frames / detected.shots.seconds
    return t


def pyscenedetect_defaults(video: Path) -> dict:
    import scenedetect

    t0 = time.perf_counter()
    scenes = scenedetect.detect(str(video), scenedetect.ContentDetector())
    elapsed = time.perf_counter() - t0
    frames = scenes[-1][1].frame_num if scenes else 0
    return {"seconds": elapsed, "cuts": [s[0].frame_num for s in scenes[1:]], "frames": frames,
            "fps": frames / elapsed if elapsed and frames else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--pipeline", default="demo", help="whose ingest settings to use")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    args.work.mkdir(parents=True, exist_ok=True)
    video = make_video(args.work, args.seconds, width, height)
    runs = [run_once(video, args.work, args.pipeline) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["total_s"])
    ref = pyscenedetect_defaults(video)
    duration = synthetic.load_truth(video)[0]["num_frames"] / 30.0
    result = {
        "benchmark": "ingest", "date": dt.date.today().isoformat(), "machine": machine(),
        "video": {"seconds": duration, "width": width, "height": height, "fps": 30, "cuts": best["cuts_true"]},
        "pipeline": args.pipeline, "ingest_settings": bench_config(args.pipeline).ingest.model_dump(), "runs": runs,
        "median_total_s": statistics.median(r["total_s"] for r in runs),
        "best_total_s": best["total_s"],
        "realtime_factor_median": duration / statistics.median(r["total_s"] for r in runs),
        "target_realtime_factor": 10.0,
        "detection_fps_ours": statistics.median(r["detect_fps"] for r in runs),
        "detection_fps_pyscenedetect_defaults": ref["fps"],
        "pyscenedetect_defaults_cuts": ref["cuts"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"ingest-{result['date']}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"machine: {result['machine']['cpu']} ({result['machine']['cores']} cores)")
    print(f"video: {duration:g} s {width}x{height}@30, {len(best['cuts_true'])} cuts; clips: {best['clips']}")
    for k in ("download_s", "detect_s", "cut_s", "tables_s", "total_s"):
        print(f"  {k:<11} " + "  ".join(f"{r[k]:6.2f}" for r in runs))
    print(f"real-time factor (median): {result['realtime_factor_median']:.1f}x  (target >= 10x)")
    print(f"detection: ours {result['detection_fps_ours']:.0f} frames/s, PySceneDetect defaults "
          f"{result['detection_fps_pyscenedetect_defaults']:.0f} frames/s")
    print(f"cuts found: ours {best['cuts_found'] == best['cuts_true']}, defaults {ref['cuts'] == best['cuts_true']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
