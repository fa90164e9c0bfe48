"""What an evaluation item is and what scoring one gives: the contract between loaders,
scorers and the runner.

Loaders (:mod:`.benchmarks`) turn a benchmark's data into :class:`Item` — the chat prompt
already written in that benchmark's convention, the gold answer and what the scorer needs.
Scorers (:mod:`.scorers`) turn a model's output into a :class:`Score`. Neither knows about
models, engines or storage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from smallfirst.types import Message, prompt_hash

ScorerName = Literal["code", "math", "choice", "exact"]


@dataclass(frozen=True, slots=True)
class Item:
    benchmark: str  # "humaneval", "mbpp", "gsm8k", "mmlu", "arc-challenge", "jsonl:<path>"
    item_id: str  # stable id from the data, e.g. "HumanEval/0"
    messages: tuple[Message, ...]  # the prompt, in the benchmark's published convention
    scorer: ScorerName
    reference: str  # gold answer: a letter, a number, or the canonical program
    subject: str | None = None  # for stratified subsets (MMLU subjects)
    choices: tuple[str, ...] = ()  # multiple choice options, in letter order
    tests: str | None = None  # code: the test program run against the model's code
    entry_point: str | None = None  # code: the function the tests call
    code_prompt: str | None = None  # code: the given signature/docstring (HumanEval)
    max_tokens: int = 512  # generation budget for this item
    # exact: other replies that count as the reference, e.g. the whole sentence completed
    accepted: tuple[str, ...] = ()
    # The start of the model's reply, written for it (EvalPlus's convention for chat models);
    # stored outputs and scoring see it followed by what the model generated.
    assistant_prefix: str | None = None
    stop: tuple[str, ...] = ()  # stop sequences (EvalPlus stops a prefilled fence at "\n```")

    def prompt_hash(self) -> str:
        """What the model is asked, pre-filled reply included: the store's resume key."""
        return prompt_hash(self.messages, self.assistant_prefix)


def without_prefill(item: Item) -> Item:
    """The item as a chat API that cannot start the reply can be asked it.

    The OpenAI API has no way to prefill the assistant turn, so for a remote endpoint the
    prefix is left out, and with it the stop sequences, which belong to the prefilled
    convention ("\n```" would otherwise cut a reply at its *opening* fence). EvalPlus's own
    OpenAI decoder does the same. An item without a prefix is returned as it is.
    """
    if item.assistant_prefix is None:
        return item
    return replace(item, assistant_prefix=None, stop=())


@dataclass(frozen=True, slots=True)
class Score:
    correct: bool
    extracted: str | None  # what the scorer read from the output (answer, program)
    detail: str | None = None  # why it failed: "timeout", an exception, "no answer found"
