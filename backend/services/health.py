"""Liveness of the parts the API needs: its database and the queue broker."""

from __future__ import annotations

import logging

import redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.schemas import Health

log = logging.getLogger(__name__)


def database_ok(session: Session) -> bool:
    try:
        session.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("database unreachable: %s", exc)
        return False
    return True


def redis_ok(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError as exc:
        log.warning("redis unreachable: %s", exc)
        return False
    finally:
        client.close()


def check(session: Session, redis_url: str) -> Health:
    database, broker = database_ok(session), redis_ok(redis_url)
    status = "ok" if database and broker else "degraded"
    return Health(status=status, database=database, redis=broker)
