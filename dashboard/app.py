"""tapfl dashboard: ``streamlit run dashboard/app.py`` (talks only to the REST API).

Set ``TAPFL_API_URL`` (default ``http://127.0.0.1:8000``); each user signs in with their own
API token (``dashboard/signin.py``).
"""

from __future__ import annotations

import streamlit as st

from backend.client import ApiError, Unauthorized, api_url_from_env
from dashboard import signin, ui

# An image, not an emoji or a material icon: for those the browser would fetch the icon
# from a CDN, and the dashboard asks nothing of hosts other than its own.
st.set_page_config(page_title="tapfl", page_icon=ui.page_icon(), layout="wide")

page = st.navigation(
    [
        st.Page(ui.RUNS_PAGE, title="Runs", icon=":material/table_rows:", default=True),
        st.Page(ui.RUN_PAGE, title="Run", icon=":material/monitoring:", url_path="run"),
        st.Page(ui.COMPARE_PAGE, title="Compare", icon=":material/compare:", url_path="compare"),
        st.Page(ui.STUDY_PAGE, title="Study", icon=":material/science:", url_path="study"),
        st.Page(ui.SUBMIT_PAGE, title="Submit", icon=":material/add_circle:", url_path="submit"),
    ]
)

with st.sidebar:
    problem = ui.connection_panel()

# Without an API (or a token it accepts) no page can show anything useful: say so once,
# plainly, instead of letting every page fail on its own.
if problem:
    st.error(problem, icon=":material/cloud_off:")
    st.stop()

# Nothing but the sign-in form until someone signs in; the page they asked for (URL and
# query) stays, and shows once they have.
try:
    user = signin.current_user(api_url_from_env())
except Unauthorized:
    automatic = signin.is_auto()
    signin.sign_out()
    st.warning(
        "Automatic sign-in failed: the API refused the bootstrap admin token."
        if automatic
        else "The API no longer accepts your token (revoked?): sign in again.",
        icon=":material/key_off:",
    )
    user = None
except ApiError as err:
    ui.show_api_error(err)
    st.stop()
if user is None:
    signin.form(api_url_from_env())
    st.stop()
with st.sidebar:
    signin.sidebar_panel(user)

page.run()
