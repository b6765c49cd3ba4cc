"""HCL v1's JSON reader, as Nomad reads a ``.json`` agent config file: what it accepts, what it refuses,
and what it reads past without a word. Pure: text in, items out.

Nomad decodes agent config files with ``hashicorp/hcl`` v1 (``command/agent/config_parse.go``
v1.9.7:28-80: ``hcl.Decode``, then ``hcl.Parse`` again for the ``vault``, ``consul`` and ``keyring``
blocks). Nomad pins its own fork of it (``go.mod``: v1.9.7 ``v1.0.1-0.20201016140508-a07e7d50bbee``,
v2.0.5 ``v1.0.1-nomad-1``); both have the same ``json/`` package. A file is JSON when its first
non-space rune is ``{`` (``lex.go`` ``lexMode``: ``unicode.IsSpace``). The scanner and parser below
follow ``json/scanner/scanner.go`` and ``json/parser/parser.go`` line for line. What strict JSON
(Python's ``json``) refuses and this reader accepts, or the other way round:

* a trailing comma in an object or a list, and repeated or missing commas in a list (``listType``
  skips every ``COMMA``; ``objectList`` reads a ``}`` after a ``,`` as the end);
* an object or a file that ends before its ``}`` (``objectList`` ends at ``EOF``);
* ``null`` is the empty string (``json/token/token.go`` ``HCLToken``: ``STRING`` with no text), and
  is refused inside a list;
* ``true``/``false`` inside a list are dropped, and a ``[`` inside a list is skipped (``listType``:
  "not supported by HCL yet");
* numbers: ``.5``, ``1.`` and ``1.e5`` are read; ``+1`` and ``01`` are refused; strings take Go's
  escapes (``\\a \\v \\x41 \\101 \\U0001F600``) and refuse JSON's ``\\/``; a raw tab is kept;
* several keys before one colon (``"vault" "x": {}``) are one labelled item;
* the parser stops where an item is not followed by ``,`` or ``}`` (a missing comma, a stray
  token): everything after that point in the file is ignored, silently. Each such place, and
  every other thing read past, is returned as an ``Ignored`` so ``check`` can say so.

Every error names a line and column and never echoes the file's text (it may hold a token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

_EOF: Final = "\0"  # scanner.go: eof = rune(0); a NUL in the file reads as the end, as there
_JSON_SPACE: Final = frozenset(" \t\n\r")  # scanner.go isWhitespace
# unicode.IsSpace: Latin-1 spaces and the White_Space property (Python's isspace adds \x1c-\x1f).
_GO_SPACE: Final = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

# Token types (json/token/token.go).
ILLEGAL, EOF, NUMBER, FLOAT, BOOL, STRING, NULL = "ILLEGAL", "EOF", "NUMBER", "FLOAT", "BOOL", "STRING", "NULL"
LBRACK, LBRACE, COMMA, PERIOD, RBRACK, RBRACE, COLON = (
    "LBRACK",
    "LBRACE",
    "COMMA",
    "PERIOD",
    "RBRACK",
    "RBRACE",
    "COLON",
)
_LITERALS: Final = frozenset({NUMBER, FLOAT, BOOL, NULL, STRING})
_PUNCT: Final = {"[": LBRACK, "]": RBRACK, "{": LBRACE, "}": RBRACE, ",": COMMA, ":": COLON}


class Pairs(list[tuple[Any, Any]]):
    """An object's items in source order, repeated keys kept (as Go's ``ast.ObjectList``)."""


class JsonObject(Pairs):
    """A JSON object: HCL1 flattens nested objects into labels (``json/parser/flatten.go``)."""


class Labelled(JsonObject):
    """``"a" "b": v``: several keys before one colon, held as ``"a": {"b": v}`` (one item, always)."""


def is_object(value: Any) -> bool:
    """An object to ``flatten.go``: a ``Labelled`` item is one when the value after its keys is."""
    while isinstance(value, Labelled):
        value = value[0][1]
    return isinstance(value, JsonObject)


@dataclass(frozen=True)
class Ignored:
    """A place the reader went past without reading what was there: Nomad starts, without it."""

    line: int
    column: int
    what: str


class HclJsonError(ValueError):
    """Nomad's reader refuses the file. ``reason`` never quotes the file's text."""

    def __init__(self, line: int, column: int, reason: str) -> None:
        super().__init__(f"line {line}, column {column}: {reason}")
        self.line = line
        self.column = column
        self.reason = reason


def is_json(text: str) -> bool:
    """``lexMode``: JSON when the first rune that is not ``unicode.IsSpace`` is ``{``."""
    for ch in text:
        if ch not in _GO_SPACE:
            return ch == "{"
    return False


def parse(text: str) -> tuple[JsonObject, tuple[Ignored, ...]]:
    """The file's top-level items (flattening left to the reader of the items), and what was read past.

    HclJsonError when Nomad's reader refuses the file: the scanner's last error first (``Parse``
    returns it over the parser's), else the parser's.
    """
    parser = _Parser(text)
    root = parser.root()
    return root, tuple(parser.ignored)


@dataclass
class _Token:
    type: str
    text: str
    line: int
    column: int


class _Scanner:
    """``json/scanner/scanner.go``, rune for rune; ``error`` keeps the last error, as ``Parse``'s closure does."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0  # the buffer's read position
        self.line, self.column, self.last_line_len = 1, 0, 0
        self.prev = (1, 0)
        self.last_char_len = 0
        self.at_eof = False
        self.error: tuple[int, int, str] | None = None

    def next(self) -> str:
        if self.i >= len(self.src):
            self.column += 1
            self.last_char_len = 0
            self.at_eof = True
            return _EOF
        ch = self.src[self.i]
        self.i += 1
        self.prev = (self.line, self.column)
        self.column += 1
        self.last_char_len = 1
        if ch == "\n":
            self.line += 1
            self.last_line_len = self.column
            self.column = 0
        return ch

    def unread(self) -> None:
        if self.at_eof:  # Go panics here (UnreadRune after EOF); an error is already recorded
            return
        self.i -= 1
        self.line, self.column = self.prev

    def peek(self) -> str:
        return self.src[self.i] if self.i < len(self.src) else _EOF

    def err(self, msg: str) -> None:
        if self.column > 0:
            line, column = self.line, self.column
        elif self.last_line_len > 0:
            line, column = self.line - 1, self.last_line_len
        else:
            line, column = 1, 1
        self.error = (line, column, msg)

    def scan(self) -> _Token:
        self.at_eof = False
        ch = self.next()
        while ch in _JSON_SPACE:
            ch = self.next()
        start = self.i - self.last_char_len
        line, column = (self.line, self.column) if self.column > 0 else (self.line - 1, self.last_line_len)
        tok = ILLEGAL
        if _is_letter(ch):
            lit = self._identifier(start)
            if lit in ("true", "false"):
                tok = BOOL
            elif lit == "null":
                tok = NULL
            else:
                self.err("illegal char")
        elif "0" <= ch <= "9":
            tok = self._number(ch)
        elif ch == _EOF:
            tok = EOF
        elif ch == '"':
            tok = STRING
            self._string()
        elif ch == ".":
            tok = PERIOD
            if "0" <= self.peek() <= "9":
                tok = FLOAT
                self._exponent(self._mantissa(self.peek()))
        elif ch in _PUNCT:
            tok = _PUNCT[ch]
        elif ch == "-":
            if "0" <= self.peek() <= "9":
                tok = self._number(self.next())
            else:
                self.err("illegal char")
        else:
            self.err("illegal char")  # Go appends the character; not echoed here
        return _Token(tok, self.src[start : self.i], line, column)

    def _identifier(self, start: int) -> str:
        ch = self.next()
        while _is_letter(ch) or ch.isdigit() or ch == "-":
            ch = self.next()
        if ch != _EOF:
            self.unread()
        return self.src[start : self.i]

    def _number(self, ch: str) -> str:
        zero = ch == "0"
        pos = (self.line, self.column)
        self._mantissa(ch)
        ch = self.next()
        if ch in "eE" and ch != _EOF:
            self._exponent(ch)
            return FLOAT
        if ch == ".":
            ch = self._mantissa(self.peek())  # scanFraction
            if ch in "eE" and ch != _EOF:
                self._exponent(self.next())
            return FLOAT
        if ch != _EOF:
            self.unread()
        if zero and pos != (self.line, self.column):
            self.err("numbers cannot start with 0")
        return NUMBER

    def _mantissa(self, ch: str) -> str:
        scanned = False
        while "0" <= ch <= "9":
            ch = self.next()
            scanned = True
        if scanned and ch != _EOF:
            self.unread()
        return ch

    def _exponent(self, ch: str) -> str:
        if ch in "eE" and ch != _EOF:
            ch = self.next()
            if ch in "-+" and ch != _EOF:
                ch = self.next()
            ch = self._mantissa(ch)
        return ch

    def _string(self) -> None:
        while True:
            ch = self.next()
            if ch in ("\n", _EOF):
                self.err("literal not terminated")
                return
            if ch == '"':
                return
            if ch == "\\":
                self._escape()

    def _escape(self) -> None:
        ch = self.next()
        if ch in 'abfnrtv\\"' and ch != _EOF:
            return
        if "0" <= ch <= "7":
            self._digits(ch, 8, 3)
        elif ch == "x":
            self._digits(self.next(), 16, 2)
        elif ch == "u":
            self._digits(self.next(), 16, 4)
        elif ch == "U":
            self._digits(self.next(), 16, 8)
        else:
            self.err("illegal char escape")

    def _digits(self, ch: str, base: int, n: int) -> None:
        while n > 0 and _digit_val(ch) < base:
            ch = self.next()
            n -= 1
        if n > 0:
            self.err("illegal char escape")
        self.unread()


def _is_letter(ch: str) -> bool:
    return "a" <= ch <= "z" or "A" <= ch <= "Z" or ch == "_" or (ch >= "\x80" and ch.isalpha())


def _digit_val(ch: str) -> int:
    if "0" <= ch <= "9":
        return ord(ch) - ord("0")
    if "a" <= ch <= "f":
        return ord(ch) - ord("a") + 10
    if "A" <= ch <= "F":
        return ord(ch) - ord("A") + 10
    return 16


class _Failed(Exception):
    """A parser error (``fmt.Errorf`` in parser.go), at the token the parser stood on."""

    def __init__(self, tok: _Token, reason: str) -> None:
        super().__init__(reason)
        self.tok = tok
        self.reason = reason


class _Eof(Exception):
    """parser.go ``errEofToken``: an ``objectList`` that meets it ends there, without an error."""


class _Parser:
    """``json/parser/parser.go``: ``objectList`` ends at the first item not followed by a comma, and an
    ``objectType`` whose list failed is still good when the parser stands on ``}``."""

    def __init__(self, src: str) -> None:
        self.sc = _Scanner(src)
        self.src = src
        self.tok = _Token(ILLEGAL, "", 1, 1)
        self.ignored: list[Ignored] = []
        self.stopped = False

    def root(self) -> JsonObject:
        try:
            tok = self._scan()
            if tok.type == LBRACE:
                result = self._object_type()
            elif tok.type == EOF:
                raise _Eof
            else:
                raise _Failed(tok, f"expected an object, got {tok.type}")
        except _Eof:  # Parse: errEofToken from the root is an error
            self._check_scanner()
            raise HclJsonError(self.tok.line, self.tok.column, "the file holds no object") from None
        except _Failed as failed:
            self._check_scanner()
            raise HclJsonError(failed.tok.line, failed.tok.column, failed.reason) from None
        self._check_scanner()
        if self.tok.type == RBRACE and self.src[self.sc.i :].strip(" \t\n\r"):
            self._stop(self.tok, "everything after the closing } of the file's object")
        elif self.tok.type == EOF:
            self._ignore(self.tok, "the file ends before its object closes (cut short?); Nomad reads what is there")
        return result

    def _check_scanner(self) -> None:
        if self.sc.error is not None:
            line, column, reason = self.sc.error
            raise HclJsonError(line, column, reason)

    def _scan(self) -> _Token:
        self.tok = self.sc.scan()
        return self.tok

    def _ignore(self, tok: _Token, what: str) -> None:
        self.ignored.append(Ignored(tok.line, tok.column, what))

    def _stop(self, tok: _Token, what: str) -> None:
        """The reader stops reading the file here: said once, at the first such place."""
        if not self.stopped:
            self.stopped = True
            self._ignore(tok, what)

    def _object_type(self) -> JsonObject:
        items, failure = self._object_list()
        if failure is not None:
            if self.tok.type != RBRACE:
                raise failure
            if failure.reason != "":  # "" is the plain end: {} or a trailing comma
                self._ignore(failure.tok, f"an item Nomad's reader drops ({failure.reason})")
        return items

    def _object_list(self) -> tuple[JsonObject, _Failed | None]:
        node = JsonObject()
        while True:
            try:
                keys, value = self._object_item()
            except _Eof:
                break
            except _Failed as failed:
                return node, failed
            node.append(_nest(keys, value))
            tok = self._scan()
            if tok.type != COMMA:
                if tok.type not in (RBRACE, EOF):
                    self._stop(
                        tok, f"everything from here on (an item followed by {tok.type}, not a comma: a missing comma?)"
                    )
                break
        return node, None

    def _object_item(self) -> tuple[list[str], Any]:
        keys = self._object_key()
        value = self._object_value()
        return [self._string_value(key) for key in keys], value

    def _object_key(self) -> list[_Token]:
        keys: list[_Token] = []
        while True:
            tok = self._scan()
            if tok.type == EOF:
                raise _Eof
            if tok.type == STRING:
                keys.append(tok)  # unquoted once the item is whole: Go never reads a dropped key
            elif tok.type == COLON:
                if not keys:
                    raise _Failed(tok, "expected: STRING got: COLON")
                return keys
            elif tok.type == ILLEGAL:
                raise _Failed(tok, "illegal")
            elif tok.type == RBRACE and not keys:
                raise _Failed(tok, "")  # the end of the object, after "{" or ","
            else:
                raise _Failed(tok, f"expected: STRING got: {tok.type}")

    def _object_value(self) -> Any:
        tok = self._scan()
        if tok.type in _LITERALS:
            return self._literal(tok)
        if tok.type == LBRACE:
            return self._object_type()
        if tok.type == LBRACK:
            return self._list_type()
        if tok.type == EOF:
            raise _Eof
        raise _Failed(tok, f"expected a value, got {tok.type}")

    def _list_type(self) -> list[Any]:
        out: list[Any] = []
        while True:
            tok = self._scan()
            if tok.type in (NUMBER, FLOAT, STRING):
                out.append(self._literal(tok))
            elif tok.type == COMMA:
                continue
            elif tok.type == LBRACE:
                out.append(self._object_type())
            elif tok.type == BOOL:
                self._ignore(tok, "true or false inside a list (dropped)")
            elif tok.type == LBRACK:
                self._ignore(tok, "a [ inside a list (skipped: its first ] ends the outer list)")
            elif tok.type == RBRACK:
                return out
            else:
                raise _Failed(tok, f"unexpected token while parsing list: {tok.type}")

    def _literal(self, tok: _Token) -> Any:
        """``hcl/token/token.go`` ``Value`` of the token ``HCLToken`` makes; Go panics where this refuses."""
        if tok.type == NULL:
            return ""
        if tok.type == BOOL:
            return tok.text == "true"
        if tok.type == STRING:
            return self._string_value(tok)
        if tok.type == NUMBER:
            value = int(tok.text)  # ParseInt(text, 0, 64): the scanner leaves only decimal digits
            if not -(2**63) <= value < 2**63:
                raise _Failed(tok, "a number out of range (Nomad's reader panics on it)")
            return value
        try:
            return float(tok.text)
        except ValueError:
            raise _Failed(tok, "a malformed number (Nomad's reader panics on it)") from None

    def _string_value(self, tok: _Token) -> str:
        if self.sc.error is not None:
            return ""  # the scanner already refused it; Parse reports that error
        try:
            return go_unquote(tok.text)
        except ValueError:
            raise _Failed(tok, "a string escape Go cannot unquote (Nomad's reader panics on it)") from None


def _nest(keys: list[str], value: Any) -> tuple[str, Any]:
    """``"a" "b": v`` is ``"a": {"b": v}`` to the flattening that follows."""
    for key in reversed(keys[1:]):
        value = Labelled([(key, value)])
    return keys[0], value


_SIMPLE_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}


def go_unquote(text: str) -> str:
    """Go's ``strconv.Unquote`` of a double-quoted literal; ValueError where Go returns ErrSyntax."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError("not quoted")
    body = text[1:-1]
    if "\n" in body:
        raise ValueError("newline")
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == '"':
            raise ValueError("quote")
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError("lone backslash")
        kind = body[i + 1]
        if kind in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[kind])
            i += 2
        elif kind in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[kind]
            digits = body[i + 2 : i + 2 + n]
            if len(digits) != n or any(_digit_val(d) >= 16 for d in digits):
                raise ValueError("short escape")
            value = int(digits, 16)
            if kind != "x" and (0xD800 <= value <= 0xDFFF or value > 0x10FFFF):
                raise ValueError("not a rune")  # utf8.ValidRune
            out.append(_byte(value) if kind == "x" else chr(value))
            i += 2 + n
        elif "0" <= kind <= "7":
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or any(not "0" <= d <= "7" for d in digits):
                raise ValueError("short octal")
            value = int(digits, 8)
            if value > 255:
                raise ValueError("octal out of range")
            out.append(_byte(value))
            i += 4
        else:
            raise ValueError("unknown escape")
    return "".join(out)


def _byte(value: int) -> str:
    """``\\xHH`` and ``\\OOO`` are one byte to Go: above 0x7f not a character, held as Python's
    surrogateescape holds such a byte."""
    return chr(value) if value < 0x80 else chr(0xDC00 + value)
