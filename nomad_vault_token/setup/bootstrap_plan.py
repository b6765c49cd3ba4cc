"""What `bootstrap-roles` must write: the wanted Vault objects compared with what Vault holds. Pure.

`commands/bootstrap.py` reads Vault, asks `plan` for the steps, writes the ones that differ and
reports them. Nothing here does I/O, so every comparison can be tested on its own.

Values are compared normalised, the way Vault means them: durations as whole seconds (Vault
answers `259200` to a written `"72h"`), lists as sets (a missing list, `null` and `[]` are the
same), policy text with its whitespace collapsed, a PEM certificate by the SHA-256 fingerprints
of the certificates in it (so re-wrapped lines or a trailing newline are no difference).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from nomad_vault_token.core.durations import DurationError, parse_duration

Kind = Literal[
    "policy", "token_role", "auth_mount", "cert_role", "jwt_config", "jwt_role", "secrets_mount", "transit_key"
]
Action = Literal["create", "update", "unchanged"]
FieldType = Literal["duration", "set", "bool", "str", "policy", "pem", "map"]

# The type of every field bootstrap-roles manages; a field not listed here is refused, so the
# shipped role definitions cannot ask for something this module would compare wrongly.
FIELD_TYPES: dict[str, FieldType] = {
    "policy": "policy",
    "type": "str",
    "token_period": "duration",
    "token_explicit_max_ttl": "duration",
    "token_ttl": "duration",
    "token_max_ttl": "duration",
    "renewable": "bool",
    "orphan": "bool",
    "allowed_policies": "set",
    "disallowed_policies": "set",
    "token_policies": "set",
    "allowed_common_names": "set",
    "certificate": "pem",
    # the JWT auth method (workload identity): auth/<mount>/config and auth/<mount>/role/<name>
    "jwks_url": "str",
    "jwks_ca_pem": "pem",
    "jwt_supported_algs": "set",
    "default_role": "str",
    "role_type": "str",
    "bound_audiences": "set",
    "user_claim": "str",
    "user_claim_json_pointer": "bool",
    "claim_mappings": "map",
    "bound_claims": "map",
    "token_type": "str",
    # the transit key wrapping Nomad's keyring (<mount>/keys/<key>)
    "deletion_allowed": "bool",
    "exportable": "bool",
    # a policy's templating switches (OpenBao 2.6+)
    "allow_slashes_in_identity_templates": "bool",
}

# What the text output calls each kind of object.
KIND_WORDS: dict[Kind, str] = {
    "policy": "policy",
    "token_role": "role",
    "auth_mount": "auth mount",
    "cert_role": "role",
    "jwt_config": "JWT config",
    "jwt_role": "role",
    "secrets_mount": "secrets mount",
    "transit_key": "transit key",
}

# Fields Vault never lets change once the object exists: a difference is the admin's to settle.
FIXED_FIELDS: dict[Kind, frozenset[str]] = {
    "secrets_mount": frozenset({"type"}),
    "transit_key": frozenset({"type", "exportable"}),
}


def fixed_changes(steps: Sequence[Step]) -> list[tuple[Step, str]]:
    """(step, field) for each update Vault cannot make: a transit key's type, an exported key, a mount's type."""
    return [
        (step, f)
        for step in steps
        if step.action == "update"
        for f in step.changed_fields
        if f in FIXED_FIELDS.get(step.want.kind, frozenset())
    ]

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


class PlanError(ValueError):
    """The wanted state cannot be built: a placeholder without a value, an unknown field, a bad value."""


# ---- filling the shipped templates ---------------------------------------------------------------


def fill_text(template: str, values: Mapping[str, Any]) -> str:
    """`${name}` in a policy template replaced by `values[name]`; an unknown name is an error."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise PlanError(f"${{{name}}} has no value (known: {', '.join(sorted(values))})")
        return str(values[name])

    return _PLACEHOLDER.sub(one, template)


def fill_fields(template: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A role definition with its placeholders filled.

    A string that is exactly one `"${name}"` takes the value itself, with its type (a number, a
    list); inside a list such an item is spliced in when the value is a list. Any other string
    has its placeholders replaced by text.
    """
    filled: dict[str, Any] = {}
    for key, raw in template.items():
        if key not in FIELD_TYPES:
            raise PlanError(f"field {key!r} is not one bootstrap-roles knows how to compare")
        filled[key] = _fill_value(raw, values)
    return filled


def _fill_value(raw: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(raw, str):
        whole = _PLACEHOLDER.fullmatch(raw)
        if whole:
            name = whole.group(1)
            if name not in values:
                raise PlanError(f"${{{name}}} has no value (known: {', '.join(sorted(values))})")
            value = values[name]
            return list(value) if isinstance(value, (list, tuple)) else value
        return fill_text(raw, values)
    if isinstance(raw, dict):
        return {str(k): _fill_value(v, values) for k, v in raw.items()}
    if isinstance(raw, list):
        items: list[Any] = []
        for item in raw:
            value = _fill_value(item, values)
            if isinstance(value, list) and isinstance(item, str):
                items.extend(value)
            else:
                items.append(value)
        return items
    return raw


# ---- normalising and comparing -------------------------------------------------------------------


def pem_fingerprints(pem: str) -> tuple[str, ...]:
    """SHA-256 fingerprints (hex) of the DER of each certificate in `pem`, in order."""
    found = []
    for body in _PEM_BLOCK.findall(pem):
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            raise PlanError("a PEM certificate block is not valid base64") from None
        found.append(hashlib.sha256(der).hexdigest())
    return tuple(found)


def normalise(name: str, value: Any) -> Any:
    """`value` of field `name` in the form two equal settings compare equal in."""
    kind = FIELD_TYPES.get(name)
    if kind is None:
        raise PlanError(f"field {name!r} is not one bootstrap-roles knows how to compare")
    if kind == "duration":
        if value is None or value == "":
            return 0
        if isinstance(value, bool):
            raise PlanError(f"{name}: {value!r} is not a duration")
        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value))
        except DurationError as exc:
            raise PlanError(f"{name}: {exc}") from None
    if kind == "set":
        if value is None or value == "":
            return ()
        items = [value] if isinstance(value, str) else list(value)
        return tuple(sorted({str(i).strip() for i in items if str(i).strip()}))
    if kind == "bool":
        return bool(value)
    if kind == "policy":
        return " ".join(str(value or "").split())
    if kind == "pem":
        return pem_fingerprints(str(value or ""))
    if kind == "map":  # a claim -> a value (or a list of them: any one of them); missing, null and {} alike
        if not value:
            return ()
        if not isinstance(value, Mapping):
            raise PlanError(f"{name}: {value!r} is not a map")
        return tuple(
            sorted((str(k), tuple(sorted(str(i) for i in (v if isinstance(v, list) else [v])))) for k, v in value.items())
        )
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Wanted:
    """One Vault object as it should be. `path` is the Vault API path; `name` what the text output shows."""

    kind: Kind
    path: str
    name: str
    fields: Mapping[str, Any]

    def __post_init__(self) -> None:
        for key in self.fields:
            normalise(key, None)  # refuses a field this module cannot compare


@dataclass(frozen=True)
class Change:
    """One field, normalised (`old` None: the object does not exist yet).

    `before` and `after` are the values as Vault holds them and as wanted, for showing a policy's
    text as the admin wrote it.
    """

    field: str
    old: Any
    new: Any
    before: Any = None
    after: Any = None

    def json(self) -> dict[str, Any]:
        if FIELD_TYPES[self.field] == "policy":
            return {"old": self.before, "new": self.after}
        return {"old": json_value(self.field, self.old), "new": json_value(self.field, self.new)}


@dataclass(frozen=True)
class Step:
    """What to do with one object, and the fields that differ (all of them for a new object)."""

    want: Wanted
    action: Action
    changes: tuple[Change, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"

    @property
    def changed_fields(self) -> tuple[str, ...]:
        return tuple(c.field for c in self.changes)

    def label(self, check: bool) -> str:
        """created / updated / unchanged; with --check, would create / would update."""
        if self.action == "unchanged":
            return "unchanged"
        done = {"create": "created", "update": "updated"}[self.action]
        return f"would {self.action}" if check else done

    def line(self, check: bool) -> str:
        """The one line of text output for this object."""
        text = f"{self.label(check)} {KIND_WORDS[self.want.kind]} {self.want.name}"
        if self.action == "update":
            text += f" ({', '.join(self.changed_fields)})"
        return text

    def diff_lines(self) -> list[str]:
        """The field-level changes, indented, for --diff. Never a secret: none is managed here."""
        lines: list[str] = []
        for change in self.changes:
            if FIELD_TYPES[change.field] == "policy":
                lines.append(f"    {change.field}:")
                lines.extend(f"      {d}" for d in _text_diff(change.before, change.after, self.want.name))
            else:
                old = "(unset)" if change.old is None else show(change.field, change.old)
                lines.append(f"    {change.field}: {old} -> {show(change.field, change.new)}")
        return lines

    def as_json(self, check: bool) -> dict[str, Any]:
        return {
            "kind": self.want.kind,
            "path": self.want.path,
            "action": self.label(check),
            "fields": {c.field: c.json() for c in self.changes},
        }


def compare(want: Wanted, current: Mapping[str, Any] | None) -> Step:
    """The step for one object: `current` is what Vault holds (None: the object does not exist)."""
    if current is None:
        changes = tuple(Change(k, None, normalise(k, v), None, v) for k, v in want.fields.items())
        return Step(want, "create", changes)
    changes = tuple(
        Change(k, old, new, current.get(k), v)
        for k, v in want.fields.items()
        if (old := normalise(k, current.get(k))) != (new := normalise(k, v))
    )
    return Step(want, "update" if changes else "unchanged", changes)


def plan(wanted: Sequence[Wanted], current: Mapping[str, Mapping[str, Any] | None]) -> list[Step]:
    """One step per wanted object, in order; `current` maps each path to what Vault holds (or None)."""
    paths = [w.path for w in wanted]
    if len(set(paths)) != len(paths):
        dup = next(p for p in paths if paths.count(p) > 1)
        raise PlanError(f"{dup} is wanted twice: give the objects different names")
    return [compare(w, current.get(w.path)) for w in wanted]


def result(steps: Sequence[Step], check: bool) -> dict[str, Any]:
    """What `--format json` reports (inside the envelope `results` adds)."""
    return {
        "changed": any(s.changed for s in steps),
        "objects": [s.as_json(check) for s in steps],
    }


# ---- showing values ------------------------------------------------------------------------------


def json_value(name: str, value: Any) -> Any:
    """A normalised value as JSON: lists for sets, `sha256:<hex>` for certificates."""
    if value is None:
        return None
    kind = FIELD_TYPES[name]
    if kind == "pem":
        return [f"sha256:{fp}" for fp in value]
    if kind == "set":
        return list(value)
    if kind == "map":
        return {k: (list(v) if len(v) != 1 else v[0]) for k, v in value}
    return value


def show(name: str, value: Any) -> str:
    """A normalised value on one line of text."""
    kind = FIELD_TYPES[name]
    if kind == "duration":
        return f"{value}s"
    if kind == "bool":
        return "true" if value else "false"
    if kind in ("set", "pem"):
        return "[" + ", ".join(json_value(name, value)) + "]"
    if kind == "map":
        return "{" + ", ".join(f"{k}={'|'.join(v)}" for k, v in value) + "}"
    return str(value)


def _text_diff(old: Any, new: Any, name: str) -> list[str]:
    """A unified diff of two policy texts as written (trailing spaces and blank lines left out)."""
    return list(
        difflib.unified_diff(_lines(old), _lines(new), f"{name} (in Vault)", f"{name} (wanted)", n=1, lineterm="")
    )


def _lines(text: Any) -> list[str]:
    return [line.rstrip() for line in str(text or "").splitlines() if line.strip()]
