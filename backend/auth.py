"""API tokens: random secrets of which only the sha256 is stored.

The first start of the API creates an ``admin`` user and writes its token to
``{home}/token`` (mode 0600), where the dashboard and the CLI of the same machine read it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.db import session_factory
from backend.models import User
from backend.settings import Settings

log = logging.getLogger(__name__)

BOOTSTRAP_USER = "admin"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(session: Session, name: str, is_admin: bool = False) -> tuple[User, str]:
    """A new user and its token; the token is shown once, only its hash is stored."""
    token = new_token()
    user = User(
        name=name, token_hash=hash_token(token), token_prefix=token_prefix(token), is_admin=is_admin
    )
    session.add(user)
    session.flush()
    return user, token


def token_prefix(token: str) -> str:
    """What ``tapfl users list`` shows of a token: enough to recognise it, not to use it."""
    return token[:6]


def user_for_token(session: Session, token: str) -> User | None:
    """The active (not revoked) user holding ``token``."""
    user = session.scalar(select(User).where(User.token_hash == hash_token(token)))
    if user is None or user.revoked_at is not None:
        return None
    return user


def ensure_bootstrap_token(settings: Settings) -> str:
    """The admin token of this installation, creating user and token file when missing.

    The token file is the source of truth: if the database was wiped while the file
    stayed, the admin user is recreated for the file's token. If the file is gone or its
    token was revoked, the admin gets a fresh token and the file is rewritten.
    """
    path = settings.token_file
    stored = path.read_text().strip() if path.is_file() else ""
    for attempt in range(3):
        try:
            # The given settings, not the process's: `tapfl up --home` passes its own.
            with session_factory(settings.database_url)() as session, session.begin():
                return _ensure_admin(session, path, stored)
        except IntegrityError:
            # Another process (a second API worker) bootstrapped at the same moment.
            if attempt == 2:
                raise
            stored = path.read_text().strip() if path.is_file() else ""
    raise AssertionError("unreachable")


def _ensure_admin(session: Session, path: Path, stored: str) -> str:
    if stored:
        holder = session.scalar(select(User).where(User.token_hash == hash_token(stored)))
        if holder is not None and holder.revoked_at is None:
            return stored
        if holder is None:
            admin = session.scalar(select(User).where(User.name == BOOTSTRAP_USER))
            if admin is None:
                session.add(_admin(stored))
            else:
                admin.token_hash, admin.revoked_at = hash_token(stored), None
                admin.token_prefix = token_prefix(stored)
            log.info("registered the token of %s for user %r", path, BOOTSTRAP_USER)
            return stored
    token = new_token()
    admin = session.scalar(select(User).where(User.name == BOOTSTRAP_USER))
    if admin is None:
        session.add(_admin(token))
    else:
        admin.token_hash, admin.revoked_at = hash_token(token), None
        admin.token_prefix = token_prefix(token)
    session.flush()  # a conflicting concurrent bootstrap fails here, before the file is written
    _write_secret(path, token)
    log.info("wrote a new admin token to %s", path)
    return token


def _admin(token: str) -> User:
    return User(
        name=BOOTSTRAP_USER,
        token_hash=hash_token(token),
        token_prefix=token_prefix(token),
        is_admin=True,
    )


def _write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` readable by the owner only, replacing any old file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    os.replace(tmp, path)
