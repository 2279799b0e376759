"""The rule language of promotion policies: a small, safe expression evaluator.

A rule is one boolean expression over the candidate's and the current
production version's metrics::

    accuracy >= production.accuracy - 0.005
    latency_p95_ms <= 1.10 * production.latency_p95_ms
    auc > 0.9 and not (loss > 0.3 or candidate.drift >= 0.1)

Allowed, and nothing else: numbers; metric names (``accuracy`` and
``candidate.accuracy`` both mean the candidate's metric); ``production.<metric>``;
``+ - * /`` and unary ``-``; comparisons ``< <= > >= == !=`` (chains allowed);
``and``, ``or``, ``not``; parentheses. The text is parsed with :mod:`ast` and
every node is checked against that list and type-checked (arithmetic on numbers,
``and``/``or``/``not`` on comparisons) before it is compiled into Python
closures: nothing is ever passed to ``eval``, and attribute access, calls,
subscripts, strings and names other than metrics are refused when the policy is
saved. Metric names are Python identifiers.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelkeep.errors import InvalidPolicy

__all__ = ["CANDIDATE", "PRODUCTION", "Rule", "Missing", "parse_rule"]

CANDIDATE = "candidate"
PRODUCTION = "production"

_ARITH: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_COMPARE: dict[type, Callable[[float, float], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_ALLOWED = "numbers, metric names, production.<metric>, candidate.<metric>, + - * /, comparisons, and/or/not"

Env = tuple[Mapping[str, Any], Mapping[str, Any] | None]  # (candidate metrics, production metrics or None)


class Missing(Exception):
    """A metric the rule needs is absent (or not a number) on one side."""

    def __init__(self, side: str, metric: str, why: str = "missing") -> None:
        super().__init__(side, metric, why)
        self.side = side
        self.metric = metric
        self.why = why


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed rule: its text, where it was written, the metrics it reads, and the compiled test."""

    text: str
    line: int | None
    candidate_metrics: frozenset[str]
    production_metrics: frozenset[str]
    test: Callable[[Env], bool]
    sides: tuple[Callable[[Env], float], Callable[[Env], float]] | None  # left/right of a single comparison
    op: str | None

    @property
    def metrics(self) -> frozenset[str]:
        return self.candidate_metrics | self.production_metrics


def parse_rule(text: str, *, line: int | None = None) -> Rule:
    """Parse and compile one rule. Raises InvalidPolicy naming the line and what is wrong."""
    where = f"line {line}: " if line is not None else ""
    if not isinstance(text, str) or not text.strip():
        raise InvalidPolicy(f"{where}a rule must be a non-empty expression string", line=line)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise InvalidPolicy(f"{where}cannot parse rule {text!r}: {exc.msg}", line=line) from None
    compiler = _Compiler(text, where, line)
    test, kind = compiler.compile(tree.body)
    if kind != "bool":
        raise InvalidPolicy(
            f"{where}rule {text!r} must be a comparison (like 'accuracy >= 0.9'), not a number", line=line
        )
    sides = op = None
    body = tree.body
    if isinstance(body, ast.Compare) and len(body.ops) == 1:
        sides = (compiler.compile(body.left)[0], compiler.compile(body.comparators[0])[0])
        op = _SYMBOL[type(body.ops[0])]
    return Rule(
        text.strip(),
        line,
        frozenset(compiler.candidate),
        frozenset(compiler.production),
        test,
        sides,  # type: ignore[arg-type]
        op,
    )


class _Compiler:
    def __init__(self, text: str, where: str, line: int | None) -> None:
        self.text = text
        self.where = where
        self.line = line
        self.candidate: set[str] = set()
        self.production: set[str] = set()

    def fail(self, node: ast.AST, why: str) -> InvalidPolicy:
        snippet = ast.get_source_segment(self.text.strip(), node) or type(node).__name__
        return InvalidPolicy(f"{self.where}{why}: {snippet!r} in rule {self.text.strip()!r} (allowed: {_ALLOWED})", line=self.line)

    def compile(self, node: ast.AST) -> tuple[Callable[[Env], Any], str]:
        """(closure, "num" | "bool") for ``node``; refuses anything off the whitelist."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise self.fail(node, "only numbers may be written literally")
            value = float(node.value)
            return (lambda env: value), "num"
        if isinstance(node, ast.Name):
            if node.id in (CANDIDATE, PRODUCTION):
                raise self.fail(node, f"{node.id!r} needs a metric, like {node.id}.accuracy")
            return self._metric(CANDIDATE, node.id), "num"
        if isinstance(node, ast.Attribute):
            if not isinstance(node.value, ast.Name) or node.value.id not in (CANDIDATE, PRODUCTION):
                raise self.fail(node, "only production.<metric> and candidate.<metric> may use a dot")
            return self._metric(node.value.id, node.attr), "num"
        if isinstance(node, ast.UnaryOp):
            inner, kind = self.compile(node.operand)
            if isinstance(node.op, ast.Not):
                self._want(node.operand, kind, "bool", "'not' applies to a comparison")
                return (lambda env: not inner(env)), "bool"
            if isinstance(node.op, ast.USub | ast.UAdd):
                self._want(node.operand, kind, "num", "a sign applies to a number")
                if isinstance(node.op, ast.USub):
                    return (lambda env: -inner(env)), "num"
                return inner, "num"
            raise self.fail(node, "operator not allowed")
        if isinstance(node, ast.BinOp):
            fn = _ARITH.get(type(node.op))
            if fn is None:
                raise self.fail(node, "operator not allowed")
            left, lk = self.compile(node.left)
            right, rk = self.compile(node.right)
            self._want(node.left, lk, "num", "arithmetic needs numbers")
            self._want(node.right, rk, "num", "arithmetic needs numbers")
            if fn is operator.truediv:
                return (lambda env: _divide(left(env), right(env))), "num"
            return (lambda env: fn(left(env), right(env))), "num"
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            fns = []
            for part in parts:
                f, k = self.compile(part)
                self._want(part, k, "num", "comparisons compare numbers")
                fns.append(f)
            ops = []
            for o in node.ops:
                cmp = _COMPARE.get(type(o))
                if cmp is None:
                    raise self.fail(node, "comparison not allowed")
                ops.append(cmp)

            def compare(env: Env) -> bool:
                values = [f(env) for f in fns]
                return all(op(a, b) for op, a, b in zip(ops, values, values[1:]))

            return compare, "bool"
        if isinstance(node, ast.BoolOp):
            fns = []
            for v in node.values:
                f, k = self.compile(v)
                self._want(v, k, "bool", "'and'/'or' join comparisons")
                fns.append(f)
            if isinstance(node.op, ast.And):
                return (lambda env: all(f(env) for f in fns)), "bool"
            return (lambda env: any(f(env) for f in fns)), "bool"
        raise self.fail(node, "not allowed")

    def _want(self, node: ast.AST, kind: str, want: str, why: str) -> None:
        if kind != want:
            raise self.fail(node, why)

    def _metric(self, side: str, name: str) -> Callable[[Env], float]:
        (self.candidate if side == CANDIDATE else self.production).add(name)
        index = 0 if side == CANDIDATE else 1

        def read(env: Env) -> float:
            metrics = env[index]
            if metrics is None:
                raise Missing(side, name, "no production version")
            if name not in metrics:
                raise Missing(side, name)
            value = metrics[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise Missing(side, name, f"not a number ({value!r})")
            return float(value)

        return read


def _divide(a: float, b: float) -> float:
    if b == 0:
        raise ZeroDivisionError("division by zero")
    return a / b
