"""The plugins vitabench knows: the policy and suite registries (built-ins plus entry-point
plugins; the mechanism is :class:`vitabench.api.registry.Registry`), and how to build one."""

from __future__ import annotations

import functools
from typing import Any

from vitabench.api.policy import Policy
from vitabench.api.registry import Registry
from vitabench.api.suite import Suite


def _builtin_policies() -> dict[str, str]:
    from vitabench.policies import BUILTIN_POLICIES

    return BUILTIN_POLICIES


def _builtin_suites() -> dict[str, str]:
    from vitabench.suites import BUILTIN_SUITES

    return BUILTIN_SUITES


POLICIES: Registry[Policy] = Registry("policy", "vitabench.policies", _builtin_policies)
SUITES: Registry[Suite] = Registry("suite", "vitabench.suites", _builtin_suites)


@functools.lru_cache(maxsize=None)
def get_suite(name: str) -> Suite:
    """The suite registered as ``name`` (aliases accepted), built once per process."""
    return SUITES.load(name)(SUITES.canonical(name))


def make_policy(name: str, **args: Any) -> Policy:
    """Instantiate the policy registered as ``name`` with its arguments."""
    return POLICIES.load(name)(**args)
