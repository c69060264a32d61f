-- The native tree evaluator (icp_score's fast path) agrees with XGBoost.
--
-- verify_tree_evaluator trains a booster on seeded synthetic data (about 20%
-- missing values; with categorical => true every third column categorical,
-- split by category sets, not one-hot) and compares the native evaluator
-- with XGBoost on the training rows plus as many rows probing the model's
-- thresholds (at, just below, just above), category sets (in, out, beyond
-- the set, negative, fractional, huge) and missing values.
--
-- The evaluator reproduces XGBoost's float arithmetic in XGBoost's order,
-- so the differences are 0 here.  The test allows 1e-5: room for an XGBoost
-- build whose float operations are contracted differently (FMA), while a
-- single wrong branch moves a margin by a leaf value (1e-3 or more).  The
-- sum of XGBoost's exact SHAP values must equal the margin within 1e-4
-- (XGBoost computes and sums them in float).
SET icpml.nthread = 1;

SELECT c.config, v.n_rows, v.n_trees,
       v.n_categorical_splits > 0 AS categorical_splits,
       v.max_abs_margin_diff < 1e-5 AS margin_ok,
       v.max_abs_contrib_diff < 1e-5 AS contrib_ok,
       v.max_abs_probability_diff < 1e-6 AS probability_ok,
       v.max_abs_shap_sum_diff < 1e-4 AS shap_sums_to_margin
FROM (VALUES
        ('defaults (categorical)', 2000, 12, 50, 6, true, 1),
        ('numeric only', 2000, 12, 50, 6, false, 1),
        ('shallow, many rounds', 1000, 6, 300, 2, true, 2),
        ('deep', 3000, 8, 30, 12, true, 3),
        ('stumps, one feature', 100, 1, 5, 1, false, 4),
        ('wide', 1500, 40, 40, 5, true, 5)
     ) AS c(config, rows, features, rounds, max_depth, categorical, seed),
     LATERAL icpml.verify_tree_evaluator(rows => c.rows, features => c.features,
                                         rounds => c.rounds, max_depth => c.max_depth,
                                         categorical => c.categorical, seed => c.seed) v;

-- the exact differences observed (0 = bit-identical to XGBoost)
SELECT max_abs_margin_diff = 0 AS margin_identical,
       max_abs_contrib_diff = 0 AS contrib_identical,
       max_abs_probability_diff = 0 AS probability_identical
FROM icpml.verify_tree_evaluator();

-- a saved model (XGBoost JSON; UBJSON works the same), probed with its own splits
SELECT n_rows, n_trees, n_categorical_splits,
       max_abs_margin_diff < 1e-5 AS margin_ok,
       max_abs_contrib_diff < 1e-5 AS contrib_ok,
       max_abs_shap_sum_diff < 1e-4 AS shap_sums_to_margin
FROM icpml.verify_tree_model(convert_to($json${"learner":{"attributes":{"best_iteration":"0","best_ntree_limit":"1"},"feature_names":[],"feature_types":[],"gradient_booster":{"model":{"gbtree_model_param":{"num_parallel_tree":"1","num_trees":"1","size_leaf_vector":"0"},"tree_info":[0],"trees":[{"base_weights":[-1.9607844E-2,-1.9238095E0,1.9223301E0],"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[],"default_left":[1,0,0],"id":0,"left_children":[1,-1,-1],"loss_changes":[1.9228812E2,0E0,0E0],"parents":[2147483647,0,0],"right_children":[2,-1,-1],"split_conditions":[9.9226665E-3,-5.771429E-1,5.766991E-1],"split_indices":[0,0,0],"split_type":[0,0,0],"sum_hessian":[5E1,2.525E1,2.475E1],"tree_param":{"num_deleted":"0","num_feature":"2","num_nodes":"3","size_leaf_vector":"0"}}]},"name":"gbtree"},"learner_model_param":{"base_score":"5E-1","boost_from_average":"1","num_class":"0","num_feature":"2","num_target":"1"},"objective":{"name":"binary:logistic","reg_loss_param":{"scale_pos_weight":"1"}}},"version":[1,7,4]}$json$, 'UTF8'), rows => 500);

-- models the native evaluator does not support: a clear error (scoring falls back)
-- gblinear
SELECT * FROM icpml.verify_tree_model(convert_to($json${"learner":{"attributes":{"best_iteration":"0","best_ntree_limit":"0"},"feature_names":[],"feature_types":[],"gradient_booster":{"model":{"boosted_rounds":1,"weights":[7.643047E-1,1.1619441E-2,-1E-2]},"name":"gblinear"},"learner_model_param":{"base_score":"5E-1","boost_from_average":"1","num_class":"0","num_feature":"2","num_target":"1"},"objective":{"name":"binary:logistic","reg_loss_param":{"scale_pos_weight":"1"}}},"version":[1,7,4]}$json$, 'UTF8'));
-- dart
SELECT * FROM icpml.verify_tree_model(convert_to($json${"learner":{"attributes":{"best_iteration":"0","best_ntree_limit":"1"},"feature_names":[],"feature_types":[],"gradient_booster":{"gbtree":{"model":{"gbtree_model_param":{"num_parallel_tree":"1","num_trees":"1","size_leaf_vector":"0"},"tree_info":[0],"trees":[{"base_weights":[-1.9607844E-2,-1.9238095E0,1.9223301E0],"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[],"default_left":[1,0,0],"id":0,"left_children":[1,-1,-1],"loss_changes":[1.9228812E2,0E0,0E0],"parents":[2147483647,0,0],"right_children":[2,-1,-1],"split_conditions":[9.9226665E-3,-5.771429E-1,5.766991E-1],"split_indices":[0,0,0],"split_type":[0,0,0],"sum_hessian":[5E1,2.525E1,2.475E1],"tree_param":{"num_deleted":"0","num_feature":"2","num_nodes":"3","size_leaf_vector":"0"}}]},"name":"gbtree"},"name":"dart","weight_drop":[1E0]},"learner_model_param":{"base_score":"5E-1","boost_from_average":"1","num_class":"0","num_feature":"2","num_target":"1"},"objective":{"name":"binary:logistic","reg_loss_param":{"scale_pos_weight":"1"}}},"version":[1,7,4]}$json$, 'UTF8'));
-- multi:softprob (3 classes)
SELECT * FROM icpml.verify_tree_model(convert_to($json${"learner":{"attributes":{"best_iteration":"0","best_ntree_limit":"1"},"feature_names":[],"feature_types":[],"gradient_booster":{"model":{"gbtree_model_param":{"num_parallel_tree":"1","num_trees":"3","size_leaf_vector":"0"},"tree_info":[0,1,2],"trees":[{"base_weights":[-7.416568E-2,1.4457831E0,-7.381371E-1],"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[],"default_left":[1,0,0],"id":0,"left_children":[1,-1,-1],"loss_changes":[9.178329E1,0E0,0E0],"parents":[2147483647,0,0],"right_children":[2,-1,-1],"split_conditions":[-5.005592E-1,4.3373495E-1,-2.2144115E-1],"split_indices":[0,0,0],"split_type":[0,0,0],"sum_hessian":[8.8888885E1,2.6666664E1,6.2222218E1],"tree_param":{"num_deleted":"0","num_feature":"2","num_nodes":"3","size_leaf_vector":"0"}},{"base_weights":[1.149567E-1,5.0628364E-1,-7.24138E-1],"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[],"default_left":[1,0,0],"id":1,"left_children":[1,-1,-1],"loss_changes":[2.9882565E1,0E0,0E0],"parents":[2147483647,0,0],"right_children":[2,-1,-1],"split_conditions":[4.9935514E-1,1.5188509E-1,-2.1724142E-1],"split_indices":[0,0,0],"split_type":[0,0,0],"sum_hessian":[8.8888885E1,6.0888885E1,2.7999998E1],"tree_param":{"num_deleted":"0","num_feature":"2","num_nodes":"3","size_leaf_vector":"0"}},{"base_weights":[-4.0791146E-2,-7.378816E-1,1.4482758E0],"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[],"default_left":[1,0,0],"id":2,"left_children":[1,-1,-1],"loss_changes":[9.437461E1,0E0,0E0],"parents":[2147483647,0,0],"right_children":[2,-1,-1],"split_conditions":[4.9935514E-1,-2.2136448E-1,4.3448275E-1],"split_indices":[0,0,0],"split_type":[0,0,0],"sum_hessian":[8.8888885E1,6.0888885E1,2.7999998E1],"tree_param":{"num_deleted":"0","num_feature":"2","num_nodes":"3","size_leaf_vector":"0"}}]},"name":"gbtree"},"learner_model_param":{"base_score":"5E-1","boost_from_average":"1","num_class":"3","num_feature":"2","num_target":"1"},"objective":{"name":"multi:softprob","softmax_multiclass_param":{"num_class":"3"}}},"version":[1,7,4]}$json$, 'UTF8'));
-- reg:squarederror
SELECT * FROM icpml.verify_tree_model(convert_to($json${"learner":{"attributes":{"best_iteration":"0","best_ntree_limit":"1"},"feature_names":[],"feature_types":[],"gradient_booster":{"model":{"gbtree_model_param":{"num_parallel_tree":"1","num_trees":"1","size_leaf_vector":"0"},"tree_info":[0],"trees":[{"base_weights":[-4.9751243E-3,-4.9509802E-1,4.95E-1],"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[],"default_left":[1,0,0],"id":0,"left_children":[1,-1,-1],"loss_changes":[4.9499977E1,0E0,0E0],"parents":[2147483647,0,0],"right_children":[2,-1,-1],"split_conditions":[9.9226665E-3,-1.4852941E-1,1.4850001E-1],"split_indices":[0,0,0],"split_type":[0,0,0],"sum_hessian":[2E2,1.01E2,9.9E1],"tree_param":{"num_deleted":"0","num_feature":"2","num_nodes":"3","size_leaf_vector":"0"}}]},"name":"gbtree"},"learner_model_param":{"base_score":"5E-1","boost_from_average":"1","num_class":"0","num_feature":"2","num_target":"1"},"objective":{"name":"reg:squarederror","reg_loss_param":{"scale_pos_weight":"1"}}},"version":[1,7,4]}$json$, 'UTF8'));

-- a corrupt blob: XGBoost refuses it (its message carries a timestamp: show the code)
DO $$
BEGIN
  PERFORM * FROM icpml.verify_tree_model('\xdeadbeef00'::bytea);
EXCEPTION WHEN data_corrupted THEN
  RAISE NOTICE 'data_corrupted: %', split_part(SQLERRM, ':', 1);
END
$$;

-- bad arguments
SELECT * FROM icpml.verify_tree_evaluator(rows => 5);
SELECT * FROM icpml.verify_tree_evaluator(max_depth => 0);
SELECT * FROM icpml.verify_tree_model('\x00'::bytea, rows => 0);
SELECT count(*) FROM icpml.verify_tree_evaluator(rows => NULL);

-- administration only: not executable by PUBLIC
CREATE ROLE icpml_test_tree;
GRANT USAGE ON SCHEMA icpml TO icpml_test_tree;
SET ROLE icpml_test_tree;
SELECT * FROM icpml.verify_tree_evaluator();
SELECT * FROM icpml.benchmark_tree_evaluator();
RESET ROLE;
REVOKE USAGE ON SCHEMA icpml FROM icpml_test_tree;
DROP ROLE icpml_test_tree;
