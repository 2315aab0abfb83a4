"""Storage per clip-second: real dance videos re-encoded as ingest writes clips (x264 at the
production pipeline's CRF and preset), for docs/scale.md. Reads ../shared/fixtures/video (the
project's checkouts have it); writes benchmarks/results/clip-storage-DATE.json.

    python benchmarks/clip_storage.py [--crf 18] [--preset veryfast]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
VIDEOS = ROOT.parent / "shared" / "fixtures" / "video"
NAMES = ["controlnext_dance_02.mp4", "easydwpose_dance.mp4"]  # single dancers, 576x1024, 30 fps


def reencode(src: Path, dst: Path, crf: int, preset: str) -> dict:
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vs = inp.streams.video[0]
        enc = out.add_stream("libx264", rate=vs.average_rate)
        enc.width, enc.height, enc.pix_fmt = vs.width, vs.height, "yuv420p"
        enc.options = {"crf": str(crf), "preset": preset}
        frames = 0
        for frame in inp.decode(vs):
            out.mux(enc.encode(frame.reformat(format="yuv420p")))
            frames += 1
        out.mux(enc.encode())
        fps = float(vs.average_rate)
        size = (vs.width, vs.height)
    seconds = frames / fps
    return {"video": src.name, "size": f"{size[0]}x{size[1]}", "seconds": round(seconds, 2),
            "source_mbit_s": round(src.stat().st_size * 8 / seconds / 1e6, 2),
            "clip_mbit_s": round(dst.stat().st_size * 8 / seconds / 1e6, 2),
            "clip_mb_per_s": round(dst.stat().st_size / seconds / 1e6, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crf", type=int, default=18)
    ap.add_argument("--preset", default="veryfast")
    args = ap.parse_args()
    if not VIDEOS.is_dir():
        raise SystemExit(f"needs the real videos at {VIDEOS}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [reencode(VIDEOS / n, Path(tmp) / n, args.crf, args.preset) for n in NAMES]
    today = dt.date.today().isoformat()
    result = {"benchmark": "clip_storage", "date": today, "crf": args.crf, "preset": args.preset,
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "pyav": av.__version__}, "runs": runs}
    out = ROOT / "benchmarks" / "results" / f"clip-storage-{today}.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(runs, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
