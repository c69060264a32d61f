#!/usr/bin/env python3
"""Write docs/reference.md from an installed icpml: every function and procedure
of the extension (signature, result, volatility and its COMMENT), every table and
view (COMMENT), every setting (pg_settings).  Grouped by the install source
(src/sql/NN_*.sql) that defines it.

  PGHOST=... PGPORT=... PGDATABASE=... test/docs/reference.py > docs/reference.md

A superuser connection to a database where icpml is installed (e.g. the cluster of
`test/run demo --keep`); ICPML_PGBIN picks the psql.  test/t/052_docs_reference.pl
checks that the file names every function, parameter, table and setting.
"""
import glob
import os
import re
import subprocess
import sys

PSQL = [os.path.join(os.environ["ICPML_PGBIN"], "psql") if os.environ.get("ICPML_PGBIN") else "psql",
        "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-F", "\x1f", "-R", "\x1e"]
def q(sql):
    # the scoring role's set: a role that grant_scoring() sets up, rolled back
    out = subprocess.run(PSQL + ["-c", "BEGIN", "-c", "SET LOCAL client_min_messages = warning",
                                 "-c", "CREATE ROLE icpml_reference_scoring",
                                 "-c", "SELECT FROM icpml.grant_scoring('icpml_reference_scoring')",
                                 "-c", sql, "-c", "ROLLBACK"],
                         check=True, capture_output=True, text=True).stdout
    return [r.split("\x1f") for r in out.split("\x1e") if r.strip("\n")]
src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "sql")
filemap = {}
order = {}
override = {"verify_model": "30_train.sql"}
for f in sorted(glob.glob(src + "/[0-9]*.sql")):
    for m in re.finditer(r"(?:FUNCTION|PROCEDURE) icpml\.([a-z_0-9]+)\(", open(f).read()):
        filemap.setdefault(m.group(1), os.path.basename(f))
        order.setdefault(m.group(1), (os.path.basename(f), m.start()))
rows = q(r"""
SELECT p.proname, p.prokind::text, pg_catalog.pg_get_function_arguments(p.oid),
       coalesce(pg_catalog.pg_get_function_result(p.oid), ''),
       p.provolatile::text, coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), ''),
       (p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype)::text,
       pg_catalog.has_function_privilege('icpml_reference_scoring', p.oid, 'EXECUTE')::text
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
   AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'icpml'
 ORDER BY p.proname""")
groups = [
 ("Scoring", ["00_core.sql", "10_rules.sql", "25_scores.sql", "38_export.sql"]),
 ("Training and models", ["30_train.sql", "20_models.sql", "35_tree.sql"]),
 ("Watching a deployed model", ["36_health.sql"]),
 ("Recommending and feedback", ["40_bandit.sql", "41_feedback.sql", "42_retrieval.sql"]),
 ("Experiments and bandit health", ["45_experiments.sql", "46_bandit_health.sql", "47_ope.sql"]),
 ("Scheduling and maintenance", ["60_schedule.sql", "65_maintenance.sql"]),
 ("Roles and backups", ["99_privileges.sql", "90_dump.sql"]),
]
internal_names = {"chi_square_sf", "normal_sf", "model_version_or_deployed", "require_pg_cron",
                  "training_lock_key", "maintenance_lock_key", "invalidate_cache", "score_queue_tables", "is_relation_name", "job_role"}
vol = {"s": "STABLE", "v": "VOLATILE", "i": "IMMUTABLE"}
def esc(s): return s.replace("|", "\\|").replace("\n", " ")
out = ["""# Reference

Generated from the catalog of a fresh install by `test/docs/reference.py` (the
descriptions are the objects' `COMMENT`s; `\\df+ icpml.*` shows the same).
Everything lives in schema `icpml`. Functions marked **Scoring role.** are what
`authenticated` (on Supabase) and `grant_scoring()` roles may call; everything else is for
the owner, `service_role` and `icpml_admin` members ([security](security.md)). Every
function has named parameters and no overloads: call with `name => value`.

`icpml.icp_score_result` is `(account_id bigint, score integer, priority text, probability
double precision, model text, model_version integer, factors jsonb, factor_method text)`.

## Functions
"""]
internal = []
bygroup = {g: [] for g, _ in groups}
for name, kind, args, res, v, com, trig, scoring in rows:
    if trig == "true" or name in internal_names:
        internal.append((name, args, com)); continue
    f = override.get(name, filemap.get(name))
    g = next((g for g, fs in groups if f in fs), None)
    if g is None: sys.exit("no group for %s (%s)" % (name, f))
    bygroup[g].append((name, kind, args, res, v, com, scoring == "true"))
def splitargs(a):
    parts, depth, cur = [], 0, ""
    for ch in a:
        if ch == "(": depth += 1
        if ch == ")": depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip()); cur = ""
        else: cur += ch
    if cur.strip(): parts.append(cur.strip())
    return parts
def tidy(p):
    p = re.sub(r" DEFAULT (NULL|'[^']*'|[-0-9.]+|true|false|ARRAY\[\]|'\{\}')::[a-z][a-z ]*(\[\])?$", r" = \1", p)
    p = re.sub(r" DEFAULT (.*)$", r" = \1", p)
    return p
for g, _ in groups:
    bygroup[g].sort(key=lambda r: order.get(r[0], ("", 0)))
    out.append("### %s\n" % g)
    out.append("| function | returns | volatility | what |\n|---|---|---|---|")
    for name, kind, args, res, v, com, scoring in bygroup[g]:
        ps = splitargs(args)
        outs = [p[4:].split(" ")[0] for p in ps if p.startswith("OUT ")]
        ins = [tidy(p) for p in ps if not p.startswith("OUT ")]
        sig = "%s%s(%s)" % ("CALL " if kind == "p" else "", name, ", ".join(ins))
        if outs and res in ("record", "SETOF record"):
            res = ("SETOF " if res.startswith("SETOF") else "") + "(" + ", ".join(outs) + ")"
        who = " **Scoring role.**" if scoring else ""
        out.append("| `%s` | %s | %s | %s%s |" % (esc(sig), ("`%s`" % esc(res)) if res else "(procedure)", vol[v] if kind != "p" else "", esc(com), who))
    out.append("")
out.append("### Internal helpers\n\nNot for direct use (trigger functions, helpers of the functions above); granted to no one but\nthe administrators where they need them.\n")
out.append("| function | what |\n|---|---|")
for name, args, com in internal:
    out.append("| `%s(%s)` | %s |" % (name, esc(args), esc(com) or "drops the cached model and settings of this backend"))
out.append("")
rels = q(r"""SELECT c.relname, c.relkind::text, coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '')
  FROM pg_catalog.pg_class c WHERE c.relnamespace = 'icpml'::pg_catalog.regnamespace AND c.relkind IN ('r','v','p','m') ORDER BY 1""")
out.append("## Tables and views\n\nWhat `pg_dump` keeps of them: [backups](backups.md); who may read them: [security](security.md).\n")
out.append("| relation | kind | what |\n|---|---|---|")
for n, k, c in rels:
    out.append("| `icpml.%s` | %s | %s |" % (n, "view" if k == "v" else "table", esc(c)))
out.append("")
gucs = q(r"""LOAD 'icpml'; SELECT name, boot_val, context, short_desc FROM pg_catalog.pg_settings WHERE name LIKE 'icpml.%' ORDER BY 1""")
out.append("## Settings\n\n| setting | default | who may set it | what |\n|---|---|---|---|")
for n, b, c, d in gucs:
    out.append("| `%s` | `%s` | %s | %s |" % (n, b, "anyone" if c == "user" else "superusers and `icpml_admin`", esc(d)))
print("\n".join(out))
