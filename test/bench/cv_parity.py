#!/usr/bin/python3
"""Cross-validation parity of icpml.train_icp_model() with python3-xgboost.

Trains a model with icpml.train_icp_model(deploy => 'never'), then redoes
the same k-fold cross-validation and refit in Python with Debian's
python3-xgboost: the same labelled rows, the same folds (icpml.cv_folds),
the same features (re-encoded here from the stored spec jsonb, not by
icpml's C encoder) and the same XGBoost parameters (from the stored params).
Prints both mean CV ROC AUCs, their difference (target |diff| <= 0.01) and
the train + k-fold CV wall time of both sides (the best of --repeat runs
each, alternating, so that a busy machine disturbs both alike).

    PGHOST=... PGPORT=... PGDATABASE=... /usr/bin/python3 test/bench/cv_parity.py \
        [--relation R] [--key K] [--label L] [--folds 5] [--rounds 100] [--seed 42]
        [--nthread 1] [--params '{"max_depth": 4}'] [--repeat 3]

Needs python3-xgboost, python3-numpy, python3-psycopg2 (apt) and a role
that may run icpml.train_icp_model and read icpml.models.  The model it
trains is deleted again at the end (--keep keeps it).
"""
import argparse
import json
import re
import sys
import time

import numpy as np
import psycopg2
import xgboost as xgb
from psycopg2 import sql


def roc_auc(y, p):
    """Mann-Whitney ROC AUC, ties at average rank (as icpml's metrics.c)."""
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    ranks = np.empty(len(p), dtype=np.float64)
    i = 0
    n = len(p)
    while i < n:
        j = i
        while j + 1 < n and ps[j + 1] == ps[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    npos = float(y.sum())
    nneg = n - npos
    return (ranks[y == 1].sum() - npos * (npos + 1) / 2.0) / (npos * nneg)


def encode(rows, spec, now):
    """Encode fetched rows (key, label, one value per spec column) per the spec."""
    nfeat = len(spec["features"])
    x = np.full((len(rows), nfeat), np.nan, dtype=np.float32)
    f = 0
    for c, col in enumerate(spec["columns"]):
        kind = col["kind"]
        vals = [r[2 + c] for r in rows]
        if kind == "numeric":
            for i, v in enumerate(vals):
                if v is not None and np.isfinite(float(v)):
                    x[i, f] = float(v)
            f += 1
        elif kind == "boolean":
            for i, v in enumerate(vals):
                if v is not None:
                    x[i, f] = 1.0 if v else 0.0
            f += 1
        elif kind == "categorical":
            index = {lv: k for k, lv in enumerate(col["levels"])}
            for i, v in enumerate(vals):
                if v is not None and v in index:
                    x[i, f] = index[v]
            f += 1
        elif kind == "age_days":
            # the value is read as timestamptz; infinite ones come back as strings
            for i, v in enumerate(vals):
                if v is not None and not isinstance(v, str):
                    x[i, f] = (now - v).total_seconds() / 86400.0
            f += 1
        elif kind == "tags":
            index = {lv: k for k, lv in enumerate(col["levels"])}
            nl = len(col["levels"])
            for i, v in enumerate(vals):
                if v is None:
                    continue
                x[i, f:f + nl] = 0.0
                for t in v:
                    if t is None:
                        continue
                    t = "".join(ch.lower() if "A" <= ch <= "Z" else ch for ch in t)
                    if t in index:
                        x[i, f + index[t]] = 1.0
            f += nl
        else:
            raise SystemExit("unknown column kind %s" % kind)
    assert f == nfeat
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--relation")
    ap.add_argument("--key")
    ap.add_argument("--label", default="is_fit")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--nthread", type=int, default=1)
    ap.add_argument("--params", default="{}")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()

    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SET icpml.nthread = %s", (a.nthread,))
    # train_icp_model reports its phases (reading, CV, refit) at DEBUG1
    cur.execute("SET client_min_messages = debug1")

    # 1. icpml: train + CV + refit + store, timed by the function itself
    def train_icpml():
        t0 = time.perf_counter()
        cur.execute(
            "SELECT version, n_rows, n_positive, cv_roc_auc, rules_cv_roc_auc, seconds"
            " FROM icpml.train_icp_model(relation => %s, key_column => %s, label_column => %s,"
            " folds => %s, n_rounds => %s, params => %s, seed => %s, deploy => 'never')",
            (a.relation, a.key, a.label, a.folds, a.rounds, a.params, a.seed))
        row = cur.fetchone() + (time.perf_counter() - t0,)
        phases = [m for m in conn.notices if "icpml training:" in m]
        del conn.notices[:]
        read = re.search(r"reading ([0-9.]+) s", phases[-1]) if phases else None
        return row + (float(read.group(1)) if read else float("nan"),)

    version, n_rows, n_pos, icpml_auc, rules_auc, icpml_seconds, icpml_wall, icpml_read = train_icpml()
    cur.execute("SELECT spec, params, key_column, label_column FROM icpml.models WHERE version = %s",
                (version,))
    spec, params, key, label = cur.fetchone()

    # 2. the same rows, folds and raw values, re-encoded here
    t0 = time.perf_counter()
    cols = []
    for col in spec["columns"]:
        ident = sql.SQL("f.") + sql.Identifier(col["name"])
        cast = {"numeric": "float8", "boolean": "bool", "categorical": "text",
                "age_days": "timestamptz", "tags": "text[]"}[col["kind"]]
        if col["kind"] == "age_days":
            # psycopg2 cannot represent infinite timestamps: send them as text
            cols.append(sql.SQL("CASE WHEN pg_catalog.isfinite({0}::pg_catalog.timestamptz)"
                                " THEN {0}::pg_catalog.timestamptz END").format(ident))
        else:
            cols.append(ident + sql.SQL("::pg_catalog." + cast))
    label_expr = sql.SQL("f.") + sql.Identifier(label)
    q = sql.SQL("SELECT f.{key}::pg_catalog.int8, ({label})::int::float8, {cols}"
                " FROM {rel} AS f WHERE f.{key} IS NOT NULL AND f.{label_id} IS NOT NULL"
                " ORDER BY 1").format(
        key=sql.Identifier(key), label=label_expr, cols=sql.SQL(", ").join(cols),
        rel=sql.SQL(spec["relation"]), label_id=sql.Identifier(label))
    cur.execute("SELECT pg_catalog.now()")
    now = cur.fetchone()[0]
    cur.execute(q)
    rows = cur.fetchall()
    cur.execute("SELECT key, fold FROM icpml.cv_folds(relation => %s, key_column => %s,"
                " label_column => %s, folds => %s, seed => %s)",
                (spec["relation"], key, label, a.folds, a.seed))
    fold_of = dict(cur.fetchall())
    fetch_seconds = time.perf_counter() - t0

    x = encode(rows, spec, now)
    y = np.array([r[1] for r in rows], dtype=np.float32)
    fold = np.array([fold_of[r[0]] for r in rows])
    types = [f["type"] for f in spec["features"]]
    assert len(rows) == n_rows, (len(rows), n_rows)

    booster_params = {k: v for k, v in params.items()
                      if k not in ("n_rounds", "folds", "search")}
    booster_params["nthread"] = a.nthread
    rounds = params["n_rounds"]

    # 3. python: k-fold CV + refit, the same work train_icp_model does
    def train_python():
        t0 = time.perf_counter()
        aucs = []
        for k in range(1, a.folds + 1):
            tr, te = fold != k, fold == k
            dtr = xgb.DMatrix(x[tr], label=y[tr], missing=np.nan, feature_types=types,
                              enable_categorical=True, nthread=a.nthread)
            dte = xgb.DMatrix(x[te], label=y[te], missing=np.nan, feature_types=types,
                              enable_categorical=True, nthread=a.nthread)
            b = xgb.train(booster_params, dtr, num_boost_round=rounds)
            aucs.append(roc_auc(y[te], b.predict(dte)))
        dall = xgb.DMatrix(x, label=y, missing=np.nan, feature_types=types,
                           enable_categorical=True, nthread=a.nthread)
        xgb.train(booster_params, dall, num_boost_round=rounds)
        return float(np.mean(aucs)), time.perf_counter() - t0

    py_auc, py_seconds = train_python()
    for _ in range(a.repeat - 1):
        r = train_icpml()
        cur.execute("SELECT icpml.delete_model(%s)", (r[0],))
        if r[5] < icpml_seconds:
            icpml_seconds, icpml_read = r[5], r[7]
        icpml_wall = min(icpml_wall, r[6])
        py_seconds = min(py_seconds, train_python()[1])

    print("rows %d (%d positive), %d features, %d folds, %d rounds, nthread %d, params %s"
          % (n_rows, n_pos, x.shape[1], a.folds, rounds, a.nthread,
             json.dumps({k: v for k, v in booster_params.items() if k != "nthread"})))
    print("cv roc auc   icpml %.4f   python %.4f   diff %+.4f   (rules %s)"
          % (icpml_auc, py_auc, icpml_auc - py_auc,
             "%.4f" % rules_auc if rules_auc is not None else "n/a"))
    # (bench.py parses this line: keep its shape)
    print("train+cv s   icpml %.2f (in function; %.2f wall)"
          "   python %.2f (+ %.2f fetching)   ratio %.2f   (best of %d)"
          % (icpml_seconds, icpml_wall, py_seconds, fetch_seconds, icpml_seconds / py_seconds,
             a.repeat))
    print("without reading the data: icpml %.2f (it read the rows in %.2f)   python %.2f   ratio %.2f"
          % (icpml_seconds - icpml_read, icpml_read, py_seconds,
             (icpml_seconds - icpml_read) / py_seconds))
    ok = abs(icpml_auc - py_auc) <= 0.01
    print("parity %s (|diff| <= 0.01)" % ("ok" if ok else "FAILED"))
    if not a.keep:
        cur.execute("SELECT icpml.delete_model(%s)", (version,))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
