"""`results/README.md`: the index of the research questions, one line of answer each, every figure linked.

The index is generated from the study folders themselves: each study's README (its title and the first line of its
"The answer" section), its config.json (commit, dirty flag, scale) and the figures and tables it wrote. A study
that has not been run is listed as such.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from studies.report_text import dirty_warning

QUESTIONS = (
    ("complexity", "Q1", "Does the LLC of a compiled transformer track the algorithmic complexity stored in it?"),
    ("grokking", "Q2", "Does the train-data LLC anticipate the test loss during training (grokking)?"),
    ("training", "Q2", "Does the final train-data LLC rank trained models by test loss (validation without a "
                       "validation set)?"),
    ("ablations", "Q3", "How do ablations change the LLC, against random ablations of as many weights?"),
)

SUPPLEMENTS = (  # listed when present; written by their own commands, not by `make results`
    ("q1_answer", "Q1 over every valid estimate", "Does the LLC of a compiled program say anything its Hessian "
                                                  "rank does not, on the programs with a valid estimate in the table "
                                                  "or its escalation (`python -m studies.q1_answer`)?"),
    ("complexity_escalation", "Q1, supplement", "Do the near-valid programs of the complexity table, and programs it "
                                                "left out for size, become valid when flagged estimates are rerun at "
                                                "twice the budget (`python -m studies.complexity_escalation`)?"),
    ("landscape_probe", "Q1, supplement", "What does the sampler meet near w* on the programs that are, and are not, "
                                          "validly sampled (`python -m studies.landscape_probe`)?"),
    ("sharpness_ladder", "Q1, supplement", "Does the LLC converge as the compiled weights get sharper at constant "
                                           "100% accuracy (`python -m studies.sharpness_ladder`)?"),
    ("estimate_cost", "Q1, supplement", "What would the five validity checks cost on each compiled program, measured "
                                        "per gradient evaluation (`python -m studies.estimate_cost`)?"),
)


def answer_line(readme: str, limit: int = 700) -> str:
    """The README's answer section (under its first heading containing "answer") as one line: its non-empty lines,
    list markers and bold removed, joined by " · " and cut at `limit` characters; "" when there is none."""
    lines = readme.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#") and "answer" in line.lower():
            parts = []
            for text in lines[i + 1:]:
                if text.startswith("#"):
                    break
                if text.strip():
                    parts.append(re.sub(r"^[-*]\s+", "", text.strip()).replace("**", ""))
            joined = " · ".join(parts)
            return joined if len(joined) <= limit else joined[:limit].rsplit(" ", 1)[0] + " …"
    return ""


def _entry(root: Path, experiment: str, tag: str, question: str) -> list:
    folder = root / experiment
    lines = [f"## {tag} · {question}", ""]
    if not (folder / "README.md").exists():
        return lines + [f"Not run yet: `LLC_EXPERIMENTS={experiment} make results` writes `{experiment}/`.", ""]
    readme = (folder / "README.md").read_text()
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    env, scale = config.get("environment", {}), config.get("scale", "?")
    answer = answer_line(readme) or "see the study's README (it has no answer section)."
    lines += [f"**Answer:** {answer}", "",
              f"Details: [{experiment}/README.md]({experiment}/README.md) · scale `{scale}` · commit "
              f"`{str(env.get('git_commit', ''))[:10]}`" + (" · **dirty tree**" if env.get("dirty") else ""), ""]
    if env.get("dirty"):
        lines += [dirty_warning(), ""]
    if "dirty" not in env:
        lines += ["**Warning: this folder records no dirty flag, so it predates the provenance and validity records; "
                  "its numbers carry no validity verdicts. Regenerate it before relying on it.**", ""]
    figures = sorted(folder.rglob("*.png"))
    tables = sorted(p for p in folder.rglob("*.csv"))
    if figures:
        lines += ["Figures: " + " · ".join(f"[{p.relative_to(root)}]({p.relative_to(root)})" for p in figures), ""]
    if tables:
        lines += ["Tables: " + " · ".join(f"[{p.relative_to(root)}]({p.relative_to(root)})" for p in tables), ""]
    return lines


def write_index(root: Path) -> str:
    """Writes `root/README.md` (the index) and returns its text."""
    lines = ["# Results: what the LLC says about compiled and trained transformers", "",
             "Generated by `studies/index.py` from the study folders below (`make results` regenerates everything). "
             "Every LLC in these folders carries its validity verdict; a number is a valid LLC only where its row "
             "says so. Notebooks that show these folders: `llc_estim/complexity.ipynb`, `llc_estim/ablations.ipynb`, "
             "`llc_training/training.ipynb`, `llc_training/grokking/mod_add.ipynb`.", ""]
    for experiment, tag, question in QUESTIONS:
        lines += _entry(root, experiment, tag, question)
    for experiment, tag, question in SUPPLEMENTS:
        if (root / experiment / "README.md").exists():
            lines += _entry(root, experiment, tag, question)
    text = "\n".join(lines)
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(text)
    return text
