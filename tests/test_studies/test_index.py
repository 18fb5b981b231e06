"""results/README.md: one line of answer per question, every figure linked, missing studies said so."""

import json

from studies.index import answer_line, write_index


def test_answer_line_is_the_answer_section_in_one_line():
    text = "# T\n\nintro\n\n## The answer, plainly\n\n- **Yes**, mostly.\n- second\n\n## Next\n"
    assert answer_line(text) == "Yes, mostly. · second"
    assert answer_line(text, limit=8) == "Yes, …"
    assert answer_line("# T\n\nno such section\n") == ""


def test_index_links_every_figure_and_says_which_studies_did_not_run(tmp_path):
    folder = tmp_path / "complexity"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.md").write_text("# Q1\n\n## The answer\n\nThe LLC equals rank/2 on valid rows.\n")
    (folder / "config.json").write_text(json.dumps({"scale": "quick", "environment": {"git_commit": "abc123",
                                                                                       "dirty": True}}))
    for name in ("a.png", "sub/b.png", "t.csv"):
        (folder / name).write_bytes(b"x")
    text = write_index(tmp_path)
    assert (tmp_path / "README.md").read_text() == text
    assert "**Answer:** The LLC equals rank/2 on valid rows." in text
    assert "(complexity/a.png)" in text and "(complexity/sub/b.png)" in text and "(complexity/t.csv)" in text
    assert "dirty tree" in text and "uncommitted changes" in text
    for missing in ("grokking", "training", "ablations"):
        assert f"LLC_EXPERIMENTS={missing} make results" in text


def test_a_folder_without_provenance_is_flagged(tmp_path):
    folder = tmp_path / "ablations"
    folder.mkdir()
    (folder / "README.md").write_text("# Q3\n")
    (folder / "config.json").write_text('{"scale": "quick", "environment": {"git_commit": "900d3ce"}}')
    text = write_index(tmp_path)
    assert "records no dirty flag" in text and "see the study's README" in text


def test_supplements_are_indexed_only_when_present(tmp_path):
    from studies.index import write_index

    assert "complexity_escalation" not in write_index(tmp_path)
    (tmp_path / "complexity_escalation").mkdir()
    (tmp_path / "complexity_escalation" / "README.md").write_text("# S\n\n## The answer\n\n- **2 of 3 valid.**\n")
    text = write_index(tmp_path)
    assert "Q1, supplement" in text and "2 of 3 valid." in text
