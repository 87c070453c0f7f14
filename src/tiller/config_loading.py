"""Loading a config: YAML file and `--set key=value` overrides -> a validated `tiller.config.Config`.

Loading walks the dataclass fields of the schema (`tiller.config`), coerces YAML scalars to the
declared types, checks the ranges the fields declare, and rejects unknown keys with the nearest
valid key ("unknown config key 'rloo.betta'; did you mean 'rloo.beta'?"). A section given in
part keeps its stage's own defaults for the keys it does not mention (`rloo.optim.lr: 1e-6`
stays when only `rloo.optim.warmup_ratio` is set). Every error is a `ConfigError` naming the
key, the value and what was expected. Then `tiller.config.validate` checks the rules that span
fields.

Why not a validation library. pydantic (2.14 is in the environment, as a DeepSpeed dependency;
it is not one of tiller's) was tried on this schema, the dataclasses unchanged, with
`extra="forbid"`, and does less than these ~200 lines:
- a typo gives "rloo.betta: Unexpected keyword argument": no nearest key, no list of valid keys;
  the hint would still be written here;
- a partly given section takes the section class's defaults, not the stage's (`rloo:
  {optim: {lr: 3.0}}` came back with scheduler "cosine" instead of rloo's "linear"), so the
  merge with the stage's defaults would stay too;
- its lax mode accepts what is refused today and is almost always a mistake (`whiten_advantages:
  1` became true, `beta: yes` became 1.0); its strict mode refuses a mapping for a dataclass
  section and the string "1e-5" for a float, which is how YAML 1.1 (PyYAML) reads `1e-5`;
- the ranges (`_range` metadata) would move into `Annotated[..., Field(ge=...)]` on every field,
  and the messages ("1 validation error for Config ... For further information visit ...")
  would be reformatted into one line per error.
So the schema would be rewritten for pydantic and most of this module kept around it, at the
cost of a new compiled dependency. A small walk over the dataclasses stays.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from tiller.config import Config, ConfigError, validate


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_describe(a) for a in inner) + " or null"
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict:
        k, v = typing.get_args(tp)
        return f"a mapping of {_describe(k)} to {_describe(v)}"
    if dataclasses.is_dataclass(tp):
        return f"a mapping (section {tp.__name__})"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)

    def fail() -> ConfigError:
        return ConfigError(f"config key '{key}': expected {_describe(tp)}, got {value!r} ({type(value).__name__})")

    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for a in inner:
            try:
                return _coerce(a, value, key)
            except ConfigError:
                continue
        raise fail()
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise fail()
    if origin is list:
        if not isinstance(value, list):
            raise fail()
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise fail()
        kt, vt = typing.get_args(tp)
        return {_coerce(kt, k, key): _coerce(vt, v, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise fail()
        return _build(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
            try:
                return float(value)
            except ValueError:
                raise fail() from None
        raise fail()
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise fail()
    raise fail()


def _check_range(f: dataclasses.Field, value: Any, key: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    lo, hi, lo_open = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("min_open", False)
    if lo is not None and (value < lo or (lo_open and value == lo)):
        bound = f"> {lo}" if lo_open else f">= {lo}"
        raise ConfigError(f"config key '{key}': expected a value {bound}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"config key '{key}': expected a value <= {hi}, got {value!r}")


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in fields:
            where = f"{prefix}.{k}" if prefix else str(k)
            near = difflib.get_close_matches(str(k), list(fields), n=1)
            hint = f"; did you mean '{(prefix + '.' if prefix else '') + near[0]}'?" if near else ""
            valid = ", ".join(fields)
            raise ConfigError(f"unknown config key '{where}'{hint} (valid keys here: {valid})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        key = f"{prefix}.{name}" if prefix else name
        given = data[name]
        # A partly given section keeps its stage's own defaults (e.g. rloo.optim.lr = 1e-6)
        # for the keys it does not mention, not the section class's defaults.
        if dataclasses.is_dataclass(hints[name]) and isinstance(given, dict) and f.default_factory is not dataclasses.MISSING:
            given = _merge(dataclasses.asdict(f.default_factory()), given)
        value = _coerce(hints[name], given, key)
        _check_range(f, value, key)
        kwargs[name] = value
    return cls(**kwargs)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects a dotted key like rloo.beta=0.05, got {text!r}")
    return key.split("."), yaml.safe_load(raw) if raw != "" else ""


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = dict(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {} if child is None else child
                if not isinstance(child, dict):
                    raise ConfigError(f"--set {text}: '{part}' is not a section")
                node[part] = child
            node[part] = dict(child)
            node = node[part]
        node[parts[-1]] = value
    return data


def config_from_dict(data: dict, overrides: list[str] | None = None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping at the top level, got {type(data).__name__}")
    data = apply_overrides(data, overrides or [])
    cfg = _build(Config, data)
    validate(cfg)
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply `key=value` overrides, validate, and return a Config."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
    try:
        return config_from_dict(data, overrides)
    except ConfigError as e:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{e}") from None
