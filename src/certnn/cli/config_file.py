"""Configuration files: ``certnn run FILE`` and ``certnn COMMAND --config FILE`` (schema: docs/config.md).

A file is a YAML (or JSON) mapping whose keys are the command's long flags without the dashes (``eps-max``
or ``eps_max``), plus ``command`` (which subcommand; needed by ``certnn run``). Values: a scalar, a list
for flags that take several values (``eps: [0.01, 0.02]``, ``clip: [0, 1]``; ``method: [crown, ibp]`` is
joined with commas), ``true`` / ``false`` for switches, ``null`` to leave a flag at its default. The file
becomes command-line flags placed before the ones typed after it, so flags on the command line override
the file. Validation happens before any work: unknown keys, a key that is not a flag of the command, a
switch given a non-boolean, or a malformed file is a :class:`~certnn.errors.ConfigError` (exit 2) naming
the file and the key; values are then checked by the command's own flag parser (exit 2).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError

#: keys that are not flags
_META = {"command", "schema_version"}


def load_mapping(path: str) -> dict:
    """The mapping in a YAML / JSON file; ConfigError when it is missing or malformed."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"configuration file {path} not found")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - yaml / json errors name the line
        raise ConfigError(f"{path}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the file must hold a mapping of flag names to values, not a "
                          f"{type(data).__name__}")
    return data


def to_argv(mapping: dict, parser: argparse.ArgumentParser, where: str) -> list[str]:
    """Command-line flags of ``parser`` from a file's mapping (see the module docstring)."""
    actions = {s: a for a in parser._actions for s in a.option_strings if s.startswith("--")}
    positional = [a for a in parser._actions if not a.option_strings and a.dest != "help"]
    argv: list[str] = []
    for key, value in mapping.items():
        if key in _META:
            continue
        flag = "--" + str(key).replace("_", "-")
        action = actions.get(flag)
        if action is None or action.help == argparse.SUPPRESS or flag in ("--config", "--help"):
            known = sorted(s[2:] for s, a in actions.items() if a.help != argparse.SUPPRESS
                           and s not in ("--config", "--help", "--version"))
            raise ConfigError(f"{where}: unknown key {key!r} for `certnn {parser.prog.split()[-1]}`; "
                              f"known keys: {', '.join(known)}" +
                              (f" (positional arguments go on the command line: "
                               f"{', '.join(a.dest for a in positional)})" if positional else ""))
        argv += _flag(flag, action, value, where, key)
    return argv


def _flag(flag: str, action: argparse.Action, value, where: str, key: str) -> list[str]:
    if value is None:
        return []
    if action.nargs == 0:  # a switch (store_true)
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} is a switch: give true or false, not {value!r}")
        return [flag] if value else []
    if isinstance(value, dict):
        raise ConfigError(f"{where}: {key} takes a value or a list, not a mapping")
    if isinstance(value, list):
        if action.nargs in ("+", "*") or isinstance(action.nargs, int):
            return [flag, *(_text(v) for v in value)]
        return [flag, ",".join(_text(v) for v in value)]  # comma lists: --method, --frames, --norm (demo)
    return [flag, _text(value)]


def _text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def expand(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``run FILE [flags]`` and ``COMMAND ... --config FILE ...`` as plain command lines; other argv as is."""
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if argv[:1] == ["run"]:
        if len(argv) < 2 or argv[1].startswith("-"):
            return argv  # argparse says what is missing (or prints help)
        mapping = load_mapping(argv[1])
        command = mapping.get("command")
        if command is None:
            raise ConfigError(f"{argv[1]}: `certnn run` needs a key 'command' naming the subcommand "
                              f"({', '.join(c for c in subs if c != 'run')})")
        if command not in subs or command in ("run", "vnnlib"):
            raise ConfigError(f"{argv[1]}: command {command!r} is not one of "
                              f"{', '.join(c for c in subs if c not in ('run', 'vnnlib'))}")
        return [command, *to_argv(mapping, subs[command], argv[1]), *argv[2:]]
    if not argv or argv[0] not in subs or "--config" not in argv:
        return argv
    k = argv.index("--config")
    if k + 1 >= len(argv):
        raise ConfigError("--config needs a file name")
    path = argv[k + 1]
    mapping = load_mapping(path)
    if mapping.get("command", argv[0]) != argv[0]:
        raise ConfigError(f"{path} is a configuration of `certnn {mapping['command']}`, not `certnn {argv[0]}`")
    rest = argv[1:k] + argv[k + 2:]
    return [argv[0], *to_argv(mapping, subs[argv[0]], path), *rest]


def register(sub) -> None:
    p = sub.add_parser("run", help="run a command from a YAML / JSON configuration file (docs/config.md)",
                       description="certnn run FILE [FLAGS]: the file's 'command' with its keys as flags; flags "
                                   "after FILE override the file.")
    p.add_argument("file", metavar="FILE", help="YAML or JSON mapping: command plus the command's flags")
    p.add_argument("flags", nargs=argparse.REMAINDER, help="more flags of the command (override the file)")


def add_config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="read flags from a YAML / JSON file (docs/config.md); flags typed here override it")
