"""Optimization profiles: parsing, files, ordering errors, shapes for the model's inputs, choosing one to run."""

import json
from pathlib import Path

import pytest

from seo_export.backends.tensorrt.profiles import (
    DimRange,
    Profile,
    choose_profile,
    input_profile_shapes,
    load_profile_file,
    parse_profile,
)
from seo_export.errors import UsageError

REPO = Path(__file__).resolve().parents[2]


def test_parse_min_opt_max():
    profile = parse_profile("batch=1:8:32,seq=16:512:4096")
    assert profile == Profile(DimRange(1, 8, 32), DimRange(16, 512, 4096))
    assert str(profile) == "batch=1:8:32,seq=16:512:4096"
    assert parse_profile(str(profile)) == profile


def test_parse_fixed_dimension_and_spaces():
    assert parse_profile(" seq = 128 , batch=1:2:4") == Profile(DimRange(1, 2, 4), DimRange(128, 128, 128))


@pytest.mark.parametrize("spec,fragment", [
    ("batch=8:1:32,seq=16:512:4096", "batch 8:1:32 is out of order; need min <= opt <= max"),
    ("batch=1:8:32,seq=16:512:256", "seq 16:512:256 is out of order"),
    ("batch=0:8:32,seq=16:512:4096", "batch 0:8:32 must be positive"),
    ("batch=-1,seq=16", "must be positive"),
    ("batch=1:8:32", "missing seq"),
    ("batch=1:8,seq=16:512:4096", "needs MIN:OPT:MAX or one number"),
    ("batch=a:b:c,seq=1", "needs integers"),
    ("batch=1,batch=2,seq=3", "batch is given twice"),
    ("heads=1,batch=1,seq=1", "expected batch=MIN:OPT:MAX,seq=MIN:OPT:MAX"),
    ("", "expected batch="),
])
def test_bad_profiles_name_the_problem(spec, fragment):
    with pytest.raises(UsageError) as info:
        parse_profile(spec)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_profile_file_round_trip(tmp_path):
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"profiles": [{"batch": [1, 1, 1], "seq": [1, 128, 512]},
                                             {"batch": 4, "seq": [512, 2048, 8192]}]}))
    profiles = load_profile_file(path)
    assert [str(p) for p in profiles] == ["batch=1:1:1,seq=1:128:512", "batch=4:4:4,seq=512:2048:8192"]
    assert [Profile.from_dict(p.to_dict()) for p in profiles] == profiles


@pytest.mark.parametrize("content,fragment", [
    ("{oops", "not valid JSON"),
    ("[]", 'non-empty list under "profiles"'),
    ('{"profiles": []}', 'non-empty list under "profiles"'),
    ('{"profiles": [{"batch": [1, 2, 3]}]}', "profile 0: a profile needs exactly the keys batch and seq"),
    ('{"profiles": [{"batch": [1, 2, 3], "seq": [9, 8, 7]}]}', "profile 0: seq 9:8:7 is out of order"),
    ('{"profiles": [{"batch": [1, 2], "seq": 4}]}', "batch must be [min, opt, max] or one integer"),
    ('{"profiles": [{"batch": [1, 2, 2.5], "seq": 4}]}', "must be integers"),
])
def test_bad_profile_files(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError) as info:
        load_profile_file(path)
    assert fragment in str(info.value)


def test_missing_profile_file():
    with pytest.raises(UsageError, match="profile file nowhere.json does not exist"):
        load_profile_file("nowhere.json")


def test_profile_files_are_found_by_name_under_engines(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not the repository: found through the project's engines/ folder
    assert load_profile_file("default") == load_profile_file(REPO / "engines" / "default.json")


def test_the_default_profile_file_is_valid():
    (profile,) = load_profile_file(REPO / "engines" / "default.json")
    assert profile.fits(1, 1) and profile.fits(32, 4096) and not profile.fits(33, 16)


def test_input_shapes_for_dynamic_inputs():
    profile = parse_profile("batch=1:2:4,seq=8:64:256")
    shapes = input_profile_shapes(profile, {"input_ids": (None, None), "attention_mask": (-1, -1)})
    assert shapes == {name: ((1, 8), (2, 64), (4, 256)) for name in ("input_ids", "attention_mask")}


def test_input_shapes_accept_a_matching_fixed_dimension():
    shapes = input_profile_shapes(parse_profile("batch=1,seq=8:64:256"), {"input_ids": (1, -1)})
    assert shapes == {"input_ids": ((1, 8), (1, 64), (1, 256))}


@pytest.mark.parametrize("dims,fragment", [
    ({"input_ids": (1, None)}, "fixed batch of 1, but the profile asks for 1:2:4"),
    ({"input_ids": (None, None), "token_type_ids": (None, None)}, "the model has input 'token_type_ids'"),
    ({"attention_mask": (None, None)}, "no input 'input_ids'"),
    ({"input_ids": (None, None, 3)}, "rank 3"),
])
def test_input_shapes_refuse_what_the_profile_cannot_serve(dims, fragment):
    with pytest.raises(UsageError) as info:
        input_profile_shapes(parse_profile("batch=1:2:4,seq=8:64:256"), dims)
    assert fragment in str(info.value)


def test_choose_profile_prefers_the_nearest_opt():
    profiles = [parse_profile("batch=1:8:32,seq=1:128:512"), parse_profile("batch=1:8:32,seq=256:2048:4096")]
    assert choose_profile(profiles, 8, 100) == 0
    assert choose_profile(profiles, 8, 300) == 0  # both fit; 128 is the nearer opt
    assert choose_profile(profiles, 8, 3000) == 1
    with pytest.raises(UsageError, match="batch 64 and seq 16 fit no profile"):
        choose_profile(profiles, 64, 16)
