"""Who is using the dashboard: each person signs in with their own API token, kept in the
browser session's state only (never in a URL, a cookie or a log), and every call the
dashboard makes carries it, so the API applies that user's rights.

The dashboard holds no token of its own. The one exception is the embedded stack
(``tapfl up``), which sets ``TAPFL_DASHBOARD_AUTO_SIGNIN`` and binds Streamlit to a loopback
address: there whoever opens the page is on the machine that holds the bootstrap admin token
anyway, so the page signs them in as that admin and says so. Auto sign-in is refused when
Streamlit listens on any other address, whatever the setting says.
"""

from __future__ import annotations

import ipaddress

import streamlit as st
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.client import ApiError, ApiUnreachable, TapflClient, Unauthorized
from backend.client.env import token_from_env
from backend.client.types import User

TOKEN_KEY = "signin_token"  # st.session_state: the signed-in user's token
USER_KEY = "signin_user"  # st.session_state: who that is (GET /users/me)
SIGNED_OUT_KEY = "signin_signed_out"  # no auto sign-in again in this browser session
REQUEST_TIMEOUT_S = 10.0


class DashboardEnv(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAPFL_DASHBOARD_", extra="ignore")

    auto_signin: bool = False


def listens_on_loopback_only() -> bool:
    """Whether Streamlit accepts connections from this machine only."""
    address = (st.get_option("server.address") or "").strip().strip("[]")
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # unset (every interface) or a host name


def auto_signin_allowed() -> bool:
    return (
        DashboardEnv().auto_signin
        and listens_on_loopback_only()
        and not st.session_state.get(SIGNED_OUT_KEY)
    )


def token() -> str:
    """The signed-in user's token; "" when nobody is signed in."""
    signed_in = st.session_state.get(TOKEN_KEY)
    if signed_in:
        return str(signed_in)
    if auto_signin_allowed():
        return token_from_env()
    return ""


def is_auto() -> bool:
    return not st.session_state.get(TOKEN_KEY) and bool(token())


def check(base_url: str, candidate: str) -> User:
    """The user ``candidate`` belongs to; raises ``Unauthorized`` when the API refuses it."""
    with TapflClient(base_url, candidate, timeout=REQUEST_TIMEOUT_S) as client:
        return client.me()


def sign_in(user: User, candidate: str) -> None:
    st.session_state[TOKEN_KEY] = candidate
    st.session_state[USER_KEY] = user
    st.session_state.pop(SIGNED_OUT_KEY, None)


def sign_out() -> None:
    for key in (TOKEN_KEY, USER_KEY):
        st.session_state.pop(key, None)
    st.session_state[SIGNED_OUT_KEY] = True
    st.cache_resource.clear()  # the signed-out token's client and connection pool


def current_user(base_url: str) -> User | None:
    """Who is signed in, None for nobody. Asked of the API on every full rerun (one small
    request), so a revoked token stops working at once."""
    current = token()
    if not current:
        return None
    user = check(base_url, current)
    st.session_state[USER_KEY] = user
    return user


def may_change(owner: str) -> bool:
    """Whether the signed-in user may cancel or retry a run of ``owner`` (the API checks
    it too; this only keeps the dashboard from offering what it would refuse)."""
    user = st.session_state.get(USER_KEY)
    if user is None:
        return False
    return bool(user["is_admin"]) or owner == user["name"]


def form(base_url: str) -> None:
    """The sign-in form: a token, checked against the API before it is kept."""
    st.title("Sign in to tapfl")
    st.markdown(
        "Paste your **API token**. An admin creates one for you with `tapfl users create "
        "NAME` (or `POST /api/v1/users`); it is shown once, when it is made."
    )
    # Cleared on submit: the token does not linger in the page once it has been sent.
    with st.form("signin", enter_to_submit=True, clear_on_submit=True):
        candidate = st.text_input("API token", type="password", key="signin_candidate")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    candidate = (candidate or "").strip()
    if not candidate:
        st.error("Enter a token.", icon=":material/key:")
        return
    try:
        user = check(base_url, candidate)
    except Unauthorized:
        st.error(
            "The API refused this token: it is unknown or was revoked.", icon=":material/key_off:"
        )
        return
    except ApiUnreachable:
        st.error(f"Cannot reach the tapfl API at `{base_url}`.", icon=":material/cloud_off:")
        return
    except ApiError as err:
        st.error(f"The API could not check the token: {err.message}", icon=":material/error:")
        return
    sign_in(user, candidate)
    st.rerun()


def sidebar_panel(user: User) -> None:
    """Who is signed in, and the way out."""
    role = " (admin)" if user["is_admin"] else ""
    st.markdown(f":material/person: Signed in as **{user['name']}**{role}")
    if is_auto():
        st.caption(
            "Signed in automatically: this dashboard listens on this machine only "
            "(`tapfl up`). Sign out to use another token."
        )
    if st.button("Sign out", icon=":material/logout:", key="signin_sign_out"):
        sign_out()
        st.rerun()
