"""Small importable helpers for tests (reward callables used through `module:function` specs)."""
