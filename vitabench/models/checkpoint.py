"""Checkpoint directories: ``config.json`` (model kind and config), ``model.safetensors`` (all
weights), ``spec.json`` (observation spec and the protocol trained under), plus the model's extras
(tokenizer, VLM config) and ``lineage.json`` (the stages that made the weights, written by
``vitabench.training.lineage``). Anything missing, corrupt or mismatched raises a one-line error."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from vitabench.api.config import read_json
from vitabench.api.errors import VitabenchError
from vitabench.api.policy import PolicySpec
from vitabench.api.protocol import Protocol

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "spec.json"
FORMAT_VERSION = 1
LINEAGE_FILE = "lineage.json"
#: ``--backbone`` names whose VLM is built from scratch, with random weights (``tiny``, ``cpu``,
#: ``small``); any other backbone is a pretrained VLM directory. Reports flag students around them.
UNTRAINED_BACKBONES = ("tiny", "cpu", "small")


class CheckpointError(VitabenchError):
    """A checkpoint directory that cannot be used as asked."""


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint directory says about itself (weights not yet loaded)."""

    directory: Path
    kind: str
    config: Mapping[str, Any]
    spec: PolicySpec
    protocol: Mapping[str, str] | None
    weights_hash: str

    def check(self, *, cameras: tuple[str, ...] | None = None, protocol: Protocol | None = None) -> None:
        """Raise naming the difference when the run's camera set or protocol is not the trained one."""
        if cameras is not None and set(cameras) != set(self.spec.cameras):
            raise CheckpointError(
                f"checkpoint {self.directory} was trained with cameras {', '.join(self.spec.cameras)}, "
                f"not {', '.join(cameras)}"
            )
        if protocol is not None:
            trained = dict(self.protocol or {})
            if trained.get("hash") != protocol.hash:
                trained_ref = trained.get("ref", "no recorded protocol")
                raise CheckpointError(f"checkpoint {self.directory} was trained under {trained_ref}, not {protocol.ref}")


def weights_hash(path: Path) -> str:
    """Short sha256 of a weights file (16 hex digits)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def config_to_json(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_json(config_class: type, data: Mapping[str, Any], source: str) -> Any:
    """Rebuild a frozen config dataclass; unknown fields are an error, lists become tuples."""
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CheckpointError(f"{source}: unknown config field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(names))}")
    return config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def save_checkpoint(
    model: Any, directory: str | Path, spec: PolicySpec, protocol: Protocol | Mapping[str, str] | None = None, *, half: bool = False
) -> str:
    """Write ``model`` (a teacher or student) to ``directory``; returns the weights hash.

    ``protocol``: the one trained under (a Protocol, or its recorded ``{name, version, hash,
    ref}``). ``half`` stores floating-point tensors in fp16 (shipped checkpoints); they load
    back into the model's own dtype.
    """
    import copy

    from safetensors.torch import save_model

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    save_model(copy.deepcopy(model).half() if half else model, str(path / WEIGHTS_FILE))
    model.save_extras(path)
    (path / CONFIG_FILE).write_text(
        json.dumps({"format": FORMAT_VERSION, "kind": model.kind, "config": config_to_json(model.config)}, indent=2)
    )
    if isinstance(protocol, Protocol):
        trained = {"name": protocol.name, "version": protocol.version, "hash": protocol.hash, "ref": protocol.ref}
    else:
        trained = None if protocol is None else dict(protocol)
    (path / SPEC_FILE).write_text(json.dumps({"spec": dataclasses.asdict(spec), "protocol": trained}, indent=2))
    return weights_hash(path / WEIGHTS_FILE)


def shipped_checkpoints_dir() -> Path:
    """The folder of checkpoints shipped with vitabench (``vitabench.checkpoints``)."""
    from importlib import resources

    return Path(str(resources.files("vitabench.checkpoints")))


def shipped_checkpoints(kind: str | None = None) -> dict[str, Path]:
    """Name → directory of every shipped checkpoint (of ``kind`` only, when given)."""
    found = {}
    for directory in sorted(shipped_checkpoints_dir().iterdir()):
        if not (directory / CONFIG_FILE).is_file():
            continue
        if kind is None or json.loads((directory / CONFIG_FILE).read_text()).get("kind") == kind:
            found[directory.name] = directory
    return found


CARD_FIELDS = ("name", "policy", "suite", "tasks", "protocol", "init_states", "success", "interval", "episodes", "reproduce")
CARD_FILE = "card.json"


def shipped_cards() -> list[dict[str, Any]]:
    """Every shipped checkpoint's ``card.json`` (what it measured, under which protocol)."""
    cards = []
    for name, directory in shipped_checkpoints().items():
        card = _read_json(directory / CARD_FILE)
        missing = [key for key in CARD_FIELDS if key not in card]
        if missing:
            raise CheckpointError(f"{directory / CARD_FILE} lacks {', '.join(missing)}; a card holds {', '.join(CARD_FIELDS)}")
        cards.append({key: card[key] for key in CARD_FIELDS} | {"name": name})
    return cards


def resolve_checkpoint(name_or_directory: str | Path, kind: str) -> Checkpoint:
    """A checkpoint directory, or a shipped checkpoint by name; anything else raises naming the shipped ones."""
    path = Path(name_or_directory)
    if path.is_dir():
        return read_checkpoint(path, kind)
    shipped = shipped_checkpoints(kind)
    if str(name_or_directory) in shipped:
        return read_checkpoint(shipped[str(name_or_directory)], kind)
    raise CheckpointError(
        f"checkpoint={str(name_or_directory)!r} is neither a directory nor a shipped {kind} checkpoint; "
        f"shipped: {', '.join(shipped) or 'none'} (vitabench list checkpoints)"
    )


def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path, "checkpoint file", CheckpointError)


def read_checkpoint(directory: str | Path, kind: str) -> Checkpoint:
    """Read and check a checkpoint directory's metadata for a model of ``kind``."""
    path = Path(directory)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint={str(directory)!r} is not a directory")
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE, SPEC_FILE) if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}; a checkpoint holds {CONFIG_FILE}, {WEIGHTS_FILE}, {SPEC_FILE}")
    config = _read_json(path / CONFIG_FILE)
    if config.get("kind") != kind:
        raise CheckpointError(f"checkpoint {path} holds a {config.get('kind')!r} model, not a {kind!r} model")
    if config.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {config.get('format')!r}; accepted: {FORMAT_VERSION}")
    spec_data = _read_json(path / SPEC_FILE)
    try:
        spec_fields = dict(spec_data["spec"])
        spec = PolicySpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec_fields.items()})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint file {path / SPEC_FILE} holds no valid observation spec: {exc}") from None
    return Checkpoint(path, kind, config["config"], spec, spec_data.get("protocol"), weights_hash(path / WEIGHTS_FILE))


def load_weights(model: Any, checkpoint: Checkpoint) -> None:
    """Load the weights into ``model``; differing tensor names or shapes are named in the error."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model

    weights = checkpoint.directory / WEIGHTS_FILE
    try:
        with safe_open(str(weights), framework="pt") as handle:
            saved = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"checkpoint weights {weights} are corrupt or truncated: {exc}") from None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    wrong = [f"{n} {list(saved[n])} vs model {list(expected[n])}" for n in sorted(saved) if n in expected and saved[n] != expected[n]]
    if wrong:
        raise CheckpointError(
            f"checkpoint {checkpoint.directory} does not fit its config: {len(wrong)} tensor shape(s) differ, e.g. {'; '.join(wrong[:3])}"
        )
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except (SafetensorError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint weights {weights} cannot be loaded: {exc}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {checkpoint.directory} does not fit its config: "
            f"missing {sorted(missing)[:3]} ({len(missing)}), unexpected {sorted(unexpected)[:3]} ({len(unexpected)})"
        )


def load_model(checkpoint: Checkpoint, config_class: type, from_saved: Callable[[Any, Path], Any]) -> Any:
    """Build the model a checkpoint describes and load its weights."""
    config = config_from_json(config_class, checkpoint.config, str(checkpoint.directory / CONFIG_FILE))
    try:
        model = from_saved(config, checkpoint.directory)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {checkpoint.directory} cannot be rebuilt from its config: {exc}") from None
    load_weights(model, checkpoint)
    return model


def read_lineage(directory: str | Path) -> dict[str, Any]:
    """The lineage of a checkpoint directory written by ``vitabench train``/``distill``."""
    path = Path(directory) / LINEAGE_FILE
    if not path.is_file():
        raise VitabenchError(f"{directory} has no {LINEAGE_FILE}; accepted: a checkpoint written by vitabench train or distill")
    data = read_json(path, "lineage file")
    if "stages" not in data:
        raise VitabenchError(f"{path} holds no lineage (a JSON object with 'stages')")
    return data


def untrained_backbone(policy: Mapping[str, Any]) -> str | None:
    """The :data:`UNTRAINED_BACKBONES` name a record's ``policy`` (name, args, lineage) was
    distilled around, looking through wrappers (``lineage.inner``); ``None`` for any other policy."""
    lineage = policy.get("lineage") or {}
    if lineage.get("backbone") in UNTRAINED_BACKBONES:
        return lineage["backbone"]
    inner = lineage.get("inner")
    return untrained_backbone(inner) if isinstance(inner, Mapping) else None
