"""One evidence pack at a time for each user's scripts (helpdesk.pack_builds): a claim every
connection sees, released however the build ends, taken over once stale; on SQLite and
PostgreSQL, with requests racing on connections of their own."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from helpdesk.models import PackBuild
from helpdesk.pack_builds import CLAIM_TRIES, STALE_AFTER, Busy, one_at_a_time
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


def ending_before_each_read(database, user_id: int, times: int, another_starts: bool = False) -> list[str]:
    """Delete `user_id`'s row just before one_at_a_time reads when its build started, `times`
    times, as if that build ended in between; with `another_starts`, put a row back just after
    each read, as if yet another build claimed it. The list records each time."""
    ended = []

    def ends(connection, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("SELECT pack_builds.started_at") and len(ended) < times:
            cursor.execute(f"DELETE FROM pack_builds WHERE user_id = {int(user_id)}")
            ended.append(statement)

    def starts(connection, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("SELECT pack_builds.started_at"):
            cursor.connection.cursor().execute(  # a cursor of its own: the read's rows are still to come
                f"INSERT INTO pack_builds (user_id, claim, started_at) VALUES ({int(user_id)}, 'another', "
                f"'{NOW:%Y-%m-%d %H:%M:%S}')")

    event.listen(database.engine, "before_cursor_execute", ends)
    if another_starts:
        event.listen(database.engine, "after_cursor_execute", starts)
    return ended


def test_a_build_that_ends_while_a_second_is_refused_lets_the_second_through(database, people):
    dana, _ = people
    with one_at_a_time(database, dana, NOW):
        ended = ending_before_each_read(database, dana, times=1)
        with one_at_a_time(database, dana, NOW + timedelta(seconds=20)):
            assert len(ended) == 1  # the second met the first's row, then found it gone
            assert builds(database) == [(dana, NOW + timedelta(seconds=20))]
    assert builds(database) == []


def test_builds_ending_and_starting_between_every_try_refuse_the_claim_as_of_now(database, people):
    dana, _ = people
    later = NOW + timedelta(seconds=20)
    with one_at_a_time(database, dana, NOW):
        ended = ending_before_each_read(database, dana, times=CLAIM_TRIES, another_starts=True)
        with pytest.raises(Busy) as refused:
            with one_at_a_time(database, dana, later):
                pytest.fail("a build ran without its claim")

    assert refused.value.started_at == later and len(ended) == CLAIM_TRIES


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
