"""The teacher (Seer-style action model) and the VITA-VLA student as torch modules, and their
checkpoint directories. Importing this package imports torch; the policy modules
``vitabench.policies.teacher`` / ``vita_vla`` import it only when a policy is built."""
