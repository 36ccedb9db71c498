"""The scripted expert (policy ``scripted``): solves LIBERO goals from the simulator's object poses.

The policy reads the task's BDDL goal at ``reset`` and turns each goal predicate into a skill:

- ``(In X R)`` / ``(On X Y)``: pick ``X`` and place it in region site ``R`` or on object/site ``Y``
  (approach from above, descend, close, lift, carry, lower, release, retreat); bowls and mugs are
  grasped by the rim, other objects across their narrowest horizontal side; putting something in
  a drawer's region opens that drawer first;
- ``(Open D)`` / ``(Close D)`` for the drawers of LIBERO's cabinets: grasp the handle from above
  and pull, or push the front;
- ``(TurnOn K)`` for stove knobs: grasp the knob from above and twist the wrist.

Goals outside this list (a microwave door, ``Stack``, ...) are refused: ``reset`` raises a
:class:`~vitabench.api.errors.VitabenchError` naming the predicate, so a run records the episode as
an error instead of silently scoring a do-nothing policy.

Everything is closed-loop on the privileged observation (``vitabench.envs.privileged``) and the
proprioceptive state, and every action is one a learned policy could output: a 7-D OSC_POSE delta
(position, axis-angle rotation in the world frame, each in ``[-1, 1]``) and the gripper command
(-1 open, +1 close). Chunks have length 1.

Modules, in the order the expert thinks: :mod:`~vitabench.expert.goals` (the BDDL goal),
:mod:`~vitabench.expert.gripper` (gripper frame, commands, angles),
:mod:`~vitabench.expert.scene` (the privileged observation by name),
:mod:`~vitabench.expert.skills` (one controller per goal predicate),
:mod:`~vitabench.expert.policy` (:class:`ScriptedPolicy`, the skills run per slot).
"""

from vitabench.expert.goals import SUPPORTED_GOALS, Goal, parse_goal
from vitabench.expert.gripper import finger_yaw_for, gripper_yaw, wrap_full_turn, wrap_half_turn
from vitabench.expert.policy import ScriptedPolicy
from vitabench.expert.scene import Scene
from vitabench.expert.skills import PickPlace, Skill, Slide, TurnOn, make_skills

__all__ = [
    "SUPPORTED_GOALS",
    "Goal",
    "PickPlace",
    "Scene",
    "ScriptedPolicy",
    "Skill",
    "Slide",
    "TurnOn",
    "finger_yaw_for",
    "gripper_yaw",
    "make_skills",
    "parse_goal",
    "wrap_full_turn",
    "wrap_half_turn",
]
