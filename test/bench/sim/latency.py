#!/usr/bin/python3
"""Latency of icpml.recommend_accounts with pgbench (per-transaction logs).

For one prepared database (reference data + icpml + account_scores), runs
with one client and prepared statements:

  warm      recommend + one 'save' on the top account (builds bandit state
            for the global model and every user), then process_feedback
  baseline  SELECT 1, and a primary-key SELECT on account_signals
  recommend recommend_accounts(random user, k, policy, candidates => M)

and computes p50 / p99 / mean from pgbench's -l logs (column 3, microseconds),
dropping each run's first WARMUP transactions (a new backend's first calls
load caches). Prints one JSON object per measured script on stdout.
Connection from PGHOST / PGPORT / PGUSER.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def pgbench(db, script_text, seconds=None, transactions=None, clients=1, log=False,
            defines=None, workdir=None):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", dir=workdir, delete=False) as f:
        f.write(script_text)
        path = f.name
    cmd = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients), "-f", path]
    if seconds:
        cmd += ["-T", str(seconds)]
    if transactions:
        cmd += ["-t", str(transactions)]
    for k, v in (defines or {}).items():
        cmd += ["-D", f"{k}={v}"]
    prefix = None
    if log:
        prefix = os.path.join(workdir, "lat")
        for fn in os.listdir(workdir):
            if fn.startswith("lat."):
                os.unlink(os.path.join(workdir, fn))
        cmd += ["-l", "--log-prefix", prefix]
    cmd.append(db)
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    os.unlink(path)
    if res.returncode != 0:
        sys.stderr.write(res.stdout + res.stderr)
        raise SystemExit(f"pgbench failed on {db}")
    if not log:
        return None
    lat = []
    for fn in sorted(os.listdir(workdir)):
        if fn.startswith("lat."):
            with open(os.path.join(workdir, fn)) as fh:
                lat.append([int(line.split()[2]) for line in fh if line.strip()])
    return lat


def stats(per_client, warmup):
    xs = np.concatenate([np.array(c[warmup:], dtype=np.float64) for c in per_client]) / 1000.0
    return dict(n=int(xs.size), p50_ms=float(np.percentile(xs, 50)),
                p99_ms=float(np.percentile(xs, 99)), mean_ms=float(xs.mean()),
                max_ms=float(xs.max()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("db")
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--accounts", type=int, required=True)
    ap.add_argument("--seed", type=int, default=42, help="generator seed (user ids)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--candidates", type=int, default=1000)
    ap.add_argument("--policies", default="linucb,thompson")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("LAT_SECONDS", 20)))
    ap.add_argument("--warm", type=int, default=int(os.environ.get("LAT_WARM", 2000)),
                    help="recommend+feedback transactions before measuring")
    ap.add_argument("--warmup", type=int, default=50, help="transactions dropped per run")
    args = ap.parse_args()

    user = f"md5('icpml-ref-user:{args.seed}:' || :j)::uuid"
    work = tempfile.mkdtemp(prefix="icpml_lat_")
    os.chmod(work, 0o755)
    d = dict(nusers=args.users, naccounts=args.accounts)

    if args.warm > 0:
        pgbench(args.db, f"""\\set j random(1, :nusers)
SELECT r.account_id AS acc FROM icpml.recommend_accounts({user}, {args.k}, NULL, {args.candidates}, NULL) r ORDER BY r.rank LIMIT 1 \\gset
INSERT INTO public.user_interactions (user_id, account_id, interaction_type) VALUES ({user}, :acc, 'save');
""", transactions=args.warm, defines=d, workdir=work)
        subprocess.run(["psql", "-X", "-q", "-d", args.db, "-c",
                        "select icpml.process_feedback(as_of => now() + interval '30 days')",
                        "-c", "vacuum analyze icpml.recommendations"],
                       check=True, capture_output=True)

    scripts = [
        ("select 1", "SELECT 1;\n"),
        ("PK select (account_signals)", "\\set a random(1, :naccounts)\n"
         "SELECT * FROM public.account_signals WHERE account_id = :a;\n"),
    ]
    for p in [p.strip() for p in args.policies.split(",") if p.strip()]:
        scripts.append((f"recommend_accounts ({p}, k={args.k}, M={args.candidates})",
                        f"\\set j random(1, :nusers)\n"
                        f"SELECT * FROM icpml.recommend_accounts({user}, {args.k}, '{p}', "
                        f"{args.candidates}, NULL);\n"))
    for name, text in scripts:
        secs = args.seconds if name.startswith("recommend") else max(3, args.seconds // 4)
        lat = pgbench(args.db, text, seconds=secs, log=True, defines=d, workdir=work)
        s = stats(lat, args.warmup)
        with open("/proc/loadavg") as fh:
            load1 = float(fh.read().split()[0])
        s.update(query=name, accounts=args.accounts, seconds=secs, load1=load1,
                 cores=os.cpu_count())
        print(json.dumps(s), flush=True)


if __name__ == "__main__":
    main()
