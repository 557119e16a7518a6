"""The benchmarks' goal rows (issue 18): computed from the measured figures, printed by run_all."""
from __future__ import annotations

from evals.bench import concurrency, run_all, vector_search


def _size(posts: int, cpu_s: float, efficiency: float) -> dict:
    return {"posts": posts, "server_cpu_s_per_post": cpu_s, "efficiency": efficiency,
            "efficiency_bound_by_cpu": 0.5, "cpu_ratio_to_noop_floor": round(cpu_s / 0.008, 2)}


def test_concurrency_goals_compare_with_the_floor_of_the_same_run():
    rows = concurrency.goals(_size(100, 0.020, 0.4), _size(10, 0.030, 0.93), 0.008)
    ratio, at10, at100 = rows
    assert ratio["measured"] == 2.5 and ratio["met"] is True and "20.0 vs 8.0 ms" in ratio["detail"]
    assert at10["measured"] == 0.93 and at10["met"] is True
    assert at100["measured"] == 0.4 and at100["met"] is None  # reported, no goal
    missed = concurrency.goals(_size(100, 0.089, 0.157), None, None)
    assert missed[0]["met"] is False and "not measured" in missed[0]["detail"]
    assert missed[1]["measured"] is None and missed[1]["met"] is None
    text = concurrency.format_goals(missed)
    assert "11.12 (goal <= 3.0) MISSED" in text


def test_vector_goal_needs_both_latency_and_recall():
    def result(p99, recall):
        return [{"chunks": 100_000, "similarity": [{"ef_search": 100, "p99_ms": p99, "recall@10": recall}]}]

    assert vector_search.goal_verdict(result(4.9, 0.96), 100)["met"] is True
    assert vector_search.goal_verdict(result(4.9, 0.94), 100)["met"] is False
    assert vector_search.goal_verdict(result(5.1, 0.99), 100)["met"] is False
    assert vector_search.goal_verdict(result(4.0, 0.99), 40)["met"] is None  # not measured at that ef


def test_run_all_prints_each_goal_beside_its_figure():
    figures = {"goals": [{"name": "x", "measured": 1.5, "goal": "<= 3", "met": True, "detail": "a vs b"},
                         {"name": "y", "measured": 0.2, "goal": ">= 0.9", "met": False},
                         "not a dict"]}
    assert run_all._goal_lines(figures) == ["goal: x: 1.5 (goal <= 3) met a vs b", "goal: y: 0.2 (goal >= 0.9) MISSED"]
    assert run_all._goal_lines(None) == [] and run_all._goal_lines({}) == []
    assert run_all._goal_lines({"goals": [{"name": "z", "measured": None, "goal": "<= 5", "met": None}]}) == \
        ["goal: z: not measured in this run (goal <= 5)"]
