"""The seed's architecture, as a peer for the benchmark (test/bench/bench.py).

A small FastAPI service: GET /score/{account_id} reads the account's
feature row from PostgreSQL with psycopg2 (a prepared statement per
connection, one connection per worker thread), encodes it and predicts
with python3-xgboost (test/bench/peer_encode.py), the model loaded once
per worker process from icpml.models.  Run by bench.py as

    BENCH_DB=... BENCH_MODEL_VERSION=... PGHOST=... PGPORT=... \
    /usr/bin/python3 -m uvicorn peer_service:app --app-dir test/bench \
        --http httptools --loop uvloop --workers N --no-access-log

(httptools: the default h11 parser adds a 40 ms delayed-ACK stall per
request).  BENCH_THREADS (16) caps the worker threads, hence connections.
"""
import json
import os
import threading

import anyio
import psycopg2
from fastapi import FastAPI, HTTPException

from peer_encode import Scorer

app = FastAPI()
_local = threading.local()
_scorer = None


def _load():
    conn = psycopg2.connect(dbname=os.environ["BENCH_DB"])
    with conn.cursor() as cur:
        cur.execute("SELECT model, spec FROM icpml.models WHERE version = %s",
                    (int(os.environ["BENCH_MODEL_VERSION"]),))
        blob, spec = cur.fetchone()
    conn.close()
    if isinstance(spec, str):
        spec = json.loads(spec)
    return Scorer(bytes(blob), spec)


@app.on_event("startup")
async def startup():
    global _scorer
    _scorer = _load()
    anyio.to_thread.current_default_thread_limiter().total_tokens = int(os.environ.get("BENCH_THREADS", "16"))


def _cursor():
    cur = getattr(_local, "cur", None)
    if cur is None:
        conn = psycopg2.connect(dbname=os.environ["BENCH_DB"])
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("PREPARE score_row(bigint) AS " + _scorer.sql)
        _local.cur = cur
    return cur


@app.get("/score/{account_id}")
def score(account_id: int):
    cur = _cursor()
    cur.execute("EXECUTE score_row(%s)", (account_id,))
    row = cur.fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail="no such account")
    p = _scorer.predict(row)
    return {"account_id": account_id, "probability": p}
