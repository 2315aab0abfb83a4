"""Evaluation: models scored on held-out clips beside their baselines (metrics, pose fidelity,
identity), recorded in the ``eval_runs`` and ``eval_results`` tables, with a leaderboard, plots and
grid videos."""
