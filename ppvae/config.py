"""Typed options from the code: a command's options come from the typed
signatures and docstrings of functions, classes and dataclasses (through
jsonargparse), so that each setting has one default, written once.

:class:`Options` adds to jsonargparse's parsing the spellings a user of a
command line expects: options as in the code (``--latent_dim``) or with dashes
(``--latent-dim``), a list's items after the option (``--hidden 256 128``), a
boolean as ``--dreg`` / ``--no-dreg``; ``--config FILE`` (YAML, JSON or TOML,
the same keys) sets defaults that flags override, and ``--print_config``
prints the configuration. Errors are one line. :func:`unique` and
:func:`at_least` check the settings of an experiment.
"""

from __future__ import annotations

import json
import tomllib
import typing
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser


class OptionError(ValueError):
    """Options that do not parse: unknown, malformed or of the wrong type."""


class Options:
    """The options of one command, from typed signatures and their docstrings."""

    def __init__(self, prog: str, description: str) -> None:
        self.parser = ArgumentParser(prog=prog, description=description, exit_on_error=False)
        self.parser.add_argument("--config", action=ActionConfigFile,
                                 help="a YAML, JSON or TOML file of options; flags override it")
        self.bools: set[str] = set()
        self.lists: set[str] = set()

    def add(self, obj: Callable, skip: set[str] = frozenset(), kwargs: type | None = None
            ) -> list[str]:
        """Add the options of a function, class or dataclass (and of the class
        ``kwargs`` that its ``**kwargs`` go to); return their names."""
        add = (self.parser.add_class_arguments if isinstance(obj, type)
               else self.parser.add_function_arguments)
        names = add(obj, None, as_positional=True, skip=set(skip))
        hints = {**(typing.get_type_hints(kwargs.__init__) if kwargs else {}),
                 **typing.get_type_hints(obj.__init__ if isinstance(obj, type) else obj)}
        for name in names:
            args = [hints[name], *typing.get_args(hints[name])]
            if bool in args:
                self.bools.add(name)
            if any(typing.get_origin(a) in (list, tuple, Sequence) for a in args):
                self.lists.add(name)
        return names

    def normalize(self, argv: Sequence[str], aliases: dict[str, str]) -> list[str]:
        """argv in jsonargparse's spelling: dashes to underscores in option
        names, ``--flag`` / ``--no-flag`` for booleans, the items after a list
        option gathered into one list, ``aliases`` renamed, a config file
        given as its content (:func:`read_config`) in JSON."""
        out, i = [], 0
        while i < len(argv):
            arg, i = argv[i], i + 1
            if not arg.startswith("-") or arg in ("-h", "--help") or arg[1:2].isdigit():
                out.append(arg)
                continue
            name, eq, value = arg.lstrip("-").partition("=")
            name = aliases.get(name.replace("-", "_"), name.replace("-", "_"))
            if not eq and name.startswith("no_") and name[3:] in self.bools:
                name, eq, value = name[3:], "=", "false"
            elif not eq and name in self.bools and argv[i:i + 1] not in (["true"], ["false"]):
                eq, value = "=", "true"
            elif not eq and name in self.lists:
                items = []
                while i < len(argv) and not argv[i].startswith("--"):
                    items, i = [*items, argv[i]], i + 1
                value, eq = (items[0] if len(items) == 1 and items[0].startswith("[")
                             else "[" + ",".join(items) + "]"), "="
            if name == "config" and (eq or i < len(argv)):
                value, i, eq = json.dumps(read_config(value if eq else argv[i])), i + (not eq), "="
            out.append(f"--{name}{eq}{value}")
        return out

    def parse(self, argv: Sequence[str], aliases: dict[str, str] | None = None) -> dict[str, Any]:
        """The parsed options as a dict; a parsing error as one-line :class:`OptionError`."""
        try:
            namespace = self.parser.parse_args(self.normalize(argv, aliases or {}))
        except Exception as e:  # jsonargparse's ArgumentError, and what its loaders raise
            raise OptionError(" ".join(str(e).split())) from None
        return {k: v for k, v in vars(namespace.clone().as_flat()).items()
                if k not in ("config", "__default_config__")}


def read_config(path: str | Path) -> dict[str, Any]:
    """The options in a config file: TOML if its name ends in ``.toml``, else
    YAML (or JSON), with dashes in its keys read as underscores."""
    try:
        text = Path(path).read_text()
        loaded = tomllib.loads(text) if str(path).endswith(".toml") else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise OptionError(f"cannot read config file {path}: {' '.join(str(e).split())}") from None
    if not isinstance(loaded, dict):
        raise OptionError(f"config file {path} does not hold a mapping of options")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def unique(values: Iterable[Hashable], name: str, choices: Sequence[Hashable] | None = None
           ) -> list:
    """``values`` without repeats, in order; ``ValueError`` if there are none
    or (with ``choices``) one is not a choice."""
    kept = list(dict.fromkeys(values))
    bad = [v for v in kept if choices is not None and v not in choices]
    if not kept or bad:
        raise ValueError(f"{name} must be among {list(choices)}, got {bad}" if bad
                         else f"{name} must not be empty")
    return kept


def at_least(settings: Any, minimum: float, names: Iterable[str], strictly: bool = False
             ) -> None:
    """``ValueError`` if a field of ``settings`` in ``names`` is below ``minimum``
    (or equal to it, ``strictly``); None passes."""
    for name in names:
        value = getattr(settings, name)
        if value is not None and (value <= minimum if strictly else value < minimum):
            raise ValueError(f"{name} must be {'above' if strictly else 'at least'} {minimum}, "
                             f"got {value}")
