#!/usr/bin/python3
"""Repeated A/B tests with daily peeking, replayed on simulator logs.

Figures, not a test: how often icpml.experiment_results() declares a
difference between equal variants when it is looked at every day (fixed
horizon against the always-valid columns), how soon it finds a real one,
and by how much CUPED narrows the intervals.  docs/experiments.md has the
results and the commands.

Input: databases that simulate.py ran a policy in and kept (--keep-dbs),
from the same base and seed (common random numbers: the same user is drawn
in the same round of every run).  Each run happens within minutes of wall
clock, so the log is first put on a simulated timeline: round t (one
recommend_accounts call, one transaction) is served at T0 + t / R days (R =
--rounds-per-day), and a row finalized in the transaction of round t' is
finalized at T0 + t' / R days.  The first --pre-days days are the
pre-period (the CUPED covariate), the next --days days the experiment.

Replicates: an experiment is a hash of its name and the user id, so every
name splits the same users anew, independently of everything the users
did.  For each of --replicates names:

  A/A  (--db only): the rows of the experiment period are labelled with the
       name and each user's variant; both variants got the same policy.
  A/B  (--db-b too): users of the first variant keep their rows from --db,
       users of the second get theirs from --db-b (the other policy, same
       world and the same rounds): a real difference.

and experiment_results(name, as_of => start + d days) is read for every day
d = 1 .. --days.  A replicate "rejects" when a p-value falls below 0.05 on
any day (peeking) or on the last day (one look at the planned end).

Connection from the usual PGHOST / PGPORT / PGUSER environment.
"""

import argparse
import json
import sys
import time

import numpy as np
import psycopg2

T0 = "2030-01-01 00:00:00+00"


def connect(db):
    conn = psycopg2.connect(dbname=db, application_name="icpml_experiments")
    conn.autocommit = True
    return conn


def put_on_timeline(cur, rounds_per_day):
    """Rewrite served_at / finalized_at to simulated time (once per database)."""
    cur.execute("select to_regclass('public.sim_rounds') is not null")
    if cur.fetchone()[0]:
        return
    step = f"{86400.0 / rounds_per_day} seconds"
    cur.execute("""
      create table public.sim_rounds as
      select s.served_at as wall, (row_number() over (order by s.served_at) - 1)::int as t
      from (select distinct served_at from icpml.recommendations) s;
      create unique index on public.sim_rounds (wall);
      update icpml.recommendations r
         set finalized_at = case when r.finalized_at is null then null else
               %(t0)s::timestamptz + %(step)s::interval *
               (select max(m.t) from public.sim_rounds m where m.wall <= r.finalized_at) end,
             served_at = %(t0)s::timestamptz + %(step)s::interval * m.t
        from public.sim_rounds m
       where m.wall = r.served_at;
    """, dict(t0=T0, step=step))
    cur.execute("vacuum analyze icpml.recommendations")


def copy_other_log(cur_a, cur_b, start):
    """The experiment-period rows of --db-b into public.sim_rows_b of --db."""
    cols = ("user_id, account_id, rank, policy, context, score, expected_reward, propensity, "
            "state_version, status, reward, finalized_at, served_at, source")
    cur_a.execute(f"drop table if exists public.sim_rows_b; "
                  f"create table public.sim_rows_b as select {cols} from icpml.recommendations limit 0")
    cur_b.execute(f"select {cols} from icpml.recommendations where served_at >= %s", (start,))
    rows = cur_b.fetchall()
    args = ",".join(cur_a.mogrify("(" + ",".join(["%s"] * 14) + ")", r).decode() for r in rows)
    cur_a.execute(f"insert into public.sim_rows_b ({cols}) values {args}")
    return len(rows)


def label(cur, name, start, composed):
    """Put the experiment-period rows under experiment `name`."""
    cur.execute("""
      delete from icpml.recommendations where experiment is not null and policy = 'sim:b';
      update icpml.recommendations set experiment = null, variant = null where experiment is not null;
      create temp table if not exists sim_assign (user_id uuid primary key, variant text);
      truncate sim_assign;
      insert into sim_assign
      select u.user_id, icpml.experiment_variant(%(name)s, u.user_id)
      from (select distinct user_id from icpml.recommendations where served_at >= %(start)s) u;
    """, dict(name=name, start=start))
    if composed:
        # first variant: this log's rows; second: the other log's rows
        cur.execute("""
          update icpml.recommendations r set experiment = %(name)s, variant = a.variant
            from sim_assign a, icpml.experiments e
           where e.name = %(name)s and a.user_id = r.user_id and r.served_at >= %(start)s
             and a.variant = e.variants[1];
          insert into icpml.recommendations (user_id, account_id, rank, policy, context, score,
                 expected_reward, propensity, state_version, status, reward, finalized_at, served_at,
                 finalize_seq, experiment, variant, source)
          select b.user_id, b.account_id, b.rank, 'sim:b', b.context, b.score, b.expected_reward,
                 b.propensity, b.state_version, b.status, b.reward, b.finalized_at, b.served_at,
                 case when b.status <> 'pending' then nextval('icpml.recommendations_finalize_seq') end,
                 %(name)s, a.variant, b.source
            from public.sim_rows_b b
            join sim_assign a on a.user_id = b.user_id
            join icpml.experiments e on e.name = %(name)s and a.variant = e.variants[2];
        """, dict(name=name, start=start))
    else:
        cur.execute("""
          update icpml.recommendations r set experiment = %(name)s, variant = a.variant
            from sim_assign a
           where a.user_id = r.user_id and r.served_at >= %(start)s;
        """, dict(name=name, start=start))


COLS = ("variant, users, finalized, reward_per_impression, ci_low, ci_high, p_value, "
        "seq_ci_low, seq_ci_high, seq_p_value, cuped_reward_per_impression, cuped_ci_low, "
        "cuped_ci_high, cuped_p_value, cuped_seq_p_value, variance_reduction, covariate_users, srm_p_value")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True, help="a kept simulator database (the control's log)")
    ap.add_argument("--db-b", default=None, help="another one, same base and seed (the treatment's log)")
    ap.add_argument("--rounds-per-day", type=float, default=100)
    ap.add_argument("--pre-days", type=int, default=14)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--expected-lift", type=float, default=0.1)
    ap.add_argument("--lift", type=float, default=0.0,
                    help="A/A log with a known effect: the second variant's rewards times (1 + lift)")
    ap.add_argument("--prefix", default="sim")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    conn = connect(args.db)
    cur = conn.cursor()
    put_on_timeline(cur, args.rounds_per_day)
    cur.execute("select %s::timestamptz + %s * interval '1 day', count(*), count(distinct user_id),"
                " max(served_at) from icpml.recommendations",
                (T0, args.pre_days))
    start, n_rows, n_users, last = cur.fetchone()
    composed = args.db_b is not None
    if composed:
        cb = connect(args.db_b)
        put_on_timeline(cb.cursor(), args.rounds_per_day)
        n_b = copy_other_log(cur, cb.cursor(), start)
        cb.close()
        print(f"{args.db_b}: {n_b} experiment-period rows copied", file=sys.stderr)
    cur.execute("select policy, count(*) from icpml.recommendations group by 1 order by 2 desc")
    policies = dict(cur.fetchall())
    labels = ["icp", "linucb"]
    if composed:
        cur.execute("select policy from public.sim_rows_b group by 1 order by count(*) desc limit 1")
        pb = cur.fetchone()[0]
        pa = next(iter(policies))
        if pa != pb:
            labels = [pa, pb]
        policies["(from --db-b) " + pb] = n_b
    print(f"{args.db}: {n_rows} rows, {n_users} users, policies {policies}, last served {last}, "
          f"experiment starts {start}", file=sys.stderr)

    cur.execute("delete from icpml.recommendations where policy = 'sim:b'; "
                "update icpml.recommendations set experiment = null, variant = null "
                "where experiment is not null; delete from icpml.experiments")
    if args.lift:
        # the lift multiplies a copy: the log's own rewards are restored before every replicate
        cur.execute("create table if not exists public.sim_reward as"
                    " select recommendation_id, reward from icpml.recommendations")
    t_start = time.time()
    reps = []
    for j in range(args.replicates):
        name = f"{args.prefix}-{j:04d}"
        cur.execute("insert into icpml.experiments (name, variants, weights, status, started_at, stopped_at)"
                    " values (%s, %s, array[1, 1]::float8[], 'stopped', %s,"
                    " %s::timestamptz + %s * interval '1 day')",
                    (name, labels, start, start, args.days))
        if args.lift:
            cur.execute("update icpml.recommendations r set reward = o.reward from public.sim_reward o"
                        " where o.recommendation_id = r.recommendation_id and r.reward is distinct from o.reward")
        label(cur, name, start, composed)
        if args.lift:
            cur.execute("update icpml.recommendations r set reward = r.reward * %s from icpml.experiments e"
                        " where e.name = %s and r.experiment = e.name and r.variant = e.variants[2]"
                        " and r.reward is not null", (1 + args.lift, name))
        days = []
        for d in range(1, args.days + 1):
            cur.execute(f"select {COLS} from icpml.experiment_results(%s, expected_lift => %s,"
                        f" pre_period => %s * interval '1 day', as_of => %s::timestamptz + %s * interval '1 day')",
                        (name, args.expected_lift, args.pre_days, start, d))
            rows = cur.fetchall()
            c, t = rows[0], rows[1]
            days.append(dict(day=d, users=[c[1], t[1]], finalized=[c[2], t[2]], rate=[c[3], t[3]],
                             ci=[c[5] - c[4] if c[4] is not None else None,
                                 t[5] - t[4] if t[4] is not None else None],
                             seq_ci=[c[8] - c[7] if c[7] is not None else None,
                                     t[8] - t[7] if t[7] is not None else None],
                             cuped_ci=[c[12] - c[11] if c[11] is not None else None,
                                       t[12] - t[11] if t[11] is not None else None],
                             cuped_rate=[c[10], t[10]],
                             p=t[6], seq_p=t[9], cuped_p=t[13], cuped_seq_p=t[14],
                             var_reduction=t[15], covariate_users=c[16] + t[16], srm_p=t[17]))
        reps.append(dict(name=name, days=days))
        if args.replicates >= 10 and (j + 1) % (args.replicates // 10) == 0:
            cur.execute("vacuum icpml.recommendations")
            print(f"  {j + 1} replicates, {time.time() - t_start:.0f} s", file=sys.stderr, flush=True)
    cur.execute("delete from icpml.recommendations where policy = 'sim:b'; "
                "update icpml.recommendations set experiment = null, variant = null "
                "where experiment is not null")
    if args.lift:
        cur.execute("update icpml.recommendations r set reward = o.reward from public.sim_reward o"
                    " where o.recommendation_id = r.recommendation_id and r.reward is distinct from o.reward")
    conn.close()

    summary = summarise(reps, args)
    print(report(summary, args, composed, policies))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), summary=summary, replicates=reps), f, indent=1, default=str)


def first_day(days, key, alpha=0.05):
    for x in days:
        if x[key] is not None and x[key] < alpha:
            return x["day"]
    return None


def summarise(reps, args):
    n = len(reps)
    out = dict(replicates=n)
    for key in ("p", "seq_p", "cuped_p", "cuped_seq_p"):
        any_day = [first_day(r["days"], key) for r in reps]
        last = [r["days"][-1][key] for r in reps]
        out[key] = dict(
            reject_any_day=sum(d is not None for d in any_day) / n,
            reject_last_day=sum(p is not None and p < 0.05 for p in last) / n,
            median_first_day=(float(np.median([d for d in any_day if d is not None]))
                              if any(d is not None for d in any_day) else None))
    last = [r["days"][-1] for r in reps]

    def mean(vals):
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None

    out["last_day"] = dict(
        users=mean([sum(x["users"]) for x in last]),
        finalized=mean([sum(x["finalized"]) for x in last]),
        rate=[mean([x["rate"][0] for x in last]), mean([x["rate"][1] for x in last])],
        ci_width=mean([x["ci"][1] for x in last]),
        seq_ci_width=mean([x["seq_ci"][1] for x in last]),
        cuped_ci_width=mean([x["cuped_ci"][1] for x in last]),
        var_reduction=mean([x["var_reduction"] for x in last]),
        covariate_users=mean([x["covariate_users"] for x in last]),
        srm_below_001=sum(x["srm_p"] is not None and x["srm_p"] < 0.001 for x in last) / len(last))
    # the same difference with and without CUPED: its spread over replicates
    d_plain = [x["rate"][1] - x["rate"][0] for x in last if x["rate"][0] is not None and x["rate"][1] is not None]
    d_cuped = [x["cuped_rate"][1] - x["cuped_rate"][0] for x in last
               if x["cuped_rate"][0] is not None and x["cuped_rate"][1] is not None]
    out["difference"] = dict(mean=mean(d_plain), sd=float(np.std(d_plain, ddof=1)) if len(d_plain) > 1 else None,
                             cuped_mean=mean(d_cuped),
                             cuped_sd=float(np.std(d_cuped, ddof=1)) if len(d_cuped) > 1 else None)
    return out


def report(s, args, composed, policies):
    kind = ("A/B (a real difference)" if composed else
            f"A/A with a known lift of {100 * args.lift:g} % (the second variant's rewards x {1 + args.lift:g})"
            if args.lift else "A/A (equal variants)")
    lines = [f"{kind}: {s['replicates']} replicates, {args.days} daily looks after {args.pre_days} pre-period days, "
             f"{args.rounds_per_day:g} rounds a day, expected_lift {args.expected_lift}; policies in the log {policies}",
             "",
             "| p-value | rejects (p < 0.05) on any of the daily looks | rejects at the last look | median first day |",
             "|---|---:|---:|---:|"]
    names = dict(p="fixed horizon", seq_p="sequential (mSPRT)", cuped_p="CUPED, fixed horizon",
                 cuped_seq_p="CUPED, sequential")
    for key in ("p", "seq_p", "cuped_p", "cuped_seq_p"):
        x = s[key]
        first = "–" if x["median_first_day"] is None else f"{x['median_first_day']:g}"
        lines.append(f"| {names[key]} | {100 * x['reject_any_day']:.1f} % | {100 * x['reject_last_day']:.1f} % | "
                     f"{first} |")
    ld = s["last_day"]
    lines += ["",
              f"At the last look (means over replicates): {ld['users']:.0f} users, {ld['finalized']:.0f} finalized "
              f"impressions, rates {ld['rate'][0]:.4f} / {ld['rate'][1]:.4f}; width of the treatment's 95 % interval: "
              f"fixed {ld['ci_width']:.4f}, sequential {ld['seq_ci_width']:.4f}, CUPED {ld['cuped_ci_width'] or float('nan'):.4f}; "
              f"CUPED removed {100 * (ld['var_reduction'] or 0):.1f} % of the variance of the difference "
              f"({ld['covariate_users']:.0f} users with a pre-period); SRM p < 0.001 in {100 * ld['srm_below_001']:.1f} %.",
              f"Difference treatment − control over replicates: mean {s['difference']['mean']:.4f}, sd "
              f"{s['difference']['sd'] or float('nan'):.4f}; CUPED mean {s['difference']['cuped_mean'] or float('nan'):.4f}, "
              f"sd {s['difference']['cuped_sd'] or float('nan'):.4f}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
