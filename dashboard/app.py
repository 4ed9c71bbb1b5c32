"""tapfl dashboard: ``streamlit run dashboard/app.py`` (talks only to the REST API).

Set ``TAPFL_API_URL`` (default ``http://127.0.0.1:8000``) and ``TAPFL_TOKEN``.
"""

from __future__ import annotations

import streamlit as st

from dashboard import ui

# An image, not an emoji or a material icon: for those the browser would fetch the icon
# from a CDN, and the dashboard asks nothing of hosts other than its own.
st.set_page_config(page_title="tapfl", page_icon=ui.page_icon(), layout="wide")

page = st.navigation(
    [
        st.Page(ui.RUNS_PAGE, title="Runs", icon=":material/table_rows:", default=True),
        st.Page(ui.RUN_PAGE, title="Run", icon=":material/monitoring:", url_path="run"),
        st.Page(ui.COMPARE_PAGE, title="Compare", icon=":material/compare:", url_path="compare"),
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

page.run()
