"""Studies that train models to choose the core's rules (run by hand, results in results/):
leave-chemistry-out evaluation (lco), per-group calibration (group_conformal), and the
domain profile the domain check reads (domain_profile)."""
