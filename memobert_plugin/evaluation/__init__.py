"""Cross-validation sweeps over the paper's settings and the results tables (Table 2/3, Fig. 3)."""

from memobert_plugin.evaluation.cross_validation import SETTINGS, FoldJob, plan_jobs, run_fold_job
from memobert_plugin.evaluation.results import (
    collect_results,
    plot_confusions,
    plot_low_resource,
    summarise,
    write_csv,
    write_markdown,
)

__all__ = [
    "SETTINGS", "FoldJob", "plan_jobs", "run_fold_job",
    "collect_results", "plot_confusions", "plot_low_resource", "summarise", "write_csv", "write_markdown",
]
