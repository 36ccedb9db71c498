"""The provenance contract (``vitabench.api.policy.Provenance``): every model policy, bare or wrapped
(temporal ensembling, history and chunk execution, PVA), in process and served, carries its
checkpoint's hash, trained protocol and lineage. A run or a server under a protocol whose
observations differ from the trained one is refused in one line naming the difference, before
anything is written; protocols that only choose other episodes are accepted; records carry the
provenance. No simulator: refusals happen before any environment exists, and the accepted run
uses a small camera env."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from cli_in_process import vitabench_in_process
from served_policies import BOOT_CLI, start, stop
from vitabench.api.errors import VitabenchError
from vitabench.api.policy import policy_provenance
from vitabench.api.protocol import check_trained_protocol, load_protocol
from vitabench.api.suite import Suite, Task
from vitabench.models.checkpoint import save_checkpoint, weights_hash
from vitabench.pva.models import Aligner
from vitabench.plugins import SUITES, make_policy
from vitabench.runner import run_evaluation
from vitabench.runner.plan import resolve_protocol
from vitabench.serving import PolicyServer, served_protocol
from vitabench.training.lineage import write_lineage
from vitabench.policy_wrappers import wrap_policy

TRAINED = load_protocol("distill_64")  # 64 px raw images, 5 settle steps of zeros
MODELS = ("teacher", "vita_vla")
#: variant -> (model it holds, how it is wrapped)
VARIANTS = {f"{model}{how}": (model, how) for model in MODELS for how in ("", "+ensemble", "+pva")}


# -- a suite on a camera env for model policies, no simulator (still_env:CameraEnv) -------------------
def load_toy_suite(name: str) -> Suite:
    return Suite(name, "libero_object", (Task(name, 0, "toy", "open the drawer", n_init_states=50),), "still_env:CameraEnv")


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    SUITES.register("provenance_toy", "test_provenance:load_toy_suite")


# -- checkpoints trained under distill_64, each with a lineage ---------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    paths = {}
    for model in MODELS:
        policy = make_policy(model, preset="tiny", device="cpu", **({"ensemble": "none"} if model == "vita_vla" else {}))
        paths[model] = tmp_path_factory.mktemp(model)
        weights = save_checkpoint(policy.model, paths[model], dataclasses.replace(policy.spec, resolution=64), TRAINED)
        stage = {"stage": "finetune", "data": [{"path": "demos.hdf5", "sha256": f"{model}-data"}], "weights_hash": weights}
        write_lineage(paths[model], kind=model, variant="two-stage", stages=[stage])
    return paths


@pytest.fixture(scope="module")
def aligner(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("aligner")
    Aligner().save(path)
    return path


def policy_args(variant: str, checkpoints: dict[str, Path], aligner: Path) -> tuple[str, dict[str, Any]]:
    """The registered name and arguments that build ``variant``."""
    model, how = VARIANTS[variant]
    args: dict[str, Any] = {"checkpoint": str(checkpoints[model]), "device": "cpu", "ensemble": 0.01 if how == "+ensemble" else "none"}
    if how == "+pva":
        return "pva", {"aligner": str(aligner), "inner": model, "inner_args": args}
    return model, args


def trained_record(protocol: Any) -> dict[str, str]:
    return {"name": protocol.name, "version": protocol.version, "hash": protocol.hash, "ref": protocol.ref}


# -- every model policy carries its provenance, refused in process and served ---------------------------
@pytest.mark.model
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_model_policy_is_refused_under_a_protocol_that_observes_otherwise(variant, checkpoints, aligner, tmp_path):
    model, how = VARIANTS[variant]
    name, args = policy_args(variant, checkpoints, aligner)
    policy = make_policy(name, **args)
    provenance = policy_provenance(policy)
    assert provenance.trained_protocol == trained_record(TRAINED)
    own_hash = weights_hash(checkpoints[model] / "model.safetensors")
    assert (provenance.checkpoint_hash == own_hash) == (how != "+pva")  # pva: its hash covers the aligner too
    lineage = provenance.lineage["inner"]["lineage"] if how == "+pva" else provenance.lineage
    assert lineage["variant"] == "two-stage" and lineage["stages"] == [{"stage": "finetune", "weights_hash": own_hash, "data": [f"{model}-data"]}]
    assert policy_provenance(wrap_policy(policy, history=2, execute=1)) == provenance

    standard = load_protocol("standard")
    for refuse in (
        lambda: run_evaluation(name, args, "libero_goal", tasks=[0], episodes_per_task=1, protocol="standard", out=tmp_path / "run"),
        lambda: served_protocol(policy, standard),
        lambda: PolicyServer(policy, name=name, port=0, protocol=standard),
    ):
        with pytest.raises(VitabenchError) as refused:
            refuse()
        message = str(refused.value)
        assert "\n" not in message and f"trained under protocol {TRAINED.ref}" in message and standard.ref in message
        assert "resolution 64 vs 256" in message and "image_orientation raw vs rot180" in message and "settle_steps 5 vs 10" in message
    assert not (tmp_path / "run").exists()
    assert served_protocol(policy) == TRAINED  # served without --protocol: the trained one


@pytest.mark.model
def test_vitabench_serve_refuses_another_protocol_in_one_line(checkpoints, monkeypatch):
    """The CLI server refuses a protocol that observes otherwise: exit 2, the difference on stderr,
    nothing served (run here in process; the served checkpoint below is a real server process)."""
    def serving(*args, **kwargs):
        raise AssertionError("vitabench serve started serving instead of refusing the protocol")

    monkeypatch.setattr(PolicyServer, "serve_forever", serving)
    refused = vitabench_in_process("serve", "--policy", "vita_vla", "--policy-arg", f"checkpoint={checkpoints['vita_vla']}",
                                   "--policy-arg", "device=cpu", "--protocol", "vita_vla_128", "--port", "0")
    assert refused.returncode == 2 and "resolution 64 vs 128" in refused.stderr and refused.stdout == ""


@pytest.mark.model
def test_a_served_checkpoint_is_refused_by_run(checkpoints, tmp_path):
    """A server of the checkpoint under its own protocol hands its provenance to `remote` clients,
    so `vitabench run` refuses them like the checkpoint."""
    serve = ["serve", "--policy", "vita_vla", "--policy-arg", f"checkpoint={checkpoints['vita_vla']}", "--policy-arg", "device=cpu"]
    proc, url = start(BOOT_CLI, *serve, "--port", "0")
    try:
        remote = make_policy("remote", url=url)
        served = policy_provenance(remote)
        assert served.checkpoint_hash == weights_hash(checkpoints["vita_vla"] / "model.safetensors")
        assert served.trained_protocol == trained_record(TRAINED) and served.lineage["variant"] == "two-stage"
        with pytest.raises(VitabenchError, match="resolution 64 vs 256"):
            run_evaluation("remote", {"url": url}, "libero_goal", tasks=[0], episodes_per_task=1, protocol="standard", out=tmp_path / "run")
        assert not (tmp_path / "run").exists()
    finally:
        stop(proc)


# -- what is accepted ---------------------------------------------------------------------------------
def test_protocols_that_only_choose_other_episodes_are_accepted():
    trained = trained_record(TRAINED)
    check_trained_protocol(trained, resolve_protocol(TRAINED, seed=3, max_steps=9, init_states="0-4"))
    check_trained_protocol(trained, resolve_protocol(TRAINED, seed=None, max_steps=None, domain="seen/warm_light"))  # a deliberate visual shift
    same_view = dataclasses.replace(TRAINED, name="mine", seed=0, fixture_rule="sequential", episodes_per_task=3, success_rule="success_at_end")
    check_trained_protocol(trained, same_view)
    with pytest.raises(VitabenchError, match="resolution 64 vs 128"):
        check_trained_protocol(trained, load_protocol("vita_vla_128"))
    with pytest.raises(VitabenchError, match="settle_steps 5 vs 10"):
        check_trained_protocol(trained, dataclasses.replace(TRAINED, name="slow", settle_steps=10))
    # superseded preset versions: standard@1 and vita_vla_paper@1 differ from @2 only in the fixture rule
    for name in ("standard", "vita_vla_paper"):
        check_trained_protocol(trained_record(load_protocol(f"{name}@1")), load_protocol(name))
    check_trained_protocol(trained_record(load_protocol("standard@1")), load_protocol("openvla"))
    with pytest.raises(VitabenchError, match="image_orientation rot180 vs raw"):
        check_trained_protocol(trained_record(load_protocol("standard@1")), load_protocol("vita_vla_paper"))


def test_a_trained_protocol_of_unknown_fields_accepts_only_its_derivations():
    mine = dataclasses.replace(TRAINED, name="mine", version="3")  # a protocol file no preset knows
    unknown = trained_record(mine)
    check_trained_protocol(unknown, mine.with_seed(4).with_max_steps(10))
    with pytest.raises(VitabenchError, match="mine@3#.* fields are not known; run it with --protocol mine"):
        check_trained_protocol(unknown, dataclasses.replace(mine, version="4"))
    recorded = {**unknown, "fields": mine.to_dict()}  # a checkpoint that records the fields
    check_trained_protocol(recorded, dataclasses.replace(TRAINED, name="other", seed=11))
    with pytest.raises(VitabenchError, match="resolution 64 vs 256"):
        check_trained_protocol(recorded, load_protocol("standard"))


@pytest.mark.model
def test_records_carry_the_provenance(checkpoints, aligner, tmp_path):
    name, args = policy_args("vita_vla+ensemble", checkpoints, aligner)
    out = run_evaluation(name, args, "provenance_toy", episodes_per_task=1, protocol=TRAINED, max_steps=2, out=tmp_path / "run").run_dir
    record = json.loads((out / "episodes.jsonl").read_text().splitlines()[0])
    assert record["status"] == "ok", record["error"]
    expected = policy_provenance(make_policy(name, **args)).to_dict()
    assert {k: record["policy"][k] for k in ("checkpoint_hash", "trained_protocol", "lineage")} == expected
    assert json.loads((out / "run.json").read_text())["policy"] == record["policy"]
