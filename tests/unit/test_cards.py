from __future__ import annotations

import pytest

from fake_nvml_driver import NOT_THESE, REAL_NAMES

from diagnostics.cards import CPU_CARD, card_for_gpu_name, get_card, list_cards, load_cards_toml, names_card
from diagnostics.errors import UsageError

REQUIRED = ["t4", "v100-16", "v100-32", "a10", "a10g", "l4", "3090", "4090", "5090", "a6000", "l20", "l40",
            "l40s", "a100-40", "a100-80", "a800-80", "h100-80", "h20", "h200"]


def test_every_required_card_exists_with_plausible_usable_memory():
    names = {c.name for c in list_cards()}
    assert set(REQUIRED) | {CPU_CARD} == names
    for name in REQUIRED:
        card = get_card(name)
        nominal = {"t4": 16, "v100-16": 16, "v100-32": 32, "a10": 24, "a10g": 24, "l4": 24, "3090": 24,
                   "4090": 24, "5090": 32, "a6000": 48, "l20": 48, "l40": 48, "l40s": 48, "a100-40": 40,
                   "a100-80": 80, "a800-80": 80, "h100-80": 80, "h20": 96, "h200": 141}[name]
        # usable memory is what torch reports: a little below the box label, never above
        assert 0.85 * nominal < card.total_gib < nominal
        assert card.profile_threshold_gib < card.total_gib and card.headroom_gib > 0


@pytest.mark.parametrize("name, total", [("3090", 23.69), ("a10", 22.18), ("a100-40", 39.38), ("v100-32", 31.74),
                                         ("l40s", 44.42), ("4090", 23.54)])
def test_field_case_totals(name, total):
    assert get_card(name).total_gib == total


def test_lookup_is_case_insensitive_and_unknown_lists_names():
    assert get_card("A100-80").name == "a100-80"
    with pytest.raises(UsageError) as exc:
        get_card("rtx3090")
    msg = str(exc.value)
    assert "rtx3090" in msg and "3090" in msg and "h200" in msg and "\n" not in msg


def test_cpu_pseudo_card():
    cpu = get_card("cpu")
    assert cpu.is_cpu and cpu.total_gib == 0
    assert not get_card("3090").is_cpu


def test_a100_flag_only_on_a100():
    assert get_card("a100-80").is_a100 and get_card("a100-40").is_a100
    assert not get_card("h100-80").is_a100 and not get_card("a10").is_a100


@pytest.mark.parametrize("gpu, card", [("NVIDIA GeForce RTX 3090", "3090"), ("NVIDIA A100-SXM4-80GB", "a100-80"),
                                       ("NVIDIA A10", "a10"), ("NVIDIA L40S", "l40s"), ("NVIDIA L4", "l4"),
                                       ("NVIDIA A10G", "a10g"), ("NVIDIA H100 80GB HBM3", "h100-80")])
def test_card_for_gpu_name_matches_whole_names(gpu, card):
    assert card_for_gpu_name(gpu).name == card


# the real NVML names of every built-in card, and names that contain one but are another card (issue #16, review F1)
@pytest.mark.parametrize("card, gpu", [(c, n) for c, names in REAL_NAMES.items() for n in names])
def test_every_real_nvml_name_detects_its_card(card, gpu):
    assert card_for_gpu_name(gpu).name == card
    assert names_card(get_card(card), gpu)


def test_every_built_in_card_has_its_real_names_tested():
    assert set(REAL_NAMES) == set(REQUIRED)


@pytest.mark.parametrize("gpu, not_this", sorted(NOT_THESE.items()))
def test_a_name_containing_a_cards_name_is_not_that_card(gpu, not_this):
    detected = card_for_gpu_name(gpu)
    assert detected is None or detected.name != not_this
    assert not names_card(get_card(not_this), gpu)


@pytest.mark.parametrize("gpu, card", [("NVIDIA H200", "h200"), ("NVIDIA H20", "h20"),
                                       ("NVIDIA A100-SXM4-80GB", "a100-80"), ("NVIDIA L40S", "l40s")])
def test_auto_detection_names_the_right_card(gpu, card):                                # review F1 (Appendix A)
    assert card_for_gpu_name(gpu).name == card


def test_mig_slice_is_not_taken_for_the_whole_card():                                   # review F8 (Appendix A)
    assert card_for_gpu_name("NVIDIA A100-SXM4-40GB MIG 3g.20gb") is None


def test_old_drivers_names_without_the_nvidia_prefix_and_odd_spacing_still_match():
    assert card_for_gpu_name("GeForce RTX 3090").name == "3090"
    assert card_for_gpu_name("  nvidia   a100-sxm4-40gb ").name == "a100-40"


def test_a_cards_file_may_use_wildcards_and_wins_over_a_built_in(tmp_path):
    f = tmp_path / "cards.toml"
    f.write_text('[cards.mi300x]\ntotal_gib = 191.5\nnvml_names = ["*MI300X*"]\n'
                 '[cards.h200-slice]\ntotal_gib = 17.0\nnvml_names = ["NVIDIA H200 MIG 1g.18gb"]\n')
    cards = list_cards() + list(load_cards_toml(f).values())
    assert card_for_gpu_name("AMD Instinct MI300X", cards).name == "mi300x"
    assert card_for_gpu_name("NVIDIA H200 MIG 1g.18gb", cards).name == "h200-slice"
    assert card_for_gpu_name("NVIDIA H200", cards).name == "h200"


def test_toml_overrides_and_adds(tmp_path):
    f = tmp_path / "cards.toml"
    f.write_text('[cards.3090]\ntotal_gib = 23.5\n\n[cards.mi300x]\nlabel = "AMD MI300X"\ntotal_gib = 191.5\n'
                 'arch = "cdna3"\nnvml_names = ["MI300X"]\n')
    cards = load_cards_toml(f)
    assert cards["3090"].total_gib == 23.5 and cards["3090"].profile_threshold_gib == 23.0
    assert cards["3090"].label == "NVIDIA GeForce RTX 3090"
    assert cards["mi300x"].total_gib == 191.5 and cards["mi300x"].nvml_names == ("MI300X",)
    assert get_card("mi300x", extra_cards_file=f).arch == "cdna3"
    assert get_card("3090").total_gib == 23.69  # built-ins untouched


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[cards.3090]\ntotal_gb = 23\n", "total_gb"),
        ("[cards.new]\nlabel = 'x'\n", "total_gib"),
        ("[cards.3090]\ntotal_gib = 'big'\n", "total_gib"),
        ("[cards.3090\n", "not valid TOML"),
        ("[other]\nx = 1\n", "[cards.NAME]"),
    ],
)
def test_malformed_toml_names_file_and_key(tmp_path, text, fragment):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(UsageError) as exc:
        load_cards_toml(f)
    assert str(f) in str(exc.value) and fragment in str(exc.value)


def test_missing_toml_file(tmp_path):
    with pytest.raises(UsageError) as exc:
        load_cards_toml(tmp_path / "nope.toml")
    assert "nope.toml" in str(exc.value)


def test_audit_a15_a800_is_its_own_card_and_not_an_a100():
    # vLLM keeps the small V1 batch defaults only when the device name contains "a100" (0.9.2 arg_utils.py:1629)
    assert card_for_gpu_name("NVIDIA A800-SXM4-80GB").name == "a800-80"
    assert card_for_gpu_name("NVIDIA A100-SXM4-80GB").name == "a100-80"
    assert get_card("a100-80").is_a100 and not get_card("a800-80").is_a100


@pytest.mark.parametrize("name, capability", [("v100-32", (7, 0)), ("t4", (7, 5)), ("3090", (8, 0)),
                                              ("h100-80", (9, 0)), ("cpu", None)])
def test_capability_per_architecture(name, capability):
    # only "below 8.0" matters (vLLM 0.8.0-0.10.1 falls back to V0 there, audit a6)
    assert get_card(name).capability == capability


@pytest.mark.parametrize("data, words", [                                                   # newcomer-3 #143-#158
    (b"[cards.mine]\ntotal_gib = inf\n", "total_gib must be a number from 0 to 65,536 (GiB), got inf"),
    (b"[cards.mine]\ntotal_gib = nan\n", "got nan"),
    (b"[cards.mine]\ntotal_gib = 1e308\n", "got 1e+308"),
    (b"\xff\xfe[cards.mine]\n", "is not UTF-8 text (byte 0xff at offset 0)"),
    (b'[cards."a,b"]\ntotal_gib = 24\n', "'a,b' cannot name a card"),
    (b"[cards.all]\ntotal_gib = 24\n", "'all' cannot name a card"),
])
def test_a_cards_file_the_arithmetic_cannot_use_is_one_line(tmp_path, data, words):
    (tmp_path / "c.toml").write_bytes(data)
    with pytest.raises(UsageError) as err:
        load_cards_toml(tmp_path / "c.toml")
    assert words in str(err.value) and "\n" not in str(err.value)



def test_a_card_of_no_memory_is_refused_in_one_line(tmp_path):
    """[cards.zero] total_gib = 0 was taken, and every plan on it read verdict "unknown" (newcomer pass)."""
    import pytest

    from diagnostics.cards import load_cards_toml
    from diagnostics.errors import UsageError

    path = tmp_path / "cards.toml"
    path.write_text("[cards.zero]\ntotal_gib = 0\n")
    with pytest.raises(UsageError, match=r"\[cards.zero\]: total_gib must be above 0"):
        load_cards_toml(path)
    path.write_text("[cards.cpu]\ntotal_gib = 0\n")
    assert "cpu" in load_cards_toml(path)
