import json
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revopipe_plugins.profiler.export import (
    SPEEDSCOPE_SCHEMA,
    parse_collapsed,
    to_collapsed,
    to_speedscope,
)
from revopipe_plugins.profiler.sampler import Profile, Sampler


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def sampled_profile() -> Profile:
    sampler = Sampler(rate_hz=200)
    with sampler:
        t = threading.Thread(target=busy, args=(0.4,), name="busy thread")
        t.start()
        t.join(30)
    return sampler.window()


def synthetic() -> Profile:
    return Profile(
        start_ns=1,
        end_ns=2_000_000_001,
        rate_hz=100.0,
        ticks=10,
        total_samples=6,
        idle_samples=0,
        stacks={
            "main;app:main:3;app:work:10": 4,
            "main;app:main:3;app:other:20": 1,
            "worker 1;threading:Thread.run:982;app:work:11": 1,
        },
        functions=(),
        files={"app:main": "/srv/app.py", "app:work": "/srv/app.py"},
    )


def check_speedscope(doc: dict[str, Any], profile: Profile) -> None:
    """Structural check against the speedscope file-format schema (sampled profiles)."""
    doc = json.loads(json.dumps(doc))  # must be plain JSON
    assert doc["$schema"] == SPEEDSCOPE_SCHEMA
    frames = doc["shared"]["frames"]
    assert isinstance(frames, list)
    for frame in frames:
        assert isinstance(frame["name"], str) and frame["name"]
        assert set(frame) <= {"name", "file", "line", "col"}
        if "line" in frame:
            assert isinstance(frame["line"], int)
    profiles = doc["profiles"]
    assert profiles
    assert 0 <= doc["activeProfileIndex"] < len(profiles)
    total = 0
    for p in profiles:
        assert p["type"] == "sampled"
        assert p["unit"] in {"none", "nanoseconds", "microseconds", "milliseconds", "seconds"}
        assert isinstance(p["name"], str)
        assert p["endValue"] >= p["startValue"]
        assert len(p["samples"]) == len(p["weights"])
        for stack in p["samples"]:
            assert all(isinstance(i, int) and 0 <= i < len(frames) for i in stack)
        assert all(w > 0 for w in p["weights"])
        total += sum(p["weights"])
    assert total == profile.total_samples


def test_speedscope_of_a_real_window_is_well_formed() -> None:
    profile = sampled_profile()
    doc = to_speedscope(profile, name="busy")
    check_speedscope(doc, profile)
    names = {p["name"] for p in doc["profiles"]}
    assert "busy thread" in names
    assert any(f["name"].endswith(":busy") for f in doc["shared"]["frames"])


def test_speedscope_frames_keep_file_and_line_and_dedupe() -> None:
    profile = synthetic()
    doc = to_speedscope(profile)
    check_speedscope(doc, profile)
    frames = doc["shared"]["frames"]
    assert {"name": "app:work", "file": "/srv/app.py", "line": 10} in frames
    assert {"name": "app:other", "line": 20} in frames
    # the same function:line appears once in the shared table
    assert len(frames) == len({(f["name"], f.get("line")) for f in frames})
    by_name = {p["name"]: p for p in doc["profiles"]}
    assert by_name["main"]["endValue"] == 5
    assert doc["activeProfileIndex"] == doc["profiles"].index(by_name["main"])
    main = by_name["main"]
    i = main["weights"].index(4)
    assert [frames[j]["name"] for j in main["samples"][i]] == ["app:main", "app:work"]


def test_speedscope_of_an_empty_window() -> None:
    doc = to_speedscope(Sampler().window())
    assert doc["profiles"] == [] and doc["shared"]["frames"] == []
    assert doc["activeProfileIndex"] == 0


def test_collapsed_round_trips_a_real_window() -> None:
    profile = sampled_profile()
    text = to_collapsed(profile.stacks)
    assert text.endswith("\n")
    assert all(line.rsplit(" ", 1)[1].isdigit() for line in text.splitlines())
    assert parse_collapsed(text) == profile.stacks


frame_text = st.text(
    alphabet=st.characters(blacklist_characters=";\n\r", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
)
stack_text = st.lists(frame_text, min_size=1, max_size=6).map(";".join)


@given(st.dictionaries(stack_text, st.integers(min_value=0, max_value=10**12), max_size=20))
def test_collapsed_round_trip_property(stacks: dict[str, int]) -> None:
    # a reference: the stacks themselves, minus zero counts
    assert parse_collapsed(to_collapsed(stacks)) == {k: v for k, v in stacks.items() if v}


def test_parse_adds_duplicates_and_skips_blank_lines() -> None:
    text = "a;b 2\r\n\n  \na;b 3\nthread one;x:y:1 1\n"
    assert parse_collapsed(text) == {"a;b": 5, "thread one;x:y:1": 1}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a;b\n", 1),
        ("a;b 1\na;b x\n", 2),
        ("a;b -1\n", 1),
        ("a;b 1.5\n", 1),
        (" 5\n", 1),
        ("ok 1\n\na;b ²\n", 3),
    ],
)
def test_parse_rejects_malformed_lines(text: str, line: int) -> None:
    with pytest.raises(ValueError, match=f"line {line}:"):
        parse_collapsed(text)


@pytest.mark.parametrize("stacks", [{"a\nb": 1}, {"": 1}, {"a;b": -1}])
def test_to_collapsed_rejects_unwritable_stacks(stacks: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="profiler export"):
        to_collapsed(stacks)
