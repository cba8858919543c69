"""The text tasks certnn knows (name -> (level, class names)), apart from text.py so that the CLI's parser
reads them without importing torch or numpy."""
from __future__ import annotations

TEXT_TASKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mr": ("word", ("negative", "positive")),
    "sst2": ("word", ("negative", "positive")),
    "toxic": ("word", ("non-toxic", "toxic")),
    "urls": ("char", ("benign", "phishing")),
}
