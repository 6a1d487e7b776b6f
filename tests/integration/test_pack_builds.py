"""One evidence pack at a time for each user's scripts (helpdesk.pack_builds): a claim every
connection sees, released however the build ends, taken over once stale; on SQLite and
PostgreSQL, with requests racing on connections of their own."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from helpdesk.models import PackBuild
from helpdesk.pack_builds import STALE_AFTER, Busy, one_at_a_time
from tests.integration.conftest import OPEN_TIME
from tests.integration.test_users_and_login import make_user

NOW = OPEN_TIME


@pytest.fixture
def people(database):
    with database.session() as session:
        return make_user(session, "dana", "auditor").id, make_user(session, "maria", "manager").id


def builds(database) -> list[tuple[int, object]]:
    with database.session() as session:
        return list(session.execute(select(PackBuild.user_id, PackBuild.started_at).order_by(PackBuild.user_id)))


def test_a_second_build_for_the_same_user_is_refused_while_the_first_runs_and_others_are_not(database, people):
    dana, maria = people

    with one_at_a_time(database, dana, NOW):
        assert builds(database) == [(dana, NOW)]
        with pytest.raises(Busy) as refused:
            with one_at_a_time(database, dana, NOW + timedelta(seconds=20)):
                pytest.fail("a second build ran")
        assert refused.value.started_at == NOW
        with one_at_a_time(database, maria, NOW):
            assert builds(database) == [(dana, NOW), (maria, NOW)]

    assert builds(database) == []
    with one_at_a_time(database, dana, NOW + timedelta(seconds=30)):
        assert builds(database) == [(dana, NOW + timedelta(seconds=30))]


def test_a_build_that_fails_is_released(database, people):
    dana, _ = people

    with pytest.raises(OSError):
        with one_at_a_time(database, dana, NOW):
            raise OSError("No space left on device")

    assert builds(database) == []


def test_a_build_left_behind_stops_counting_after_stale_after_and_its_end_leaves_the_new_one_alone(
        database, people):
    dana, _ = people
    left = one_at_a_time(database, dana, NOW)  # its worker dies, as it were, inside the build
    left.__enter__()

    with pytest.raises(Busy):
        with one_at_a_time(database, dana, NOW + STALE_AFTER - timedelta(seconds=1)):
            pass
    with one_at_a_time(database, dana, NOW + STALE_AFTER):
        left.__exit__(None, None, None)  # ended late after all: it must not release the new build
        assert builds(database) == [(dana, NOW + STALE_AFTER)]
        with pytest.raises(Busy):
            with one_at_a_time(database, dana, NOW + STALE_AFTER + timedelta(seconds=1)):
                pass

    assert builds(database) == []


def test_of_requests_racing_on_their_own_connections_exactly_one_builds(database, people):
    dana, _ = people
    racers = 6
    for round_ in range(5):
        start, built, refused = threading.Barrier(racers), [], []
        inside = threading.Barrier(racers)  # the winner stays in until the others have tried

        def race():
            start.wait()
            try:
                with one_at_a_time(database, dana, NOW + timedelta(minutes=round_)):
                    built.append(1)
                    inside.wait(timeout=30)
            except Busy:
                refused.append(1)
                inside.wait(timeout=30)

        threads = [threading.Thread(target=race) for _ in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert (len(built), len(refused)) == (1, racers - 1), f"round {round_}"
        assert builds(database) == []
