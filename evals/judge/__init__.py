"""Judge calibration: a labelled set of drafts, the eval that measures a judge against it, and the CI gate.

    newsroom eval-judge                       # the configured judge over evals/judge/drafts
    newsroom eval-judge --route recorded      # re-score recorded verdicts (no model call)

labels.py  the labelled drafts (GUIDE.md says how they were labelled)
verdicts.py  the verdict cache: one recorded reply per (item, judge, prompt, decoding)
metrics.py  Pearson r, MAE, Cohen's kappa, confusion tables
run.py     judging, scoring and the report (last line JSON)
gate.py    the CI gate over recorded verdicts
langfuse_sync.py  datasets, experiments and annotation-queue labels in Langfuse
"""
