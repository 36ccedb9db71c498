"""The evaluation protocol: every choice that moves a LIBERO success rate, written down and hashed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from vitabench.api.config import read_config
from vitabench.api.errors import VitabenchError

ImageOrientation = Literal["raw", "rot180"]
SeedRule = Literal["fixed", "per_episode"]
SuccessRule = Literal["first_success", "success_at_end"]
FixtureRule = Literal["first_draw", "sequential", "second_draw"]

#: How each fixture rule places LIBERO's fixtures (stove, cabinets, racks: bodies without a joint,
#: so not part of an init state), which LIBERO samples from numpy's global RNG at every reset.
#: Draws count the resets after seeding the env with the episode's seed.
FIXTURE_RULES: dict[str, str] = {
    "first_draw": "every episode gets the first draw (the env seeded before every episode; vitabench until standard@2)",
    "sequential": "episode k gets the (k+1)-th draw (the env seeded once per task, one reset per episode: openpi, OpenVLA)",
    "second_draw": "every episode gets the second draw (a new env per episode, reset, then seeded: VITA-VLA's loop)",
}
#: The rule of every protocol written before fixture rules existed; omitted from ``to_dict``.
LEGACY_FIXTURE_RULE = "first_draw"
#: The fields that shape what a policy observes (a checkpoint is tied to these, see
#: ``check_trained_protocol``); the others choose which episodes run.
OBSERVATION_FIELDS: tuple[str, ...] = (
    "cameras", "resolution", "image_orientation", "settle_steps", "settle_action", "control_freq", "simulator", "domain",
    "domains",
)
PRESET_VERSIONS_DIR = "superseded"

class ProtocolError(VitabenchError, ValueError):
    """A protocol file or field that cannot be used."""


@dataclass(frozen=True)
class Protocol:
    """A versioned, hashable evaluation protocol.

    ``max_steps`` maps suite name to the step limit; the settle steps run before the policy acts
    and do not count toward it. ``seed_rule="fixed"`` gives every episode ``seed``;
    ``"per_episode"`` derives a seed from ``seed`` and the episode's identity, never from its
    position in a run. Episode ``k`` of a task uses init state ``init_state_ids[k % len]`` and
    the fixture placement ``fixture_rule`` gives it (:data:`FIXTURE_RULES`, :meth:`fixture_draw`).
    """

    name: str
    version: str
    description: str
    max_steps: Mapping[str, int]
    settle_steps: int
    settle_action: tuple[float, ...]
    cameras: tuple[str, ...]
    resolution: int
    image_orientation: ImageOrientation
    seed: int
    seed_rule: SeedRule
    init_state_ids: tuple[int, ...]
    episodes_per_task: int
    success_rule: SuccessRule
    control_freq: int = 20
    fixture_rule: FixtureRule = LEGACY_FIXTURE_RULE
    simulator: Mapping[str, str] = field(default_factory=dict)
    derived_from: str | None = None
    domain: Mapping[str, Any] | None = None  # a visual domain's full parameters (see with_domain)
    domains: tuple[Mapping[str, Any], ...] = ()  # a domain set's, each run in one manifest (see with_domains)

    def __post_init__(self) -> None:
        problems = []
        if len(self.settle_action) != 7:
            problems.append(f"settle_action has {len(self.settle_action)} values, expected 7")
        if self.settle_steps < 0:
            problems.append(f"settle_steps={self.settle_steps} must be >= 0")
        if self.resolution <= 0:
            problems.append(f"resolution={self.resolution} must be > 0")
        if self.image_orientation not in ("raw", "rot180"):
            problems.append(f"image_orientation={self.image_orientation!r}, accepted: raw, rot180")
        if self.seed_rule not in ("fixed", "per_episode"):
            problems.append(f"seed_rule={self.seed_rule!r}, accepted: fixed, per_episode")
        if self.fixture_rule not in FIXTURE_RULES:
            problems.append(f"fixture_rule={self.fixture_rule!r}, accepted: {', '.join(FIXTURE_RULES)}")
        if self.success_rule not in ("first_success", "success_at_end"):
            problems.append(
                f"success_rule={self.success_rule!r}, accepted: first_success, success_at_end"
            )
        if not self.init_state_ids:
            problems.append("init_state_ids is empty")
        if self.episodes_per_task <= 0:
            problems.append(f"episodes_per_task={self.episodes_per_task} must be > 0")
        for suite, steps in self.max_steps.items():
            if not isinstance(steps, int) or steps <= 0:
                problems.append(f"max_steps[{suite}]={steps!r} must be a positive integer")
        if problems:
            raise ProtocolError(f"protocol {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form; the inverse of :meth:`from_dict`."""
        data = dataclasses.asdict(self)
        data["max_steps"] = dict(sorted(self.max_steps.items()))
        data["simulator"] = dict(sorted(self.simulator.items()))
        data["settle_action"] = [float(a) for a in self.settle_action]
        data["cameras"] = list(self.cameras)
        data["init_state_ids"] = list(self.init_state_ids)
        if self.domain is None:  # protocols without a domain keep the hash they always had
            del data["domain"]
        if not self.domains:  # nor do protocols without a domain set
            del data["domains"]
        if self.fixture_rule == LEGACY_FIXTURE_RULE:  # nor do protocols with the legacy fixture rule
            del data["fixture_rule"]
        return data

    @property
    def hash(self) -> str:
        """Content hash over every field: equal across processes, different for any change."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def ref(self) -> str:
        """``name@version#hash``, the stamp put on every record."""
        return f"{self.name}@{self.version}#{self.hash}"

    def fixture_draw(self, episode: int) -> int:
        """Which reset after seeding (1 = the first) places the fixtures of episode ``episode`` of a task."""
        if episode < 0:
            raise ProtocolError(f"episode index {episode}: must be >= 0")
        return {"first_draw": 1, "second_draw": 2, "sequential": episode + 1}[self.fixture_rule]

    def observation_differences(self, other: Protocol) -> list[str]:
        """``FIELD this vs other`` for each of :data:`OBSERVATION_FIELDS` where ``other`` differs
        from this protocol; empty when a policy observes the same under both."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{name} {_brief(mine.get(name))} vs {_brief(theirs.get(name))}"
            for name in OBSERVATION_FIELDS
            if _canonical(mine.get(name)) != _canonical(theirs.get(name))
        ]

    def steps_for(self, suite: str) -> int:
        """The step limit of ``suite`` (aliases resolved by the caller)."""
        try:
            return self.max_steps[suite]
        except KeyError:
            raise ProtocolError(
                f"protocol {self.name!r} sets no max_steps for suite {suite!r}; "
                f"it covers: {', '.join(sorted(self.max_steps))}"
            ) from None

    def with_max_steps(self, steps: int) -> Protocol:
        """A derived protocol with every suite's limit set to ``steps`` (its own name and hash)."""
        if steps <= 0:
            raise ProtocolError(f"--max-steps {steps}: must be a positive integer")
        return dataclasses.replace(
            self,
            name=f"{self.name}+max_steps={steps}",
            max_steps={suite: steps for suite in self.max_steps},
            derived_from=self.ref,
        )

    def with_seed(self, seed: int) -> Protocol:
        """A derived protocol with base seed ``seed`` (its own name and hash)."""
        if seed < 0:
            raise ProtocolError(f"--seed {seed}: must be a non-negative integer")
        return dataclasses.replace(self, name=f"{self.name}+seed={seed}", seed=seed, derived_from=self.ref)

    def with_init_states(self, ids: str) -> Protocol:
        """A derived protocol whose episode ``k`` of a task uses init state ``ids[k % len]``
        (``ids``: ``"START-END"`` or ``"A,B,C"``), e.g. a model's training init states."""
        parsed = _parse_ids(ids if "-" in ids else [part for part in ids.split(",") if part.strip()], f"--init-states {ids}")
        if not parsed or min(parsed) < 0:
            raise ProtocolError(f"--init-states {ids!r}; accepted: 'START-END' or comma-separated ids >= 0")
        return dataclasses.replace(
            self, name=f"{self.name}+init_states={ids}", init_state_ids=parsed, derived_from=self.ref
        )

    def with_domain(self, domain: Any) -> Protocol:
        """A derived protocol whose scenes look like ``domain`` (a :class:`vitabench.envs.domains.Domain`).

        The hash covers every parameter of the domain, not only its name.
        """
        return dataclasses.replace(
            self, name=f"{self.name}+domain={domain.ref}", domain=domain.to_dict(), derived_from=self.ref
        )

    def with_domains(self, domains: Sequence[Any], label: str) -> Protocol:
        """:meth:`with_domain` for one domain; for several (a set, named ``label``), a derived protocol
        whose manifest runs every episode once in each (see :meth:`in_domain`)."""
        if len(domains) == 1:
            return self.with_domain(domains[0])
        return dataclasses.replace(
            self, name=f"{self.name}+domain={label}", domains=tuple(d.to_dict() for d in domains), derived_from=self.ref
        )

    @property
    def domain_ref(self) -> str | None:
        """``set/name@version`` of the protocol's visual domain, ``None`` for the scenes as built."""
        return None if self.domain is None else _domain_ref(self.domain)

    @property
    def episode_domains(self) -> tuple[str | None, ...]:
        """The domain refs a manifest repeats every episode in: the set's, else ``(None,)`` (the protocol's own)."""
        return tuple(_domain_ref(d) for d in self.domains) or (None,)

    def in_domain(self, ref: str | None) -> Protocol:
        """The protocol an episode of domain ``ref`` (one of :attr:`episode_domains`) is rendered under:
        this one with that domain alone; ``None``: this one."""
        if ref is None:
            return self
        domain = next(d for d in self.domains if _domain_ref(d) == ref)
        return dataclasses.replace(self, domain=domain, domains=())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Protocol:
        """Build from a mapping (a parsed TOML or JSON file); unknown or missing keys are errors."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ProtocolError(
                f"{source}: unknown protocol field(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(sorted(names))}"
            )
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        if missing:
            raise ProtocolError(f"{source}: missing protocol field(s) {', '.join(missing)}")
        values = dict(data)
        values["max_steps"] = dict(values["max_steps"])
        values["settle_action"] = tuple(float(a) for a in values["settle_action"])
        values["cameras"] = tuple(values["cameras"])
        values["init_state_ids"] = _parse_ids(values["init_state_ids"], source)
        values["simulator"] = dict(values.get("simulator", {}))
        values["domains"] = tuple(values.get("domains", ()))
        values["version"] = str(values["version"])
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> Protocol:
        """Load a TOML (or JSON) protocol file."""
        path = Path(path)
        data = read_config(path, "protocol file", ProtocolError)
        return cls.from_dict(data, source=str(path))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=list)


def _domain_ref(domain: Mapping[str, Any]) -> str:
    return f"{domain['set']}/{domain['name']}@{domain['version']}"


def _brief(value: Any) -> str:
    if isinstance(value, Mapping) and {"set", "name", "version"} <= set(value):  # a visual domain
        return _domain_ref(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):  # a domain set
        return ",".join(map(_brief, value))
    return "none" if value is None else json.dumps(value, sort_keys=True, default=list).replace('"', "")


def _parse_ids(value: Any, source: str) -> tuple[int, ...]:
    """Accept a list of ints or a ``"start-end"`` inclusive range string."""
    if isinstance(value, str):
        try:
            start, end = (int(part) for part in value.split("-"))
        except ValueError:
            raise ProtocolError(
                f"{source}: init_state_ids={value!r}; accepted: a list of ints or 'START-END'"
            ) from None
        return tuple(range(start, end + 1))
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ProtocolError(f"{source}: init_state_ids={value!r}; accepted: a list of ints or 'START-END'") from None


def presets_dir() -> Path:
    """The folder of protocol presets shipped in ``vitabench.suites``."""
    return Path(str(resources.files("vitabench.suites") / "protocols"))


def preset_names() -> list[str]:
    """Names of the protocol presets shipped with vitabench."""
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def superseded_presets() -> list[Protocol]:
    """Earlier versions of the presets (``NAME@VERSION.toml`` under ``protocols/superseded``), kept so
    that records and checkpoints made under them can be read and reproduced."""
    return [Protocol.from_file(path) for path in sorted((presets_dir() / PRESET_VERSIONS_DIR).glob("*@*.toml"))]


def find_protocol(name: str, version: str, hash_: str) -> Protocol | None:
    """The preset, current or superseded, called ``name@version`` whose hash is ``hash_``, if any."""
    candidates = [load_protocol(name)] if name in preset_names() else []
    for protocol in [*candidates, *superseded_presets()]:
        if (protocol.name, protocol.version, protocol.hash) == (name, str(version), hash_):
            return protocol
    return None


def load_protocol(name_or_path: str) -> Protocol:
    """A preset by name (``NAME`` for its current version, ``NAME@VERSION`` for any version), or a
    protocol file by path."""
    path = Path(name_or_path)
    if path.suffix in (".toml", ".json") or path.exists():
        return Protocol.from_file(path)
    name, _, version = name_or_path.partition("@")
    preset = presets_dir() / f"{name}.toml"
    if not preset.exists():
        raise ProtocolError(
            f"unknown protocol {name_or_path!r}; presets: {', '.join(preset_names())} "
            "(or give a path to a .toml file)"
        )
    current = Protocol.from_file(preset)
    if not version or version == current.version:
        return current
    earlier = presets_dir() / PRESET_VERSIONS_DIR / f"{name}@{version}.toml"
    if not earlier.exists():
        versions = sorted({current.version, *(p.version for p in superseded_presets() if p.name == name)})
        raise ProtocolError(f"unknown protocol version {name_or_path!r}; versions of {name}: {', '.join(versions)}")
    return Protocol.from_file(earlier)


def trained_protocol_fields(trained: Mapping[str, Any]) -> Protocol | None:
    """The full protocol a checkpoint names as trained under: the fields it records, else the preset
    (current or superseded) of that name, version and hash; ``None`` when neither is known."""
    if trained.get("fields"):
        return Protocol.from_dict(trained["fields"], source=f"trained protocol {trained.get('ref')}")
    return find_protocol(str(trained.get("name")), str(trained.get("version")), str(trained.get("hash")))


def check_trained_protocol(trained: Mapping[str, Any] | None, protocol: Protocol) -> None:
    """Refuse, in one line naming the difference, to evaluate a checkpoint under a protocol whose
    observations differ from those it was trained on.

    Compared: :data:`~vitabench.api.protocol.OBSERVATION_FIELDS` (cameras, resolution, orientation,
    settle steps and action, control frequency, simulator, domain); not which episodes run (seed,
    fixture rule, init states, episodes per task, step limits, success rule), so ``--max-steps``,
    ``--seed`` and ``--init-states`` stay accepted, and so does a newer version of the trained
    preset that changed only those. A domain or domain set added with ``--domain`` is a deliberate
    visual shift and accepted. When the trained protocol's fields are unknown (neither recorded nor a preset),
    only that protocol and protocols derived from it are accepted.
    """
    if not trained or trained.get("hash") == protocol.hash:
        return
    ref = trained.get("ref") or f"{trained.get('name')}@{trained.get('version')}"
    known = trained_protocol_fields(trained)
    if known is None:
        base_name = protocol.name.split("+", 1)[0]
        if protocol.derived_from is not None and base_name == trained.get("name") and protocol.version == str(trained.get("version")):
            return
        raise VitabenchError(
            f"the checkpoint was trained under protocol {ref}, not {protocol.ref}, and that protocol's fields are not known; "
            f"run it with --protocol {trained.get('name')} (overrides such as --max-steps are fine)"
        )
    differences = known.observation_differences(protocol)
    if "+domain=" in protocol.name:
        differences = [d for d in differences if d.split(" ", 1)[0] not in ("domain", "domains")]
    if differences:
        raise VitabenchError(
            f"the checkpoint was trained under protocol {ref}, whose observations differ from {protocol.ref}: "
            f"{'; '.join(differences)}; run it with --protocol {known.name}@{known.version} or one that observes the same "
            "(--max-steps, --seed, --init-states, --domain are fine)"
        )
