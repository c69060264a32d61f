#!/usr/bin/python3
"""icpml benchmark driver (issue 12, item 5): figures, not a test.

    bench.py MAINTENANCE_DB PREDICT_STANDALONE OUT_DIR

Called by test/bench/run.sh; see test/bench/README.md.  For each size in
ICPML_BENCH_SIZES it creates a fresh database (icpml + the reference schema,
generated data) and measures, each figure right next to its limit in the
same run:

  train      icpml.train_icp_model() + 5-fold CV vs python3-xgboost
             (cv_parity.py: same rows, folds, params); its model is deployed
  bulk       score_all() first fill vs INSERT ... SELECT of the same rows into
             an identically indexed table; score_all() rescoring unchanged
             data and icp_score_batch(all ids) vs XGBoost's C in-place batch
             predict over the same matrix (predict_standalone.c)
  recommend  recommend_accounts p50/p99 (LinUCB, Thompson; k 10, M 1000) at
             1 client pinned and 8 clients, select 1 in the same run
  icp_score  (at ICPML_BENCH_POINT_SIZE) pgbench at 1 / 8 / 32 clients: the PK
             select of the feature row, icp_score (model, model without
             factors, rules), a PL/Python + python3-xgboost function and the
             seed's architecture (FastAPI + uvicorn + psycopg2 + xgboost, wrk)
  memory     (at the same size) backend RSS over many icp_score and
             recommend_accounts calls; the first call in a fresh backend
  cost       per size: generation, training, score_all times, storage

and writes OUT_DIR/report.md (goals table, details, SVG plots by gnuplot),
OUT_DIR/results.json and the plots' data.  The load average is sampled
before and after every section.
"""
import contextlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import psycopg2
import xgboost as xgb

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def env_ints(name, default):
    return [int(x) for x in os.environ.get(name, default).replace(",", " ").split()]


def env_int(name, default):
    return int(os.environ.get(name, str(default)))


MAINT_DB = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PGDATABASE", "postgres")
STANDALONE = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "predict_standalone")
OUT = sys.argv[3] if len(sys.argv) > 3 else tempfile.mkdtemp(prefix="icpml_bench_out_")
QUICK = os.environ.get("ICPML_BENCH_QUICK", "0") == "1"
SIZES = env_ints("ICPML_BENCH_SIZES", "10000" if QUICK else "10000 100000 1000000")
POINT_SIZE = env_int("ICPML_BENCH_POINT_SIZE", 100000 if 100000 in SIZES else SIZES[0])
CLIENTS = env_ints("ICPML_BENCH_CLIENTS", "1 8 32")
SECONDS = env_int("ICPML_BENCH_SECONDS", 4 if QUICK else 20)        # per icp_score figure and client count
SLICES = env_int("ICPML_BENCH_SLICES", 2 if QUICK else 4)
PIN = os.environ.get("ICPML_BENCH_PIN", "1") == "1"
NOFACTORS = os.environ.get("ICPML_BENCH_NOFACTORS", "1") == "1"
PEERS = os.environ.get("ICPML_BENCH_PEERS", "plpython fastapi").split()
REPS = env_int("ICPML_BENCH_REPS", 3)
TRAIN_NTHREAD = env_int("ICPML_BENCH_TRAIN_NTHREAD", 1)
TRAIN_REPEAT = env_int("ICPML_BENCH_TRAIN_REPEAT", 0)              # 0: 3 up to 100k accounts, 1 above
USERS = env_int("ICPML_BENCH_USERS", 100)
REC_CLIENTS = env_ints("ICPML_BENCH_REC_CLIENTS", "1 8")
REC_SECONDS = env_int("ICPML_BENCH_REC_SECONDS", 4 if QUICK else 15)
REC_WARM = env_int("ICPML_BENCH_REC_WARM", 300 if QUICK else 2000)
REC_K, REC_M = 10, 1000
MEM_SCORE_CALLS = env_int("ICPML_BENCH_MEM_SCORE_CALLS", 10000 if QUICK else 100000)
MEM_REC_CALLS = env_int("ICPML_BENCH_MEM_REC_CALLS", 1000 if QUICK else 10000)
FIRST_CALL_BACKENDS = env_int("ICPML_BENCH_FIRST_CALLS", 7)
HTTP_PORT = env_int("ICPML_BENCH_HTTP_PORT", int(os.environ.get("PGPORT", "5432")) + 1)
KEEP_DBS = os.environ.get("ICPML_BENCH_KEEP_DBS", "0") == "1"
# the sections to run (generate always runs); without train and bulk, score_all() with the rules
SECTIONS = set(os.environ.get("ICPML_BENCH_SECTIONS", "train bulk recommend icp_score memory").split())
SEED = 42
CORES = os.cpu_count()
WORK = tempfile.mkdtemp(prefix="icpml_bench_")
os.chmod(WORK, 0o755)
USER_EXPR = f"md5('icpml-ref-user:{SEED}:' || :j)::uuid"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


HZ = os.sysconf("SC_CLK_TCK")
POSTMASTER = None          # pid, set by main()


def _proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rpartition(")")[2].split()
    return int(rest[1]), [int(x) for x in rest[11:15]]     # ppid; utime stime cutime cstime


def cpu_snapshot():
    """(wall s, machine busy s, steal s, this benchmark's CPU s): the benchmark is this
    process and its waited-for children plus the postmaster and its backends."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / HZ          # user nice system irq softirq
    steal = v[7] / HZ
    t = os.times()
    ours = t.user + t.system + t.children_user + t.children_system
    if POSTMASTER:
        try:
            ours += sum(_proc_stat(POSTMASTER)[1]) / HZ
        except OSError:
            pass
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    ppid, c = _proc_stat(d)
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == POSTMASTER:
                    ours += (c[0] + c[1]) / HZ
    return time.perf_counter(), busy, steal, ours


def others_cpus(a, b):
    """CPUs used on average by processes outside the benchmark between two snapshots."""
    wall = b[0] - a[0]
    if wall <= 0:
        return None, None
    return max(0.0, ((b[1] - a[1]) - (b[3] - a[3])) / wall), (b[2] - a[2]) / wall


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------

R = {
    "meta": {},
    "sections": [],        # {section, n, seconds, load_before, load_after}
    "goals": [],           # {figure, value, limit, ratio, goal, met, note}
    "icp": [],             # {n, clients, pinned, variant, tps, lat_ms, slices, ratio_pk, by}
    "bulk": [],            # {n, figure, rows_per_s, seconds}
    "train": [],           # {n, rows, icpml_s, python_s, ...}
    "rec": [],             # {n, clients, query, p50_ms, p99_ms, mean_ms, tps, count}
    "memory": {},
    "cost": [],            # {n, ...}
    "checks": [],          # free-text lines
}


@contextlib.contextmanager
def section(name, n=None):
    lb = loadavg()
    c0 = cpu_snapshot()
    t0 = time.perf_counter()
    log(f"--- {name}{f' ({n:,} accounts)' if n else ''}: load average {lb[0]:.2f}")
    try:
        yield
    finally:
        la = loadavg()
        others, steal = others_cpus(c0, cpu_snapshot())
        R["sections"].append(dict(section=name, n=n, seconds=time.perf_counter() - t0,
                                  load_before=lb[0], load_after=la[0], others_cpus=others, steal_cpus=steal))
        log(f"--- {name} done in {time.perf_counter() - t0:.0f} s; load average {la[0]:.2f}; other processes "
            f"used {others:.2f} CPUs on average (steal {steal:.2f})")


def goal(figure, value, limit, ratio, goal_text, met, note=""):
    R["goals"].append(dict(figure=figure, value=value, limit=limit, ratio=ratio, goal=goal_text,
                           met=met, note=note))


# ---------------------------------------------------------------------------
# database
# ---------------------------------------------------------------------------

class Db:
    def __init__(self, name):
        self.name = name
        self.conn = psycopg2.connect(dbname=name)
        self.conn.autocommit = True

    def q(self, sql, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else None

    def q1(self, sql, args=None):
        rows = self.q(sql, args)
        return rows[0][0] if rows else None

    def timed(self, sql, args=None):
        t0 = time.perf_counter()
        v = self.q1(sql, args)
        return time.perf_counter() - t0, v

    def close(self):
        self.conn.close()


def psql_file(db, *files, options=None):
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db]
    for f in files:
        cmd += ["-f", f]
    env = dict(os.environ)
    if options:
        env["PGOPTIONS"] = options
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)


def create_db(n):
    name = f"icpml_bench_{n}"
    maint = Db(MAINT_DB)
    maint.q(f"drop database if exists {name}")
    maint.q(f"create database {name}")
    maint.close()
    db = Db(name)
    db.q("set client_min_messages = warning")
    db.q("create extension icpml")
    db.q("create extension if not exists pg_prewarm")
    psql_file(name, os.path.join(ROOT, "reference/icpml_reference_schema.sql"),
              os.path.join(ROOT, "reference/icpml_generate.sql"))
    return db


def drop_db(db):
    name = db.name
    db.close()
    if KEEP_DBS:
        return
    maint = Db(MAINT_DB)
    maint.q(f"drop database if exists {name}")
    maint.close()


def vacuum_analyze(db, what=""):
    # synchronous_commit = on: VACUUM sets the visibility map (which the
    # retrieval's index-only scans need) only for rows whose commit is flushed
    subprocess.run(["psql", "-X", "-q", "-d", db.name, "-c", "checkpoint", "-c", f"vacuum analyze {what}"],
                   check=True, env=dict(os.environ, PGOPTIONS="-c synchronous_commit=on"),
                   stdout=subprocess.DEVNULL)


def prewarm(db):
    db.q("""select pg_catalog.sum(pg_prewarm(c.oid)) from pg_catalog.pg_class c
            join pg_catalog.pg_namespace s on s.oid = c.relnamespace
            where s.nspname in ('public', 'icpml') and c.relkind in ('r', 'i')""")


def deployed(db):
    rows = db.q("select version, model, spec, params, label_column from icpml.models where status = 'deployed'")
    return rows[0] if rows else None


def set_deployed(db, version):
    cur = db.q1("select version from icpml.models where status = 'deployed'")
    if cur == version:
        return
    if version is None:
        db.q("select icpml.undeploy_model(reason => 'benchmark: rules variant')")
    else:
        db.q("select icpml.deploy_model(version => %s, reason => 'benchmark')", (version,))


# ---------------------------------------------------------------------------
# encoding a relation the way a model's spec does (src/spec.h, src/spec.c)
# ---------------------------------------------------------------------------

def qident(name):
    return '"' + name.replace('"', '""') + '"'


def spec_sql(db, spec):
    """SELECT key, feature... FROM relation ORDER BY key, encoded as in SpecEncodeRow."""
    exprs, laterals = [], []
    nan = "'NaN'::pg_catalog.float8"
    cur = db.conn.cursor()
    for i, col in enumerate(spec["columns"]):
        c = "f." + qident(col["name"])
        kind = col["kind"]
        if kind == "numeric":
            exprs.append(f"coalesce(nullif(nullif({c}::pg_catalog.float8, 'Infinity'), '-Infinity'), {nan})")
        elif kind == "boolean":
            exprs.append(f"coalesce({c}::pg_catalog.bool::pg_catalog.int4::pg_catalog.float8, {nan})")
        elif kind == "age_days":
            exprs.append(f"coalesce(CASE WHEN pg_catalog.isfinite({c}::pg_catalog.timestamptz) THEN "
                         f"pg_catalog.date_part('epoch', pg_catalog.now() - {c}::pg_catalog.timestamptz) / 86400.0 END, {nan})")
        elif kind == "categorical":
            lv = cur.mogrify("%s::pg_catalog.text[]", (col["levels"],)).decode()
            exprs.append(f"coalesce((pg_catalog.array_position({lv}, {c}::pg_catalog.text) - 1)::pg_catalog.float8, {nan})")
        elif kind == "tags":
            alias = f"t{i}"
            laterals.append(f"CROSS JOIN LATERAL (SELECT pg_catalog.lower({c}::pg_catalog.text[]::pg_catalog.text "
                            f"COLLATE \"C\")::pg_catalog.text[] AS v) AS {alias}")
            for level in col["levels"]:
                lit = cur.mogrify("%s::pg_catalog.text", (level,)).decode()
                exprs.append(f"CASE WHEN {alias}.v IS NULL THEN {nan} WHEN {lit} = ANY ({alias}.v) "
                             f"THEN 1::pg_catalog.float8 ELSE 0::pg_catalog.float8 END")
        else:
            raise ValueError(f"unknown column kind {kind}")
    key = "f." + qident(spec["key"])
    return (f"SELECT {', '.join([key] + exprs)} FROM {spec['relation']} AS f {' '.join(laterals)} "
            f"ORDER BY {key}")


def spec_nfeatures(spec):
    return sum(len(c["levels"]) if c["kind"] == "tags" else 1 for c in spec["columns"])


def export_matrix(db, spec, cur=None):
    """(keys int64, X float32 row-major) of the feature relation, encoded by spec."""
    path = os.path.join(WORK, "matrix.csv")
    cur = cur or db.conn.cursor()
    with open(path, "w") as out:
        cur.copy_expert(f"COPY ({spec_sql(db, spec)}) TO STDOUT WITH (FORMAT csv)", out)
    nf = spec_nfeatures(spec)
    data = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    os.unlink(path)
    return data[:, 0].astype(np.int64), np.ascontiguousarray(data[:, 1:1 + nf], dtype=np.float32)


def standalone(model_path, X, reps, out=None):
    """XGBoost's C batch predict over X: {path: rows/s}, best path."""
    mat = os.path.join(WORK, "matrix.f32")
    X.astype("<f4").tofile(mat)
    args = [STANDALONE, model_path, mat, str(X.shape[1]), str(reps)] + ([out] if out else [])
    r = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    print(r.stdout.strip(), flush=True)
    paths = {m.group(1): float(m.group(2))
             for m in re.finditer(r"^(inplace|dmatrix) rows=\d+ reps=\d+ .*?rows_per_s=([0-9.]+)", r.stdout, re.M)}
    if r.returncode != 0 or (reps and not paths):
        log(f"predict_standalone failed: {r.stderr.strip()}")
    return paths


# ---------------------------------------------------------------------------
# load generators
# ---------------------------------------------------------------------------

def write_script(name, text):
    path = os.path.join(WORK, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def pgbench(db, script, clients, seconds=None, transactions=None, defines=None, options=None, cpu=None,
            latencies=False, skip=0):
    """dict(tps, lat_ms[, per_client]) of one pgbench run (prepared), None when it failed.

    latencies: per-transaction logs (per_client: latencies in µs), one
    thread per client so that each is timed on its own (a pgbench thread
    serving several clients can time a query at 0 µs).  skip: seconds at
    the start left out of tps (per-second aggregate logs), for peers whose
    new backends load for a while.
    """
    threads = clients if latencies else min(2, clients)
    cmd = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(threads), "-f", script]
    cmd += ["-T", str(seconds + skip)] if seconds else ["-t", str(transactions)]
    for k, v in (defines or {}).items():
        cmd += ["-D", f"{k}={v}"]
    logdir = None
    if latencies or skip:
        logdir = tempfile.mkdtemp(dir=WORK)
        cmd += ["-l", "--log-prefix", os.path.join(logdir, "lat")]
        if skip:
            cmd += ["--aggregate-interval", "1"]
    cmd.append(db.name)
    env = dict(os.environ)
    if options:
        env["PGOPTIONS"] = options
    r = subprocess.run(cmd, capture_output=True, text=True, env=env,
                       preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None)
    tps = re.search(r"^tps = ([0-9.]+)", r.stdout, re.M)
    lat = re.search(r"^latency average = ([0-9.]+) ms", r.stdout, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", r.stdout, re.M)
    if r.returncode != 0 or not tps or not lat or (failed and int(failed.group(1)) > 0):
        log(f"pgbench {os.path.basename(script)} failed: {(r.stderr or r.stdout).strip()[-400:]}")
        if logdir:
            shutil.rmtree(logdir, ignore_errors=True)
        return None
    res = dict(tps=float(tps.group(1)), lat_ms=float(lat.group(1)))
    if skip:
        per_s = {}
        for fn in os.listdir(logdir):
            with open(os.path.join(logdir, fn)) as fh:
                for line in fh:
                    f = line.split()
                    if len(f) > 3:
                        per_s[int(f[0])] = per_s.get(int(f[0]), 0) + int(f[1])
        secs = sorted(per_s)
        keep = [t for t in secs[:-1] if t >= secs[0] + skip]     # whole seconds after the skip
        if keep:
            res["tps"] = sum(per_s[t] for t in keep) / len(keep)
            res["lat_ms"] = clients * 1000.0 / res["tps"]
        shutil.rmtree(logdir, ignore_errors=True)
    if latencies:
        res["per_client"] = []
        for fn in sorted(os.listdir(logdir)):
            with open(os.path.join(logdir, fn)) as fh:
                res["per_client"].append([int(line.split()[2]) for line in fh if line.strip()])
        shutil.rmtree(logdir, ignore_errors=True)
    return res


def wrk(url, n, clients, seconds, cpu=None):
    """dict(tps, lat_ms) of one wrk run against the HTTP peer, None when it failed."""
    cmd = ["wrk", "-t", str(min(2, clients)), "-c", str(clients), "-d", f"{seconds}s", "--latency",
           "-s", os.path.join(HERE, "score.lua"), url]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, BENCH_N=str(n)),
                       preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None)
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", r.stdout, re.M)
    lat = re.search(r"^\s+Latency\s+([0-9.]+)(us|ms|s)\b", r.stdout, re.M)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    errs = re.search(r"Socket errors: (.*)", r.stdout)
    if r.returncode != 0 or not rps or bad:
        log(f"wrk failed: {(r.stderr + r.stdout).strip()[-400:]}")
        return None
    if errs:
        log(f"wrk: socket errors {errs.group(1)}")
    ms = float(lat.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[lat.group(2)] if lat else None
    return dict(tps=float(rps.group(1)), lat_ms=ms)


@contextlib.contextmanager
def pinned(db, enable):
    """Pin the postmaster (so the backends it forks) to one CPU, the load generator too.

    With one client, the load generator and its backend wake each other for
    every query; on a VM a wake-up on the other CPU can cost more than the
    query, and where the scheduler puts them changes from run to run.  On
    one CPU the figure is the server's cost, the harder target.
    """
    if not enable:
        yield None
        return
    try:
        with open(os.path.join(db.q1("select pg_catalog.current_setting('data_directory')"), "postmaster.pid")) as f:
            pm = int(f.readline())
        old = os.sched_getaffinity(pm)
        cpu = max(os.sched_getaffinity(0))
        os.sched_setaffinity(pm, {cpu})
    except (OSError, ValueError, psycopg2.Error) as e:
        log(f"cannot pin the postmaster ({e}); running unpinned")
        yield None
        return
    try:
        yield cpu
    finally:
        os.sched_setaffinity(pm, old)


@contextlib.contextmanager
def http_service(db, version, workers, cpu=None):
    """The FastAPI + uvicorn peer (peer_service.py), started and stopped here."""
    env = dict(os.environ, BENCH_DB=db.name, BENCH_MODEL_VERSION=str(version),
               BENCH_THREADS=str(max(4, 32 // max(1, workers))))
    cmd = [sys.executable, "-m", "uvicorn", "peer_service:app", "--app-dir", HERE, "--host", "127.0.0.1",
           "--port", str(HTTP_PORT), "--http", "httptools", "--loop", "uvloop", "--workers", str(workers),
           "--no-access-log", "--log-level", "warning"]
    logf = open(os.path.join(WORK, "uvicorn.log"), "w")

    def pre():
        os.setsid()
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
    p = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, preexec_fn=pre)
    url = f"http://127.0.0.1:{HTTP_PORT}"
    try:
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"{url}/score/1", timeout=2) as resp:
                    json.load(resp)
                break
            except OSError:
                if p.poll() is not None:
                    break
                time.sleep(0.2)
        else:
            p.poll()
        if p.returncode is not None:
            logf.flush()
            with open(os.path.join(WORK, "uvicorn.log")) as f:
                log(f"the FastAPI service did not start: {f.read()[-600:]}")
            yield None
        else:
            yield url
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        logf.close()


def lat_stats(per_client, warmup=20):
    xs = np.concatenate([np.array(c[warmup:] if len(c) > 2 * warmup else c, dtype=np.float64)
                         for c in per_client]) / 1000.0
    return dict(count=int(xs.size), p50_ms=float(np.percentile(xs, 50)), p99_ms=float(np.percentile(xs, 99)),
                mean_ms=float(xs.mean()), max_ms=float(xs.max()))


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------

def sec_generate(db, n):
    t0 = time.perf_counter()
    db.q("select * from icpml_ref.generate(accounts => %s, users => %s, interactions => %s, seed => %s)",
         (n, USERS, n, SEED))
    gen_s = time.perf_counter() - t0
    vacuum_analyze(db)
    log(f"generated {n:,} accounts, {USERS} users, {n:,} interactions in {gen_s:.1f} s")
    return gen_s


def sec_train(db, n):
    """cv_parity.py: icpml vs python3-xgboost on the same rows and folds; deploys icpml's model."""
    repeat = TRAIN_REPEAT if TRAIN_REPEAT else (3 if n <= 100000 else 1)
    if QUICK and not TRAIN_REPEAT:
        repeat = 1
    args = ["--keep", "--nthread", str(TRAIN_NTHREAD), "--seed", str(SEED), "--repeat", str(repeat)]
    log(f"test/bench/cv_parity.py {' '.join(args)}")
    before = db.q1("select coalesce(max(version), 0) from icpml.models")
    r = subprocess.run([sys.executable, os.path.join(HERE, "cv_parity.py")] + args,
                       capture_output=True, text=True, env=dict(os.environ, PGDATABASE=db.name))
    print((r.stdout + r.stderr).strip(), flush=True)
    version = db.q1("select max(version) from icpml.models where version > %s", (before,))
    auc = re.search(r"cv roc auc\s+icpml ([0-9.]+)\s+python ([0-9.]+)", r.stdout)
    tim = re.search(r"train\+cv s\s+icpml ([0-9.]+) \(in function; ([0-9.]+) wall\)\s+python ([0-9.]+)", r.stdout)
    rows = re.search(r"^rows (\d+)", r.stdout, re.M)
    noread = re.search(r"without reading the data: icpml ([0-9.]+) \(it read the rows in ([0-9.]+)\)", r.stdout)
    if not (version and tim):
        raise SystemExit("training failed: the benchmark needs a trained model")
    icpml_s, wall_s, py_s = (float(x) for x in tim.groups())
    R["train"].append(dict(n=n, rows=int(rows.group(1)) if rows else None, icpml_s=icpml_s, wall_s=wall_s,
                           python_s=py_s, repeat=repeat,
                           icpml_auc=float(auc.group(1)) if auc else None,
                           python_auc=float(auc.group(2)) if auc else None,
                           icpml_noread_s=float(noread.group(1)) if noread else None,
                           read_s=float(noread.group(2)) if noread else None))
    set_deployed(db, version)
    return version


def sec_bulk(db, n, version):
    _, blob, spec, _, _ = deployed(db)
    model_path = os.path.join(WORK, "model.ubj")
    with open(model_path, "wb") as f:
        f.write(bytes(blob))
    db.q("create schema if not exists icpml_bench")
    db.q("drop table if exists icpml_bench.scores_copy")
    db.q("create table icpml_bench.scores_copy (like icpml.account_scores including all)")
    indexes = db.q1("select count(*) from pg_catalog.pg_indexes where schemaname = 'icpml' "
                    "and tablename = 'account_scores'")

    # XGBoost's C batch predict over the same matrix (every account, encoded per the spec)
    keys, X = export_matrix(db, spec)
    # the limit: the faster of XGBoost's two C batch paths (in place from a
    # dense float array; DMatrix + predict), median of >= 3 runs each
    sa = standalone(model_path, X, max(REPS, 3))
    sa_rps = max(sa.values()) if sa else None
    sa_label = f"{sa_rps:,.0f} (XGBoost C batch predict, {max(sa, key=sa.get) if sa else ''})"
    for path, label in (("inplace", "XGBoost C in-place predict"), ("dmatrix", "XGBoost C DMatrix predict")):
        if path in sa:
            R["bulk"].append(dict(n=n, figure=label, rows_per_s=sa[path]))

    fill, ins, ratios = [], [], []
    rows = None
    for i in range(REPS):
        db.q("truncate icpml.account_scores")
        vacuum_analyze(db, "icpml.account_scores")
        s, rows = db.timed("select icpml.score_all()")
        fill.append(s)
        db.q("truncate icpml_bench.scores_copy")
        s2, _ = db.timed("insert into icpml_bench.scores_copy select * from icpml.account_scores")
        ins.append(s2)
        ratios.append(s2 / s)
        log(f"first fill {i + 1}: score_all {rows / s:,.0f} rows/s, INSERT ... SELECT {rows / s2:,.0f} rows/s")
    fill_rps, ins_rps = rows / median(fill), rows / median(ins)
    R["bulk"].append(dict(n=n, figure="score_all() first fill", rows_per_s=fill_rps, seconds=median(fill)))
    R["bulk"].append(dict(n=n, figure=f"INSERT … SELECT, same rows, {indexes} indexes", rows_per_s=ins_rps,
                          seconds=median(ins)))

    resc = []
    for i in range(REPS):
        vacuum_analyze(db, "icpml.account_scores")
        s, rows = db.timed("select icpml.score_all()")
        resc.append(s)
        log(f"rescore unchanged {i + 1}: {rows / s:,.0f} rows/s")
    resc_rps = rows / median(resc)
    R["bulk"].append(dict(n=n, figure="score_all() rescore, nothing changed", rows_per_s=resc_rps,
                          seconds=median(resc)))

    batch = []
    for i in range(REPS):
        s, cnt = db.timed("select count(*) from icpml.icp_score_batch(ARRAY("
                          "select account_id from public.account_signals order by account_id))")
        batch.append(s)
    batch_rps = cnt / median(batch)
    log(f"icp_score_batch(all ids): {batch_rps:,.0f} rows/s")
    R["bulk"].append(dict(n=n, figure="icp_score_batch(all ids)", rows_per_s=batch_rps, seconds=median(batch)))

    read = [db.timed("select count(*) from (select * from public.account_features offset 0) f")[0]
            for _ in range(REPS)]
    R["bulk"].append(dict(n=n, figure="reading the feature view alone", rows_per_s=n / median(read)))

    tag = f"{n:,} accounts"
    ratio = median(ratios)
    goal(f"`score_all()` first fill, {tag} (rows/s)", f"{fill_rps:,.0f}",
         f"{ins_rps:,.0f} (`INSERT … SELECT` of the same rows, {indexes} indexes)", ratio, "≥ 0.9",
         ratio >= 0.9)
    if sa_rps:
        goal(f"`score_all()` rescore, nothing changed, {tag} (rows/s)", f"{resc_rps:,.0f}",
             sa_label, resc_rps / sa_rps, "≥ 0.5", resc_rps / sa_rps >= 0.5)
        goal(f"`icp_score_batch(all ids)`, {tag} (rows/s)", f"{batch_rps:,.0f}",
             sa_label, batch_rps / sa_rps, "≥ 0.5", batch_rps / sa_rps >= 0.5)

    # the C program and icpml must predict the same: compare with what
    # score_all stored, the matrix encoded in the same transaction (same now())
    try:
        db.conn.autocommit = False
        cur = db.conn.cursor()
        cur.execute("select icpml.score_all()")
        keys2, X2 = export_matrix(db, spec, cur)
        cur.execute("select account_id, probability from icpml.account_scores order by account_id")
        stored = np.array(cur.fetchall(), dtype=np.float64)
        db.conn.commit()
        pred_path = os.path.join(WORK, "pred.f32")
        standalone(model_path, X2, 0, pred_path)
        pred = np.fromfile(pred_path, dtype="<f4").astype(np.float64)
        if len(stored) == len(keys2) and np.array_equal(stored[:, 0].astype(np.int64), keys2):
            d = np.abs(stored[:, 1] - pred)
            msg = (f"{tag}: score_all() probabilities vs XGBoost C: max |diff| {d.max():.3g}, "
                   f"{int((d > 1e-6).sum())} of {len(d)} differ by more than 1e-6")
        else:
            msg = f"{tag}: score_all() and the exported matrix cover different accounts"
        log("check: " + msg)
        R["checks"].append(msg)
    finally:
        db.conn.rollback()
        db.conn.autocommit = True
    return model_path


def rec_script(policy):
    return write_script(f"rec_{policy}.sql", f"\\set j random(1, :nusers)\n"
                        f"SELECT * FROM icpml.recommend_accounts({USER_EXPR}, {REC_K}, '{policy}', {REC_M}, NULL);\n")


def sec_recommend(db, n):
    db.q("select icpml.enable_online_feedback()")
    d = dict(nusers=USERS, naccounts=n)
    warm = write_script("rec_warm.sql", f"""\\set j random(1, :nusers)
SELECT r.account_id AS acc FROM icpml.recommend_accounts({USER_EXPR}, {REC_K}, NULL, {REC_M}, NULL) r ORDER BY r.rank LIMIT 1 \\gset
INSERT INTO public.user_interactions (user_id, account_id, interaction_type) VALUES ({USER_EXPR}, :acc, 'save');
""")
    t0 = time.perf_counter()
    pgbench(db, warm, 1, transactions=REC_WARM, defines=d)
    db.q("select icpml.process_feedback(as_of => now() + interval '30 days')")
    vacuum_analyze(db)
    log(f"recommender warmed ({REC_WARM} recommend + save, process_feedback, vacuum) in "
        f"{time.perf_counter() - t0:.0f} s")
    scripts = [("select 1", write_script("select1.sql", "SELECT 1;\n"))]
    scripts += [(p, rec_script(p)) for p in ("linucb", "thompson")]
    for c in REC_CLIENTS:
        with pinned(db, PIN and c == 1) as cpu:
            for name, path in scripts:
                secs = REC_SECONDS if name != "select 1" else max(2, REC_SECONDS // 3)
                pgbench(db, path, c, seconds=1, defines=d, cpu=cpu)          # new backends: caches
                r = pgbench(db, path, c, seconds=secs, defines=d, cpu=cpu, latencies=True)
                if not r:
                    continue
                s = lat_stats(r["per_client"])
                R["rec"].append(dict(n=n, clients=c, pinned=cpu is not None, query=name, tps=r["tps"], **s))
                log(f"{c} client(s){' pinned' if cpu is not None else ''}: {name}: p50 {s['p50_ms']:.3f} ms, "
                    f"p99 {s['p99_ms']:.3f} ms ({s['count']} calls)")


def plpython_setup(db, version):
    try:
        db.q("create extension if not exists plpython3u")
    except psycopg2.Error as e:
        log(f"no PL/Python ({str(e).strip().splitlines()[0]}): that peer is skipped")
        return False
    with open(os.path.join(HERE, "peer_encode.py")) as f:
        module = f.read()
    body = f"""
if 'scorer' not in GD:
    import json
    ns = {{}}
    exec(compile({module!r}, 'peer_encode.py', 'exec'), ns)
    r = plpy.execute("SELECT model, spec FROM icpml.models WHERE version = {int(version)}")[0]
    s = ns['Scorer'](bytes(r['model']), json.loads(r['spec']))
    GD['scorer'] = s
    GD['plan'] = plpy.prepare(s.sql, ['bigint'])
s = GD['scorer']
rows = plpy.execute(GD['plan'], [account_id])
if rows.nrows() == 0:
    return None
row = rows[0]
return s.predict([row[c] for c in s.names])
"""
    db.q("create schema if not exists icpml_bench")
    db.q(f"create or replace function icpml_bench.plpy_score(account_id bigint) returns float8 "
         f"language plpython3u stable as $py${body}$py$")
    return True


def sec_icp_score(db, n, version):
    peers = []
    if "plpython" in PEERS and plpython_setup(db, version):
        peers.append("plpython")
    if "fastapi" in PEERS:
        peers.append("fastapi")
    # the peers must score like icpml
    mism = 0
    for aid in range(1, 201):
        p = db.q1("select probability from icpml.icp_score(%s)", (aid,))
        if "plpython" in peers:
            mism += abs(db.q1("select icpml_bench.plpy_score(%s)", (aid,)) - p) > 1e-6
    plpy_skip = {}
    if "plpython" in peers:
        R["checks"].append(f"{n:,} accounts: PL/Python peer vs icp_score: {mism} of 200 probabilities differ")
        # a new backend's first PL/Python call imports xgboost and loads the model;
        # pgbench opens new connections every run, so that start is left out
        # (as behind a connection pool): skip = clients x load / CPUs, + 1 s
        loads = []
        for _ in range(3):
            conn = psycopg2.connect(dbname=db.name)
            cur = conn.cursor()
            cur.execute("select 1")
            t0 = time.perf_counter()
            cur.execute("select icpml_bench.plpy_score(1)")
            loads.append(time.perf_counter() - t0)
            conn.close()
        R["meta"]["plpython_first_call_ms"] = median(loads) * 1000
        for c in CLIENTS:
            plpy_skip[c] = math.ceil(c * median(loads) / CORES) + 1
        log(f"PL/Python: first call in a new backend {median(loads) * 1000:.0f} ms; left out of each run: "
            f"{plpy_skip} s")
        R["meta"]["plpython_skip_s"] = plpy_skip

    scripts = {
        "PK select": write_script("pk.sql", "\\set aid random(1, :n)\n"
                                  "select * from public.account_features where account_id = :aid;\n"),
        "icp_score": write_script("icp.sql", "\\set aid random(1, :n)\nselect * from icpml.icp_score(:aid);\n"),
        "plpython": write_script("plpy.sql", "\\set aid random(1, :n)\nselect icpml_bench.plpy_score(:aid);\n"),
    }
    # (name, script, deployed version, PGOPTIONS, counts for a goal)
    variants = [("PK select", "PK select", version, "", False),
                ("icpml model", "icp_score", version, "", True)]
    if NOFACTORS:
        variants.append(("icpml model, no factors", "icp_score", version, "-c icpml.top_factors=0", False))
    variants.append(("icpml rules", "icp_score", None, "", True))
    if "plpython" in peers:
        variants.append(("PL/Python + xgboost", "plpython", version, "", False))
    if "fastapi" in peers:
        variants.append(("FastAPI + uvicorn", None, version, "", False))
    d = dict(n=n)
    slice_s = max(1, SECONDS // SLICES)
    for c in CLIENTS:
        workers = 1 if c == 1 else CORES
        with pinned(db, PIN and c == 1) as cpu, \
                (http_service(db, version, workers, cpu) if "fastapi" in peers else contextlib.nullcontext()) as url:
            runs = {v[0]: [] for v in variants}
            per_slice = []

            def one(name, script, v, opts, secs):
                if script is None:
                    return wrk(url, n, c, secs, cpu) if url else None
                set_deployed(db, v)
                return pgbench(db, scripts[script], c, seconds=secs, defines=d,
                               options=f"-c icpml.nthread=1 {opts}", cpu=cpu,
                               skip=plpy_skip[c] if script == "plpython" else 0)
            for name, script, v, opts, _ in variants:       # warm-up: caches, plans, model loads
                one(name, script, v, opts, 2)
            for _ in range(SLICES):
                sl = {}
                for name, script, v, opts, _ in variants:
                    r = one(name, script, v, opts, slice_s)
                    if r:
                        runs[name].append(r)
                        sl[name] = r["tps"]
                per_slice.append(sl)
            set_deployed(db, version)
        by = db.q1("select model || coalesce(' v' || model_version, '') || ', ' || factor_method "
                   "from icpml.icp_score(1)")
        for name, *_ in variants:
            if not runs[name]:
                continue
            row = dict(n=n, clients=c, pinned=cpu is not None, variant=name,
                       tps=median([r["tps"] for r in runs[name]]),
                       lat_ms=median([r["lat_ms"] for r in runs[name]]),
                       slices=[round(r["tps"]) for r in runs[name]],
                       ratio_pk=median([s[name] / s["PK select"] for s in per_slice
                                        if name in s and "PK select" in s]))
            for peer in ("PL/Python + xgboost", "FastAPI + uvicorn"):
                if name.startswith("icpml") and any(peer in s for s in per_slice):
                    row[f"x_{peer}"] = median([s[name] / s[peer] for s in per_slice if name in s and peer in s])
            R["icp"].append(row)
            log(f"{c} client(s){' pinned' if cpu is not None else ''}: {name}: {row['tps']:,.0f} tps "
                f"({row['lat_ms']:.3f} ms), ÷ PK {row['ratio_pk']:.2f}; slices {row['slices']}")
        R["meta"]["icp_scored_by"] = by


def rss(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0])            # kB
    out["private"] = out["VmRSS"] - out.get("RssShmem", 0)
    return out


def ctx_bytes(conn):
    with conn.cursor() as cur:
        cur.execute("select sum(total_bytes)::bigint from pg_catalog.pg_backend_memory_contexts")
        return cur.fetchone()[0]


def sec_memory(db, n, version):
    import random
    rnd = random.Random(SEED)
    mem = R["memory"]
    mem["n"] = n

    def calls(what, sql, args_fn, count, warm):
        conn = psycopg2.connect(dbname=db.name)
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("select pg_catalog.pg_backend_pid()")
        pid = cur.fetchone()[0]
        cur.execute(f"prepare s as {sql}")
        for _ in range(warm):
            cur.execute("execute s" + args_fn())
            cur.fetchall()
        b, cb = rss(pid), ctx_bytes(conn)
        t0 = time.perf_counter()
        for _ in range(count):
            cur.execute("execute s" + args_fn())
            cur.fetchall()
        secs = time.perf_counter() - t0
        a, ca = rss(pid), ctx_bytes(conn)
        conn.close()
        m = dict(calls=count, warm=warm, seconds=secs, before_kb=b, after_kb=a, ctx_before=cb, ctx_after=ca,
                 change=(a["private"] - b["private"]) / b["private"])
        mem[what] = m
        log(f"memory over {count:,} {what} calls (after {warm} warm-up calls): RSS {b['VmRSS']:,} → "
            f"{a['VmRSS']:,} kB, without shared memory {b['private']:,} → {a['private']:,} kB "
            f"({m['change']:+.1%}); memory contexts {cb:,} → {ca:,} bytes")
        return m

    m1 = calls("icp_score", "select * from icpml.icp_score($1)",
               lambda: f"({rnd.randint(1, n)})", MEM_SCORE_CALLS, 1000)
    pol = ["linucb", "thompson"]
    m2 = calls("recommend_accounts", f"select * from icpml.recommend_accounts($1, {REC_K}, $2, {REC_M}, NULL)",
               lambda: (f"(md5('icpml-ref-user:{SEED}:{rnd.randint(1, USERS)}')::uuid, "
                        f"'{pol[rnd.randint(0, 1)]}')"), MEM_REC_CALLS, 100)

    # the first call in a fresh backend: loading the library (with libxgboost),
    # then the first icp_score (catalogs, the deployed model), then the next
    first, second, connect, lib = [], [], [], []
    for _ in range(FIRST_CALL_BACKENDS):
        t0 = time.perf_counter()
        conn = psycopg2.connect(dbname=db.name)
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("select 1")
        connect.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cur.execute("load '$libdir/icpml'")
        lib.append(time.perf_counter() - t0)
        aid = rnd.randint(1, n)
        t0 = time.perf_counter()
        cur.execute("select * from icpml.icp_score(%s)", (aid,))
        cur.fetchall()
        first.append(time.perf_counter() - t0)
        nxt = []
        for k in range(3):
            t0 = time.perf_counter()
            cur.execute("select * from icpml.icp_score(%s)", ((aid + k) % n + 1,))
            cur.fetchall()
            nxt.append(time.perf_counter() - t0)
        second.append(min(nxt))
        conn.close()
    blob = db.q1("select model from icpml.models where version = %s", (version,))
    trees = xgb.Booster(model_file=bytearray(bytes(blob))).num_boosted_rounds()
    totals = [a + b for a, b in zip(lib, first)]
    fc = dict(trees=trees, model_bytes=len(bytes(blob)), first_ms=median(totals) * 1000,
              library_ms=median(lib) * 1000, first_after_load_ms=median(first) * 1000,
              second_ms=median(second) * 1000, connect_ms=median(connect) * 1000,
              first_all_ms=[round(x * 1000, 2) for x in totals])
    mem["first_call"] = fc
    log(f"first icp_score in a fresh backend ({trees} trees): {fc['first_ms']:.2f} ms = loading the library "
        f"{fc['library_ms']:.2f} + the first call {fc['first_after_load_ms']:.2f} (medians of "
        f"{FIRST_CALL_BACKENDS}); next calls {fc['second_ms']:.3f} ms; connecting {fc['connect_ms']:.1f} ms")

    for what, m in (("icp_score", m1), ("recommend_accounts", m2)):
        goal(f"backend RSS without shared memory over {m['calls']:,} `{what}` calls, {n:,} accounts",
             f"{m['after_kb']['private']:,} kB", f"{m['before_kb']['private']:,} kB before", None,
             "within ±5 %", abs(m["change"]) <= 0.05, f"{m['change']:+.1%}; full RSS "
             f"{m['before_kb']['VmRSS']:,} → {m['after_kb']['VmRSS']:,} kB")
    goal(f"first `icp_score` in a fresh backend, {trees}-tree model (ms)", f"{fc['first_ms']:.2f} ms",
         f"{fc['second_ms']:.3f} ms (a warm call)", None, "≤ 10 ms", fc["first_ms"] <= 10,
         f"loading the library {fc['library_ms']:.2f} ms + the first call {fc['first_after_load_ms']:.2f} ms; "
         f"median of {FIRST_CALL_BACKENDS} backends")


def sec_cost(db, n, gen_s):
    t = [x for x in R["train"] if x["n"] == n]
    b = {x["figure"]: x for x in R["bulk"] if x["n"] == n}
    rows = db.q("""select pg_catalog.pg_database_size(pg_catalog.current_database()),
                          pg_catalog.pg_total_relation_size('icpml.account_scores'),
                          pg_catalog.pg_total_relation_size('public.account_signals')
                          + pg_catalog.pg_total_relation_size('public.research_runs'),
                          (select pg_catalog.pg_column_size(m.*) from icpml.models m where m.status = 'deployed'),
                          (select pg_catalog.octet_length(m.model) from icpml.models m where m.status = 'deployed')""")
    db_b, scores_b, feat_b, model_row_b, blob_b = rows[0]
    R["cost"].append(dict(n=n, generate_s=gen_s, train_s=t[0]["icpml_s"] if t else None,
                          train_python_s=t[0]["python_s"] if t else None,
                          score_all_fill_s=b.get("score_all() first fill", {}).get("seconds"),
                          score_all_rescore_s=b.get("score_all() rescore, nothing changed", {}).get("seconds"),
                          batch_s=b.get("icp_score_batch(all ids)", {}).get("seconds"),
                          db_bytes=db_b, scores_bytes=scores_b, features_bytes=feat_b,
                          model_row_bytes=model_row_b, model_blob_bytes=blob_b))


def bench_size(n):
    log(f"=== {n:,} accounts")
    db = create_db(n)
    try:
        with section("generate", n):
            gen_s = sec_generate(db, n)
        version = None
        if "train" in SECTIONS:
            with section("train", n):
                version = sec_train(db, n)
        prewarm(db)
        if "bulk" in SECTIONS and version is not None:
            with section("bulk", n):
                sec_bulk(db, n, version)
        else:
            db.q("select icpml.score_all()")
            log("score_all() for the recommender (no bulk section)")
        vacuum_analyze(db)
        prewarm(db)
        if "recommend" in SECTIONS:
            with section("recommend", n):
                sec_recommend(db, n)
        if n == POINT_SIZE and version is not None:
            if "icp_score" in SECTIONS:
                with section("icp_score", n):
                    sec_icp_score(db, n, version)
            if "memory" in SECTIONS:
                with section("memory", n):
                    sec_memory(db, n, version)
        if "bulk" in SECTIONS and version is not None:
            sec_cost(db, n, gen_s)
    finally:
        drop_db(db)


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

def fmt_ratio(x):
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def fmt_met(m):
    return {True: "yes", False: "**no**", None: ""}[m]


def goals_from_results():
    """Goal rows for the per-call and latency figures (bulk and memory add theirs as they go)."""
    icp = {(r["n"], r["clients"], r["variant"]): r for r in R["icp"]}
    for (n, c, v), r in sorted(icp.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        pk = icp.get((n, c, "PK select"))
        where = f"{c} client{'s' if c > 1 else ''}{' pinned' if r['pinned'] else ''}"
        if v in ("icpml model", "icpml rules") and pk:
            goal(f"`icp_score`, {v.split()[1]}, {where} (tps)", f"{r['tps']:,.0f}",
                 f"{pk['tps']:,.0f} (PK select of the feature row)", r["ratio_pk"], "≥ 0.8",
                 r["ratio_pk"] is not None and r["ratio_pk"] >= 0.8)
        if v == "icpml model":
            for peer in ("PL/Python + xgboost", "FastAPI + uvicorn"):
                p = icp.get((n, c, peer))
                x = r.get(f"x_{peer}")
                if p and x:
                    goal(f"`icp_score`, model, {where}, ÷ {peer} (tps)", f"{r['tps']:,.0f}",
                         f"{p['tps']:,.0f} ({peer})", x, "> 40 (PostgresML claims 8–40×)", x > 40)
    for r in R["rec"]:
        if r["query"] == "select 1":
            continue
        base = next((s for s in R["rec"] if s["n"] == r["n"] and s["clients"] == r["clients"]
                     and s["query"] == "select 1"), None)
        lim = f"select 1 p99 {base['p99_ms']:.3f} ms" if base else ""
        where = f"{r['clients']} client{'s' if r['clients'] > 1 else ''}{' pinned' if r['pinned'] else ''}"
        target = 5.0 if r["clients"] == 1 else 15.0
        is_goal = r["n"] >= 1000000
        goal(f"`recommend_accounts` {r['query']}, {r['n']:,} accounts, {where}: p99 (p50)",
             f"{r['p99_ms']:.2f} ms ({r['p50_ms']:.2f})", lim, None,
             f"≤ {target:g} ms" + ("" if is_goal else " at 1M (info here)"),
             (r["p99_ms"] <= target) if is_goal else None)
    for t in R["train"]:
        ratio = t["icpml_s"] / t["python_s"]
        goal(f"train + 5-fold CV, {t['n']:,} accounts ({t['rows']:,} labelled rows) (s)", f"{t['icpml_s']:.2f} s",
             f"{t['python_s']:.2f} s (python3-xgboost, same rows and folds)", ratio, "≤ 1.3 (issue 3)",
             ratio <= 1.3, f"CV ROC AUC {t['icpml_auc']:.4f} / {t['python_auc']:.4f}")


def gp_text(s):
    """A gnuplot title: no enhanced-text subscripts."""
    return s.replace("_", "\\_").replace("'", "")


def write_plots():
    """gnuplot SVGs from the results; returns the names of those written."""
    if not shutil.which("gnuplot"):
        log("no gnuplot: no plots")
        return []
    plots = []
    gp = ["set terminal svg size 720,480 dynamic font 'sans,11'", "set key below",
          "set grid", "set datafile missing '?'"]

    def dat(name, header, rows):
        with open(os.path.join(OUT, name), "w") as f:
            f.write("# " + "\t".join(header) + "\n")
            for r in rows:
                f.write("\t".join("?" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
                                  for v in r) + "\n")

    # 1. icp_score tps by clients, every peer
    if R["icp"]:
        names = []
        for r in R["icp"]:
            if r["variant"] not in names:
                names.append(r["variant"])
        cl = sorted({r["clients"] for r in R["icp"]})
        tab = {(r["clients"], r["variant"]): r["tps"] for r in R["icp"]}
        dat("icp_score.dat", ["clients"] + names, [[c] + [tab.get((c, v)) for v in names] for c in cl])
        gp += ["set output 'icp_score.svg'",
               f"set title 'icp\\_score and its peers, {R['icp'][0]['n']:,} accounts'",
               "set xlabel 'clients'", "set ylabel 'calls per second'", "set logscale x 2", "set logscale y",
               "set xtics (" + ", ".join(f"'{c}' {c}" for c in cl) + ")",
               "plot " + ", ".join(f"'icp_score.dat' using 1:{i + 2} with linespoints lw 2 title '{v}'"
                                   for i, v in enumerate(names)),
               "unset logscale", "set xtics autofreq"]
        plots.append("icp_score.svg")

    # 2. recommend_accounts latency vs accounts
    if R["rec"]:
        ns = sorted({r["n"] for r in R["rec"]})
        for c in sorted({r["clients"] for r in R["rec"]}):
            tab = {(r["n"], r["query"]): r for r in R["rec"] if r["clients"] == c}
            cols, rows = [], []
            for q in ("linucb", "thompson", "select 1"):
                cols += [f"{q} p50", f"{q} p99"]
            for n in ns:
                row = [n]
                for q in ("linucb", "thompson", "select 1"):
                    x = tab.get((n, q))
                    row += [x["p50_ms"] if x else None, x["p99_ms"] if x else None]
                rows.append(row)
            dat(f"recommend_{c}.dat", ["accounts"] + cols, rows)
            pin = " pinned" if c == 1 and PIN else ""
            gp += [f"set output 'recommend_{c}.svg'",
                   f"set title 'recommend\\_accounts latency, k {REC_K}, M {REC_M}, {c} client{'s' if c > 1 else ''}{pin}'",
                   "set xlabel 'accounts'", "set ylabel 'ms'", "set logscale x 10", "set yrange [0:*]",
                   "set format x '%.0s%c'",
                   "plot " + ", ".join(f"'recommend_{c}.dat' using 1:{i + 2} with linespoints lw 2 "
                                       f"{'dt 2 ' if 'p50' in t else ''}title '{t}'" for i, t in enumerate(cols))
                   + f", {5 if c == 1 else 15} with lines lc rgb 'red' dt 3 title 'goal: p99 at 1M'",
                   "unset logscale", "set autoscale y", "set format x '%g'"]
            plots.append(f"recommend_{c}.svg")

    # 3. bulk rows/s vs accounts
    if R["bulk"]:
        ns = sorted({r["n"] for r in R["bulk"]})
        figs = []
        for r in R["bulk"]:
            f = re.sub(r", \d+ indexes", "", r["figure"])
            if f not in figs:
                figs.append(f)
        tab = {(r["n"], re.sub(r", \d+ indexes", "", r["figure"])): r["rows_per_s"] for r in R["bulk"]}
        dat("bulk.dat", ["accounts"] + figs, [[n] + [tab.get((n, f)) for f in figs] for n in ns])
        gp += ["set output 'bulk.svg'", "set title 'bulk scoring, rows per second (1 thread)'",
               "set xlabel 'accounts'", "set ylabel 'rows/s'", "set logscale x 10", "set logscale y",
               "set format x '%.0s%c'",
               "plot " + ", ".join(f"'bulk.dat' using 1:{i + 2} with linespoints lw 2 title '{gp_text(f)}'"
                                   for i, f in enumerate(figs)),
               "unset logscale", "set format x '%g'"]
        plots.append("bulk.svg")

    # 4. cost curves
    if R["cost"]:
        keys = [("generate_s", "generating the data"), ("train_s", "train + 5-fold CV (icpml)"),
                ("train_python_s", "train + 5-fold CV (python3-xgboost)"),
                ("score_all_fill_s", "score_all() first fill"),
                ("score_all_rescore_s", "score_all() rescore, unchanged"), ("batch_s", "icp_score_batch(all)")]
        dat("cost.dat", ["accounts"] + [k for k, _ in keys], [[c["n"]] + [c[k] for k, _ in keys] for c in R["cost"]])
        gp += ["set output 'cost.svg'", "set title 'cost as data grows'", "set xlabel 'accounts'",
               "set ylabel 'seconds'", "set logscale x 10", "set logscale y", "set format x '%.0s%c'",
               "plot " + ", ".join(f"'cost.dat' using 1:{i + 2} with linespoints lw 2 title '{gp_text(t)}'"
                                   for i, (_, t) in enumerate(keys)),
               "unset logscale", "set format x '%g'"]
        keys2 = [("db_bytes", "database"), ("features_bytes", "feature tables"),
                 ("scores_bytes", "icpml.account_scores")]
        dat("size.dat", ["accounts"] + [k for k, _ in keys2],
            [[c["n"]] + [c[k] / 1048576.0 for k, _ in keys2] for c in R["cost"]])
        gp += ["set output 'size.svg'", "set title 'storage as data grows'", "set xlabel 'accounts'",
               "set ylabel 'MB'", "set logscale x 10", "set logscale y", "set format x '%.0s%c'",
               "plot " + ", ".join(f"'size.dat' using 1:{i + 2} with linespoints lw 2 title '{gp_text(t)}'"
                                   for i, (_, t) in enumerate(keys2)),
               "unset logscale", "set format x '%g'"]
        plots += ["cost.svg", "size.svg"]

    with open(os.path.join(OUT, "plots.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")
    r = subprocess.run(["gnuplot", "plots.gp"], cwd=OUT, capture_output=True, text=True)
    if r.returncode != 0:
        log(f"gnuplot failed: {r.stderr.strip()[-600:]}")
        return []
    return plots


BUSY_CPUS = 0.25 * CORES


def busy(sec):
    return (sec.get("others_cpus") or 0) >= BUSY_CPUS


def write_report(total_s):
    m = R["meta"]
    plots = write_plots()
    L = []
    add = L.append
    loads = [s["load_before"] for s in R["sections"]] + [s["load_after"] for s in R["sections"]] or [0]
    high = [s for s in R["sections"] if busy(s)]
    oth = [s["others_cpus"] for s in R["sections"] if s.get("others_cpus") is not None] or [0]
    add(f"# icpml benchmark, {m['date']}")
    add("")
    add(f"`{m['command']}` on {m['commit']} · {CORES} CPUs · {m['mode']} mode, sizes "
        f"{', '.join(f'{n:,}' for n in SIZES)} · {total_s / 60:.1f} min · PostgreSQL {m['pg_version']} · "
        f"XGBoost {m['xgboost_icpml']} (icpml), {m['xgboost_python']} (python3-xgboost)")
    add("")
    add(f"Load average (1 min) at the start: {m['load_start'][0]:.2f}; at the sections' starts and ends "
        f"{min(loads):.2f}–{max(loads):.2f} (the benchmark's own load included). Processes outside the "
        f"benchmark used {min(oth):.2f}–{max(oth):.2f} CPUs on average per section. "
        + (f"**The machine was shared**: other processes used ≥ {BUSY_CPUS:g} CPU in {len(high)} of "
           f"{len(R['sections'])} sections (marked below). Treat absolute figures as noisy; the ratios are "
           "measured side by side in the same run and hold better." if high else
           f"The machine was quiet: other processes used < {BUSY_CPUS:g} CPU in every section."))
    add("")
    add("## Goals (issue 12)")
    add("")
    add("| figure | value | limit (same run) | ratio | goal | met? |")
    add("|---|---:|---|---:|---|---|")
    for g in R["goals"]:
        note = f" — {g['note']}" if g["note"] else ""
        add(f"| {g['figure']}{note} | {g['value']} | {g['limit']} | {fmt_ratio(g['ratio'])} | {g['goal']} | "
            f"{fmt_met(g['met'])} |")
    add("")
    add("A ratio is icpml's figure over its limit, both from this run (for the per-call figures, the "
        "median over interleaved slices of each slice's ratio). Goals on `recommend_accounts` apply at 1M "
        "accounts; smaller sizes are shown for the curve.")
    if plots:
        add("")
        for p in plots:
            add(f"![{p[:-4]}]({p})")
    if R["icp"]:
        add("")
        add(f"## `icp_score` and its peers ({R['icp'][0]['n']:,} accounts)")
        add("")
        add(f"pgbench `-M prepared` (wrk for the HTTP service), {SECONDS} s per figure and client count in "
            f"{SLICES} interleaved slices; the 1-client runs pin the postmaster, the service and the load "
            f"generator to one CPU. icp_score scored with: {m.get('icp_scored_by', '?')}. The peers return the "
            "probability only (no priority, no factors). A new backend's first PL/Python call imports xgboost "
            f"and loads the model ({m.get('plpython_first_call_ms', 0):.0f} ms); as pgbench connects anew for "
            f"every run, PL/Python's first seconds ({m.get('plpython_skip_s', {})} by client count) are left "
            "out of its figures: its steady state, as behind a connection pool. The FastAPI service runs "
            f"1 uvicorn worker at 1 client and {CORES} (one per CPU) above, each with at most "
            "max(4, 32 / workers) threads and as many database connections; it is started and warmed up "
            "before its client count's runs.")
        add("")
        add("| clients | figure | calls/s | mean latency ms | ÷ PK select | icpml model ÷ it | slices (calls/s) |")
        add("|---:|---|---:|---:|---:|---:|---|")
        model = {(r["clients"]): r for r in R["icp"] if r["variant"] == "icpml model"}
        for r in R["icp"]:
            mx = ""
            if r["variant"] in ("PL/Python + xgboost", "FastAPI + uvicorn") and r["clients"] in model:
                mx = fmt_ratio(model[r["clients"]].get(f"x_{r['variant']}"))
            add(f"| {r['clients']}{' pinned' if r['pinned'] else ''} | {r['variant']} | {r['tps']:,.0f} | "
                f"{r['lat_ms']:.3f} | {fmt_ratio(r['ratio_pk'])} | {mx} | {', '.join(map(str, r['slices']))} |")
    if R["bulk"]:
        add("")
        add("## Bulk scoring (rows/s, one backend, XGBoost nthread 1)")
        add("")
        add("| accounts | figure | rows/s | seconds |")
        add("|---:|---|---:|---:|")
        for r in R["bulk"]:
            add(f"| {r['n']:,} | {r['figure']} | {r['rows_per_s']:,.0f} | "
                f"{'' if r.get('seconds') is None else '%.2f' % r['seconds']} |")
    if R["train"]:
        add("")
        add("## Training: `train_icp_model()` (5-fold CV + refit) vs python3-xgboost")
        add("")
        add("| accounts | labelled rows | icpml s | (of which reading) | python3-xgboost s | ratio | CV AUC icpml / python | best of |")
        add("|---:|---:|---:|---:|---:|---:|---|---:|")
        for t in R["train"]:
            add(f"| {t['n']:,} | {t['rows']:,} | {t['icpml_s']:.2f} | {t['read_s'] or 0:.2f} | {t['python_s']:.2f} | "
                f"{t['icpml_s'] / t['python_s']:.2f} | {t['icpml_auc']:.4f} / {t['python_auc']:.4f} | {t['repeat']} |")
    if R["rec"]:
        add("")
        add(f"## `recommend_accounts` latency (k {REC_K}, M {REC_M}; pgbench per-transaction logs)")
        add("")
        add("| accounts | clients | query | p50 ms | p99 ms | mean ms | calls/s | calls |")
        add("|---:|---:|---|---:|---:|---:|---:|---:|")
        for r in R["rec"]:
            add(f"| {r['n']:,} | {r['clients']}{' pinned' if r['pinned'] else ''} | {r['query']} | {r['p50_ms']:.3f} | "
                f"{r['p99_ms']:.3f} | {r['mean_ms']:.3f} | {r['tps']:,.0f} | {r['count']:,} |")
    if R["memory"]:
        mm = R["memory"]
        add("")
        add(f"## Memory and the first call ({mm['n']:,} accounts)")
        add("")
        add("| calls in one backend | RSS before → after kB | without shared memory | change | memory contexts bytes |")
        add("|---|---:|---:|---:|---:|")
        for what in ("icp_score", "recommend_accounts"):
            x = mm.get(what)
            if x:
                add(f"| {x['calls']:,} `{what}` (after {x['warm']} warm-up) | {x['before_kb']['VmRSS']:,} → "
                    f"{x['after_kb']['VmRSS']:,} | {x['before_kb']['private']:,} → {x['after_kb']['private']:,} | "
                    f"{x['change']:+.1%} | {x['ctx_before']:,} → {x['ctx_after']:,} |")
        fc = mm.get("first_call")
        if fc:
            add("")
            add(f"First `icp_score` in a fresh backend ({fc['trees']} trees, {fc['model_bytes']:,} bytes): "
                f"{fc['first_ms']:.2f} ms (median of {len(fc['first_all_ms'])}: {fc['first_all_ms']}) = "
                f"`LOAD` of the library (with libxgboost) {fc['library_ms']:.2f} ms + the first call "
                f"(catalogs, the deployed model) {fc['first_after_load_ms']:.2f} ms; a warm call "
                f"{fc['second_ms']:.3f} ms; connecting took {fc['connect_ms']:.1f} ms.")
        add("")
        add("Shared buffers a backend touches count in its RSS (RssShmem); the goal is on the rest.")
    if R["cost"]:
        add("")
        add("## Cost as data grows")
        add("")
        add("| accounts | generate s | train + CV s (python) | score_all fill s | rescore s | batch s | "
            "database MB | feature tables MB | account_scores MB | model row on disk (blob) bytes |")
        add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

        def s(x):
            return "" if x is None else f"{x:.2f}"
        for c in R["cost"]:
            add(f"| {c['n']:,} | {s(c['generate_s'])} | {s(c['train_s'])} ({s(c['train_python_s'])}) | "
                f"{s(c['score_all_fill_s'])} | {s(c['score_all_rescore_s'])} | {s(c['batch_s'])} | "
                f"{c['db_bytes'] / 1048576:.0f} | {c['features_bytes'] / 1048576:.0f} | "
                f"{c['scores_bytes'] / 1048576:.1f} | {c['model_row_bytes']:,} ({c['model_blob_bytes']:,}) |")
    add("")
    add("## Machine state")
    add("")
    add(f"Load average (1 min) before and after each section, and the CPUs that processes outside the "
        f"benchmark used on average during it (the machine's busy time from /proc/stat less the CPU time of "
        f"this driver, its children and the cluster's processes; steal: time the hypervisor took). "
        f"Marked busy from {BUSY_CPUS:g} CPU.")
    add("")
    add("| accounts | section | seconds | load before | load after | other processes, CPUs | steal, CPUs |")
    add("|---:|---|---:|---:|---:|---:|---:|")
    for s_ in R["sections"]:
        flag = " (busy)" if busy(s_) else ""
        add(f"| {'' if s_['n'] is None else format(s_['n'], ',')} | {s_['section']}{flag} | {s_['seconds']:.0f} | "
            f"{s_['load_before']:.2f} | {s_['load_after']:.2f} | {s_.get('others_cpus') or 0:.2f} | "
            f"{s_.get('steal_cpus') or 0:.2f} |")
    if R["checks"]:
        add("")
        add("## Checks")
        add("")
        for c in R["checks"]:
            add(f"- {c}")
    add("")
    add("Raw figures: `results.json`; plot data: `*.dat`, `plots.gp`; the log: `bench.log`.")
    with open(os.path.join(OUT, "report.md"), "w") as f:
        f.write("\n".join(L) + "\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    maint = Db(MAINT_DB)
    commit = os.environ.get("ICPML_BENCH_COMMIT", "")
    R["meta"].update(date=time.strftime("%Y-%m-%d %H:%M"), commit=commit or "?", cores=CORES,
                     mode="quick" if QUICK else "full", sizes=SIZES, point_size=POINT_SIZE,
                     command=os.environ.get("ICPML_BENCH_COMMAND", "test/run bench"),
                     pg_version=maint.q1("show server_version"),
                     xgboost_python=xgb.__version__, load_start=loadavg(),
                     config=dict(clients=CLIENTS, seconds=SECONDS, slices=SLICES, pin=PIN, reps=REPS,
                                 rec_clients=REC_CLIENTS, rec_seconds=REC_SECONDS, rec_warm=REC_WARM,
                                 mem_score_calls=MEM_SCORE_CALLS, mem_rec_calls=MEM_REC_CALLS,
                                 users=USERS, peers=PEERS))
    global POSTMASTER
    try:
        with open(os.path.join(maint.q1("select pg_catalog.current_setting('data_directory')"),
                               "postmaster.pid")) as f:
            POSTMASTER = int(f.readline())
    except (OSError, ValueError) as e:
        log(f"cannot read the postmaster's pid ({e}): the CPU of other processes includes the cluster's")
    maint.q("create extension if not exists icpml")
    R["meta"]["xgboost_icpml"] = maint.q1("select icpml.xgboost_version()")
    maint.close()
    log(f"icpml benchmark ({R['meta']['mode']}): sizes {SIZES}, icp_score and memory at {POINT_SIZE:,}, "
        f"clients {CLIENTS}, {SECONDS} s per figure in {SLICES} slices, out {OUT}")
    t0 = time.perf_counter()
    try:
        for n in SIZES:
            bench_size(n)
    finally:
        goals_from_results()
        # order: the per-call goals first, as in the issue
        order = ["`icp_score`", "`score_all()`", "`icp_score_batch", "`recommend", "backend RSS", "first `icp",
                 "train"]
        R["goals"].sort(key=lambda g: next((i for i, p in enumerate(order) if g["figure"].startswith(p)), 99))
        total = time.perf_counter() - t0
        R["meta"]["seconds"] = total
        with open(os.path.join(OUT, "results.json"), "w") as f:
            json.dump(R, f, indent=1, default=str)
        write_report(total)
        log(f"report: {os.path.join(OUT, 'report.md')}")


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
