"""Team members and their tokens: create (the token is shown once), list, revoke.

``/api/v1/users`` (admins only; ``tapfl users`` calls it) and ``tapfl create-user``
(straight to the database) go through here. A revoked user keeps its row, so the
experiments it owns still name it.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.auth import create_user as _create_user
from backend.auth import hash_token, new_token, token_prefix
from backend.models import User, utcnow
from backend.schemas import USER_NAME_PATTERN


class UserError(ValueError):
    """A user that cannot be created or revoked; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def create(session: Session, name: str, is_admin: bool = False) -> tuple[User, str]:
    """A new user and its token. The name of a revoked user can be given out again."""
    if not re.match(USER_NAME_PATTERN, name):
        raise UserError(f"invalid user name {name!r}: letters, digits, . _ @ - only", 422)
    existing = session.scalar(select(User).where(User.name == name))
    if existing is not None:
        if existing.revoked_at is None:
            raise UserError(f"user {name!r} exists", 409)
        # Re-activating keeps the id, so the user's experiments are theirs again.
        user, token = _reissue(session, existing, is_admin)
        session.commit()
        return user, token
    try:
        user, token = _create_user(session, name, is_admin=is_admin)
        session.commit()
    except IntegrityError:  # created at the same moment by another request
        session.rollback()
        raise UserError(f"user {name!r} exists", 409) from None
    return user, token


def _reissue(session: Session, user: User, is_admin: bool) -> tuple[User, str]:
    token = new_token()
    user.token_hash, user.token_prefix = hash_token(token), token_prefix(token)
    user.is_admin, user.revoked_at, user.created_at = is_admin, None, utcnow()
    session.flush()
    return user, token


def list_users(session: Session, include_revoked: bool = True) -> list[User]:
    query = select(User).order_by(User.id)
    if not include_revoked:
        query = query.where(User.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke(session: Session, name: str) -> User:
    """Revoke the user's token: every request with it is answered 401 from now on."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise UserError(f"user {name!r} not found", 404)
    if user.revoked_at is None:
        user.revoked_at = utcnow()
        session.commit()
    return user
