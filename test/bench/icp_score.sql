-- pgbench: one ICP score of a random account (pgbench -D n=<largest account id>)
\set aid random(1, :n)
select * from icpml.icp_score(:aid);
