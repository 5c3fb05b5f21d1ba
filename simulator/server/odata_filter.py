"""OData `$filter` for syncsim: a tokenizer, a recursive-descent parser, and a compiler to predicates.

Grammar, loosest binding first (keywords are matched case-insensitively):

    or_expr   := and_expr ("or" and_expr)*
    and_expr  := not_expr ("and" not_expr)*
    not_expr  := "not" not_expr | cmp_expr
    cmp_expr  := primary (("eq"|"ne"|"gt"|"ge"|"lt"|"le") primary)?
    primary   := "(" or_expr ")" | call | literal | property

Calls: contains / startswith / endswith (case-insensitive, as Dataverse's collation) and
`Microsoft.Dynamics.CRM.In(PropertyName='c',PropertyValues=["1","2"])` / `...NotIn(...)`.
Literals: 'text' ('' escapes a quote), true, false, null, integers, decimals, 2024-01-02T03:04:05Z,
2024-01-02, bare GUIDs, and enum members such as `Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'`
(read as text). Null compares as OData says: `null eq null`, `x ne 5` is true for a null x, and
gt/ge/lt/le are false when either side is null. A date literal compares with the date part (UTC) of
a datetime column. Every bad input raises DataverseError (HTTP 400), never anything else.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson

from simulator.protocol import ErrorCode
from simulator.protocol.odata import GUID_RE
from simulator.server.errors import DataverseError

Getter = Callable[[Any], Any]
Predicate = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class Field:
    """A filterable property: kind (string, integer, decimal, datetime, guid, boolean) and a value getter."""

    kind: str
    get: Getter


MAX_DEPTH = 64  # nesting levels of parentheses, not and calls in one $filter
Resolver = Callable[[str], Field]  # property name -> Field; raises DataverseError for unknown names

# --- tokens ----------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<str>'(?:[^']|'')*')
    |(?P<dstr>"(?:[^"\\]|\\.)*")
    |(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?![\w-])
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)(?![\w:.+-])
    |(?P<date>\d{4}-\d{2}-\d{2})(?![\w:.-])
    |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.])
    |(?P<enum>[A-Za-z_][\w.]*'(?:[^']|'')*')
    |(?P<name>[A-Za-z_][\w.]*(?:/[A-Za-z_][\w.]*)*)
    |(?P<punct>[(),=\[\]])""",
    re.VERBOSE,
)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt,
    "ge": operator.ge, "lt": operator.lt, "le": operator.le,
}
_OP_NAMES = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
             "lt": "LessThan", "le": "LessThanOrEqual"}
_EDM = {"string": "Edm.String", "integer": "Edm.Int32", "decimal": "Edm.Decimal", "datetime": "Edm.DateTimeOffset",
        "date": "Edm.Date", "guid": "Edm.Guid", "boolean": "Edm.Boolean", "null": "null"}
_FAMILY = {"string": "string", "integer": "number", "decimal": "number", "datetime": "time", "date": "time",
           "guid": "guid", "boolean": "boolean"}
_STRING_FUNCS = {"contains": str.__contains__, "startswith": str.startswith, "endswith": str.endswith}
_RESERVED = {"and", "or", "not", *_OPS}
_IN_FUNCS = {"microsoft.dynamics.crm.in": False, "microsoft.dynamics.crm.notin": True}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # str, dstr, guid, datetime, date, number, enum, name, punct, end
    text: str
    pos: int  # 0-based character offset in the $filter text


def tokenize(text: str) -> list[Token]:
    """The tokens of a $filter expression, ending with an `end` token."""
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise syntax_error(text, pos, text[pos : pos + 12])
        kind = m.lastgroup or "ws"
        if kind != "ws":
            out.append(Token(kind, m.group(kind), pos))
        pos = m.end()
    out.append(Token("end", "", len(text)))
    return out


def syntax_error(text: str, pos: int, token: str) -> DataverseError:
    near = f"unexpected '{token}'" if token else "unexpected end of expression"
    return DataverseError(ErrorCode.BAD_PAYLOAD, f"Syntax error at position {pos} in '{text}': {near}.")


# --- syntax tree -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ref:
    name: str


@dataclass(frozen=True, slots=True)
class Lit:
    kind: str  # string, integer, decimal, datetime, date, guid, boolean, null
    value: Any


@dataclass(frozen=True, slots=True)
class Cmp:
    op: str  # eq, ne, gt, ge, lt, le
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # and, or
    items: tuple[Node, ...]  # two or more


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class Call:
    name: str  # contains, startswith, endswith
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class InList:
    ref: Ref
    values: tuple[Lit, ...]
    negate: bool


Node = Ref | Lit | Cmp | BoolOp | Not | Call | InList


# --- parser ----------------------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        self.i += 1
        return self.tokens[self.i - 1]

    def is_word(self, *words: str) -> bool:
        return self.peek().kind == "name" and self.peek().text.lower() in words

    def accept(self, punct: str) -> bool:
        """Consume the punctuation if it comes next."""
        found = self.peek().kind == "punct" and self.peek().text == punct
        self.i += found
        return found

    def expect(self, punct: str) -> None:
        if not self.accept(punct):
            raise self.fail()

    def fail(self) -> DataverseError:
        return syntax_error(self.text, self.peek().pos, self.peek().text)

    def parse(self) -> Node:
        node = self.binary("or")
        if self.peek().kind != "end":
            raise self.fail()
        return node

    def binary(self, word: str) -> Node:
        """or_expr (word "or") or and_expr (word "and"), left-associative."""
        operand = (lambda: self.binary("and")) if word == "or" else self.not_expr
        items = [operand()]
        while self.is_word(word):
            self.take()
            items.append(operand())
        return items[0] if len(items) == 1 else BoolOp(word, tuple(items))

    def nested(self, parse: Callable[[], Node]) -> Node:
        """Parse one level deeper (parentheses, not, a call); 400 past MAX_DEPTH levels."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The $filter is nested more than {MAX_DEPTH} levels deep.")
        node = parse()
        self.depth -= 1
        return node

    def not_expr(self) -> Node:
        if self.is_word("not"):
            self.take()
            return self.nested(lambda: Not(self.not_expr()))
        left = self.primary()
        if self.is_word(*_OPS):
            return Cmp(self.take().text.lower(), left, self.primary())
        return left

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "punct" and tok.text == "(":
            return self.nested(self.group)
        if tok.kind == "name" and tok.text.lower() not in _RESERVED:
            return self.nested(lambda: self.call(tok)) if self.accept("(") else _word_literal(tok)
        if tok.kind in ("end", "punct", "dstr", "name"):
            raise syntax_error(self.text, tok.pos, tok.text)
        return literal(self.text, tok)

    def group(self) -> Node:
        node = self.binary("or")
        self.expect(")")
        return node

    def call(self, name: Token) -> Node:
        lowered = name.text.lower()
        if lowered in _IN_FUNCS:
            return self.in_list(_IN_FUNCS[lowered])
        if lowered not in _STRING_FUNCS:
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The function '{name.text}' is not supported by syncsim.")
        args = [self.binary("or")]
        while self.accept(","):
            args.append(self.binary("or"))
        self.expect(")")
        return Call(lowered, tuple(args))

    def in_list(self, negate: bool) -> InList:
        """The named arguments of In / NotIn: PropertyName='c', PropertyValues=[...], then ')'."""
        args: dict[str, Any] = {}
        while not args or self.accept(","):
            key = self.take()
            self.expect("=")
            name = key.text.lower() if key.kind == "name" else ""
            if name == "propertyname" and self.peek().kind == "str":
                args[name] = Ref(_unquote(self.take().text))
            elif name == "propertyvalues":
                args[name] = self.value_list()
            else:
                raise syntax_error(self.text, key.pos, key.text)
        self.expect(")")
        if len(args) != 2:
            raise DataverseError(ErrorCode.BAD_PAYLOAD, "In and NotIn need PropertyName and PropertyValues.")
        return InList(args["propertyname"], args["propertyvalues"], negate)

    def value_list(self) -> tuple[Lit, ...]:
        self.expect("[")
        items: list[Lit] = []
        while not self.accept("]"):
            if items:
                self.expect(",")
            tok = self.take()
            if tok.kind in ("end", "punct", "name"):
                raise syntax_error(self.text, tok.pos, tok.text)
            items.append(literal(self.text, tok))
        return tuple(items)


def _unquote(text: str) -> str:
    return text[1:-1].replace("''", "'")


def _word_literal(tok: Token) -> Node:
    word = tok.text.lower()
    if word in ("true", "false"):
        return Lit("boolean", word == "true")
    if word == "null":
        return Lit("null", None)
    return Ref(tok.text)


_LITERALS: dict[str, Callable[[str], Lit]] = {
    "str": lambda t: Lit("string", _unquote(t)),
    "dstr": lambda t: Lit("string", str(orjson.loads(t))),
    "enum": lambda t: Lit("string", _unquote(t[t.index("'") :])),
    "guid": lambda t: Lit("guid", t.lower()),
    "datetime": lambda t: Lit("datetime", to_datetime(t, strict=True)),
    "date": lambda t: Lit("date", date.fromisoformat(t)),
    "number": lambda t: Lit("integer", int(t)) if re.fullmatch(r"-?\d+", t) else Lit("decimal", float(t)),
}


def literal(text: str, tok: Token) -> Lit:
    """A literal token's value; a malformed number or date is a 400."""
    convert = _LITERALS.get(tok.kind)
    if convert is None:
        raise syntax_error(text, tok.pos, tok.text)
    try:
        return convert(tok.text)
    except ValueError:
        raise DataverseError(ErrorCode.BAD_PAYLOAD,
                             f"Syntax error at position {tok.pos} in '{text}': invalid literal '{tok.text}'.") from None


def parse_filter(text: str) -> Node:
    """The syntax tree of a $filter expression (400 on a syntax error, naming position and token)."""
    return _Parser(text).parse()


def to_datetime(value: Any, strict: bool = False) -> datetime | None:
    """An ISO 8601 text as an aware UTC datetime (naive means UTC); None (or ValueError if strict) when not
    one, or when its UTC instant falls outside years 1 to 9999."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        if strict:
            raise
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00: its UTC instant is before year 1 (or after 9999)
        if strict:
            raise ValueError(f"{value} is outside the calendar in UTC") from None
        return None


def normalizer(kind: str) -> Callable[[Any], Any]:
    """A function making a raw value of this kind comparable; None stays None.

    Text is case-folded, GUIDs lowercased, datetimes become epoch seconds (UTC; floats compare much
    faster than aware datetimes when sorting), dates stay dates (the UTC date of a datetime value).
    """
    if kind == "string":
        return lambda v: None if v is None else str(v).casefold()
    if kind == "guid":
        return lambda v: None if v is None else str(v).lower()
    if kind in ("integer", "decimal"):
        return lambda v: v if isinstance(v, int | float) and not isinstance(v, bool) else None
    if kind == "datetime":
        return lambda v: d.timestamp() if (d := to_datetime(v)) is not None else None
    if kind == "date":
        return lambda v: d.date() if (d := to_datetime(v)) is not None else None
    return lambda v: v if isinstance(v, bool) else None


# --- compiler --------------------------------------------------------------------------------------
def compile_filter(node: Node, resolve: Resolver) -> Predicate:
    """A predicate over rows (whatever the resolver's getters read) for a parsed $filter."""
    return _Compiler(resolve).boolean(node)


def type_error(op: str, left: str, right: str) -> DataverseError:
    return DataverseError(
        ErrorCode.BAD_PAYLOAD,
        "A binary operator with incompatible types was detected. Found operand types "
        f"'{_EDM[left]}' and '{_EDM[right]}' for operator kind '{_OP_NAMES.get(op, op)}'.",
    )


def _common_kind(op: str, left: str, right: str) -> str:
    """The kind both sides are compared as (400 when their types do not mix)."""
    if left == "null" or right == "null":
        return right if left == "null" else left
    if _FAMILY[left] != _FAMILY[right]:
        raise type_error(op, left, right)
    if _FAMILY[left] == "time":
        return "date" if "date" in (left, right) else "datetime"
    return "decimal" if _FAMILY[left] == "number" else left


def _null_safe(op: str) -> Callable[[Any, Any], bool]:
    """The operator with OData null rules: eq/ne compare nulls as values, ordering is false on null."""
    fn = _OPS[op]
    if op in ("eq", "ne"):
        want = op == "eq"
        return lambda a, b: (a is None and b is None) == want if a is None or b is None else fn(a, b)
    return lambda a, b: a is not None and b is not None and fn(a, b)


class _Compiler:
    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve

    def boolean(self, node: Node) -> Predicate:
        if isinstance(node, BoolOp):
            preds = tuple(self.boolean(item) for item in node.items)
            if node.op == "and":
                return lambda r: all(p(r) for p in preds)
            return lambda r: any(p(r) for p in preds)
        if isinstance(node, Not):
            inner = self.boolean(node.operand)
            return lambda r: not inner(r)
        if isinstance(node, Cmp):
            return self.compare(node)
        if isinstance(node, Call):
            return self.string_call(node)
        if isinstance(node, InList):
            return self.in_list(node)
        if isinstance(node, Lit) and node.kind == "boolean":
            constant = bool(node.value)
            return lambda r: constant
        if isinstance(node, Ref) and (field := self.resolve(node.name)).kind == "boolean":
            get = field.get
            return lambda r: get(r) is True
        raise DataverseError(ErrorCode.BAD_PAYLOAD, "A $filter expression must evaluate to true or false.")

    def operand(self, node: Node) -> tuple[str, Getter]:
        """(kind, raw value getter) of a comparison side: a property or a literal."""
        if isinstance(node, Ref):
            field = self.resolve(node.name)
            return field.kind, field.get
        if isinstance(node, Lit):
            value = node.value
            return node.kind, lambda r: value
        raise DataverseError(ErrorCode.BAD_PAYLOAD, "Only properties and literals can be compared in $filter.")

    def side(self, node: Node, kind: str) -> Getter:
        """A getter of the node's value normalized as `kind` (constant for literals)."""
        norm = normalizer(kind)
        if isinstance(node, Lit):
            value = norm(node.value)
            return lambda r: value
        get = self.operand(node)[1]
        return lambda r: norm(get(r))

    def compare(self, node: Cmp) -> Predicate:
        kind = _common_kind(node.op, self.operand(node.left)[0], self.operand(node.right)[0])
        left, right, fn = self.side(node.left, kind), self.side(node.right, kind), _null_safe(node.op)
        return lambda r: fn(left(r), right(r))

    def string_call(self, node: Call) -> Predicate:
        if len(node.args) != 2:
            raise DataverseError(ErrorCode.BAD_PAYLOAD, f"The function '{node.name}' takes 2 arguments.")
        for arg in node.args:
            kind = self.operand(arg)[0]
            if kind not in ("string", "null"):
                raise DataverseError(
                    ErrorCode.BAD_PAYLOAD, f"The function '{node.name}' needs Edm.String arguments, not {_EDM[kind]}.")
        a, b = (self.side(arg, "string") for arg in node.args)
        fn = _STRING_FUNCS[node.name]
        return lambda r: (x := a(r)) is not None and (y := b(r)) is not None and fn(x, y)

    def in_list(self, node: InList) -> Predicate:
        field = self.resolve(node.ref.name)
        norm = normalizer(field.kind)
        wanted = {_coerce(lit, field.kind, node.ref.name) for lit in node.values}
        get = field.get
        if node.negate:
            return lambda r: norm(get(r)) not in wanted
        return lambda r: (v := norm(get(r))) is not None and v in wanted


def _coerce(lit: Lit, kind: str, name: str) -> Any:
    """An In/NotIn value (usually a quoted text) as a normalized value of the property's kind."""
    try:
        if lit.kind == "string" and kind in _FROM_TEXT:
            return normalizer(kind)(_FROM_TEXT[kind](lit.value))
        if lit.kind in ("string", "null") or _FAMILY[lit.kind] == _FAMILY[kind]:
            return normalizer(kind)(lit.value)
    except (ValueError, KeyError):
        pass
    raise DataverseError(ErrorCode.BAD_PAYLOAD,
                         f"The value '{lit.value}' is not a valid {_EDM[kind]} for property '{name}'.")


def _guid_text(text: str) -> str:
    if not GUID_RE.match(text):
        raise ValueError(text)
    return text


_FROM_TEXT: dict[str, Callable[[str], Any]] = {
    "integer": int, "decimal": float, "guid": _guid_text,
    "boolean": lambda text: {"true": True, "false": False}[text.lower()],
    "datetime": lambda text: to_datetime(text, strict=True),
}
