"""Synthesize: fill the thin clusters with an LLM, keep what lands there, review the decisions."""

import os

import pandas as pd
import streamlit as st

import ui
from core import prompts, synthesis
from core.errors import bound_of
from core.llm import LLMSettings, check_connection
from core.regions import default_k

page = ui.feature_page(
    "Synthesize",
    "Prismatic Synthesis: new problems from few-shot exemplars of the thin clusters, several solutions "
    "each with a majority vote, and only the samples whose gradients land in an under-represented "
    "cluster are kept. Any OpenAI-compatible endpoint works (vLLM, SGLang, Ollama, OpenAI).",
)
ws, info, fs = page.ws, page.info, page.features

# --- targets --------------------------------------------------------------------------------------
st.subheader("1. Targets")
k = default_k(info.rows)
mode = st.segmented_control(
    "Targets",
    ["Sparse clusters (auto)", "Clusters of the map", "A saved selection"],
    default="Sparse clusters (auto)",
    key="syn_mode",
    label_visibility="collapsed",
)
clusters, selection = (), None
if mode == "Clusters of the map":
    _, described = ui.map_clusters(page, k) or (None, [])
    labels = {
        c[
            "id"
        ]: f"{c['id']}{' ★' if c['sparse'] else ''} · {c['size']} samples · {', '.join(c['keywords'][:4])}"
        for c in described
    }
    clusters = tuple(
        st.multiselect(
            "Clusters to fill (★ sparse)", list(labels), format_func=labels.get, key="syn_clusters"
        )
    )
elif mode == "A saved selection":
    saved = [s["name"] for s in ws.selections(info.name)]
    if saved:
        selection = st.selectbox("Selection", saved, key="syn_selection")
    else:
        st.info("No saved selections yet: make one on the Map page.")
else:
    st.caption(
        "Each round targets the clusters smaller than the median cluster size, the thinnest first."
    )

# --- generator and loop ------------------------------------------------------------------------------
st.subheader("2. Generator")
save = ui.remembered(
    ws,
    "generator_settings",
    {
        "syn_url": "http://127.0.0.1:8000/v1",
        "syn_model": "",
        "syn_target": 20,
        "syn_rounds": 2,
        "syn_k": 3,
        "syn_conc": 8,
        "syn_verifier": "math",
        "syn_maxreq": 0,
        "syn_maxtok": 0,
        "syn_pin": 0.0,
        "syn_pout": 0.0,
        "syn_cap": 0,
    },
)  # everything but the API key, which stays in this browser session only
cols = st.columns([3, 2, 2])
base_url = cols[0].text_input(
    "Base URL",
    key="syn_url",
    on_change=save,
    help="vLLM / SGLang / llama.cpp: http://host:port/v1 · Ollama: http://127.0.0.1:11434/v1 · OpenAI: https://api.openai.com/v1",
)
model = cols[1].text_input(
    "Model", key="syn_model", on_change=save, placeholder="Qwen/Qwen2.5-72B-Instruct"
)
api_key = cols[2].text_input(
    "API key",
    type="password",
    key="syn_key",
    help="Kept in this browser session only, never written to disk. Empty: "
    "the server's OPENAI_API_KEY, if set.",
)


def low(settings: type, name: str):
    """A widget's min_value: the setting's own lower bound (core.errors.Bound)."""
    return bound_of(settings, name).low


Syn = synthesis.SynthesisSettings
cols = st.columns(5)
target = cols[0].number_input(
    "Samples wanted", low(Syn, "target"), 100_000, key="syn_target", on_change=save
)
rounds = cols[1].number_input("Rounds", low(Syn, "rounds"), 50, key="syn_rounds", on_change=save)
solutions = cols[2].number_input(
    "Solutions per problem", low(Syn, "solutions"), 16, key="syn_k", on_change=save
)
concurrency = cols[3].number_input(
    "Requests at once", low(LLMSettings, "concurrency"), 256, key="syn_conc", on_change=save
)
verifier = cols[4].selectbox(
    "Answers agree by",
    ["math", "label"],
    key="syn_verifier",
    on_change=save,
    help="math: equivalence by math-verify on \\boxed{} answers; label: exact label match.",
)
with st.expander("Budget, prices and limits"):
    # the budgets and the cap take 0 for "none"; any other value has the setting's bound (1)
    cols = st.columns(5)
    max_requests = cols[0].number_input(
        "Max requests (0: none)", 0, 10**9, key="syn_maxreq", on_change=save
    )
    max_tokens = cols[1].number_input(
        "Max tokens (0: none)", 0, 10**12, key="syn_maxtok", on_change=save
    )
    price_in = cols[2].number_input(
        "$ per 1M prompt tokens",
        low(LLMSettings, "price_in"),
        1000.0,
        key="syn_pin",
        on_change=save,
    )
    price_out = cols[3].number_input(
        "$ per 1M completion tokens",
        low(LLMSettings, "price_out"),
        1000.0,
        key="syn_pout",
        on_change=save,
    )
    cap = cols[4].number_input(
        "Max accepted per cluster and round (0: none)", 0, 10**6, key="syn_cap", on_change=save
    )


def generator() -> LLMSettings:
    """The generator settings of the widgets (a UserError names what is wrong)."""
    return LLMSettings(
        base_url=base_url.strip(),
        model=model.strip(),
        api_key=api_key or os.environ.get("OPENAI_API_KEY"),
        concurrency=int(concurrency),
        price_in=price_in,
        price_out=price_out,
        max_requests=int(max_requests) or None,
        max_tokens_total=int(max_tokens) or None,
    )


if st.button(
    "Test connection",
    icon=":material/network_check:",
    disabled=not model,
    help="One tiny request (one token) to the endpoint with this model and key.",
):
    with st.spinner("Asking the model for one token..."):
        reply = ui.attempt(lambda: check_connection(generator()))
    if reply is not None:
        st.success(f"The endpoint answers. The model replied: {ui.md(reply) or '(nothing)'}")
with st.expander("Prompt templates"):
    current = prompts.load_templates(ws)
    generate = st.text_area(
        "Problem generation ({exemplars}, {count}, {n})",
        current["generate"],
        height=220,
        key="tpl_generate",
    )
    solve = st.text_area("Solution ({problem})", current["solve"], height=100, key="tpl_solve")
    cols = st.columns([1, 1, 4])
    if cols[0].button("Save templates") and ui.attempt(
        lambda: prompts.save_templates(ws, {"generate": generate, "solve": solve}) or True
    ):
        st.success("Saved; new runs use them.")
    if cols[1].button("Restore the defaults"):
        prompts.save_templates(ws, dict(prompts.DEFAULT_TEMPLATES))
        for key in ("tpl_generate", "tpl_solve"):
            st.session_state.pop(key, None)
        st.rerun()


# --- running -----------------------------------------------------------------------------------------
def run_live(run_id: str) -> None:
    """Run (or resume) a run with live progress; a Cancel click stops it, resumable."""
    target_count = synthesis.run_info(ws, run_id)["settings"]["synthesis"]["target"]
    cancel = ui.cancel_button(
        f"cancel_{run_id}",
        "The run keeps everything finished so far; resume it from the list below.",
    )
    bar = st.progress(0.0, text=f"Run {run_id}: starting...")
    cards = st.empty()

    def update(summary: dict) -> None:
        accepted = summary["accepted"]
        bar.progress(
            min(accepted / target_count, 1.0),
            text=f"Run {run_id}: {summary.get('stage', summary['state'])} · {accepted} accepted, {target_count} wanted",
        )
        with cards.container():
            c = st.columns(5)
            c[0].metric("Accepted", accepted)
            c[1].metric("Rejected", sum(summary["rejected"].values()))
            c[2].metric("Requests sent", summary["counts"]["requests_sent"])
            c[3].metric(
                "G-Vendi before",
                f"{summary['g_vendi_before']:.2f}" if summary["g_vendi_before"] else "-",
            )
            c[4].metric(
                "G-Vendi now",
                f"{summary['g_vendi_after']:.2f}" if summary["g_vendi_after"] else "-",
            )

    key = api_key or os.environ.get("OPENAI_API_KEY")
    done = ui.attempt(lambda: synthesis.run_synthesis(ws, run_id, api_key=key, on_update=update))
    cancel.empty()
    if not done:
        return  # ui.attempt showed why (a failed run: resume it below)
    said = f"Run {run_id} {done['state']}: {done['accepted']} accepted."
    failed = done["counts"]["requests_failed"]
    notes = [done["note"]] if done.get("note") else []
    if failed:
        notes.append(f"{failed} requests failed; their items in the review say why")
    if notes:
        st.warning(ui.md(f"{said} {'; '.join(notes)}."))
    else:
        st.success(f"{said} Review the decisions below.")


st.subheader("3. Run")
if st.button(
    "Start a run",
    type="primary",
    icon=":material/play_arrow:",
    disabled=not model
    or (mode == "Clusters of the map" and not clusters)
    or (mode == "A saved selection" and not selection),
):

    def start() -> str:
        llm = generator()
        settings = synthesis.SynthesisSettings(
            clusters=clusters,
            selection=selection,
            target=int(target),
            rounds=int(rounds),
            solutions=int(solutions),
            verifier=verifier,
            cap=int(cap) or None,
            k=k,
        )
        return synthesis.create_run(
            ws,
            info.name,
            llm=llm,
            settings=settings,
            proxy=page.proxy,
            config=page.config,
            runtime=page.runtime,
        )

    run_id = ui.attempt(start)
    if run_id:
        st.session_state["syn_review_run"] = run_id  # the review below opens on this run
        run_live(run_id)

# --- runs and review -----------------------------------------------------------------------------------
runs = synthesis.list_runs(ws, info.name)
if not runs:
    st.caption("No runs yet.")
    st.stop()
st.subheader("Runs")
table = pd.DataFrame(
    [
        {
            "run": r["id"],
            "state": r["state"],
            "accepted": r["counts"].get("accepted", 0),
            "rejected": r["counts"].get("rejected_total", 0),
            "G-Vendi before": r["g_vendi_before"],
            "G-Vendi after": r["g_vendi_after"],
            "model": r["settings"]["llm"]["model"],
            "targets": ",".join(map(str, r["settings"]["synthesis"]["clusters"]))
            or r["settings"]["synthesis"]["selection"]
            or "auto",
            "error": r["error"],
        }
        for r in runs
    ]
)
st.dataframe(
    table,
    hide_index=True,
    column_config={
        "G-Vendi before": st.column_config.NumberColumn(format="%.2f"),
        "G-Vendi after": st.column_config.NumberColumn(format="%.2f"),
    },
)
ids = [r["id"] for r in runs]
if st.session_state.get("syn_review_run") not in ids:
    st.session_state["syn_review_run"] = ids[0]  # the newest
chosen = st.selectbox("Review run", ids, key="syn_review_run")
info_run = synthesis.run_info(ws, chosen)
if info_run["state"] in ("interrupted", "cancelled", "failed", "budget", "created") and st.button(
    "Resume this run",
    icon=":material/resume:",
    help="Finished requests are answered from the run's log.",
):
    run_live(chosen)
    info_run = synthesis.run_info(ws, chosen)

items = synthesis.review(ws, chosen)
if items:
    rejected = pd.Series(
        [i["reason_kind"] for i in items if i["decision"] == "rejected" and i["reason_kind"]]
    )
    if len(rejected):
        st.caption(
            "Rejections: " + ", ".join(f"{k}: {v}" for k, v in rejected.value_counts().items())
        )
    frame = pd.DataFrame(
        [
            {
                "item": i["item_id"],
                "decision": i["override"] or "auto",
                "status": i["status"],
                "round": i["round"],
                "target": i["target_cluster"],
                "landed": i["landed_cluster"],
                "reason": i["reason"] or "",
                "answers": ", ".join(a or "-" for a in i["answers"]),
                "problem": i["problem"][:300],
                "solution": (i["response"] or "")[:300],
            }
            for i in items
        ]
    )
    edited = st.data_editor(
        frame,
        hide_index=True,
        key=f"review_{chosen}",
        disabled=[c for c in frame.columns if c != "decision"],
        column_config={
            "decision": st.column_config.SelectboxColumn(
                "decision",
                options=["auto", "accepted", "rejected"],
                required=True,
                help="auto: the loop's decision (status); or override it.",
            ),
            "reason": st.column_config.TextColumn("reason", width="medium"),
            "problem": st.column_config.TextColumn("problem", width="large"),
        },
    )
    changed = edited[edited["decision"] != frame["decision"]]
    for _, row in changed.iterrows():
        ui.attempt(
            lambda row=row: synthesis.set_decision(
                ws, chosen, row["item"], None if row["decision"] == "auto" else row["decision"]
            )
        )
    if len(changed):
        st.rerun()
    kept = sum(1 for i in items if i["decision"] == "accepted")  # a change reran above
    st.caption(f"{kept} samples of this run go to the curated set (with overrides).")
