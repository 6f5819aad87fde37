"""Values from outside the project reach MONAI's config parser as literals, and only under keys the bundle has.

MONAI's ``ConfigParser`` gives a string meaning: ``"$..."`` is evaluated as Python, ``"@id"`` is a reference,
``"%file#id"`` a macro, every ``#`` becomes ``::``, and a dict with ``_target_`` is instantiated. A file name,
a DICOM UID, a ``dataset.json`` string, a study folder's ``args.json`` or a command-line value must mean only
itself, so every override the project hands to the parser goes through :func:`literal`: a value that the parser
would read as anything but itself is handed over as an expression that evaluates to exactly that value (a
Python literal whose every ``$ @ # %`` is written as an escape, so the parser finds no reference in it).
Project code that needs an expression says so with :class:`Expression`; nothing read from a file or a command
line can produce one.

Override keys are ids of the merged bundle config (:func:`check_override_keys`): an unknown key is an error
naming the closest known ones instead of a setting silently ignored.
"""

import ast
import dataclasses
import difflib
import inspect
import json
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "Expression",
    "literal",
    "parser_overrides",
    "ConfigKeyError",
    "check_override_keys",
    "known_keys",
    "parse_cli_overrides",
    "cli_key",
    "CLI_ALIASES",
    "RESERVED_KEYS",
]

RESERVED_KEYS = ("_target_", "_disabled_", "_requires_", "_desc_", "_mode_")
_SPECIAL = set("$@#%")
# characters written as themselves inside the generated Python string literal; all else becomes an escape
_PLAIN = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,/:;=+()[]{}<>!?*~^&|")


@dataclasses.dataclass(frozen=True)
class Expression:
    """A config expression written by project code (e.g. ``Expression("$torch.device('cpu')")``): passed as is."""

    text: str


def _needs_escape(value: Any) -> bool:
    """Whether MONAI's parser would read ``value`` (or anything inside it) as more than itself."""
    if isinstance(value, str):
        return any(c in _SPECIAL for c in value)
    if isinstance(value, Mapping):
        return any(
            not isinstance(k, str) or k in RESERVED_KEYS or _needs_escape(k) or _needs_escape(v)
            for k, v in value.items()
        )
    if isinstance(value, (list, tuple)):
        return any(_needs_escape(v) for v in value)
    return False


def _python_literal(value: Any) -> str:
    """``value`` as Python source without any ``$ @ # %`` character (they become ``\\x..`` escapes)."""
    if isinstance(value, str):
        return (
            "'"
            + "".join(c if c in _PLAIN else (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\U{ord(c):08x}") for c in value)
            + "'"
        )
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        text = repr(value)
        return {"nan": "float('nan')", "inf": "float('inf')", "-inf": "-float('inf')"}.get(text, text)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_python_literal(k)}: {_python_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):  # a tuple arrives as a list, escaped or not (as JSON has it)
        return "[" + ", ".join(_python_literal(v) for v in value) + "]"
    raise TypeError(
        f"{value!r} ({type(value).__name__}) cannot be a config value: use a string, number, bool, None, list or dict"
    )


def literal(value: Any) -> Any:
    """``value`` in a form MONAI's parser reads as exactly ``value``.

    Plain values (numbers, booleans, ``None``, strings without ``$ @ # %``, lists and dicts of them without
    reserved keys such as ``_target_``) are returned unchanged; anything else becomes one expression that
    evaluates to an equal value, e.g. ``literal("in/a#b")`` is ``"$'in/a\\x23b'"``. An :class:`Expression` is
    project code and is returned as its text.

    Raises:
        TypeError: a value that is not a string, number, bool, None, list, tuple or dict.
    """
    if isinstance(value, Expression):
        return value.text
    if hasattr(value, "__fspath__"):
        value = str(value)
    if not _needs_escape(value):
        _python_literal(value)  # the type check
        return list(value) if isinstance(value, tuple) else value
    return "$" + _python_literal(value)


RULES_SUFFIX = "_rules"


def parser_overrides(overrides: Mapping[str, Any], config: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Every value of ``overrides`` through :func:`literal` (keys are config ids and stay as they are).

    Named choices: where ``config`` has a section ``<key>_rules`` (e.g. ``sampling_weights_rules``) and the value
    is the name of one of its entries, the override becomes a reference to that entry of the bundle's own config
    (``--sampling_weights host`` -> ``"@sampling_weights_rules#host"``): the value picks project code by name, it
    never is code.
    """
    result = {}
    for key, value in overrides.items():
        rules = config.get(f"{key}{RULES_SUFFIX}") if config is not None and "#" not in str(key) else None
        if isinstance(value, str) and isinstance(rules, Mapping) and value in rules:
            result[str(key)] = f"@{key}{RULES_SUFFIX}#{value}"
        else:
            result[str(key)] = literal(value)
    return result


class ConfigKeyError(KeyError):
    """An override key that the bundle's configs do not have; the message names the closest known keys."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def _normalize(key: str) -> str:
    return key.replace("::", "#")


def known_keys(config: Mapping[str, Any]) -> List[str]:
    """Every id of a (merged, raw) config, nested ids joined with ``#`` (``train#trainer#max_epochs``)."""
    keys: List[str] = []

    def walk(node: Any, prefix: str) -> None:
        items = node.items() if isinstance(node, Mapping) else enumerate(node) if isinstance(node, list) else ()
        for name, child in items:
            key = f"{prefix}#{name}" if prefix else str(name)
            keys.append(key)
            walk(child, key)

    walk(config, "")
    return keys


def _target_parameters(component: Mapping[str, Any]) -> Optional[Tuple[bool, List[str]]]:
    """``(takes **kwargs, parameter names)`` of a ``_target_`` component, ``None`` when it cannot be located."""
    from monai.bundle.config_item import ComponentLocator

    target = component.get("_target_")
    if not isinstance(target, str) or target.startswith("$"):
        return None
    try:
        if "." in target:
            from pydoc import locate

            obj = locate(target)
            if obj is None:
                return None
        else:  # a MONAI short name (SupervisedTrainer)
            import importlib

            module = ComponentLocator().get_component_module_name(target)
            module = module[0] if isinstance(module, list) else module
            obj = getattr(importlib.import_module(module), target)
    except Exception:  # noqa: BLE001  (an unlocatable target: no parameter list to check against)
        return None
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    variadic = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    return variadic, [p for p in signature.parameters if p not in ("self", "args", "kwargs")]


def check_override_keys(config: Mapping[str, Any], keys: Iterable[str], where: str = "the bundle's configs") -> None:
    """Refuse override keys that ``config`` (the merged raw config of a bundle) does not have.

    A key is known when it is an id of the config, or a keyword argument of a ``_target_`` component that the
    config has (``network_def#feature_channels``: a parameter of ``build_network``). Reserved keys
    (``..#_target_``) are never accepted from outside: they would choose code to run.

    Raises:
        ConfigKeyError: every unknown key, each with the closest known keys.
    """
    ids = known_keys(config)
    known = set(ids)
    problems = []
    for key in keys:
        key = _normalize(str(key))
        if key.split("#")[-1] in RESERVED_KEYS:
            problems.append(f"{key!r} is reserved (it would choose code to run); set the component's arguments instead")
            continue
        if key in known or key.lstrip("+") in known:
            continue
        parent, _, name = key.rpartition("#")
        node: Any = config
        for part in parent.split("#") if parent else ():
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and parent:
            parameters = _target_parameters(node)
            if parameters is not None and (parameters[0] or name in parameters[1]):
                continue
            if parameters is not None:
                close = difflib.get_close_matches(name, parameters[1], n=3, cutoff=0.5)
                hint = (
                    f"; closest: {', '.join(f'{parent}#{c}' for c in close)}"
                    if close
                    else f"; its arguments: {', '.join(parameters[1])}"
                )
                problems.append(f"{key!r}: {node['_target_']} takes no argument {name!r}{hint}")
                continue
        close = difflib.get_close_matches(key, ids, n=3, cutoff=0.6)
        problems.append(f"{key!r} is not a key of {where}" + (f"; closest: {', '.join(close)}" if close else ""))
    if problems:
        raise ConfigKeyError("unknown override(s): " + "; ".join(problems))


def _cli_value(text: str) -> Any:
    """A command-line value: a Python or JSON literal where it parses as one (``3``, ``True``, ``false``, ``[1, 2]``),
    else the string itself. Never evaluated as code."""
    for parse in (ast.literal_eval, json.loads):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, json.JSONDecodeError):
            continue
    return text


# The project's option names for what MONAI's configs call otherwise (the same name in every subcommand).
CLI_ALIASES = {"ckpt": "ckpt_path", "format": "output_format"}


def cli_key(option: str) -> str:
    """The config key of a command-line option: hyphens become underscores (``max-epochs`` -> ``max_epochs``) and the
    project's names map to MONAI's (``ckpt`` -> ``ckpt_path``, ``format`` -> ``output_format``); the part after a
    ``#`` (a nested key) is left as written."""
    head, sep, rest = option.partition("#")
    head = head.replace("-", "_")
    return CLI_ALIASES.get(head, head) + sep + rest


def parse_cli_overrides(argv: Sequence[str]) -> Dict[str, Any]:
    """``["--key", "value", "--flag=value", ...]`` -> ``{"key": value}``; keys through :func:`cli_key` (so
    ``--max-epochs`` and ``--max_epochs`` are one key), values through :func:`_cli_value`.

    Raises:
        ValueError: a word that is not ``--key``, a key without a value, or a key given twice (under either spelling).
    """
    overrides: Dict[str, Any] = {}
    words = list(argv)
    while words:
        word = words.pop(0)
        if not word.startswith("--") or len(word) == 2:
            raise ValueError(f"expected --key value, got {word!r}")
        key, sep, value = word[2:].partition("=")
        if not sep:
            if not words or (words[0].startswith("--") and len(words[0]) > 2 and not _is_number(words[0])):
                raise ValueError(f"--{key} needs a value")
            value = words.pop(0)
        option, key = key, cli_key(key)
        if key in overrides:
            raise ValueError(f"--{option} given twice (as --{key})" if option != key else f"--{key} given twice")
        overrides[key] = _cli_value(value)
    return overrides


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
