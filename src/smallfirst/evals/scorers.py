"""Score a model's output for an :class:`~.items.Item`: one function per ``item.scorer``.

* ``code`` (HumanEval, MBPP): take the program out of the output, append the item's tests and
  run it in :mod:`.sandbox`; correct iff it exits 0 having reached the end of the tests.
  As in the reference harnesses (which ``exec()`` the program), the model's
  ``if __name__ == "__main__":`` block does not run, and, as EvalPlus's ``sanitize`` does
  before scoring, only the imports and the definitions the entry point reaches are kept:
  the model's own top-level example calls, prints and self-written tests (sometimes with
  wrong expected values) are dropped.
* ``math`` (GSM8K): read the final number and compare it numerically with the reference.
* ``choice`` (MMLU, ARC): read the chosen letter, or the option the model repeated.
* ``exact``: whitespace- and case-insensitive string equality.

Extraction is deliberately lenient about format (fences or none, "The answer is", ``####``,
``\\boxed{}``), because we score small chat models, not their formatting. It deliberately
does not ask a model to judge, and never guesses: a letter is read only from an explicit
pattern, so the article "A" in a sentence is not an answer. Running code never happens in
this process; that is the sandbox's job.
"""

from __future__ import annotations

import ast
import re
import secrets
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from smallfirst.errors import EvaluationError
from smallfirst.evals.items import Item, Score
from smallfirst.evals.sandbox import DEFAULT_LIMITS, Limits, run_python

MATH_TOLERANCE = Decimal("1e-6")

# Appended to a code program so that a program which exits 0 before its tests ran
# (``exit()``, ``os._exit(0)``) does not count as passing: the run must print this, with a
# fresh token each time so the model's code cannot print it on its own.
_SENTINEL = "smallfirst-tests-done-"

# Prepended to a code program: the reference harnesses exec() the program, so the model's
# ``if __name__ == "__main__":`` demo block (which may call input() on a closed stdin, or
# assert its own wrong examples) does not run; aliasing the module keeps pickle and
# dataclasses working under the new name.
_NOT_MAIN = (
    'import sys; sys.modules["__candidate__"] = sys.modules["__main__"]; '
    '__name__ = "__candidate__"; del sys\n'
)


def score(item: Item, output: str, limits: Limits | None = None) -> Score:
    """Score ``output`` (the model's reply) against ``item``; ``limits`` apply to code only."""
    if item.scorer == "code":
        return score_code(item, output, limits or DEFAULT_LIMITS)
    scorers: dict[str, Callable[[Item, str], Score]] = {
        "math": score_math,
        "choice": score_choice,
        "exact": score_exact,
    }
    scorer = scorers.get(item.scorer)
    if scorer is None:
        raise EvaluationError(f"unknown scorer {item.scorer!r} for item {item.item_id}")
    return scorer(item, output)


# --- code --------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
_PYTHON_TAGS = frozenset({"", "python", "py", "python3", "py3"})


def score_code(item: Item, output: str, limits: Limits = DEFAULT_LIMITS) -> Score:
    if not item.tests:
        return Score(correct=False, extracted=None, detail="item has no tests")
    code = extract_code(output, item.entry_point, item.code_prompt)
    if item.entry_point:
        # the tests may use more of the program than the entry point (MBPP 367's Node class)
        code = sanitize(code, item.entry_point, set(re.findall(r"[A-Za-z_]\w*", item.tests))) + "\n"
    token = _SENTINEL + secrets.token_hex(8)
    program = _NOT_MAIN + code + "\n\n" + item.tests
    if item.entry_point and "def check(" in item.tests:
        program += f"\n\ncheck({item.entry_point})\n"  # HumanEval style; MBPP is bare asserts
    program += f"\n\nprint({token!r}, flush=True)\n"
    result = run_python(program, limits)
    if result.passed and token in result.stdout:
        return Score(correct=True, extracted=code)
    if result.passed:
        return Score(correct=False, extracted=code, detail="exited before the tests finished")
    last_line = next((ln for ln in reversed(result.stderr.splitlines()) if ln.strip()), "")
    detail = f"{result.status}: {last_line}" if last_line else result.status
    return Score(correct=False, extracted=code, detail=detail)


def extract_code(output: str, entry_point: str | None, code_prompt: str | None) -> str:
    """The program in a model's output, completed from ``code_prompt`` where needed.

    Fenced blocks first (Python-tagged or untagged; any tag when there are no such): the
    first that defines ``entry_point``, else the longest. No fence: the output itself.
    A complete function gets the prompt's own top-level imports it lacks, since models
    copying a signature such as ``List[float]`` often drop ``from typing import List``.
    """
    blocks: list[tuple[str, str]] = [(m[1].lower(), m[2]) for m in _FENCE.finditer(output)]
    python_blocks = [body for tag, body in blocks if tag in _PYTHON_TAGS]
    candidates = python_blocks or [body for _tag, body in blocks]
    if candidates:
        defining = [b for b in candidates if entry_point and _defines(b, entry_point)]
        code = defining[0] if defining else max(candidates, key=len)
    else:
        # Keep the first line's indentation: a bare continuation of a HumanEval prompt
        # starts with the indented function body.
        code = re.sub(r"\A(?:[ \t]*\r?\n)+", "", output)
    code = code.rstrip()
    if entry_point and code_prompt and not _defines(code, entry_point):
        # The model continued the function body: put the given signature back in front.
        code = code_prompt + ("" if code_prompt.endswith("\n") else "\n") + code
    elif code_prompt:
        given = re.findall(r"^(?:import|from)[ \t]+\w.*$", code_prompt, re.MULTILINE)
        missing = [line for line in given if line not in code]
        if missing:
            code = "\n".join(missing) + "\n" + code
    return code + "\n"


def sanitize(
    code: str, entry_point: str, used_by_tests: set[str] | frozenset[str] = frozenset()
) -> str:
    """Keep imports and the top-level definitions ``entry_point`` (or the tests, which use
    the names ``used_by_tests``) reach; drop the rest.

    EvalPlus's rule (``evalplus.sanitize``), on Python's own parser: functions, classes and
    global assignments are kept when the entry point's body refers to them, directly or
    through other kept definitions; every other top-level statement (example calls,
    prints, loops, the model's own asserts) goes. Code that does not parse, or that does
    not define the entry point at top level, is returned unchanged, to fail or pass as is.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    definitions: dict[str, list[ast.stmt]] = {}
    for node in tree.body:
        for name in _defined_names(node):
            definitions.setdefault(name, []).append(node)
    if entry_point not in definitions:
        return code
    roots = {entry_point} | (used_by_tests & definitions.keys())
    wanted, queue = set(roots), list(roots)
    while queue:
        for node in definitions.get(queue.pop(), []):
            for ref in {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}:
                if ref in definitions and ref not in wanted:
                    wanted.add(ref)
                    queue.append(ref)
    lines = code.splitlines()
    dropped: set[int] = set()  # 0-based line numbers; blank lines and comments stay
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom) or wanted & set(_defined_names(node)):
            continue
        decorators = getattr(node, "decorator_list", [])
        start = min([node.lineno, *(d.lineno for d in decorators)])
        dropped.update(range(start - 1, node.end_lineno or node.lineno))
    return "\n".join(line for i, line in enumerate(lines) if i not in dropped).rstrip()


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _defines(code: str, name: str) -> bool:
    pattern = rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\("
    return re.search(pattern, code, re.MULTILINE) is not None


# --- math --------------------------------------------------------------------------------

# A number as written in prose: optional sign (not the hyphen of "3-4"), optional "$",
# thousands separators only in groups of three (so "1,2,3" is three numbers), decimals.
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-−])?(?:\$\s?)?"
    r"(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
)
_ANSWER_MARKERS = re.compile(
    r"####|(?i:\banswer\s*(?:is|:|=))|(?i:\bfinal\s+answer\b)|\\boxed\s*\{",
)


def score_math(item: Item, output: str) -> Score:
    reference = parse_number(item.reference)
    if reference is None:
        return Score(
            correct=False, extracted=None, detail=f"reference {item.reference!r} is not a number"
        )
    answer = extract_number(output)
    if answer is None:
        return Score(correct=False, extracted=None, detail="no answer found")
    correct = abs(answer - reference) <= MATH_TOLERANCE
    return Score(
        correct=correct,
        extracted=_format_number(answer),
        detail=None if correct else f"expected {_format_number(reference)}",
    )


def extract_number(output: str) -> Decimal | None:
    """The final answer: the first number after the last answer marker, else the last number."""
    for marker in reversed(list(_ANSWER_MARKERS.finditer(output))):
        after = output[marker.end() :]
        if marker.group().startswith("\\boxed"):
            after = after[: _closing_brace(after)]
        else:
            after = after.split("\n\n", 1)[0]  # the same paragraph, not the next question
        first = _NUMBER.search(after)
        if first:
            return _to_decimal(first)
    numbers = list(_NUMBER.finditer(output))
    return _to_decimal(numbers[-1]) if numbers else None


def parse_number(text: str) -> Decimal | None:
    match = _NUMBER.search(text.strip())
    return _to_decimal(match) if match else None


def _to_decimal(match: re.Match[str]) -> Decimal | None:
    try:
        value = Decimal(match.group("digits").replace(",", ""))
    except InvalidOperation:
        return None
    return -value if match.group("sign") else value


def _closing_brace(text: str) -> int:
    """Index of the brace closing an already-opened ``{`` (``\\boxed{\\frac{1}{2}}``)."""
    depth = 1
    for index, char in enumerate(text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return index
    return len(text)


def _format_number(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


# --- choice ------------------------------------------------------------------------------


def score_choice(item: Item, output: str) -> Score:
    letters = "ABCDEFGHIJ"[: len(item.choices)] if item.choices else "ABCDE"
    letter = extract_letter(output, letters, item.choices)
    if letter is None:
        return Score(correct=False, extracted=None, detail="no answer found")
    reference = item.reference.strip().upper()
    correct = letter == reference
    return Score(
        correct=correct, extracted=letter, detail=None if correct else f"expected {reference}"
    )


def extract_letter(
    output: str, letters: str = "ABCDE", choices: tuple[str, ...] = ()
) -> str | None:
    """The option letter a model chose, or None.

    In order of trust: the last explicit statement ("Answer: B", "the correct answer is
    (C)", ``\\boxed{A}``); the last "B is correct"; the last bold letter ("**D**", "**D)
    Paris**"); a letter opening the reply followed by a delimiter or nothing ("B", "B.",
    "(B)", "B) Paris"); exactly one line that is an option as "D. <option D's text>"; a last
    line that is only a letter; the reply being exactly one option's text. An unbracketed
    letter must be a capital not followed by a word character, so the article in "A cell
    is..." or "the answer is a gas" is never read as a choice.
    """
    upper = f"[{letters}]"
    lower = f"[{letters.lower()}]"
    bracketed = rf"\(\s*(?P<b1>{upper}|{lower})\s*\)|\[\s*(?P<b2>{upper}|{lower})\s*\]"
    # A bare capital must not be followed by a word character, nor by a lowercase word that
    # could follow an article ("Answer: A cell divides"); "B because ..." still counts.
    conjunction = r"(?:because|since|as|which|and|but|so|with|for|is|was|would|should)\b"
    bare = rf"(?P<u>{upper})(?![\w'’])(?![^\S\n]+(?!{conjunction})[a-z])"
    letter = f"(?:{bracketed}|{bare})"
    tiers = (
        (
            # "answer is", "answer would be", "answer to this question is", "Answer:"
            rf"(?i:\banswer\b)(?:[^\n.:]{{0,40}}?(?i:\b(?:is|be)\b))?"
            rf"\s*(?i:option|choice)?\s*[:=]?\s*\**\s*{letter}",
            rf"(?i:\b(?:correct|right|best)\s+(?:option|choice)\s+is)\s*:?\s*\**\s*{letter}",
            rf"\\boxed\s*\{{\s*(?:\\text\s*\{{\s*)?{letter}",
        ),
        (
            rf"(?<![\w'’]){letter}\s+(?i:is\s+(?:the\s+)?(?:correct|right|best)\b)",
            rf"(?i:\b(?:it\s+is|it's|i\s+(?:would\s+)?(?:choose|pick|select|go\s+with)))\s+\**{letter}",
        ),
        # Weakest: a reply may bold each option while going through them.
        (rf"\*\*\s*{letter}\s*(?:[.):][^*\n]*)?\*\*",),
    )
    for patterns in tiers:
        found = [
            (match.start(), _letter_of(match))
            for pattern in patterns
            for match in re.finditer(pattern, output)
        ]
        if found:
            return max(found)[1]

    text = output.strip()
    opening = re.match(rf"[*\s]*(?:{bracketed}|{bare}[^\S\n]*(?:[.):\]*]|\n|$))", text)
    if opening:
        return _letter_of(opening)
    # "The best conclusion is:\n\nD. A river used to run here": a line giving one option as
    # "letter. its text" (a reply that walks through several options names none)
    named = {
        option
        for line in text.splitlines()
        if (option := _option_line(line, letters, choices)) is not None
    }
    if len(named) == 1:
        return named.pop()
    last_line = text.splitlines()[-1].strip() if text else ""
    alone = re.fullmatch(rf"[*\s]*{letter}\s*[.):*]*", last_line)
    if alone:
        return _letter_of(alone)

    normalized = _normalize(text).rstrip(".")
    for index, choice in enumerate(choices[: len(letters)]):
        if normalized and normalized == _normalize(choice).rstrip("."):
            return letters[index]
    return None


def _option_line(line: str, letters: str, choices: tuple[str, ...]) -> str | None:
    """The letter of a line that is "X. <option X's text>" (or "X) ..."), else None."""
    match = re.fullmatch(rf"[*\s]*([{letters}])[.)]\**\s+(.+?)[*\s]*", line)
    if match is None:
        return None
    index = letters.index(match[1])
    if index >= len(choices):
        return None
    said, option = _normalize(match[2]).rstrip("."), _normalize(choices[index]).rstrip(".")
    return match[1] if said and option and (said == option or said.startswith(option)) else None


def _letter_of(match: re.Match[str]) -> str:
    for group in ("b1", "b2", "u"):
        value = match.group(group)
        if value:
            return value.upper()
    raise AssertionError("letter pattern matched without a letter")  # the regex forbids it


# --- exact -------------------------------------------------------------------------------


def score_exact(item: Item, output: str) -> Score:
    extracted = _normalize(output)
    correct = extracted in {_normalize(t) for t in (item.reference, *item.accepted)}
    return Score(correct=correct, extracted=extracted, detail=None if correct else "mismatch")


_DECORATION = str.maketrans("", "", "'\"`*")


def _normalize(text: str) -> str:
    """Case, runs of whitespace, quotes, backticks, bold markers and one final period are
    ignored: "**'foobar'**." is an exact "foobar"."""
    return " ".join(text.translate(_DECORATION).split()).casefold().removesuffix(".").strip()
