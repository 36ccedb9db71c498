"""``scripted``: the privileged LIBERO expert of :mod:`vitabench.expert`, built from its gains
(``position_gain``, ``rotation_gain``)."""

from vitabench.expert import ScriptedPolicy

__all__ = ["ScriptedPolicy"]
