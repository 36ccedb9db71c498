"""vitabench: a benchmark harness for vision-language-action policies on LIBERO and real robots."""

__version__ = "0.1.0"
