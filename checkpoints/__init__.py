"""Trained checkpoints shipped with vitabench (``vitabench list checkpoints``): one directory per
checkpoint, holding its weights (fp16), config, observation spec, lineage and model card."""
