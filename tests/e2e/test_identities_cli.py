"""Held-out dancers are strangers (issue 22): no identity of a test video appears in a training
video, read from the clips table and the puppet truth."""
from __future__ import annotations

import json

import yaml

from animate_anyone import synthetic
from animate_anyone.tables import DataRoot


def test_no_test_identity_appears_in_a_training_clip(cli, test_config, tmp_path):
    cfg = yaml.safe_load(test_config.read_text())
    pipe = cfg["pipelines"]["test"]
    pipe["sources"]["puppets"].update({"count": 6, "seconds": 8})
    pipe["ingest"]["clips"]["split"] = {"train": 0.6, "test": 0.4}
    config = tmp_path / "split.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cli("ingest", "--config", str(config), "--data-root", "data", timeout=900)
    rows = json.loads(cli("query", "SELECT c.split, c.start_frame, c.end_frame, s.url FROM clips c JOIN sources s "
                          "USING (source_id)", "--data-root", "data", "--format", "json").stdout)
    seen: dict[str, set[int]] = {"train": set(), "test": set()}
    for r in rows:
        name = r["url"].rsplit("/", 1)[-1]
        truth, _ = synthetic.load_truth(DataRoot.from_uri(cli.cwd / "data").puppets_dir / name)
        shot = [s for s in truth["shots"] if s["start"] <= r["start_frame"] and r["end_frame"] <= s["end"]]
        assert len(shot) == 1, (r, truth["cuts"])  # a clip lies inside one shot
        seen[r["split"]].add(shot[0]["identity"])
    assert seen["train"] and seen["test"], seen
    assert not seen["train"] & seen["test"]
    assert len(seen["train"] | seen["test"]) >= 6
