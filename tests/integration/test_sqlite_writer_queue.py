"""SQLite writers queue on a file lock: they wait their turn, but never for ever."""
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from helpdesk.db import make_engine


def test_a_second_writer_waits_for_the_first_to_commit(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/queue.db")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER)"))
    order = []
    first_in = threading.Event()

    def first():
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
            first_in.set()
            time.sleep(0.3)
            order.append("first commits")

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait()
    started = time.monotonic()
    with engine.begin() as connection:
        order.append("second begins")
        connection.execute(text("INSERT INTO t VALUES (2)"))
    thread.join()
    waited = time.monotonic() - started
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT n FROM t ORDER BY rowid")).scalars().all()
    engine.dispose()
    assert order == ["first commits", "second begins"]
    assert waited >= 0.2 and rows == [1, 2]


def test_a_writer_behind_a_stuck_transaction_gives_up_with_database_is_locked(tmp_path):
    url = f"sqlite:///{tmp_path}/stuck.db"
    stuck = make_engine(url)
    waiting = make_engine(url, connect_args={"timeout": 0.3})
    holder = stuck.connect()
    holder.begin()
    started = time.monotonic()
    with pytest.raises(OperationalError, match="database is locked"):
        with waiting.begin() as connection:
            connection.execute(text("SELECT 1"))
    assert 0.25 <= time.monotonic() - started < 5
    holder.close()
    with waiting.begin() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    stuck.dispose()
    waiting.dispose()


def test_a_new_database_file_and_its_wal_are_readable_by_their_owner_only(tmp_path):
    """They hold callers' numbers, email texts and password hashes: not for other local users."""
    import os
    import stat

    from helpdesk.migrate import upgrade

    previous = os.umask(0o022)  # the usual default, under which files are made readable by all
    try:
        upgrade(f"sqlite:///{tmp_path}/new.db")
        engine = make_engine(f"sqlite:///{tmp_path}/new.db")
        with engine.connect() as connection:  # held open, so the -wal and -shm files stay
            connection.execute(text("SELECT count(*) FROM calls"))
            modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode) for name in os.listdir(tmp_path)}
        engine.dispose()
    finally:
        os.umask(previous)
    assert {"new.db", "new.db-wal", "new.db-shm"} <= set(modes), modes
    assert all(mode == 0o600 for mode in modes.values()), {name: oct(mode) for name, mode in modes.items()}
