"""Whole-body keypoints: layouts (and, later, backends, rendering, retargeting)."""
