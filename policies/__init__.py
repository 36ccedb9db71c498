"""Policies shipped with vitabench (importable as ``vitabench.policies``).

Add a policy: write one module with a factory ``make(**args) -> Policy`` (or a class) and add
one line here, or, from another package, an entry point in the ``vitabench.policies`` group.
"""

#: name -> lazy ``module:attr`` factory taking the policy's arguments as keywords.
BUILTIN_POLICIES: dict[str, str] = {
    "zero": "vitabench.policies.baselines:ZeroPolicy",
    "random": "vitabench.policies.baselines:RandomPolicy",
    "teacher": "vitabench.policies.teacher:make",
    "vita_vla": "vitabench.policies.vita_vla:make",
    "replay": "vitabench.policies.replay:ReplayPolicy",
    "scripted": "vitabench.policies.scripted:ScriptedPolicy",
    "remote": "vitabench.policies.remote:RemotePolicy",
    "pva": "vitabench.policies.pva:make",
}
