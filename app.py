"""Prism Studio: `streamlit run app.py`. The pages are in pages/, the engine in core/."""

import streamlit as st

import ui

st.set_page_config(page_title="Prism Studio", page_icon=":material/diamond:", layout="wide")
ws = ui.workspace()
page = st.navigation(
    [
        st.Page("pages/data.py", title="Data", icon=":material/database:", default=True),
        st.Page("pages/features.py", title="Features", icon=":material/scatter_plot:"),
    ]
)
ui.sidebar(ws)
page.run()
