"""Demonstrations, teacher training and VITA-VLA distillation (stage 1 align, stage 2 fine-tune, ablation variants)."""
