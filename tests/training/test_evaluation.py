"""The evaluate use case on a data root whose poses are the puppet world's exact truth: the real
video scores as a perfect model would, the still reference cannot follow moving points, every
checkpoint of a training run is scored once, a killed evaluation finishes only its missing clips,
and bad input lands in `failures` while the rest is scored."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from train_data import CONFIG

from animate_anyone.config import load_config
from animate_anyone.evaluation import run as ev
from animate_anyone.pipeline import load_components
from animate_anyone.tables import DataRoot, query
from animate_anyone.tables.io import Dataset

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _recipes() -> dict[str, str]:
    import re

    text = (REPO / "docs" / "queries.md").read_text()
    return dict(re.findall(r"^## (\w+)\n.*?```sql\n(.*?)```", text, flags=re.S | re.M))

EVALUATE = """
    evaluate: {{split: train, clips: 2, frames: 6, width: 32, height: 64, steps: 2, guidance: 1.0, window: 6,
                overlap: 2, device: cpu, dtype: float32, lpips: null, pose_min_side: 256{extra}}}
"""


def _cfg(tmp_path: Path, root: Path, extra: str = "", **overrides):
    path = tmp_path / "pipelines.yaml"
    path.write_text(CONFIG.format(root=root, extra1="") + EVALUATE.format(extra=extra))
    return load_config("t", path, **overrides)


def test_the_real_video_scores_high_and_the_still_reference_cannot_follow(train_root, tmp_path):
    """Pose fidelity on ground truth: the clip's own frames as the "generated" video find the
    driving pose; the reference held still misses every point that moved."""
    from animate_anyone.training.data import ClipStore

    cfg = _cfg(tmp_path, train_root).model_copy(update={"evaluate": _cfg(tmp_path, train_root).evaluate.model_copy(
        update={"width": 72, "height": 128, "frames": 40})})
    b = ev.prepare(cfg, split="train", clips=2)
    scorers = ev.make_scorers(cfg, "cpu")
    store = ClipStore(b.ds, 72, 128, cache=0)
    try:
        for clip in b.clips:
            real, _ = store.get(clip)
            real01 = (real[:40] / 2 + 0.5).clamp(0, 1)
            values = {}
            for name, gen in (("real", real01), ("still", real01[:1].expand(40, -1, -1, -1))):
                rows, _ = ev.score_clip(b.ds, clip, real01, gen, scorers, cfg, {})
                values[name] = {r["metric"]: r["value"] for r in rows if r["frame_idx"] is None}
            assert values["real"]["psnr"] == 100 and values["real"]["l1"] == 0  # the same frames
            assert values["real"]["person"] == 1.0 and values["real"]["pck10_body"] > 0.7, values["real"]
            # one image repeated: found in every frame or in none (MediaPipe misses the puppet in
            # some single frames: the real video's bound above is over many)
            assert values["still"]["person"] in (0.0, 1.0)
            # MediaPipe itself misses some points of the truth (the real video's bound); the still
            # reference misses nearly every point that moved
            assert values["real"]["pck10_body_moving"] > 0.4, values["real"]  # points moved 0.2 S or more
            assert values["still"]["pck10_body_moving"] < 0.1, values["still"]
    finally:
        scorers.close()


def test_all_new_scores_every_checkpoint_once_beside_the_baselines(train_root, tmp_path):
    from animate_anyone.training.run import train

    cfg = _cfg(tmp_path, train_root)
    train(cfg, "all")
    result = ev.evaluate(cfg)
    names = {r["model_name"]: r for r in result["runs"]}
    root = DataRoot.from_uri(train_root)
    s1 = [p.name for p in (root.path / "checkpoints").glob("t-s1-*")][0]
    s2 = [p.name for p in (root.path / "checkpoints").glob("t-s2-*")][0]
    # stage 1 keeps steps 3 and 6, stage 2 steps 2 and 4; stage 2's last is the trained model itself
    assert set(names) == {f"{s1}@3", f"{s1}@6", f"{s2}@2", "tiny", "still-reference", "pose-only-drawing",
                          "untrained-tiny"}
    assert all(r["status"] == "finished" and r["clips_done"] == 2 for r in result["runs"]), result["runs"]
    assert names["tiny"]["checkpoint_step"] == 4 and names[f"{s1}@6"]["stage"] == 1
    # every baseline has its appearance scores in eval_results, on every clip
    scored = query(root, "SELECT r.model_name, count(DISTINCT x.clip_id) AS clips FROM eval_runs r JOIN eval_results x "
                         "USING (eval_id) WHERE r.kind = 'baseline' AND x.metric = 'appearance_real' "
                         "AND x.frame_idx IS NULL GROUP BY ALL").to_pylist()
    assert {r["model_name"]: r["clips"] for r in scored} == {"still-reference": 2, "pose-only-drawing": 2,
                                                             "untrained-tiny": 2}
    # the recipes of docs/queries.md answer the questions people ask
    recipe = _recipes()
    per_step = query(root, recipe["metric_over_steps"].format(metric="psnr")).to_pylist()
    assert [(r["train_run_id"], r["checkpoint_step"]) for r in per_step] == [(s1, 3), (s1, 6), (s2, 2), (s2, 4)]
    best = query(root, recipe["best_checkpoint"].format(metric="psnr")).to_pylist()
    table = {r["model_name"]: r for r in result["table"]}
    top = max((r for r in result["table"] if r["kind"] != "baseline"), key=lambda r: r["psnr"])
    assert best == [{"bench": result["bench"], "best": top["model_name"], "value": pytest.approx(top["psnr"]),
                     "still_reference": pytest.approx(table["still-reference"]["psnr"])}]
    worst = query(root, recipe["worst_clips"].format(model="tiny")).to_pylist()
    assert len(worst) == 2 and worst[0]["psnr"] <= worst[1]["psnr"]
    frames = query(root, "SELECT count(*) AS n FROM eval_results WHERE metric = 'psnr' AND frame_idx IS NOT NULL "
                         f"AND eval_id = '{names['tiny']['eval_id']}'").to_pylist()[0]["n"]
    assert frames == 2 * 5  # frames 1..5 of each clip (frame 0 is the reference)
    # the still reference on frames 1..5 of the real clips, checked by hand
    from animate_anyone.evaluation.metrics import frame_scores
    from animate_anyone.training.data import ClipStore

    b = ev.prepare(cfg)
    store = ClipStore(b.ds, 32, 64, cache=0)
    want = []
    for clip in b.clips:
        real = (store.get(clip)[0][:6] / 2 + 0.5).clamp(0, 1)
        want.append(frame_scores(real[:1].expand(5, -1, -1, -1), real[1:])["psnr"].mean())
    got = [r for r in result["table"] if r["model_name"] == "still-reference"][0]["psnr"]
    assert got == pytest.approx(float(np.mean(want)), rel=1e-6)
    # the pictures
    assert Path(result["leaderboard"]).is_file() and "still-reference" in result["markdown"]
    assert result["plot"] and Path(result["plot"]).stat().st_size > 1000
    assert len(result["grids"]) == 2 and all(Path(g).is_file() for g in result["grids"])
    # the exported checkpoints went once scored; the checkpoints themselves stay
    assert not (root.path / "evaluations" / "models" / s1 / "step-00000003").exists()
    assert (root.path / "checkpoints" / s1 / "step-00000003").is_dir()
    # again: nothing new to score
    again = ev.evaluate(cfg)
    assert all(r.get("cached") for r in again["runs"])


def test_a_unianimate_model_is_scored_on_the_same_bench_beside_animate_anyones(train_root, tmp_path):
    from animate_anyone.unianimate_pipeline import create_model

    cfg = _cfg(tmp_path, train_root)
    ua = create_model(tmp_path / "ua", "tiny", seed=0)
    result = ev.evaluate(cfg, str(ua), baselines=["tiny-random"])
    # the UniAnimate model, an Animate Anyone baseline and the still reference, on the same clips
    assert all(r["status"] == "finished" and r["clips_done"] == 2 for r in result["runs"]), result["runs"]
    assert [r["kind"] for r in result["runs"] if r["model"] and r["model"].endswith("/ua")] == ["model"]
    assert any(r["model"] and r["model"].endswith("/tiny-random") for r in result["runs"])
    root = DataRoot.from_uri(train_root)
    scored = query(root, "SELECT count(DISTINCT x.clip_id) AS clips FROM eval_runs r JOIN eval_results x USING (eval_id) "
                         "WHERE x.metric = 'psnr' AND x.frame_idx IS NULL AND r.model LIKE $m",
                   params={"m": "%/ua"}).to_pylist()
    assert scored == [{"clips": 2}]
    # the leaderboard says which family each row is; the UniAnimate model gets its grid videos
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in result["markdown"].splitlines()
            if line.startswith("| `")}
    assert rows["`ua`"] == "unianimate" and rows["`tiny-random`"] == "animate-anyone"
    assert rows["`still-reference`"] == "" and rows["`pose-only-drawing`"] == ""
    assert [f for name, f in rows.items() if name.startswith("`untrained")] == ["animate-anyone"]  # the config's family
    ua_eval = [r["eval_id"] for r in result["runs"] if r["model"] and r["model"].endswith("/ua")][0]
    grids = [g for g in result["grids"] if f"/{ua_eval}/" in g]
    assert len(grids) == 2 and all(Path(g).stat().st_size > 1000 for g in grids)


def test_an_exported_checkpoint_is_the_model_the_stage_saved(train_root, tmp_path):
    """Stage 1's last checkpoint, rebuilt from the run's job and accelerate's state, has the weights
    of the stage's own pipeline folder."""
    from animate_anyone.training.run import stage_output, train

    cfg = _cfg(tmp_path, train_root)
    train(cfg, "0")
    train(cfg, "1")
    root = DataRoot.from_uri(train_root)
    run_id = [p.name for p in (root.path / "checkpoints").glob("t-s1-*")][0]
    last = [c for c in ev.run_checkpoints(root, run_id) if c.step == 6][0]
    exported = load_components(ev.export_checkpoint(last))
    saved = load_components(stage_output(cfg, 1))
    for name in ("unet", "reference_unet", "pose_guider", "vae"):
        a, b = exported[name].state_dict(), saved[name].state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_bad_input_is_recorded_and_the_rest_is_scored(train_root, tmp_path):
    from animate_anyone.pipeline import create_model

    root = DataRoot.from_uri(train_root)
    ds = Dataset(root, "demo")
    fid = ", fid: {weights: missing/inception.pt}"
    cfg = _cfg(tmp_path, train_root, extra=fid + ", untrained: false")
    # a snapshot without test clips
    with pytest.raises(ev.EvalInputError, match="no 'test' clips"):
        ev.evaluate(cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"split": "test"})}))
    # a model folder that does not load; a clip whose poses are gone; FID weights that are absent
    broken = create_model(tmp_path / "broken", "tiny")
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    b = ev.prepare(cfg)
    gone = b.clips[1].clip_id
    ds.delete("pose_frames", gone)
    result = ev.evaluate(cfg, str(broken), pictures=False)
    rows = {r["model_name"]: r for r in result["runs"]}
    assert rows["broken"]["status"] == "failed" and "does not load" in rows["broken"]["error"]
    assert rows["still-reference"]["status"] == "partial" and rows["still-reference"]["clips_done"] == 1
    assert "fid" in result["unavailable"] and "missing/inception.pt" in result["unavailable"]["fid"]
    fails = query(root, _recipes()["failed_evaluations"]).to_pylist()
    reasons = {f["reason"] for f in fails}
    assert {"no_eval_clips", "model_unloadable", "missing_weights", "no_poses"} <= reasons, fails
    assert any(f["item_id"] == gone for f in fails)
    # the other clip was scored (PSNR and pose fidelity) for the still reference
    scored = query(root, f"SELECT DISTINCT clip_id, metric FROM eval_results WHERE eval_id = "
                         f"'{rows['still-reference']['eval_id']}' AND frame_idx IS NULL").to_pylist()
    assert {r["clip_id"] for r in scored} == {b.clips[0].clip_id} and {"psnr", "pck10_body"} <= {r["metric"] for r in scored}


def test_fid_fvd_and_identity_with_local_weights(train_root, tmp_path):
    """The weights-based metrics, configured as a user would, with tiny random networks."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            return x.float().flatten(2).mean(-1) if x.dim() == 4 else x.float().flatten(3).mean(-1).flatten(1)

    torch.jit.script(Net()).save(str(tmp_path / "net.pt"))
    cfg_clip = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                                image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModelWithProjection(cfg_clip).save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path / "clip")
    extra = (f", fid: {{weights: {tmp_path / 'net.pt'}, kwargs: {{return_features: true}}}}, "
             f"fvd: {{weights: {tmp_path / 'net.pt'}, input: signed, frames: 2}}, identity: {tmp_path / 'clip'}, "
             "untrained: false")
    cfg = _cfg(tmp_path, train_root, extra=extra)
    result = ev.evaluate(cfg, "tiny-random")
    assert not result["unavailable"]
    by = {r["model_name"]: r for r in result["table"]}
    for name in ("tiny-random", "still-reference"):
        assert {"fid", "fvd", "identity"} <= set(by[name]), by[name]
    # the still reference's frames are the reference: identity 1, and its FID is the distance of
    # frame 0 repeated to the real frames (positive)
    assert by["still-reference"]["identity"] == pytest.approx(1.0, abs=1e-5)
    assert by["still-reference"]["fid"] > 0
    assert "FID" in result["markdown"] and "FVD" in result["markdown"]
