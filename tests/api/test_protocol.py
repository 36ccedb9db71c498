"""Protocol specs: presets, hashing across processes, TOML files, derived protocols; the manifest."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vitabench.api.episode import build_manifest
from vitabench.api.protocol import FIXTURE_RULES, OBSERVATION_FIELDS, Protocol, ProtocolError, find_protocol, load_protocol, preset_names
from vitabench.plugins import get_suite
from vitabench.runner import run_evaluation


def test_presets_hold_the_published_conventions() -> None:
    assert {"standard", "vita_vla_paper"} <= set(preset_names())
    standard = load_protocol("standard")
    assert dict(standard.max_steps) == {
        "libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_long": 520, "libero_90": 400,
    }
    assert (standard.settle_steps, standard.settle_action) == (10, (0, 0, 0, 0, 0, 0, -1))
    assert (standard.resolution, standard.image_orientation) == (256, "rot180")
    assert standard.cameras == ("agentview", "robot0_eye_in_hand")
    assert standard.init_state_ids == tuple(range(50)) and standard.episodes_per_task == 50
    paper = load_protocol("vita_vla_paper")
    assert set(paper.max_steps.values()) == {600}
    assert (paper.settle_steps, paper.settle_action) == (5, (0.0,) * 7)
    assert (paper.resolution, paper.image_orientation, paper.seed) == (128, "raw", 42)
    assert paper.simulator["mujoco"] == "2.3.7"


def test_presets_follow_their_loops_fixture_rules() -> None:
    """openpi and OpenVLA seed the env once per task (7 and 0), VITA-VLA after each new env's
    reset; standard is openpi's under another name; the lead's training protocols keep the legacy rule."""
    openpi, openvla, standard, paper = (load_protocol(n) for n in ("openpi", "openvla", "standard", "vita_vla_paper"))
    assert (openpi.fixture_rule, openpi.seed, openvla.fixture_rule, openvla.seed) == ("sequential", 7, "sequential", 0)
    assert {**standard.to_dict(), "name": "", "description": ""} == {**openpi.to_dict(), "name": "", "description": "", "version": "2"}
    assert "openpi" in standard.description and "(k+1)-th" in standard.description
    assert [standard.fixture_draw(k) for k in (0, 1, 49)] == [1, 2, 50]
    assert standard.with_max_steps(5).with_seed(3).fixture_draw(49) == 50  # derivations keep the rule
    assert [paper.fixture_draw(k) for k in (0, 1, 49)] == [2, 2, 2] and paper.version == "2"
    for name in ("vita_vla_128", "distill_64", "real_robot"):
        assert load_protocol(name).fixture_draw(49) == 1 and "fixture_rule" not in load_protocol(name).to_dict()
    assert standard.observation_differences(openvla) == [] and standard.observation_differences(paper) != []


def test_superseded_versions_keep_their_hashes_and_load_by_version() -> None:
    """standard@1 and vita_vla_paper@1 (every episode the first fixture draw) stay loadable, with
    the hash their records and checkpoints carry; only the fixture rule changed."""
    old = load_protocol("standard@1")
    assert old.hash == "1e37072de297a999" and old.fixture_rule == "first_draw"
    assert load_protocol("vita_vla_paper@1").hash == "3606024bde531272"
    assert load_protocol("standard@2") == load_protocol("standard")
    assert find_protocol("standard", "1", old.hash) == old and find_protocol("standard", "1", "0" * 16) is None
    assert dataclasses.replace(old, version="2", description="", fixture_rule="sequential") == dataclasses.replace(
        load_protocol("standard"), description=""
    )
    with pytest.raises(ProtocolError, match="unknown protocol version 'standard@9'; versions of standard: 1, 2"):
        load_protocol("standard@9")


def test_observation_differences_name_only_what_a_policy_sees() -> None:
    standard = load_protocol("standard")
    episodes_only = standard.with_seed(3).with_max_steps(9).with_init_states("30-49")
    episodes_only = dataclasses.replace(episodes_only, fixture_rule="first_draw", episodes_per_task=3, success_rule="success_at_end")
    assert standard.observation_differences(episodes_only) == []
    assert standard.observation_differences(load_protocol("distill_64")) == [
        "resolution 256 vs 64", "image_orientation rot180 vs raw", "settle_steps 10 vs 5",
        "settle_action [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0] vs [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]",
    ]
    for name in OBSERVATION_FIELDS:
        value = {"cameras": ("agentview",), "resolution": 128, "image_orientation": "raw", "settle_steps": 1,
                 "settle_action": (0.0,) * 7, "control_freq": 10, "simulator": {"mujoco": "3.3.3"}, "domain": {"set": "seen", "name": "dim", "version": "1"},
                 "domains": ({"set": "seen", "name": "dim", "version": "1"},)}[name]
        (difference,) = standard.observation_differences(dataclasses.replace(standard, **{name: value}))
        assert difference.startswith(f"{name} ")


def test_hash_is_identical_across_processes() -> None:
    code = "from vitabench.api.protocol import load_protocol as l; print(l('standard').hash, l('vita_vla_paper').hash)"
    hashes = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(2)}
    assert hashes == {f"{load_protocol('standard').hash} {load_protocol('vita_vla_paper').hash}\n"}


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Protocol)])
def test_hash_changes_when_any_field_changes(field: str) -> None:
    base = load_protocol("standard")
    changed_values = {
        "name": "other", "version": "9", "description": "x", "max_steps": {**base.max_steps, "libero_goal": 301},
        "settle_steps": 11, "settle_action": (0,) * 7, "cameras": ("agentview",), "resolution": 224,
        "image_orientation": "raw", "seed": 8, "seed_rule": "per_episode", "init_state_ids": tuple(range(49)),
        "episodes_per_task": 20, "success_rule": "success_at_end", "control_freq": 10,
        "simulator": {**base.simulator, "mujoco": "3.3.3"}, "derived_from": "x", "domain": {"name": "dim"},
        "fixture_rule": "second_draw", "domains": ({"name": "dim"},),
    }
    assert field in changed_values, f"test does not cover protocol field {field}"
    assert dataclasses.replace(base, **{field: changed_values[field]}).hash != base.hash


def test_toml_round_trip_and_errors(tmp_path: Path) -> None:
    standard = load_protocol("standard")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(standard.to_dict()))
    assert Protocol.from_file(path) == standard and Protocol.from_file(path).hash == standard.hash
    toml = tmp_path / "bad.toml"
    toml.write_text('name = "x"\nversion = "1"\nbogus = 3\n')
    with pytest.raises(ProtocolError, match="unknown protocol field\\(s\\) bogus"):
        Protocol.from_file(toml)
    toml.write_text('name = "x"\n')
    with pytest.raises(ProtocolError, match="missing protocol field"):
        Protocol.from_file(toml)
    with pytest.raises(ProtocolError, match="unknown protocol .nope.; presets: .*standard"):
        load_protocol("nope")
    with pytest.raises(ProtocolError, match="image_orientation='flip'"):
        dataclasses.replace(standard, image_orientation="flip")
    toml.write_text((Path(__file__).parents[2] / "suites/protocols/openpi.toml").read_text().replace('"sequential"', '"every_other"'))
    with pytest.raises(ProtocolError, match=f"fixture_rule='every_other', accepted: {', '.join(FIXTURE_RULES)}$"):
        Protocol.from_file(toml)


def test_max_steps_override_is_a_derived_protocol() -> None:
    standard = load_protocol("standard")
    derived = standard.with_max_steps(50)
    assert set(derived.max_steps.values()) == {50}
    assert derived.hash != standard.hash and derived.derived_from == standard.ref
    assert derived.name == "standard+max_steps=50"
    with pytest.raises(ProtocolError):
        standard.with_max_steps(0)


def test_manifest_is_deterministic_and_assigns_init_states_by_index() -> None:
    suite = get_suite("libero_object")
    standard = load_protocol("standard")
    first = build_manifest(suite, standard, [3, 0], episodes_per_task=60)
    again = build_manifest(suite, standard, [0, 3], episodes_per_task=60)
    assert first == again and first.hash == again.hash
    by_task = first.by_task()
    assert list(by_task) == [0, 3]
    assert [e.init_state_id for e in by_task[0]] == [k % 50 for k in range(60)]
    assert len({e.episode_id for e in first.episodes}) == 120
    assert {e.seed for e in first.episodes} == {7}
    per_episode = dataclasses.replace(standard, seed_rule="per_episode")
    seeds = [e.seed for e in build_manifest(suite, per_episode, [0], 5).episodes]
    assert len(set(seeds)) == 5 and seeds == [e.seed for e in build_manifest(suite, per_episode, [0, 1], 5).episodes[:5]]


def test_manifest_does_not_depend_on_how_a_run_is_executed(still_libero_object: str, tmp_path: Path) -> None:
    """The runner writes the same manifest for 1 and 2 workers (it is built before any rollout,
    so the real worker processes here run libero_object's episodes on a stand-in env)."""
    manifests = []
    for workers in (1, 2):
        out = run_evaluation("zero", {}, still_libero_object, tasks=[0, 1], episodes_per_task=2, max_steps=2,
                             workers=workers, out=tmp_path / f"w{workers}").run_dir
        assert {r["status"] for r in map(json.loads, (out / "episodes.jsonl").read_text().splitlines())} == {"ok"}
        manifests.append(json.loads((out / "manifest.json").read_text()))
    assert manifests[0] == manifests[1] and len(manifests[0]["episodes"]) == 4
    assert manifests[0]["suite"] == "libero_object"


def test_unknown_task_id_names_the_range() -> None:
    with pytest.raises(ValueError, match="accepted: 0-9"):
        build_manifest(get_suite("libero_goal"), load_protocol("standard"), [10])
