"""Episodes, the manifest built before any rollout, and the record each episode leaves."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping, Sequence

from vitabench.api.protocol import Protocol
from vitabench.api.suite import Suite

Status = Literal["ok", "error"]


@dataclass(frozen=True)
class Episode:
    """One rollout to perform: which task, which init state, which seed (and, in a domain-set run, which domain)."""

    episode_id: str
    suite: str
    task_id: int
    task: str
    init_state_id: int
    seed: int
    index: int  # position within its task (and domain): 0 .. episodes_per_task - 1
    domain: str | None = None  # ``set/name@version`` in a domain-set run (Protocol.with_domains); None: the protocol's

    def to_dict(self) -> dict[str, Any]:
        """Plain form; without ``domain`` outside domain-set runs, so their manifests keep their hashes."""
        data = dataclasses.asdict(self)
        if self.domain is None:
            del data["domain"]
        return data


def episode_seed(protocol: Protocol, suite: str, task_id: int, index: int) -> int:
    """The seed of an episode, from its identity only (never its place in a run)."""
    if protocol.seed_rule == "fixed":
        return protocol.seed
    digest = hashlib.sha256(f"{protocol.seed}:{suite}:{task_id}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class Manifest:
    """The deterministic, ordered list of episodes of a run."""

    suite: str
    protocol_hash: str
    episodes: tuple[Episode, ...]

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "protocol_hash": self.protocol_hash,
            "episodes": [e.to_dict() for e in self.episodes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        return cls(
            suite=data["suite"],
            protocol_hash=data["protocol_hash"],
            episodes=tuple(Episode(**e) for e in data["episodes"]),
        )

    def by_task(self) -> dict[int, list[Episode]]:
        """Episodes grouped by task id, each group in manifest order."""
        groups: dict[int, list[Episode]] = {}
        for episode in self.episodes:
            groups.setdefault(episode.task_id, []).append(episode)
        return groups


def build_manifest(
    suite: Suite,
    protocol: Protocol,
    task_ids: Sequence[int] | None = None,
    episodes_per_task: int | None = None,
) -> Manifest:
    """Every episode of the run, decided before any rollout.

    Episode ``k`` of a task uses init state ``protocol.init_state_ids[k % n]``; the result
    depends only on its arguments, never on workers, batch size or timing. Under a domain set
    (:meth:`Protocol.with_domains`) each task's episodes are repeated in every domain, with the same
    init states and seeds, and their ids end in ``@SET/NAME``.
    """
    ids = list(range(len(suite.tasks))) if task_ids is None else list(task_ids)
    if len(set(ids)) != len(ids):
        raise ValueError(f"task ids {ids} contain duplicates")
    per_task = protocol.episodes_per_task if episodes_per_task is None else episodes_per_task
    if per_task <= 0:
        raise ValueError(f"episodes per task {per_task}: must be a positive integer")
    episodes = []
    for task_id in sorted(ids):
        task = suite.task(task_id)
        usable = [i for i in protocol.init_state_ids if i < task.n_init_states]
        if not usable:
            raise ValueError(
                f"task {task_id} of {suite.name} has {task.n_init_states} init states; "
                f"protocol {protocol.name!r} asks for ids {protocol.init_state_ids[0]}.."
            )
        for domain in protocol.episode_domains:
            suffix = "" if domain is None else "@" + domain.rpartition("@")[0]
            for k in range(per_task):
                episodes.append(
                    Episode(
                        episode_id=f"{suite.name}/t{task_id:03d}/e{k:04d}{suffix}",
                        suite=suite.name,
                        task_id=task_id,
                        task=task.name,
                        init_state_id=usable[k % len(usable)],
                        seed=episode_seed(protocol, suite.name, task_id, k),
                        index=k,
                        domain=domain,
                    )
                )
    return Manifest(suite=suite.name, protocol_hash=protocol.hash, episodes=tuple(episodes))


@dataclass(frozen=True)
class EpisodeRecord:
    """What one episode left behind: one JSON line in ``episodes.jsonl``.

    ``success`` is ``None`` when ``status == "error"``: an errored episode is neither a
    success nor a failure, and reports count it separately.
    """

    episode_id: str
    suite: str
    task_id: int
    task: str
    instruction: str
    init_state_id: int
    seed: int
    success: bool | None
    steps: int
    wall_s: float
    status: Status
    error: str | None
    policy: Mapping[str, Any]  # {"name", "args", "checkpoint_hash"}
    protocol: Mapping[str, Any]  # {"name", "version", "hash"}
    manifest_hash: str
    worker: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    video: str | None = None
    finished_at: float = 0.0
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    domain: str | None = None  # the episode's visual domain (``set/name@version``); None: as built

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=_jsonable)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpisodeRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _jsonable(value: Any) -> Any:
    """numpy scalars and tuples in records become plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Iterable):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__} in a record")
