import psycopg
from psycopg import errors
from psycopg_pool import PoolTimeout

from cluster.db.errors import Failure, classify, is_read_only_answer


def test_lost_connections_and_shutdowns_mean_the_host_is_down() -> None:
    assert classify(psycopg.OperationalError("server closed the connection unexpectedly"), True) is Failure.HOST_DOWN
    assert classify(errors.AdminShutdown("terminating connection"), True) is Failure.HOST_DOWN
    assert classify(errors.ConnectionFailure("x"), False) is Failure.HOST_DOWN


def test_recovery_conflicts_are_retried_only_on_replicas() -> None:
    assert classify(errors.SerializationFailure("conflict with recovery"), True) is Failure.RECOVERY_CONFLICT
    assert classify(errors.SerializationFailure("could not serialize"), False) is None


def test_pool_timeouts_are_busy_not_down() -> None:
    assert classify(PoolTimeout("couldn't get a connection"), True) is Failure.BUSY


def test_the_callers_errors_are_not_retried() -> None:
    assert classify(errors.UndefinedTable("no such table"), True) is None
    assert classify(errors.QueryCanceled("statement timeout"), True) is None
    assert classify(ValueError("x"), True) is None


def test_read_only_answer_is_sqlstate_25006() -> None:
    assert is_read_only_answer(errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"))
    assert not is_read_only_answer(errors.UndefinedTable("x"))
