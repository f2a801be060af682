"""The README's two set-up commands stay true: CI runs the test command it shows."""

from tests.conftest import REPO


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = ci.split("# The README's test command:\n", 1)[1].strip().splitlines()[0]
    assert f"```bash\n{command}\n```" in readme
    assert "```bash\npip install -r requirements.txt && streamlit run app.py\n```" in readme
