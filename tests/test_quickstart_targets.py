import pytest

from ziegler_trl.quickstart.report import target_checks


def _results(gain=(0.10, 0.05), win=0.70, kl=2.4, kl_target=2.0):
    return {"score_gain": list(gain), "win_rate_pi_over_rho": [win, win - 0.08, win + 0.08, 152],
            "final_kl": kl, "kl_target": kl_target}


def test_every_target_met():
    rows = target_checks(_results(), seconds=14 * 60)
    assert [met for *_, met in rows] == [True, True, True, True]
    assert [measured for _, measured, _ in rows] == ["14.0 min", "+0.100 ± 0.050", "70.0%", "2.40 vs 2.00 nats"]


@pytest.mark.parametrize(
    ("results", "seconds", "missed"),
    [
        (_results(), 15 * 60 + 1, 0),  # one second over the time budget
        (_results(gain=(0.04, 0.05)), 600, 1),  # positive mean, but the CI reaches 0
        (_results(win=0.649), 600, 2),
        (_results(kl=2.61), 600, 3),  # +30.5% of the target
        (_results(kl=1.39), 600, 3),  # −30.5%
    ],
)
def test_each_target_can_be_missed_alone(results, seconds, missed):
    met = [met for *_, met in target_checks(results, seconds)]
    assert met == [i != missed for i in range(4)]


def test_final_kl_is_the_mean_of_the_last_64_episodes():
    from ziegler_trl.quickstart.report import final_kl

    updates = [{"objective/kl": kl} for kl in (0.0, 1.0, 5.0, 6.0, 7.0, 10.0)]
    assert final_kl(updates, episodes_per_update=16) == pytest.approx((5 + 6 + 7 + 10) / 4)
    assert final_kl(updates, episodes_per_update=32) == pytest.approx((7 + 10) / 2)
    assert final_kl(updates[:1], episodes_per_update=16) == 0.0  # a run shorter than the window: all of it
    assert final_kl([], episodes_per_update=16) != final_kl([], episodes_per_update=16)  # NaN: no update logged
