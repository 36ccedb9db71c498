"""The one error family vitabench shows to users as a single line."""


class VitabenchError(Exception):
    """Bad input or an unusable resource: the message names the bad value and what is accepted."""
