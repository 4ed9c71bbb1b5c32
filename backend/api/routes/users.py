"""Team members and their tokens: who the caller is (``/users/me``, anyone signed in); the
rest admins only (``tapfl users`` does the same on the server)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from backend.api import examples as ex
from backend.api.deps import AdminUser, CurrentUser, SessionDep
from backend.schemas import UserCreate, UserCreated, UserOut
from backend.services import users

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=list[UserOut], responses=ex.responses([ex.USER], 403))
def list_users(session: SessionDep, _admin: AdminUser) -> list[UserOut]:
    """Every user, revoked ones included (their experiments still name them)."""
    return [UserOut.model_validate(u) for u in users.list_users(session)]


@router.get("/me", response_model=UserOut, responses=ex.responses(ex.USER))
def who_am_i(user: CurrentUser) -> UserOut:
    """The user the token belongs to: how the dashboard checks a token when someone signs in."""
    return UserOut.model_validate(user)


@router.post(
    "",
    response_model=UserCreated,
    status_code=status.HTTP_201_CREATED,
    responses=ex.responses(ex.USER_CREATED, 403, 409, 422, status=201),
)
def create_user(body: UserCreate, session: SessionDep, _admin: AdminUser) -> UserCreated:
    """A new user with a fresh token, which this answer shows once; only its hash is kept.
    The name of a revoked user can be given again: it gets a new token."""
    try:
        user, token = users.create(session, body.name, body.admin)
    except users.UserError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return UserCreated.model_validate({**UserOut.model_validate(user).model_dump(), "token": token})


@router.post(
    "/{name}/revoke", response_model=UserOut, responses=ex.responses(ex.USER, 403, 404, 409)
)
def revoke_user(name: str, session: SessionDep, admin: AdminUser) -> UserOut:
    """Revoke the user's token: its requests are answered 401 from now on."""
    if name == admin.name:
        raise HTTPException(status.HTTP_409_CONFLICT, "an admin cannot revoke their own token")
    try:
        return UserOut.model_validate(users.revoke(session, name))
    except users.UserError as exc:
        raise HTTPException(exc.status, str(exc)) from None
