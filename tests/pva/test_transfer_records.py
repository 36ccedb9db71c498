"""The recorded PVA transfer run (reports/transfer, scripts/pva_transfer.sh): the committed table
is what the committed records give, every cell holds the held-out episodes of a shipped policy's
recorded evaluation with the weights it measured, and the committed aligner is the one measured."""

from __future__ import annotations

import hashlib
from pathlib import Path

from vitabench.report.transfer import render_transfer, transfer_table
from vitabench.runner.store import RunStore

REPORT = Path(__file__).resolve().parents[2] / "reports"
TRANSFER = REPORT / "transfer"
#: shipped checkpoint -> its recorded held-out evaluation (the weights the transfer cells must use)
EVALUATIONS = {
    "teacher_libero_object": REPORT / "teacher" / "evaluations" / "heldout",
    "vita_vla_libero_object": REPORT / "student" / "evaluations" / "heldout",
}
DOMAINS = {"canonical/canonical@1", "seen/dim@1", "seen/warm_light@1", "unseen/dusk@1", "unseen/green_room@1"}


def cell_dirs() -> list[Path]:
    """``reports/transfer/CHECKPOINT/(plain|pva)/SET_DOMAIN`` in the order ``LC_ALL=C`` globs them."""
    return sorted(run.parent for checkpoint in EVALUATIONS for run in (TRANSFER / checkpoint).glob("*/*/run.json"))


def test_the_committed_transfer_table_is_what_the_records_give() -> None:
    table = (TRANSFER / "transfer_table.md").read_text()
    assert render_transfer(transfer_table(cell_dirs())) == table and table in (TRANSFER / "README.md").read_text()


def test_every_cell_is_twenty_held_out_episodes_of_a_shipped_policy_and_the_committed_aligner() -> None:
    aligner_hash = hashlib.sha256((TRANSFER / "aligner" / "aligner.pt").read_bytes()).hexdigest()[:16]
    cells = cell_dirs()
    checkpoints = {cell.parent.parent.name for cell in cells}
    assert "teacher_libero_object" in checkpoints and len(cells) == 10 * len(checkpoints)
    for cell in cells:
        checkpoint, variant = cell.parent.parent.name, cell.parent.name
        shipped_hash = RunStore(EVALUATIONS[checkpoint]).records()[0].policy["checkpoint_hash"]
        records = RunStore(cell).records()
        assert sorted((r.task_id, r.init_state_id) for r in records) == [(t, s) for t in range(5) for s in range(30, 34)]
        assert all(r.status == "ok" for r in records) and len({r.domain for r in records}) == 1 and records[0].domain in DOMAINS
        assert all(r.protocol["name"] == f"vita_vla_128+domain={r.domain}" for r in records)
        for record in records:
            policy = record.policy
            if variant == "pva":
                assert policy["lineage"]["aligner"] == aligner_hash
                assert policy["args"]["inner_args"]["checkpoint"] == checkpoint
                assert policy["lineage"]["inner"]["checkpoint_hash"] == shipped_hash
            else:
                assert variant == "plain" and policy["args"]["checkpoint"] == checkpoint
                assert policy["checkpoint_hash"] == shipped_hash
