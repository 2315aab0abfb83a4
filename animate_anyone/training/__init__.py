"""Training: datasets over a selection snapshot, the two-stage loop (plus the puppet world's VAE
stage) with accelerate, checkpoints, validation and the run's tables."""
