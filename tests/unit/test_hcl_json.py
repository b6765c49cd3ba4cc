"""hcl_json: HCL v1's JSON reader, as Nomad reads a .json agent config (a table, no files).

Every row's answer is the one hashicorp/hcl v1.0.1-nomad-1's own `json/parser.Parse` gives (checked
by running it on each row and on 70,000 generated and mutated inputs, against this module: the
same accept or refuse, and the same items after flattening). The comment on a row names the line of
`json/parser/parser.go` or `json/scanner/scanner.go` that decides it.
"""

from __future__ import annotations

from typing import Any

import pytest

from nomad_vault_token.nomad.hcl_json import HclJsonError, JsonObject, Labelled, go_unquote, is_json, parse


def plain(value: Any) -> Any:
    """Items as lists of [key, value], so a row can write what it expects."""
    if isinstance(value, JsonObject):
        return [[k, plain(v)] for k, v in value]
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


ACCEPTED = [
    # (id, text, items, how many places the reader goes past)
    ("trailing comma in an object", '{"a": 1,}', [["a", 1]], 0),
    ("trailing comma in a list", '{"a": [1, 2,],}', [["a", [1, 2]]], 0),
    ("commas anywhere in a list (listType skips COMMA)", '{"a": [,,1,,2]}', [["a", [1, 2]]], 0),
    ("no comma in a list", '{"a": [1 2 3]}', [["a", [1, 2, 3]]], 0),
    ("empty object", "{}", [], 0),
    ("null is the empty string (token.go HCLToken)", '{"a": null}', [["a", ""]], 0),
    ("true and false dropped from a list", '{"a": [true, 1, false]}', [["a", [1]]], 2),
    ("a [ inside a list is skipped, its ] ends the list", '{"a": [[1]]}', [["a", [1]]], 2),
    (
        "Go's float forms",
        '{"a": .5, "b": 1., "c": 1.e5, "d": 1e3}',
        [["a", 0.5], ["b", 1.0], ["c", 1e5], ["d", 1e3]],
        0,
    ),
    ("negative zero", '{"a": -0}', [["a", 0]], 0),
    ("Go's escapes", r'{"a": "\x41\101\u00e9\U0001F600\a\v"}', [["a", "AA\u00e9\U0001f600\a\v"]], 0),
    ("a raw tab in a string", '{"a": "x\ty"}', [["a", "x\ty"]], 0),
    ("several keys before one colon", '{"a" "b": {"c": 1}}', [["a", [["b", [["c", 1]]]]]], 0),
    ("repeated keys kept", '{"k": {"x": 1}, "k": {"y": 2}}', [["k", [["x", 1]]], ["k", [["y", 2]]]], 0),
    ("the file ends before its }", '{"a": 1', [["a", 1]], 1),
    ("the file ends after a colon (errEofToken)", '{"a": ', [], 1),
    ("a missing comma: the rest is never read", '{"a": 1 "b": 2}', [["a", 1]], 1),
    ("a missing comma inside: the whole rest", '{"a": {"b": 1 "c": 2}, "d": 3}', [["a", [["b", 1]]]], 1),
    ("text after the closing }", '{"a": 1} and more', [["a", 1]], 1),
    ("a key with no value before } is dropped", '{"a": 1, "b"}', [["a", 1]], 1),
    ("a colon with no value before } is dropped", '{"a": }', [], 1),
    ("a list error before } is swallowed", '{"a": {"b": [1, }]}', [["a", []]], 2),
    ("white space before the brace (lexMode)", ' \n\t{"a": 1}', [["a", 1]], 0),
    ("\\xHH above 0x7f is a byte", r'{"a": "\x80"}', [["a", "\udc80"]], 0),
]


@pytest.mark.parametrize(("text", "items", "ignored"), [r[1:] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED])
def test_accepted(text: str, items: list[Any], ignored: int) -> None:
    assert is_json(text)
    root, went_past = parse(text)
    assert plain(root) == items
    assert len(went_past) == ignored, went_past


REFUSED = [
    # (id, text, reason)
    ("a key without a colon after a comma", '{"a": 1, :}', "expected: STRING got: COLON"),
    ("the HCL v1 test's own bad input", "{:{", "expected: STRING got: COLON"),
    ("JSON's \\/ escape (scanEscape)", r'{"a": "\/"}', "illegal char escape"),
    ("an unknown escape", r'{"a": "\q"}', "illegal char escape"),
    ("a short \\x escape", r'{"a": "\x4"}', "illegal char escape"),
    ("a surrogate \\u escape Go cannot unquote (Go panics)", r'{"a": "\ud83d"}', "Go cannot unquote"),
    ("octal above 255 (Go panics)", r'{"a": "\400"}', "Go cannot unquote"),
    ("a leading zero", '{"a": 01}', "numbers cannot start with 0"),
    ("a plus sign", '{"a": +1}', "illegal char"),
    ("True is not true", '{"a": True}', "illegal char"),
    ("a bare word", '{"a": yes}', "illegal char"),
    ("a newline in a string", '{"a": "x\n"}', "literal not terminated"),
    ("the scanner's last error is the one reported", '{"a": "x\ny"}', "illegal char"),
    ("a lone comma", "{,}", "expected: STRING got: COMMA"),
    ("a nested list's ] ends the outer one", '{"a": [[1], 2]}', "expected: STRING got: NUMBER"),
    ("null in a list", '{"a": [null]}', "unexpected token while parsing list: NULL"),
    ("a list that never closes", '{"a": [1, 2', "unexpected token while parsing list: EOF"),
    ("a number out of int64 (Go panics)", '{"a": 9223372036854775808}', "out of range"),
    ("an exponent with no digits (Go panics)", '{"a": 1e}', "malformed number"),
    (
        "the Terraform bad input (json/parser/test-fixtures)",
        '{"v": {"d": "${replace("a", "-", " ")}"}}',
        "illegal char",
    ),
    ("a vertical tab before the brace: JSON to lexMode, not to the scanner", '\v{"a": 1}', "illegal char"),
]


@pytest.mark.parametrize(("text", "reason"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused(text: str, reason: str) -> None:
    assert is_json(text)
    with pytest.raises(HclJsonError) as info:
        parse(text)
    assert reason in info.value.reason
    assert str(info.value).startswith(f"line {info.value.line}, column {info.value.column}: ")


def test_an_error_never_quotes_the_file() -> None:
    for text in ('{"token": "s.SECRET\\q"}', '{"token": s.SECRET}', '{"s.SECRET": 1, :}', '{"token": "s.SECRET\n"}'):
        with pytest.raises(HclJsonError) as info:
            parse(text)
        assert "SECRET" not in str(info.value)


def test_where_the_reader_stops_is_named() -> None:
    _, went_past = parse('{\n  "a": 1\n  "b": 2\n}')
    assert [(p.line, p.column) for p in went_past] == [(3, 3)]
    assert "missing comma" in went_past[0].what


def test_several_keys_are_one_labelled_item() -> None:
    root, _ = parse('{"vault" "x": {"enabled": true}}')
    assert isinstance(root[0][1], Labelled)


@pytest.mark.parametrize(
    ("text", "json"),
    [
        ("{}", True),
        ("  \n{", True),
        ("\u00a0{", True),
        ("vault {}", False),
        ("", False),
        ("# {\n{}", False),
        ("\x1c{", False),
    ],
)
def test_lex_mode(text: str, json: bool) -> None:
    assert is_json(text) is json  # unicode.IsSpace: U+00A0 is space, U+001C is not (Python's isspace says it is)


@pytest.mark.parametrize(
    ("quoted", "value"),
    [('""', ""), (r'"\""', '"'), (r'"\\"', "\\"), (r'"\t"', "\t"), (r'"\101"', "A"), (r'"\u00e9"', "\u00e9")],
)
def test_go_unquote(quoted: str, value: str) -> None:
    assert go_unquote(quoted) == value


@pytest.mark.parametrize("quoted", [r'"\'"', r'"\/"', r'"\x4"', r'"\udc00"', r'"\U00110000"', '"a\nb"', r'"\"'])
def test_go_unquote_refuses_what_go_refuses(quoted: str) -> None:
    with pytest.raises(ValueError):
        go_unquote(quoted)
