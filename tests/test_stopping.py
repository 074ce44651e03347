"""Early-stopping rules on fixed metric sequences."""

from __future__ import annotations

from candle_lab.stopping import AshaRule, MedianRule, make_rule


def test_median_rule_stops_a_trial_worse_than_the_median_at_that_epoch() -> None:
    rule = MedianRule(grace_steps=2, min_trials=2)
    for trial, offset in ((0, 0.0), (1, 0.1)):
        for step in range(1, 6):
            assert not rule.should_stop(trial, step, offset + 1 / step)
    # Trial 2 is better than both: continues; trial 3 is worse: stopped after the grace epochs.
    assert not any(rule.should_stop(2, step, -0.1 + 1 / step) for step in range(1, 6))
    decisions = [rule.should_stop(3, step, 0.5 + 1 / step) for step in range(1, 6)]
    assert decisions[:1] == [False] and decisions[1]  # grace: epoch 1 never stops


def test_median_rule_needs_enough_other_trials() -> None:
    rule = MedianRule(grace_steps=1, min_trials=3)
    rule.should_stop(0, 1, 0.1)
    rule.should_stop(1, 1, 0.2)
    assert not rule.should_stop(2, 1, 9.0)  # only two others at epoch 1


def test_asha_keeps_the_best_third_at_each_rung() -> None:
    rule = AshaRule(grace_steps=1, eta=3)
    assert rule.rung_steps(30) == [1, 3, 9, 27]
    assert not rule.should_stop(0, 1, 0.5)
    assert not rule.should_stop(1, 2, 9.9)  # epoch 2 is not a rung
    assert not rule.should_stop(1, 1, 0.4)  # fewer than eta results at the rung: continue
    assert rule.should_stop(2, 1, 0.6)  # 3 at rung 1: keep the best 1 (0.4); 0.6 stops
    assert not rule.should_stop(3, 1, 0.3)  # new best continues


def test_make_rule() -> None:
    assert make_rule("none", 2, 3, 3) is None
    assert isinstance(make_rule("median", 2, 3, 3), MedianRule)
    assert isinstance(make_rule("asha", 2, 3, 3), AshaRule)
