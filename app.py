"""Prism Studio: `streamlit run app.py`. The pages are in app_pages/, the engine in core/.

The folder is not called pages/: Streamlit treats a folder of that name as an old-style
multipage app, and a deep link opened right after the server starts would run the page
alone, without this navigation and sidebar.
"""

import streamlit as st

st.set_page_config(page_title="Prism Studio", page_icon=":material/diamond:", layout="wide")
# a server's first run imports the engine (PyTorch: seconds): say so instead of a blank page
# (a spinner shows only after half a second, so later runs show nothing)
with st.spinner("Starting Prism Studio..."):
    import ui
ws = ui.workspace()
page = st.navigation(
    [
        st.Page("app_pages/data.py", title="Data", icon=":material/database:", default=True),
        st.Page("app_pages/features.py", title="Features", icon=":material/memory:"),
        st.Page("app_pages/diversity.py", title="Diversity", icon=":material/diversity_3:"),
        st.Page("app_pages/map.py", title="Map", icon=":material/scatter_plot:"),
        st.Page("app_pages/synthesize.py", title="Synthesize", icon=":material/auto_awesome:"),
        st.Page("app_pages/export.py", title="Export", icon=":material/file_export:"),
    ]
)
ui.sidebar(ws)
page.run()
