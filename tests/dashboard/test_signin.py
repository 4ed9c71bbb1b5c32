"""Sign-in: the dashboard shows nothing but the sign-in form until a user signs in with
their own token, acts with that token, and forgets it on sign-out. Auto sign-in as the
bootstrap admin happens only where ``tapfl up`` asks for it and Streamlit listens on
loopback. Against the session's real API (AppTest); the browser test of the same is
``test_browser_signin.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from dashboard import signin
from tests.dashboard.apptest import APP
from tests.dashboard.conftest import Dashboard

SIGN_IN_TITLE = "Sign in to tapfl"


def fresh_app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=30)


def titles(at: AppTest) -> list[str]:
    return [str(t.value) for t in at.title]


def sign_in_with(at: AppTest, token: str) -> AppTest:
    at.text_input(key="signin_candidate").input(token)
    next(b for b in at.button if b.label == "Sign in").click()
    return at.run()


@pytest.fixture
def member(dashboard: Dashboard, request: pytest.FixtureRequest) -> dict[str, str]:
    """A new non-admin user: name and token."""
    name = f"member-{request.node.name[-20:]}".replace("[", "-").replace("]", "")
    created = dashboard.api.call("POST", "/users", json={"name": name[:60]})
    return {"name": created["name"], "token": created["token"]}


@pytest.fixture
def server_address() -> Iterator[object]:
    """Set Streamlit's ``server.address`` for one test, then restore it."""
    before = config.get_option("server.address")
    yield lambda address: config.set_option("server.address", address)
    config.set_option("server.address", before)


def test_nothing_but_the_form_until_someone_signs_in(dashboard: Dashboard) -> None:
    # The test's environment holds the admin token (TAPFL_TOKEN): the dashboard must not use it.
    at = fresh_app().run()
    assert not at.exception
    assert titles(at) == [SIGN_IN_TITLE]
    assert not at.dataframe
    assert signin.TOKEN_KEY not in at.session_state
    # Only the health check went out; nothing that needs a token.
    assert {r.path for r in dashboard.requests()} <= {"/api/v1/health"}


def test_a_refused_token_is_not_kept(dashboard: Dashboard) -> None:
    at = sign_in_with(fresh_app().run(), "not-a-token")
    assert not at.exception
    assert "refused this token" in at.error[0].value
    assert titles(at) == [SIGN_IN_TITLE]
    assert signin.TOKEN_KEY not in at.session_state


def test_a_member_signs_in_acts_with_their_token_and_signs_out(
    dashboard: Dashboard, member: dict[str, str]
) -> None:
    at = sign_in_with(fresh_app().run(), member["token"])
    assert not at.exception, [e.value for e in at.exception]
    assert SIGN_IN_TITLE not in titles(at)
    assert any(f"Signed in as **{member['name']}**" in m.value for m in at.sidebar.markdown)
    assert not any("(admin)" in m.value for m in at.sidebar.markdown)
    assert at.dataframe  # the Runs page ran
    assert at.session_state[signin.TOKEN_KEY] == member["token"]

    at.button(key="signin_sign_out").click().run()
    assert titles(at) == [SIGN_IN_TITLE]
    assert signin.TOKEN_KEY not in at.session_state
    assert signin.USER_KEY not in at.session_state


def test_a_token_revoked_while_signed_in_sends_the_user_back_to_the_form(
    dashboard: Dashboard, member: dict[str, str]
) -> None:
    at = sign_in_with(fresh_app().run(), member["token"])
    assert at.dataframe
    dashboard.api.call("POST", f"/users/{member['name']}/revoke")
    at.run()
    assert any("no longer accepts your token" in w.value for w in at.main.warning)
    assert titles(at) == [SIGN_IN_TITLE]


def test_auto_sign_in_only_on_loopback_and_not_after_sign_out(
    dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch, server_address
) -> None:
    monkeypatch.setenv("TAPFL_DASHBOARD_AUTO_SIGNIN", "1")

    server_address("0.0.0.0")  # as in docker-compose: the setting alone is not enough
    assert titles(fresh_app().run()) == [SIGN_IN_TITLE]

    server_address("127.0.0.1")
    at = fresh_app().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Signed in as **admin** (admin)" in m.value for m in at.sidebar.markdown)
    assert any("Signed in automatically" in c.value for c in at.sidebar.caption)

    at.button(key="signin_sign_out").click().run()
    assert titles(at) == [SIGN_IN_TITLE]  # the admin token is not taken again
    at.run()
    assert titles(at) == [SIGN_IN_TITLE]


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("", False),
        ("10.1.2.3", False),
        ("dashboard.example", False),
    ],
)
def test_which_addresses_are_loopback(server_address, address: str, loopback: bool) -> None:
    server_address(address)
    assert signin.listens_on_loopback_only() is loopback
