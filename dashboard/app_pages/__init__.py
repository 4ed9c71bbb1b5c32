"""The dashboard's pages, one script per page, registered with ``st.navigation`` in app.py.

Not named ``pages/``: Streamlit treats a ``pages/`` folder next to the entry point as a
legacy multipage app on a server's first script run (and on every AppTest rerun), which
runs a page without ``app.py`` around it. A package, so that installs ship the scripts.
"""
