"""PVA (prompt-based visual alignment): CLIP prompt tuning, an image-to-image aligner, and their training.

Stages (``vitabench pva ...``): ``render`` images of LIBERO scenes in domains, ``train-clip`` a
small image-text encoder when no pretrained CLIP is at hand, ``tune-prompts`` (global, domain and
instance-conditional prompt tokens; CLIP frozen), ``align`` (the aligner, against the canonical
domain's prompt embedding), then ``vitabench run --policy pva`` evaluates any policy on aligned
images. Heavy imports (torch, transformers) stay inside the modules that need them.
"""
