"""The goal the expert pursues: a BDDL problem's goal predicates, and those it can achieve."""

from __future__ import annotations

from dataclasses import dataclass

#: Goal predicates the expert can achieve.
SUPPORTED_GOALS: tuple[str, ...] = (
    "(in OBJECT REGION|OBJECT)",
    "(on OBJECT REGION|OBJECT)",
    "(open DRAWER)",
    "(close DRAWER)",
    "(turnon KNOB)",
)


@dataclass(frozen=True)
class Goal:
    """One BDDL goal predicate, e.g. ``Goal("in", ("alphabet_soup_1", "basket_1_contain_region"))``."""

    predicate: str
    args: tuple[str, ...]


def parse_goal(bddl_file: str) -> tuple[Goal, ...]:
    """The conjunction of goal predicates of a BDDL problem file."""
    from libero.libero.envs.bddl_utils import robosuite_parse_problem

    problem = robosuite_parse_problem(bddl_file)
    return tuple(Goal(str(term[0]).lower(), tuple(str(a) for a in term[1:])) for term in problem["goal_state"])

