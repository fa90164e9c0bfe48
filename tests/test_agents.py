"""An agent framework end to end: the OpenAI Agents SDK runs a two-tool agent on the gateway.

The SDK (``openai-agents``, a dev dependency) drives Qwen2.5-Coder-1.5B through its Chat
Completions model (``OpenAIChatCompletionsModel`` on an ``AsyncOpenAI`` client whose
``base_url`` is the gateway), greedy, with tracing off (no network): it offers two tools,
``get_weather`` and ``convert_temperature``, runs the calls the model makes, sends the
results back and stops at the model's text answer. The tools record their calls, so the
tests see that the model called them with the right arguments, and the fixed, unusual
weather (31 °C, thunderstorms; 87.8 °F once converted) shows that the answer comes from
the tools' results, not from the model's knowledge.

The 1.5B follows its instructions closely: told only "Use the tools", it chains both calls
and then answers with nothing (its first token is end-of-turn, seen in llama.cpp directly,
without the gateway); told that ``get_weather`` gives Celsius and when to convert, it
chains both and answers. The instructions below are that clear prompt, kept as is.

The request bodies the SDK sends are recorded (a hook on the openai client's httpx), so a
test also shows which parameters the gateway accepted. Both in-process engines are run.
Marked slow: it loads the 1.5B. The tool calling itself, with the openai client, is tested
in tests/server/test_tools.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from smallfirst.settings import Settings
from tests.conftest import LiveServer, require_models

if TYPE_CHECKING:
    from agents import FunctionTool

# The SDK is imported by the tests that run it, not at collection: its 1.5 s would count
# in the fast lane, which collects this module too.

pytestmark = pytest.mark.slow

QWEN_15 = "qwen2.5-coder-1.5b-instruct"
INSTRUCTIONS = (
    "You answer questions about the weather. Use the tools. get_weather gives Celsius: when "
    "the user asks for Fahrenheit, call convert_temperature with it before you answer."
)
ASK_FAHRENHEIT = "What is the weather in Reykjavik right now, in Fahrenheit?"
MAX_TURNS = 4  # two calls and the answer, and one spare


@dataclass
class Run:
    """What one agent run did: the tools' calls, the bodies sent, the answer."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    answer: str = ""
    requests: int = 0
    input_tokens: int = 0

    def tools(self) -> list[FunctionTool]:
        from agents import function_tool

        calls = self.calls

        @function_tool
        def get_weather(city: str) -> str:
            """The current weather in a city.

            Args:
                city: the city's name.
            """
            calls.append(("get_weather", city))
            return json.dumps({"city": city, "temperature_c": 31, "sky": "thunderstorms"})

        @function_tool
        def convert_temperature(celsius: float) -> str:
            """Convert a temperature from Celsius to Fahrenheit.

            Args:
                celsius: the temperature in degrees Celsius.
            """
            calls.append(("convert_temperature", celsius))
            return json.dumps({"fahrenheit": round(celsius * 9 / 5 + 32, 1)})

        return [get_weather, convert_temperature]


@pytest.fixture(scope="module", params=[True, False], ids=["batched", "one-at-a-time"])
def server(
    request: pytest.FixtureRequest, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    require_models(settings, QWEN_15)
    over = {
        "data_dir": tmp_path_factory.mktemp("agents"),
        "n_ctx": 4096,
        "engine_batching": request.param,
        # The instructions were fitted to the 1.5B's greedy path without flash attention. With
        # it (the default since 2026-12-03) the model still chains both calls right but ends
        # with "This is the temperature in Fahrenheit.": the model's wording, not the tool wire
        # these tests check, so they keep the numerics they were fitted to.
        "flash_attention": False,
    }
    with LiveServer(settings.model_copy(update=over)) as live:
        yield live


async def _agent_run(
    server: LiveServer,
    question: str,
    *,
    instructions: str = INSTRUCTIONS,
    stream: bool = False,
    **settings: Any,
) -> Run:
    """One run of the two-tool agent, greedy, and ``settings`` (``ModelSettings`` fields)."""
    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, RunConfig, Runner
    from openai import AsyncOpenAI, DefaultAsyncHttpxClient

    run = Run()

    async def record(request: Any) -> None:  # the openai client's httpx request
        run.bodies.append(json.loads(request.content))

    http = DefaultAsyncHttpxClient(event_hooks={"request": [record]}, timeout=300)
    client = AsyncOpenAI(
        base_url=server.url + "/v1", api_key="unused", max_retries=0, http_client=http
    )
    agent = Agent(
        name="weather",
        instructions=instructions,
        model=OpenAIChatCompletionsModel(model=QWEN_15, openai_client=client),
        model_settings=ModelSettings(temperature=0, max_tokens=200, **settings),
        tools=list(run.tools()),
    )
    config = RunConfig(tracing_disabled=True)  # traces would go to OpenAI's servers
    async with http:
        if stream:
            streamed = Runner.run_streamed(agent, question, max_turns=MAX_TURNS, run_config=config)
            async for _ in streamed.stream_events():
                pass
            result: Any = streamed
        else:
            result = await Runner.run(agent, question, max_turns=MAX_TURNS, run_config=config)
    run.answer = str(result.final_output)
    run.requests = result.context_wrapper.usage.requests
    run.input_tokens = result.context_wrapper.usage.input_tokens
    return run


def agent_run(server: LiveServer, question: str, **kw: Any) -> Run:
    return asyncio.run(_agent_run(server, question, **kw))


def test_the_agent_chains_both_tools_and_answers_from_their_results(server: LiveServer) -> None:
    run = agent_run(server, ASK_FAHRENHEIT)
    # the weather first, then its temperature converted: the second call's argument is
    # the first call's result
    assert run.calls == [("get_weather", "Reykjavik"), ("convert_temperature", 31)], run
    assert "87.8" in run.answer and "thunder" in run.answer.lower(), run.answer
    # three model turns: two calls, one answer; both tools offered in each
    assert len(run.bodies) == 3 and run.requests == 3
    for body in run.bodies:
        assert body["model"] == QWEN_15 and body["temperature"] == 0
        assert [t["function"]["name"] for t in body["tools"]] == [
            "get_weather",
            "convert_temperature",
        ]
    # the history the SDK sends back: assistant tool_calls, then role tool with the result
    last = run.bodies[-1]["messages"]
    assert [m["role"] for m in last[-4:]] == ["assistant", "tool", "assistant", "tool"]
    assert json.loads(last[-1]["content"]) == {"fahrenheit": 87.8}


def test_a_streamed_agent_with_the_settings_it_sends_openai(server: LiveServer) -> None:
    """Streamed, with what the SDK sends OpenAI itself by default (``store``,
    ``stream_options`` usage) and other settings agents set: accepted, and the same run."""
    run = agent_run(
        server,
        ASK_FAHRENHEIT,
        stream=True,
        include_usage=True,
        store=True,
        metadata={"test": "agents"},
        parallel_tool_calls=False,
        top_p=1.0,
    )
    sent = run.bodies[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["store"] is True and sent["metadata"] == {"test": "agents"}
    assert sent["parallel_tool_calls"] is False
    assert run.calls == [("get_weather", "Reykjavik"), ("convert_temperature", 31)], run
    assert "87.8" in run.answer and "thunder" in run.answer.lower(), run.answer
    # the usage chunk the gateway streams reached the SDK's accounting
    assert run.requests == 3 and run.input_tokens > 3 * 300


def test_a_call_in_the_doubled_braces_of_the_template_is_a_call(server: LiveServer) -> None:
    """With these instructions the 1.5B writes its call without tags and in the doubled
    braces of Qwen2.5's template example (``{{"name": ...}}``); before the gateway read
    that form, the agent ended at once with the call as its answer and no tool run."""
    if not server.settings.engine_batching:
        # no lazy grammar there (README): unconstrained, the 1.5B closes this call with one
        # brace too many, and a call that is not JSON stays text rather than being guessed at
        pytest.skip("the one-at-a-time engine does not hold an auto call to its grammar")
    instructions = (
        "You answer questions about the weather. Use the tools, then answer the user in "
        "one sentence that gives the numbers."
    )
    run = agent_run(server, "What is the weather in Lisbon?", instructions=instructions)
    assert run.calls == [("get_weather", "Lisbon")], run
    assert "31" in run.answer and "thunder" in run.answer.lower(), run.answer
    assert "{" not in run.answer
