"""The manifest reader: header errors stop, row errors become reported problems."""

import os

import pytest

from memobert_plugin.prepare.manifest import ManifestError, Utterance, read_manifest
from memobert_plugin.prepare.report import Problem
from memobert_plugin.prepare.shards import make_plan


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "corpus" / "manifest.tsv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_valid_rows_become_utterances_with_resolved_paths(tmp_path):
    path = _write(tmp_path, "text\tid\taudio\tvideo\tstart\tend\tlabel\n"
                            "hello there\tu1\twav/u1.wav\t/abs/u1.mp4\t1.5\t3\thappy\n"
                            "\tu2\t\t\t\t\t\n")
    first, second = list(read_manifest(path))
    folder = os.path.dirname(path)
    assert first == Utterance(line=2, id="u1", text="hello there", label="happy",
                              audio=os.path.join(folder, "wav/u1.wav"),
                              video="/abs/u1.mp4", start=1.5, end=3.0)
    assert second == Utterance(line=3, id="u2", text="")
    assert Utterance.from_row(first.to_row()) == first and Utterance.from_row(second.to_row()) == second


def test_the_fixed_subset_column(tmp_path):
    path = _write(tmp_path, "id\ttext\tsubset\nu1\thi\ttest\nu2\tho\tdev\nu3\thum\t\n")
    first, bad, third = list(read_manifest(path))
    assert (first.subset, third.subset) == ("test", "")
    assert bad == Problem("u2", 3, "manifest", "subset 'dev' is not one of train, valid, test (or empty)")
    assert Utterance.from_row(first.to_row()) == first
    # an entry list written before the subset field (10 cells) is read with no subset
    assert Utterance.from_row(first.to_row()[:9] + ["2"]) == Utterance(line=2, id="u1", text="hi")


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    path = _write(tmp_path, "\ufeffid\ttext\nu1\thi\n")
    assert [u.id for u in read_manifest(path)] == ["u1"]


@pytest.mark.parametrize("header, message", [
    ("id\ttext\tvidoe", r"unknown columns \['vidoe'\]"),
    ("id\taudio", r"missing required columns \['text'\]"),
    ("id\ttext\ttext", r"repeated columns \['text'\]"),
])
def test_bad_header_is_an_error_naming_the_file(tmp_path, header, message):
    path = _write(tmp_path, header + "\nu1\thi\tx\n")
    with pytest.raises(ManifestError, match=r"manifest.tsv:1: bad header .*" + message):
        list(read_manifest(path))


def test_missing_and_empty_manifests(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        list(read_manifest(str(tmp_path / "none.tsv")))
    with pytest.raises(ManifestError, match="empty file; the first line must be the header"):
        list(read_manifest(_write(tmp_path, "")))


def test_bad_rows_are_problems_with_line_numbers(tmp_path):
    path = _write(tmp_path, "id\ttext\tstart\tend\n"
                            "ok\tfine\t\t\n"
                            "short\tonly two fields\n"
                            "late\tx\t2\t1\n"
                            "word\tx\tsoon\t\n"
                            "neg\tx\t-1\t\n"
                            "bad id\tx\t\t\n"
                            "\n"
                            "ok\tagain\t\t\n")
    rows = list(read_manifest(path))
    assert rows[0].id == "ok"
    assert rows[1:] == [
        Problem("short", 3, "manifest", "2 tab-separated fields, the header has 4"),
        Problem("late", 4, "manifest", "end 1.0 s is not after start 2.0 s"),
        Problem("word", 5, "manifest", "start 'soon' is not a number of seconds"),
        Problem("neg", 6, "manifest", "start '-1' must be >= 0 seconds"),
        Problem("bad id", 7, "manifest", "id 'bad id' must be non-empty and without spaces"),
        Problem("ok", 9, "manifest", "duplicate id (an earlier line has it); row skipped"),
    ]


def test_plan_shards_the_entries_and_is_reused_until_the_manifest_changes(tmp_path):
    rows = "".join(f"u{i}\ttext {i}\n" for i in range(10))
    path = _write(tmp_path, "id\ttext\n" + rows + "u3\tdup\n")
    plan = make_plan(path, str(tmp_path / "work"), shard_size=4)
    assert plan.shard_sizes == [4, 4, 2] and plan.columns == ["id", "text"]
    assert [u.id for u in plan.read_entries(2)] == ["u8", "u9"]
    marker = os.path.getmtime(plan.entries_path(0))
    assert make_plan(path, str(tmp_path / "work"), shard_size=4) == plan
    assert os.path.getmtime(plan.entries_path(0)) == marker  # not rewritten
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("u10\tmore\n")
    assert make_plan(path, str(tmp_path / "work"), shard_size=4).shard_sizes == [4, 4, 3]
    with pytest.raises(ValueError, match="the acoustic stage needs the column 'audio' in the header"):
        plan.require_column("audio", "acoustic")


def test_a_manifest_that_is_not_utf8_names_its_first_bad_line(tmp_path):
    path = tmp_path / "manifest.tsv"
    path.write_bytes("id\ttext\nu1\tfine\nu2\tcaf\u00e9\n".encode("utf-8") + "u3\tol\u00e9\n".encode("cp1252"))
    with pytest.raises(ManifestError, match=r"manifest.tsv:4: not UTF-8 text .*iconv"):
        list(read_manifest(str(path)))
