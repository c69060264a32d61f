-- ---------------------------------------------------------------------------
-- Feedback: what the interactions did to the impressions and the bandit
-- (feedback.c; docs/recommender.md, "Feedback")
--
--   feedback_events  one row per interaction attributed to an impression:
--                    its reward, the change it made to the impression's
--                    reward (the aggregate over the window) and the number of
--                    the state update that change was (the impression's
--                    finalize_seq for its first one); with
--                    icpml.recommendations, the log rebuild_bandit_state()
--                    replays
--   bandit_queue     updates of the shared model not yet folded into it
--                    (state_updates = 'queued'): writers append, whoever holds
--                    the shared state row folds them in and deletes them
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.feedback_events (
  recommendation_id bigint NOT NULL,
  interaction_id    bigint NOT NULL,
  interaction_type  text NOT NULL,
  reward            double precision NOT NULL,
  delta             double precision NOT NULL,
  update_seq        bigint,
  created_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (recommendation_id, interaction_id)
);

CREATE INDEX feedback_events_interaction_idx ON icpml.feedback_events (interaction_id);

COMMENT ON TABLE icpml.feedback_events IS
  'Every interaction attributed to an impression: its reward (reward_map), the change it made to the impression''s reward (delta) and the state update that change was (update_seq: the impression''s finalize_seq for the first, a later number from recommendations_finalize_seq for an improvement, NULL when it changed nothing)';

CREATE TABLE icpml.bandit_queue (
  update_seq        bigint PRIMARY KEY,
  recommendation_id bigint NOT NULL,
  first             boolean NOT NULL,
  reward            double precision NOT NULL
);

COMMENT ON TABLE icpml.bandit_queue IS
  'Updates of the shared (global) bandit state not yet folded into it: the first reward of an impression (first: counted in A and b) or the change of its reward (b only); folded in update_seq order by whoever holds the global state row (a feedback writer, process_feedback, rebuild_bandit_state)';
