"""bench.label_defaults keys its results by setting; a run with an attention dropout set (issue 29's
lever) gets a key of its own, and a run without one keeps the key the stored results already use."""

from bench.label_defaults import SETTINGS, setting_key


def test_attention_dropout_runs_are_kept_apart_from_the_labelling_runs():
    assert setting_key("first/whole") == "first/whole"
    assert setting_key("first/whole", 0.0) == "first/whole+attention_dropout=0"
    assert setting_key("every/split", 0.05) == "every/split+attention_dropout=0.05"
    assert setting_key("punct/whole", None, "bf16") == "punct/whole+bf16"
    assert setting_key("first/whole", 0.0, "bf16") == "first/whole+attention_dropout=0+bf16"
    assert setting_key("punct/whole", None, "bf16", "mixed") == "punct/whole+bf16+attention_mixed"
    assert setting_key("punct/whole", None, "bf16", "auto") == "punct/whole+bf16"
    # nerforge.dropout's masks (auto on a CPU, or fast) are marked; torch's keep the keys stored before them
    assert setting_key("punct/whole", None, "no", "auto", "torch") == "punct/whole"
    assert setting_key("punct/whole", None, "bf16", "auto", "auto") == "punct/whole+bf16+fast_masks"
    assert setting_key("punct/whole", 0.0, "no", "auto", "fast") == "punct/whole+attention_dropout=0+fast_masks"
    keys = {
        setting_key(s, d, p, a, m)
        for s in SETTINGS
        for d in (None, 0.0)
        for p in ("no", "bf16")
        for a in ("auto", "mixed")
        for m in ("torch", "fast")
    }
    assert len(keys) == 16 * len(SETTINGS)
