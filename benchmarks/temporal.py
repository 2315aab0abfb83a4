"""UniAnimate's temporal layers: attention over time against temporal Mamba, per denoising step.

    python benchmarks/temporal.py [--size puppet|full] [--frames 16 32 64 128] [--device cpu|cuda]
                                  [--height 112 --width 64] [--repeats 3] [--backward]

For each temporal kind and frame count, one child process builds the UniAnimate trunk of
``--size`` (random weights), then times the guided denoising step (one batch holding the
conditional and the unconditional rows) at ``--height`` x ``--width`` pixels: the whole step, and
the part spent in the temporal layers (the 17 temporal transformers or their Mamba blocks,
measured by hooks around them; on a GPU with a synchronise before each clock). Memory: the peak
of the process (CPU: maximum resident set over what the idle model held; GPU: the allocator's
peak). ``--backward`` adds a training step's backward pass. The claim to check: the Mamba
blocks' cost grows linearly with the frames, attention's quadratically, so the ratio between
them moves with the frame count. Results: benchmarks/results/temporal-<size>-<device>-<date>.json.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.pose import HERE, machine  # noqa: E402


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(size: str, temporal: str, frames: int, height: int, width: int, device: str, repeats: int,
        backward: bool) -> dict:
    """Time and memory of one configuration, in this process."""
    import torch

    from animate_anyone.models.unianimate import predict
    from animate_anyone.unianimate_pipeline import build_components

    c = build_components(size, seed=0, temporal=temporal)
    unet, cond = c["unet"].to(device), c["conditioner"].to(device)
    scale = 2 ** (len(c["vae"].config.block_out_channels) - 1)
    h, w = height // scale, width // scale
    rows = 2  # guidance: the conditional and the unconditional pass in one batch
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 4, frames, h, w, generator=g).to(device)
    pose = torch.rand(rows, 3, frames, height, width, generator=g).to(device)
    ref = torch.randn(rows, 4, h, w, generator=g).to(device)
    ref_pose = torch.rand(rows, 3, height, width, generator=g).to(device)
    embeds = torch.randn(rows, cond.config.image_embed_dim, generator=g).to(device)
    drop = torch.tensor([False, True], device=device)
    cuda = device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    spent = [0.0]
    starts = {}
    temporal_layers = [m for m in unet.modules() if type(m).__name__ in ("TransformerTemporalModel", "TemporalMamba")]

    def before(mod, args):  # a hook that returns nothing leaves the call as it was
        sync()
        starts[id(mod)] = time.perf_counter()

    def after(mod, args, out):
        sync()
        spent[0] += time.perf_counter() - starts[id(mod)]

    for m in temporal_layers:
        m.register_forward_pre_hook(before)
        m.register_forward_hook(after)

    def step():
        with torch.set_grad_enabled(backward):
            out = predict(unet, cond, x, torch.tensor([500, 500], device=device), image_embeds=embeds, pose=pose,
                          reference_latent=ref, reference_pose=ref_pose, drop=drop)
            if backward:
                out.square().mean().backward()

    if backward:
        unet.train()
    idle = _rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    step()  # warm-up (also the memory peak)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mb() - idle
    totals, temporals = [], []
    for _ in range(repeats):
        spent[0] = 0.0
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        totals.append(time.perf_counter() - t0)
        temporals.append(spent[0])
    totals.sort()
    temporals.sort()
    return {"size": size, "temporal": temporal, "frames": frames, "step_s": round(totals[len(totals) // 2], 4),
            "temporal_s": round(temporals[len(temporals) // 2], 4), "peak_mb": round(peak, 1),
            "temporal_layers": len(temporal_layers),
            "params": sum(p.numel() for p in unet.parameters()), "latent": [h, w]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="puppet", choices=["tiny", "puppet", "full"])
    ap.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--temporal", nargs="+", default=["transformer", "mamba"])
    ap.add_argument("--height", type=int, default=112)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backward", action="store_true")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one configuration
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.size, args.temporal[0], args.frames[0], args.height, args.width, args.device,
                             args.repeats, args.backward)))
        return
    rows = []
    for frames in args.frames:
        for temporal in args.temporal:
            cmd = [sys.executable, __file__, "--one", "--size", args.size, "--temporal", temporal, "--frames",
                   str(frames), "--height", str(args.height), "--width", str(args.width), "--device", args.device,
                   "--repeats", str(args.repeats)] + (["--backward"] if args.backward else [])
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                rows.append({"temporal": temporal, "frames": frames, "error": done.stderr.strip().splitlines()[-1]})
            else:
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    for temporal in args.temporal:  # growth per doubling of the frames
        mine = [r for r in rows if r.get("temporal") == temporal and "step_s" in r]
        for a, b in zip(mine, mine[1:]):
            b["temporal_growth"] = round(b["temporal_s"] / a["temporal_s"], 2) if a["temporal_s"] else None
            b["step_growth"] = round(b["step_s"] / a["step_s"], 2) if a["step_s"] else None
    info = machine()
    if args.device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    result = {"machine": info, "size": args.size, "pixels": [args.height, args.width], "device": args.device,
              "backward": args.backward, "rows": rows}
    out = args.out or HERE / "results" / f"temporal-{args.size}-{args.device.split(':')[0]}-{info['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
