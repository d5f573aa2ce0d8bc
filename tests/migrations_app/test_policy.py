"""The migration policy's convergence knobs (issue 16): the schedule in force, validation
with messages that name the step, and a content hash that an upgrade does not change."""

import re

import pytest

from migrations_app.policy import LATER_DEFAULTS, Policy, PolicyError


def test_it_derives_the_schedule_from_the_older_setting_when_none_is_given():
    assert Policy(on_no_convergence="raise_downtime").schedule == [
        {"action": "max_downtime", "value": v} for v in (500, 1000, 2000)
    ]
    assert Policy(on_no_convergence="postcopy").schedule == [{"action": "postcopy"}]
    assert Policy(on_no_convergence="abort").schedule == [{"action": "abort"}]
    assert Policy().schedule == [] and Policy().auto_converge
    explicit = Policy.from_dict(
        {"convergence_schedule": [{"action": "max_downtime", "value": 800}, {"action": "abort"}]}
    )
    assert explicit.schedule == [{"action": "max_downtime", "value": 800}, {"action": "abort"}]


def test_it_sets_the_post_copy_capability_whenever_a_step_or_timeout_may_use_it():
    assert not Policy().may_postcopy
    assert Policy(on_no_convergence="postcopy").may_postcopy
    assert Policy.from_dict({"completion_timeout_action": "postcopy"}).may_postcopy
    assert Policy.from_dict({"convergence_schedule": [{"action": "postcopy"}]}).may_postcopy


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"convergence_schedule": "faster"}, "policy.convergence_schedule: must be a list"),
        ({"convergence_schedule": [{"action": "pray"}]}, "step 1: needs an action"),
        ({"convergence_schedule": [{"action": "max_downtime"}]}, "step 1: max_downtime needs"),
        (
            {"convergence_schedule": [{"action": "abort"}, {"action": "max_downtime", "value": 9}]},
            "step 1: abort ends",
        ),
        ({"convergence_schedule": [{"action": "abort", "value": 3}]}, "unknown key(s) value"),
        ({"completion_timeout_action": "shrug"}, "policy.completion_timeout_action"),
        ({"progress_timeout_s": 5}, "must be 0 (off) or 10–86400"),
        ({"completion_timeout_floor_s": 0}, "policy.completion_timeout_floor_s"),
        ({"priority": "asap"}, "policy.priority"),
        ({"preempt": True}, "only an urgent plan may preempt"),
    ],
)
def test_it_refuses_bad_convergence_knobs_with_a_message_naming_them(values, message):
    with pytest.raises(PolicyError) as refused:
        Policy.from_dict(values)
    assert message in str(refused.value)


def test_it_scales_the_completion_timeout_with_a_floor_and_the_bandwidth_cap():
    policy = Policy()  # 120 s per GiB, floor 120 s, no cap
    assert policy.completion_timeout_s(0.25) == 120  # the floor
    assert policy.completion_timeout_s(4) == 480
    capped = Policy(bandwidth_mib_s=8)
    # 4 GiB at 8 MiB/s take 512 s per pass: never below twice that.
    assert capped.completion_timeout_s(4) == 1024


def test_an_upgrade_keeps_the_content_of_existing_plans():
    content = Policy().content()
    assert not set(LATER_DEFAULTS) & set(content)
    urgent = Policy.from_dict({"priority": "urgent", "progress_timeout_s": 0}).content()
    assert urgent["priority"] == "urgent" and urgent["progress_timeout_s"] == 0
    assert set(Policy().to_dict()) == set(Policy.names())
    assert {name: Policy().to_dict()[name] for name in LATER_DEFAULTS} == LATER_DEFAULTS


@pytest.mark.parametrize(
    "value, message",
    [
        ({"tcp": [{"host": "db", "port": 70000}]}, "tcp target 1"),
        ({"http": ["ftp://x"]}, "http must be"),
        ({"on_failure": "explode"}, "on_failure 'explode'"),
        ({"guest_agent": "yes"}, "guest_agent"),
        ({"retries": 11}, "retries must be"),
        ({"colour": 1}, "unknown key(s) colour"),
    ],
)
def test_it_names_what_is_wrong_in_a_validation_spec(value, message):
    with pytest.raises(PolicyError, match=re.escape(message)):
        Policy.from_dict({"validation": value})


def test_it_fills_validation_defaults_and_doubles_the_retry_backoff():
    policy = Policy.from_dict(
        {"validation": {"http": "https://app.example.org/healthz"}, "retry_backoff_s": 10}
    )
    assert policy.validation_spec == {
        "http": ["https://app.example.org/healthz"],
        "timeout_s": 5,
        "retries": 2,
        "delay_s": 2,
        "on_failure": "migrate_back",
    }
    assert [policy.retry_delay_s(n) for n in (1, 2, 3)] == [10, 20, 40]
    assert Policy().validation_spec == {}
    with pytest.raises(PolicyError, match="retry_max"):
        Policy.from_dict({"retry_max": 11})
    with pytest.raises(PolicyError, match="wave_failure"):
        Policy.from_dict({"wave_failure": "maybe"})


def test_it_takes_parallel_connections_and_zstd_only_on_them():
    policy = Policy.from_dict({"parallel_connections": 4, "compression": "zstd"})
    assert (policy.parallel_connections, policy.compression) == (4, "zstd")
    assert Policy.from_dict({"parallel_connections": 4}).content()["parallel_connections"] == 4
    for bad, fragment in (
        ({"parallel_connections": 1}, "policy.parallel_connections"),
        ({"parallel_connections": 33}, "policy.parallel_connections"),
        ({"parallel_connections": True}, "policy.parallel_connections"),
        ({"compression": "xbzrle", "parallel_connections": 2}, "policy.compression"),
        ({"compression": "zstd"}, "set parallel_connections too"),
    ):
        with pytest.raises(PolicyError, match=fragment):
            Policy.from_dict(bad)
