-- pgbench: the floor of icp_score, a primary-key select of the same feature
-- row icp_score reads (pgbench -D n=<largest account id>)
\set aid random(1, :n)
select * from public.account_features where account_id = :aid;
