"""Two gateways on one PostgreSQL database (replicas) run one batch together: each line is
claimed by one of them, answered once, and the output holds every line exactly once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import psycopg
import pytest

from smallfirst.pg_cluster import Cluster, ClusterError
from smallfirst.settings import Settings
from tests.conftest import LiveServer
from tests.server.test_batches_api import chat_line, lines_of, upload, wait_for
from tests.store.conftest import fresh_database

LINES = 16


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    try:
        with Cluster() as cluster:
            yield fresh_database(cluster)
    except ClusterError as exc:
        pytest.fail(f"cannot start the test PostgreSQL cluster: {exc}", pytrace=False)


def test_two_replicas_share_a_batch_and_answer_each_line_once(
    settings: Settings, tmp_path: Path, database: str
) -> None:
    # the files' bytes live in a data directory the replicas share (docs/carbon-aware-batches.md)
    shared = settings.model_copy(
        update={
            "data_dir": tmp_path,
            "database_url": database,
            "batch_tick_s": 0.05,
            "batch_max_in_flight": 2,
        }
    )
    with LiveServer(shared) as a, LiveServer(shared) as b:
        client_a = openai.OpenAI(base_url=a.url + "/v1", api_key="unused", max_retries=0)
        client_b = openai.OpenAI(base_url=b.url + "/v1", api_key="unused", max_retries=0)
        items = [chat_line(f"r{i}", f"Name a fruit, {i}.") for i in range(LINES)]
        batch = client_a.batches.create(
            input_file_id=upload(client_a, items),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        done = wait_for(client_b, batch.id, ("completed",))  # seen from the other replica
        out = lines_of(client_b, done.output_file_id)
        assert sorted(o["custom_id"] for o in out) == sorted(i["custom_id"] for i in items)
        receipts = {o["response"]["body"]["smallfirst"]["receipt_id"] for o in out}
        assert len(receipts) == LINES
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT claim, attempts FROM batch_lines WHERE batch_id = %s", (batch.id,)
        ).fetchall()
    assert {attempts for _, attempts in rows} == {1}  # no line ran twice
    assert len({claim for claim, _ in rows}) == 2, json.dumps(rows)  # both replicas worked
