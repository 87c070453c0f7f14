"""Preference and conversation data: sources -> adapters -> filters -> records, with stats.

The data stage itself (`tiller data`) is `tiller.recipes.data.run`; later stages read its output
with `tiller.data.run_files` (load_pairs / load_prompts / load_conversations).
"""

from tiller.data.adapters import ADAPTERS, conversation_prompt, get_adapter, prompt_of
from tiller.data.records import Conversation, DataError, PreferencePair, Prompt
from tiller.data.sources import Source, open_file, open_split, sample_path
from tiller.data.stats import SplitStats, render_table

__all__ = [
    "ADAPTERS",
    "Conversation",
    "DataError",
    "PreferencePair",
    "Prompt",
    "Source",
    "SplitStats",
    "conversation_prompt",
    "get_adapter",
    "open_file",
    "open_split",
    "prompt_of",
    "render_table",
    "sample_path",
]
