"""The peers' side of scoring (test/bench): one feature row -> one probability.

Shared by the PL/Python function and the FastAPI service that bench.py
measures against icpml.icp_score.  Both read the row that icp_score reads
(the model's spec names the relation, key and columns), encode it the way
the spec says (src/spec.c: numeric -> float, NULL/±Infinity -> NaN;
boolean -> 0/1; categorical -> index in levels, unseen -> NaN; date/time ->
days before now(), computed in the query; text[] -> one 0/1 per level,
tokens ASCII lower-cased, NULL array -> all NaN) and predict with
python3-xgboost on one thread, the model loaded once per process.

They return the probability only (no priority, no factors): less work than
icp_score does, so the comparison favours them.
"""
import math

import numpy as np
import xgboost as xgb


def _qident(name):
    return '"' + name.replace('"', '""') + '"'


class Scorer:
    def __init__(self, blob, spec):
        self.booster = xgb.Booster(model_file=bytearray(blob))
        self.booster.set_param("nthread", 1)
        self.spec = spec
        self.nfeat = sum(len(c["levels"]) if c["kind"] == "tags" else 1 for c in spec["columns"])
        cols = []
        for i, c in enumerate(spec["columns"]):
            f = "f." + _qident(c["name"])
            k = c["kind"]
            if k == "numeric":
                cols.append(f"{f}::pg_catalog.float8")
            elif k == "boolean":
                cols.append(f"{f}::pg_catalog.bool")
            elif k == "categorical":
                cols.append(f"{f}::pg_catalog.text")
            elif k == "age_days":
                cols.append(f"CASE WHEN pg_catalog.isfinite({f}::pg_catalog.timestamptz) THEN "
                            f"pg_catalog.date_part('epoch', pg_catalog.now() - {f}::pg_catalog.timestamptz)"
                            f" / 86400.0 END")
            elif k == "tags":
                cols.append(f"{f}::pg_catalog.text[]")
            else:
                raise ValueError("unknown column kind %s" % k)
        # $1: the key (PL/Python's plpy.prepare and PREPARE both take $1);
        # columns c0, c1, ... in spec order
        self.names = [f"c{i}" for i in range(len(cols))]
        self.sql = (f"SELECT {', '.join(f'{e} AS {n}' for e, n in zip(cols, self.names))} FROM {spec['relation']} AS f "
                    f"WHERE f.{_qident(spec['key'])} = $1")
        self.levels = [{lv: i for i, lv in enumerate(c.get("levels") or [])} for c in spec["columns"]]

    def encode(self, row):
        x = np.full((1, self.nfeat), np.nan, dtype=np.float32)
        f = 0
        for c, (col, v) in enumerate(zip(self.spec["columns"], row)):
            k = col["kind"]
            if k in ("numeric", "age_days"):
                if v is not None and math.isfinite(v):
                    x[0, f] = v
                f += 1
            elif k == "boolean":
                if v is not None:
                    x[0, f] = 1.0 if v else 0.0
                f += 1
            elif k == "categorical":
                i = self.levels[c].get(v) if v is not None else None
                if i is not None:
                    x[0, f] = i
                f += 1
            else:   # tags
                n = len(col["levels"])
                if v is not None:
                    x[0, f:f + n] = 0.0
                    for t in v:
                        if t is None:
                            continue
                        i = self.levels[c].get("".join(ch.lower() if "A" <= ch <= "Z" else ch for ch in t))
                        if i is not None:
                            x[0, f + i] = 1.0
                f += n
        return x

    def predict(self, row):
        """The probability of one fetched row (a sequence in spec column order)."""
        return float(self.booster.inplace_predict(self.encode(row))[0])
