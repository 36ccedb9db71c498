"""The model library: the teacher (Seer-style action model) and the VITA-VLA student as torch
modules (``teacher``, ``seer``, ``student``, ``backbones``, ``common``), their checkpoint
directories (``checkpoint``) and the runtime that turns a model into a policy (``runtime``).

Importing a model module imports torch; the policy plugins ``vitabench.policies.teacher`` /
``vita_vla`` import it only when a policy is built."""
