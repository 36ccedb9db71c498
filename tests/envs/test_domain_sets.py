"""Domain sets in one run (``vitabench run --domain SET``): manifest, ids, hashes, records, resume,
report. All but the last test run without a simulator (``still_env:StillEnv``); the last runs real LIBERO."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
from cli_in_process import vitabench_in_process

from vitabench.api import BasePolicy, PolicySpec, Task
from vitabench.api.episode import build_manifest
from vitabench.api.protocol import check_trained_protocol
from vitabench.envs.domains import resolve_domains
from vitabench.plugins import POLICIES, get_suite
from vitabench.runner import run_evaluation
from vitabench.runner.plan import resolve_protocol

UNSEEN = [d.ref for d in resolve_domains("unseen")]


def _manifest(domain: str | None):
    protocol = resolve_protocol("standard", seed=None, max_steps=3, domain=domain)
    return protocol, build_manifest(get_suite("libero_object"), protocol, [0, 1], 2)


@pytest.mark.parametrize(
    ("domain", "protocol_hash", "manifest_hash"),
    [(None, "bc5e40202c7d74bc", "39ae68ecf6441dc5"), ("unseen/dusk", "9c0992a0db28b8f1", "0ed7c3df16b79777"),
     ("canonical", "280c5de65144bc19", "170303f6891b6070")],  # the hashes before domain sets existed
)
def test_single_domain_runs_keep_their_ids_and_hashes(domain: str | None, protocol_hash: str, manifest_hash: str) -> None:
    protocol, manifest = _manifest(domain)
    assert (protocol.hash, manifest.hash) == (protocol_hash, manifest_hash)
    assert [e.episode_id for e in manifest.episodes][:2] == ["libero_object/t000/e0000", "libero_object/t000/e0001"]
    assert "domains" not in protocol.to_dict() and all("domain" not in e for e in manifest.to_dict()["episodes"])


def test_a_set_puts_every_domain_in_one_manifest() -> None:
    protocol, manifest = _manifest("unseen")
    assert protocol.name == "standard+domain=unseen+max_steps=3" and protocol.domain is None
    assert protocol.episode_domains == tuple(UNSEEN) and len(manifest.episodes) == 2 * 2 * len(UNSEEN)
    assert manifest.episodes[2].episode_id == "libero_object/t000/e0000@unseen/green_room"
    assert len({e.episode_id for e in manifest.episodes}) == len(manifest.episodes)
    # every domain repeats the same episodes (init states, seeds): outcomes pair across domains
    plain = {(e.task_id, e.index): (e.init_state_id, e.seed) for e in _manifest(None)[1].episodes}
    assert all(plain[(e.task_id, e.index)] == (e.init_state_id, e.seed) for e in manifest.episodes)
    # an episode's env sees its domain alone, exactly as a single-domain run would
    single = resolve_protocol("standard", seed=None, max_steps=3, domain="unseen/dusk")
    assert protocol.in_domain(UNSEEN[0]).domain == single.domain and protocol.in_domain(None) is protocol
    assert protocol.hash not in (_manifest("seen")[0].hash, single.hash)
    # a checkpoint trained without a domain runs under a set (a deliberate visual shift)
    plain_protocol = resolve_protocol("standard", seed=None, max_steps=None)
    check_trained_protocol({"name": "standard", "version": plain_protocol.version, "hash": plain_protocol.hash,
                            "fields": plain_protocol.to_dict()}, protocol)
    assert "domains none vs unseen/dusk@1," in plain_protocol.observation_differences(protocol)[0]


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]


def _outcomes(run_dir: Path) -> dict[str, tuple]:
    return {r["episode_id"]: (r["domain"], r["seed"], r["init_state_id"], r["success"], r["steps"], r["extra"]["state_digest"])
            for r in _records(run_dir)}


def test_a_set_run_records_domains_whatever_the_workers_and_resumes(still_libero_object: str, tmp_path: Path) -> None:
    runs = {w: run_evaluation("zero", {}, still_libero_object, tasks=[0], episodes_per_task=2, max_steps=2,
                              domain="unseen", workers=w, out=tmp_path / f"w{w}").run_dir for w in (1, 3)}
    assert _outcomes(runs[1]) == _outcomes(runs[3]) and len(_outcomes(runs[1])) == 2 * len(UNSEEN)
    assert (runs[1] / "manifest.json").read_text() == (runs[3] / "manifest.json").read_text()
    assert {r["domain"] for r in _records(runs[1])} == set(UNSEEN)
    assert all(r["episode_id"].endswith("@" + r["domain"].rpartition("@")[0]) for r in _records(runs[1]))
    # resume across the set: drop the records of two domains, resume with the stored arguments (and the stand-in suite)
    kept = [line for line, r in zip((runs[1] / "episodes.jsonl").read_text().splitlines(), _records(runs[1]))
            if r["domain"] not in UNSEEN[1:3]]
    (runs[1] / "episodes.jsonl").write_text("\n".join(kept) + "\n")
    result = vitabench_in_process("run", "--resume", "--out", str(runs[1]), "--suite", still_libero_object, "--quiet")
    assert result.returncode == 0, result.stderr
    config = json.loads((runs[1] / "run.json").read_text())
    assert config["sessions"][-1]["episodes_to_run"] == 4 and _outcomes(runs[1]) == _outcomes(runs[3])
    # a resume asking for another domain is refused
    other = vitabench_in_process("run", "--policy", "zero", "--suite", still_libero_object, "--tasks", "0",
                                 "--episodes-per-task", "2", "--max-steps", "2", "--domain", "unseen/dusk",
                                 "--resume", "--out", str(runs[1]))
    assert other.returncode == 2 and "protocol" in other.stderr


def test_report_of_a_set_run_has_domain_rows_and_the_set_average(tmp_path: Path) -> None:
    from report_runs import write_run

    from vitabench.report import build_report
    from vitabench.report.document import render_report

    protocol = resolve_protocol("standard", seed=None, max_steps=None, domain="unseen")
    successes = {ref: k for k, ref in enumerate(UNSEEN)}  # domain i: the first i of 4 episodes succeed
    run = write_run(tmp_path / "set", "zero", "libero_object", lambda e: e.index < successes[e.domain],
                    protocol=protocol, tasks=(0,), episodes_per_task=4)
    single = write_run(tmp_path / "dusk", "zero", "libero_object", lambda e: True,
                       protocol=resolve_protocol("standard", seed=None, max_steps=None, domain="unseen/dusk"),
                       tasks=(0,), episodes_per_task=4)
    domains = build_report([run, single]).domains
    assert domains["domain"].tolist() == [*UNSEEN, "unseen (all)"]  # the single-domain run has no domain rows
    assert domains["successes"].tolist() == [0, 1, 2, 3, 4, 10] and domains["ok"].tolist() == [4, 4, 4, 4, 4, 20]
    pooled = domains.iloc[-1]
    assert pooled["rate"] == pytest.approx(np.mean(domains["rate"][:-1])) and pooled["ci_low"] < 0.5 < pooled["ci_high"]
    text = render_report([run], fmt="md")
    assert "## Success rate (%) by visual domain" in text and "| unseen (all) | 10/20 | 50.0 [29.9, 70.1] | 0 |" in text
    assert "visual domain" not in render_report([single], fmt="md")
    assert len(json.loads(render_report([run], fmt="json"))["domains"]) == len(UNSEEN) + 1


@pytest.mark.parametrize("domain", ["nowhere", "unseen/dim", "sun/dusk"])
def test_an_unknown_domain_or_set_is_one_line_and_writes_nothing(tmp_path: Path, domain: str) -> None:
    out = tmp_path / "run"
    result = vitabench_in_process("run", "--policy", "zero", "--suite", "libero_object", "--domain", domain, "--out", str(out))
    assert result.returncode == 2 and not out.exists()
    assert len(result.stderr.strip().splitlines()) == 1
    assert "accepted: canonical, seen, unseen, canonical/canonical, seen/warm_light" in result.stderr


#: the agentview image each episode of a FramePolicy showed first, in the order episodes ran
FIRST_FRAMES: list[np.ndarray] = []


class FramePolicy(BasePolicy):
    """Zero actions; keeps the first agentview frame of every episode in :data:`FIRST_FRAMES`."""

    spec = PolicySpec(cameras=("agentview",), resolution=64)

    def reset(self, task: Task, slot: int = 0, seed: int | None = None) -> None:
        self._first = True

    def act(self, observations: Sequence[Any], slots: Sequence[int] | None = None) -> np.ndarray:
        if self._first:
            FIRST_FRAMES.append(observations[0]["images"]["agentview"].copy())
            self._first = False
        return np.zeros((len(observations), 7), np.float32)


@pytest.mark.sim
def test_a_set_run_renders_each_domain_on_real_libero(tmp_path: Path) -> None:
    """Real LIBERO, one run over a two-domain set (1 task, 1 episode each, 3 steps, one worker so
    episodes run in manifest order): each record names its domain, each domain's first frame
    differs, and the dusk episode sees bit for bit what a single-domain ``--domain unseen/dusk`` run sees."""
    POLICIES.register("first_frames", f"{__name__}:FramePolicy")
    pair = [resolve_domains(name)[0] for name in ("unseen/dusk", "unseen/green_room")]
    protocol = resolve_protocol("standard", seed=None, max_steps=None).with_domains(pair, "pair")
    FIRST_FRAMES.clear()
    run = run_evaluation("first_frames", {}, "libero_object", tasks=[0], episodes_per_task=1, protocol=protocol,
                         max_steps=3, out=tmp_path / "set").run_dir
    assert [r["domain"] for r in _records(run)] == [d.ref for d in pair] and {r["status"] for r in _records(run)} == {"ok"}
    dusk, green = FIRST_FRAMES
    assert np.abs(dusk.astype(int) - green.astype(int)).mean() > 5
    run_evaluation("first_frames", {}, "libero_object", tasks=[0], episodes_per_task=1, domain="unseen/dusk",
                   max_steps=3, out=tmp_path / "dusk")
    assert np.array_equal(FIRST_FRAMES[2], dusk)
