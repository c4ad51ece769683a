"""Studies that train models to choose the core's rules (run by hand, results in results/):
leave-chemistry-out evaluation (lco), per-group calibration (group_conformal,
group_bound_choice), the domain profile the domain check reads (domain_profile), and a
metallicity oracle diagnostic (metallicity_oracle).

Importing the package pins the numeric environment, as ``python -m harness`` does for
every model process: a study then loads the same cached models and features as the
models it studies. Unpinned, it fitted its own metallicity model under the native kernels,
whose P(metal) differs near 0.5 (15 of 1,708 test metal labels differed from kspace_gbm's
own estimate, so `predict` and the calibration put those materials in different groups)."""

from harness import numeric_env

numeric_env.apply()  # before numpy loads; a no-op (False) when something imported it first
