"""Scoring aggregates: the paired block bootstrap of an RMSE ratio, the years after training."""

from __future__ import annotations

import numpy as np
import pytest

from phenocast.metrics import Score, Scoreboard, paired_bootstrap, rmse


def noisy_board(origins: list[int], zones: int = 3, leads: tuple[int, ...] = (1, 2, 3), seed: int = 0,
                error_ratio: float = 0.9) -> Scoreboard:
    """A "model" and a "reference" with correlated image MSEs; the model's RMSE is about ``error_ratio``×.

    Each origin has a shared difficulty (all its zones and leads), each image its own noise.
    """
    rng = np.random.default_rng(seed)
    scores = []
    for origin in origins:
        difficulty = rng.lognormal(0, 0.5)
        for zone in range(1, zones + 1):
            for lead in leads:
                reference = difficulty * lead * rng.lognormal(0, 0.3) * 1e-3
                model = reference * error_ratio ** 2 * rng.lognormal(0, 0.4)
                scores.append(Score(f"Z{zone}", origin, lead, "reference", reference, 100))
                scores.append(Score(f"Z{zone}", origin, lead, "model", model, 100))
    return Scoreboard(scores)


def scaled_board(origins: list[int], factor: float) -> Scoreboard:
    """"model" MSE = ``factor`` × "reference" MSE on every image (RMSE ratio sqrt(factor))."""
    board = noisy_board(origins)
    return Scoreboard([score for score in board.scores if score.method == "reference"]
                      + [Score(s.zone, s.origin, s.lead, "model", s.mse * factor, s.pixels)
                         for s in board.scores if s.method == "reference"])


def test_interval_contains_the_point_ratio_of_the_common_images():
    board = noisy_board(list(range(1, 41)))
    board.scores.append(Score("Z9", 3, 1, "model", 50.0, 100))  # scored by one method only: ignored
    result = paired_bootstrap(board, "model", "reference", replicates=500)
    common = board.common_images(["model", "reference"])
    expected = rmse(board.select("model", images=common)) / rmse(board.select("reference", images=common))
    assert result["ratio"] == pytest.approx(expected, rel=1e-12)
    assert result["low"] < result["ratio"] < result["high"]
    assert result["images"] == 40 * 3 * 3 and result["origins"] == 40 and result["replicates"] == 500


def test_interval_narrows_with_more_origins():
    few = paired_bootstrap(noisy_board(list(range(1, 11))), "model", "reference")
    many = paired_bootstrap(noisy_board(list(range(1, 81))), "model", "reference")
    assert many["high"] - many["low"] < few["high"] - few["low"]


def test_identical_methods_give_ratio_one_and_a_point_interval():
    result = paired_bootstrap(scaled_board(list(range(1, 21)), 1.0), "model", "reference")
    assert (result["ratio"], result["low"], result["high"]) == (1.0, 1.0, 1.0)
    assert result["wins"] == 0


def test_half_the_error_everywhere_gives_ratio_one_half():
    result = paired_bootstrap(scaled_board(list(range(1, 21)), 0.25), "model", "reference")  # MSE ¼ = RMSE ½
    assert result["ratio"] == pytest.approx(0.5)
    assert result["low"] == pytest.approx(0.5) and result["high"] == pytest.approx(0.5)
    assert result["wins"] == result["images"]


def test_same_seed_same_result_and_other_seed_other_interval():
    board = noisy_board(list(range(1, 31)))
    first = paired_bootstrap(board, "model", "reference", seed=7)
    assert paired_bootstrap(board, "model", "reference", seed=7) == first
    other = paired_bootstrap(board, "model", "reference", seed=8)
    assert other["ratio"] == first["ratio"] and (other["low"], other["high"]) != (first["low"], first["high"])


@pytest.mark.parametrize(("origins", "leads", "block", "expected"), [
    (list(range(1, 31)), (1, 2, 3), None, 3),  # consecutive origins: lead 3 overlaps 2 later origins
    (list(range(12, 361, 12)), (1, 2, 3), None, 1),  # one calendar phase: no shared target months
    (list(range(1, 61, 2)), (1, 2, 3), None, 2),  # spacing 2: ceil(3 / 2)
    (list(range(1, 31)), (1,), None, 1),
    ([5], (1, 2, 3), None, 1),  # a single origin
    (list(range(1, 31)), (1, 2, 3), 5, 5),  # given
    (list(range(1, 5)), (1, 2, 3), 10, 4),  # capped at the number of origins
])
def test_block_length_rule(origins: list[int], leads: tuple[int, ...], block: int | None, expected: int):
    board = noisy_board(origins, leads=leads)
    result = paired_bootstrap(board, "model", "reference", replicates=50, block=block)
    assert result["block"] == expected and result["origins"] == len(origins)


def test_wins_counted_on_common_images_only():
    scores = [
        Score("Z1", 1, 1, "model", 1.0, 10), Score("Z1", 1, 1, "reference", 2.0, 10),  # win
        Score("Z2", 1, 1, "model", 2.0, 10), Score("Z2", 1, 1, "reference", 2.0, 10),  # tie: not a win
        Score("Z1", 2, 1, "model", 3.0, 10), Score("Z1", 2, 1, "reference", 1.0, 10),  # loss
        Score("Z2", 2, 1, "model", 4.0, 10), Score("Z2", 2, 1, "reference", 5.0, 10),  # win
        Score("Z3", 2, 1, "model", 0.1, 10),  # no reference score: not common
        Score("Z1", 2, 1, "other", 0.1, 10),  # a third method is ignored
    ]
    result = paired_bootstrap(Scoreboard(scores), "model", "reference", replicates=100)
    assert result["wins"] == 2 and result["images"] == 4 and result["origins"] == 2
    assert result["ratio"] == pytest.approx(1.0)  # sqrt(10 / 10)


def test_no_common_images_is_a_clear_error():
    board = Scoreboard([Score("Z1", 1, 1, "model", 1.0, 10), Score("Z1", 2, 1, "reference", 1.0, 10)])
    with pytest.raises(ValueError, match="expected images scored by both 'model' and 'reference', found none"):
        paired_bootstrap(board, "model", "reference")
    with pytest.raises(ValueError, match="found none"):
        paired_bootstrap(board, "model", "missing")


def test_years_after_training_count_from_each_zone_s_own_training_end():
    # Z1 trains through month 10, Z2 through 22: Z1's month 23 and Z2's month 35 are both in year 2
    scores = [Score("Z1", 10, 1, "model", 1.0, 5, "validation"), Score("Z1", 20, 2, "model", 4.0, 5, "validation"),
              Score("Z1", 22, 1, "model", 9.0, 5, "validation"), Score("Z2", 34, 1, "model", 16.0, 5, "test"),
              Score("Z2", 22, 1, "model", 25.0, 5, "validation"), Score("Z1", 35, 2, "model", 36.0, 5, "test")]
    years = Scoreboard(scores).by_year_after({"Z1": 10, "Z2": 22})
    assert list(years) == [("validation", 1), ("validation", 2), ("test", 2), ("test", 3)]
    assert [(s.zone, s.month) for s in years["validation", 1].scores] == [("Z1", 11), ("Z1", 22), ("Z2", 23)]
    assert [(s.zone, s.month) for s in years["validation", 2].scores] == [("Z1", 23)]
    assert [(s.zone, s.month) for s in years["test", 2].scores] == [("Z2", 35)]
    assert [(s.zone, s.month) for s in years["test", 3].scores] == [("Z1", 37)]
    assert years["validation", 1].summary()["pooled"]["model"] == pytest.approx(np.sqrt((1 + 4 + 25) / 3))
    with pytest.raises(KeyError):
        Scoreboard(scores).by_year_after({"Z1": 10})  # every zone needs its training end


def test_calendar_months_follow_each_zone_s_first_month():
    scores = [Score("Z1", 10, 2, "ema", 4.0, 10), Score("Z2", 10, 2, "ema", 1.0, 10)]  # both forecast month 12
    board = Scoreboard(scores)
    assert board.by_calendar_month(1) == {12: {"ema": pytest.approx(np.sqrt(2.5))}}  # month 1 Jan: 12 December
    by_zone = board.by_calendar_month({"Z1": 1, "Z2": 7})  # Z2's month 1 July: its month 12 June
    assert by_zone == {6: {"ema": 1.0}, 12: {"ema": 2.0}}
