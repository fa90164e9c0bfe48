"""The schema of each backend as numbered migrations, applied in order when a store opens.

SQLite's list is the history of the schema since the first release (a database made by any
earlier smallfirst is brought up to date; ``PRAGMA user_version`` counts the scripts run).
PostgreSQL support began with the schema as it then stood, so its first migration makes all
of it at once, in PostgreSQL's types: ``DOUBLE PRECISION`` for SQLite's ``REAL`` (whose
PostgreSQL namesake is single precision), identity columns for ``AUTOINCREMENT``. A change
to the schema from now on is one new script in each list, the same columns and indexes in
both.

This module holds SQL text only; the backends run it.
"""

from __future__ import annotations

__all__ = ["POSTGRES_MIGRATIONS", "SQLITE_MIGRATIONS"]

SQLITE_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE receipts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        endpoint TEXT NOT NULL,
        model TEXT NOT NULL,
        tier TEXT NOT NULL,
        engine TEXT NOT NULL,
        stream INTEGER NOT NULL,
        status TEXT NOT NULL,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        duration_s REAL NOT NULL,
        ttft_s REAL,
        energy_j REAL,
        energy_method TEXT NOT NULL,
        energy_scope TEXT,
        energy_source TEXT,
        energy_note TEXT,
        cpu_s REAL,
        cost_usd REAL,
        cost_method TEXT,
        co2_g REAL,
        grid_g_per_kwh REAL NOT NULL,
        pue REAL NOT NULL,
        carbon_source TEXT NOT NULL,
        baseline_model TEXT,
        baseline_energy_j REAL,
        baseline_cost_usd REAL,
        baseline_co2_g REAL,
        baseline_source TEXT,
        saved_energy_j REAL,
        saved_cost_usd REAL,
        saved_co2_g REAL,
        policy TEXT
    );
    CREATE INDEX receipts_created ON receipts (created_at);
    CREATE INDEX receipts_model_created ON receipts (model, created_at);
    """,
    """
    CREATE TABLE eval_runs (
        run_id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        config TEXT NOT NULL
    );
    CREATE TABLE eval_results (
        run_id TEXT NOT NULL,
        benchmark TEXT NOT NULL,
        item_id TEXT NOT NULL,
        model TEXT NOT NULL,
        subject TEXT,
        prompt_hash TEXT NOT NULL,
        correct INTEGER NOT NULL,
        extracted TEXT,
        detail TEXT,
        output TEXT NOT NULL,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        duration_s REAL NOT NULL,
        energy_j REAL,
        energy_method TEXT NOT NULL,
        cost_usd REAL,
        co2_g REAL,
        created_at REAL NOT NULL,
        PRIMARY KEY (run_id, benchmark, item_id, model)
    );
    """,
    # The summary's and the dashboard's aggregates: a covering index, so GROUP BY model, tier
    # walks it in order with no sort and no table lookups (bench/dashboard_endpoints.py).
    """
    CREATE INDEX receipts_model_tier_cover ON receipts (
        model, tier, created_at, status, prompt_tokens, completion_tokens,
        energy_j, energy_method, cost_usd, co2_g,
        baseline_energy_j, baseline_cost_usd, baseline_co2_g,
        saved_energy_j, saved_cost_usd, saved_co2_g, duration_s
    );
    """,
    """
    ALTER TABLE receipts ADD COLUMN predicted_quality REAL;
    ALTER TABLE receipts ADD COLUMN route TEXT;
    """,
    # API keys with their budgets (issue #15, store/keys.py and store/budgets.py); receipts
    # say which key asked. Only a keyed hash of a secret is kept, never the secret.
    """
    CREATE TABLE keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked_at REAL,
        admin INTEGER NOT NULL DEFAULT 0,
        models TEXT,
        rpm INTEGER,
        tpm INTEGER,
        budget_window TEXT NOT NULL DEFAULT 'total',
        budget_usd REAL,
        budget_wh REAL,
        budget_co2_g REAL,
        window_start REAL NOT NULL DEFAULT 0,
        spent_usd REAL NOT NULL DEFAULT 0,
        spent_wh REAL NOT NULL DEFAULT 0,
        spent_co2_g REAL NOT NULL DEFAULT 0,
        reserved_usd REAL NOT NULL DEFAULT 0,
        reserved_wh REAL NOT NULL DEFAULT 0,
        reserved_co2_g REAL NOT NULL DEFAULT 0
    );
    -- open reservations, so that one a killed gateway never settled is given back after
    -- its time to live (store/budgets.py)
    CREATE TABLE reservations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key_id TEXT NOT NULL,
        usd REAL NOT NULL,
        wh REAL NOT NULL,
        co2_g REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX reservations_key_expires ON reservations (key_id, expires_at);
    ALTER TABLE receipts ADD COLUMN key_id TEXT;
    ALTER TABLE receipts ADD COLUMN key_name TEXT;
    CREATE INDEX receipts_key_created ON receipts (key_id, created_at);
    """,
    # Issue 14: the savings rule and the response cache on receipts; work billed to no
    # request (loading a model's weights) as overhead rows.
    """
    ALTER TABLE receipts ADD COLUMN baseline_rule TEXT;
    ALTER TABLE receipts ADD COLUMN cache TEXT;
    ALTER TABLE receipts ADD COLUMN cache_of TEXT;
    CREATE TABLE overhead (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        kind TEXT NOT NULL,
        model TEXT NOT NULL,
        duration_s REAL NOT NULL,
        energy_j REAL,
        energy_method TEXT NOT NULL,
        cpu_s REAL,
        cost_usd REAL,
        co2_g REAL
    );
    CREATE INDEX overhead_created ON overhead (created_at);
    """,
    # Issue 18: requests and tokens per minute counted in the database, shared by the
    # gateways on it (store/ratelimits.py)
    """
    CREATE TABLE rate_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key_id TEXT NOT NULL,
        at REAL NOT NULL,
        tokens INTEGER NOT NULL
    );
    CREATE INDEX rate_events_key_at ON rate_events (key_id, at);
    """,
    # Issue 19: the Files and Batch API (store/files.py, store/batches.py). A file's
    # contents live in the data directory; its row is metadata. Each input line of a batch
    # has a row: claimed by one runner at a time under a lease, finished once, its output
    # line kept with its status in the same statement.
    """
    CREATE TABLE files (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        key_id TEXT,
        filename TEXT NOT NULL,
        purpose TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created_at REAL NOT NULL,
        lines INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX files_key ON files (key_id, seq);
    CREATE TABLE batches (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        key_id TEXT,
        endpoint TEXT NOT NULL,
        input_file_id TEXT NOT NULL,
        completion_window TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        in_progress_at REAL,
        finalizing_at REAL,
        completed_at REAL,
        failed_at REAL,
        expired_at REAL,
        cancelling_at REAL,
        cancelled_at REAL,
        output_file_id TEXT,
        error_file_id TEXT,
        errors TEXT,
        metadata TEXT,
        plan TEXT
    );
    CREATE INDEX batches_key ON batches (key_id, seq);
    CREATE INDEX batches_status ON batches (status);
    CREATE TABLE batch_lines (
        batch_id TEXT NOT NULL,
        line INTEGER NOT NULL,
        custom_id TEXT NOT NULL,
        byte_offset INTEGER NOT NULL,
        byte_length INTEGER NOT NULL,
        status TEXT NOT NULL,
        claim TEXT,
        claimed_until REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        output TEXT,
        receipt_id TEXT,
        grid_g_per_kwh REAL,
        co2_g REAL,
        energy_j REAL,
        finished_at REAL,
        PRIMARY KEY (batch_id, line)
    );
    CREATE INDEX batch_lines_status ON batch_lines (batch_id, status);
    """,
    # Issue 19: a batch's token usage (OpenAI's ``Batch.usage``), counted up in the same
    # transaction that finishes a line, so a line is counted once and a GET reads one row.
    """
    ALTER TABLE batches ADD COLUMN input_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0;
    """,
    # Issue 19: expiring files (OpenAI's expires_after); a batch's output_expires_after, in
    # seconds from each output file's creation. NULL: never expires.
    """
    ALTER TABLE files ADD COLUMN expires_at REAL;
    CREATE INDEX files_expires ON files (expires_at);
    ALTER TABLE batches ADD COLUMN output_expires_s REAL;
    """,
)


POSTGRES_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE receipts (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL,
        endpoint TEXT NOT NULL,
        model TEXT NOT NULL,
        tier TEXT NOT NULL,
        engine TEXT NOT NULL,
        stream INTEGER NOT NULL,
        status TEXT NOT NULL,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        duration_s DOUBLE PRECISION NOT NULL,
        ttft_s DOUBLE PRECISION,
        energy_j DOUBLE PRECISION,
        energy_method TEXT NOT NULL,
        energy_scope TEXT,
        energy_source TEXT,
        energy_note TEXT,
        cpu_s DOUBLE PRECISION,
        cost_usd DOUBLE PRECISION,
        cost_method TEXT,
        co2_g DOUBLE PRECISION,
        grid_g_per_kwh DOUBLE PRECISION NOT NULL,
        pue DOUBLE PRECISION NOT NULL,
        carbon_source TEXT NOT NULL,
        baseline_model TEXT,
        baseline_energy_j DOUBLE PRECISION,
        baseline_cost_usd DOUBLE PRECISION,
        baseline_co2_g DOUBLE PRECISION,
        baseline_source TEXT,
        saved_energy_j DOUBLE PRECISION,
        saved_cost_usd DOUBLE PRECISION,
        saved_co2_g DOUBLE PRECISION,
        policy TEXT,
        predicted_quality DOUBLE PRECISION,
        route TEXT,
        key_id TEXT,
        key_name TEXT,
        baseline_rule TEXT,
        cache TEXT,
        cache_of TEXT
    );
    CREATE INDEX receipts_created ON receipts (created_at);
    CREATE INDEX receipts_model_created ON receipts (model, created_at);
    CREATE INDEX receipts_key_created ON receipts (key_id, created_at);
    CREATE TABLE eval_runs (
        run_id TEXT PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        config TEXT NOT NULL
    );
    CREATE TABLE eval_results (
        run_id TEXT NOT NULL,
        benchmark TEXT NOT NULL,
        item_id TEXT NOT NULL,
        model TEXT NOT NULL,
        subject TEXT,
        prompt_hash TEXT NOT NULL,
        correct INTEGER NOT NULL,
        extracted TEXT,
        detail TEXT,
        output TEXT NOT NULL,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        duration_s DOUBLE PRECISION NOT NULL,
        energy_j DOUBLE PRECISION,
        energy_method TEXT NOT NULL,
        cost_usd DOUBLE PRECISION,
        co2_g DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, benchmark, item_id, model)
    );
    CREATE TABLE keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION,
        revoked_at DOUBLE PRECISION,
        admin INTEGER NOT NULL DEFAULT 0,
        models TEXT,
        rpm INTEGER,
        tpm INTEGER,
        budget_window TEXT NOT NULL DEFAULT 'total',
        budget_usd DOUBLE PRECISION,
        budget_wh DOUBLE PRECISION,
        budget_co2_g DOUBLE PRECISION,
        window_start DOUBLE PRECISION NOT NULL DEFAULT 0,
        spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        spent_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
        spent_co2_g DOUBLE PRECISION NOT NULL DEFAULT 0,
        reserved_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        reserved_wh DOUBLE PRECISION NOT NULL DEFAULT 0,
        reserved_co2_g DOUBLE PRECISION NOT NULL DEFAULT 0
    );
    CREATE TABLE reservations (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        key_id TEXT NOT NULL,
        usd DOUBLE PRECISION NOT NULL,
        wh DOUBLE PRECISION NOT NULL,
        co2_g DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX reservations_key_expires ON reservations (key_id, expires_at);
    CREATE INDEX reservations_expires ON reservations (expires_at);
    CREATE TABLE overhead (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        model TEXT NOT NULL,
        duration_s DOUBLE PRECISION NOT NULL,
        energy_j DOUBLE PRECISION,
        energy_method TEXT NOT NULL,
        cpu_s DOUBLE PRECISION,
        cost_usd DOUBLE PRECISION,
        co2_g DOUBLE PRECISION
    );
    CREATE INDEX overhead_created ON overhead (created_at);
    """,
    """
    CREATE TABLE rate_events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        key_id TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        tokens INTEGER NOT NULL
    );
    CREATE INDEX rate_events_key_at ON rate_events (key_id, at);
    """,
    # Issue 19: the Files and Batch API (store/files.py, store/batches.py). A file's
    # contents live in the data directory; its row is metadata. Each input line of a batch
    # has a row: claimed by one runner at a time under a lease, finished once, its output
    # line kept with its status in the same statement.
    """
    CREATE TABLE files (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        key_id TEXT,
        filename TEXT NOT NULL,
        purpose TEXT NOT NULL,
        bytes BIGINT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        lines BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX files_key ON files (key_id, seq);
    CREATE TABLE batches (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        key_id TEXT,
        endpoint TEXT NOT NULL,
        input_file_id TEXT NOT NULL,
        completion_window TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        in_progress_at DOUBLE PRECISION,
        finalizing_at DOUBLE PRECISION,
        completed_at DOUBLE PRECISION,
        failed_at DOUBLE PRECISION,
        expired_at DOUBLE PRECISION,
        cancelling_at DOUBLE PRECISION,
        cancelled_at DOUBLE PRECISION,
        output_file_id TEXT,
        error_file_id TEXT,
        errors TEXT,
        metadata TEXT,
        plan TEXT
    );
    CREATE INDEX batches_key ON batches (key_id, seq);
    CREATE INDEX batches_status ON batches (status);
    CREATE TABLE batch_lines (
        batch_id TEXT NOT NULL,
        line BIGINT NOT NULL,
        custom_id TEXT NOT NULL,
        byte_offset BIGINT NOT NULL,
        byte_length BIGINT NOT NULL,
        status TEXT NOT NULL,
        claim TEXT,
        claimed_until DOUBLE PRECISION,
        attempts INTEGER NOT NULL DEFAULT 0,
        output TEXT,
        receipt_id TEXT,
        grid_g_per_kwh DOUBLE PRECISION,
        co2_g DOUBLE PRECISION,
        energy_j DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        PRIMARY KEY (batch_id, line)
    );
    CREATE INDEX batch_lines_status ON batch_lines (batch_id, status);
    """,
    # Issue 19: a batch's token usage (as SQLite's)
    """
    ALTER TABLE batches ADD COLUMN input_tokens BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN cached_tokens BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN output_tokens BIGINT NOT NULL DEFAULT 0;
    """,
    # Issue 19: expiring files (as SQLite's)
    """
    ALTER TABLE files ADD COLUMN expires_at DOUBLE PRECISION;
    CREATE INDEX files_expires ON files (expires_at);
    ALTER TABLE batches ADD COLUMN output_expires_s DOUBLE PRECISION;
    """,
)
