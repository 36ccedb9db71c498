"""Suites shipped with vitabench (importable as ``vitabench.suites``) and their protocol presets.

Add a suite: write a module with a ``load_suite(name) -> Suite`` and add one line here
(or, from another package, an entry point in the ``vitabench.suites`` group).
"""

#: name (``|``-separated aliases) -> lazy ``module:attr`` taking the canonical name.
BUILTIN_SUITES: dict[str, str] = {
    "libero_spatial": "vitabench.suites.libero:load_suite",
    "libero_object": "vitabench.suites.libero:load_suite",
    "libero_goal": "vitabench.suites.libero:load_suite",
    "libero_long|libero_10": "vitabench.suites.libero:load_suite",
    "libero_90": "vitabench.suites.libero:load_suite",
    "real_five": "vitabench.suites.real:load_suite",
    "real_user": "vitabench.suites.real:load_suite",
}
