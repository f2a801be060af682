"""Prism Studio's engine: records -> gradient features -> scores and regions -> synthesis -> export.

UI-free and importable; the Streamlit pages and the CLI (`python -m core`) both call it.
"""

__version__ = "0.1.0"
