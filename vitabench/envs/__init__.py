"""Environments. Importing this package registers ``vitabench/Libero-v0`` with Gymnasium::

    import gymnasium as gym
    env = gym.make("vitabench.envs:vitabench/Libero-v0", suite="libero_object", task_id=0,
                   protocol="standard", cameras=("agentview",))
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from vitabench.api.protocol import Protocol, load_protocol

ENV_ID = "vitabench/Libero-v0"


def make_libero_env(suite: str, task_id: int, protocol: str | Protocol = "standard", **kwargs: Any) -> Any:
    """Build a :class:`~vitabench.envs.libero_env.LiberoEnv` from names (the Gymnasium entry point)."""
    from vitabench.envs.libero_env import LiberoEnv
    from vitabench.plugins import get_suite

    spec = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    return LiberoEnv(get_suite(suite).task(task_id), spec, **kwargs)


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="vitabench.envs:make_libero_env", disable_env_checker=True)
