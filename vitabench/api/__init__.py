"""The small api every part of vitabench speaks: specs, records, the policy protocol, registries."""

from vitabench.api.errors import VitabenchError
from vitabench.api.episode import Episode, EpisodeRecord, Manifest, build_manifest, episode_seed
from vitabench.api.policy import (
    ACTION_DIM,
    STATE_KEYS,
    STATE_SIZES,
    BasePolicy,
    Observation,
    Policy,
    PolicyInfo,
    PolicySpec,
    Provenance,
    batch_slots,
    check_actions,
    policy_provenance,
    release_slot,
)
from vitabench.api.protocol import Protocol, ProtocolError, load_protocol, preset_names
from vitabench.api.registry import Registry, RegistryEntry, RegistryError
from vitabench.api.suite import Suite, Task

__all__ = [
    "ACTION_DIM",
    "STATE_KEYS",
    "STATE_SIZES",
    "BasePolicy",
    "Episode",
    "EpisodeRecord",
    "Manifest",
    "Observation",
    "Policy",
    "PolicyInfo",
    "PolicySpec",
    "Protocol",
    "Provenance",
    "ProtocolError",
    "Registry",
    "RegistryEntry",
    "RegistryError",
    "Suite",
    "Task",
    "VitabenchError",
    "batch_slots",
    "build_manifest",
    "check_actions",
    "episode_seed",
    "load_protocol",
    "policy_provenance",
    "release_slot",
    "preset_names",
]
