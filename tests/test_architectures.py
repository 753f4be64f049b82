"""The model definitions keep the contract of SEED_MODEL.md and the original's arithmetic."""

from __future__ import annotations

import torch
from torch import nn

from export.architectures import AttentionDetector, LegacyDetector, SelfAttention, sinusoidal_table


def test_self_attention_equals_torch_multihead_attention_used_sequence_first():
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(1024, 4, dropout=0.1).eval()
    ours = SelfAttention(1024, 4)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(3, 17, 1024)  # [batch, time, dim]
    with torch.no_grad():
        sequence_first = x.transpose(0, 1)
        expected, _ = reference(sequence_first, sequence_first, sequence_first)
        assert torch.allclose(ours(x), expected.transpose(0, 1), atol=1e-5)


def test_attention_family_parameter_names_follow_the_seed_contract():
    keys = set(AttentionDetector().state_dict())
    for key in (
        "feature_extractor.0.weight",
        "feature_extractor.1.running_mean",
        "feature_extractor.7.2.conv3.weight",
        "lstm.weight_ih_l1_reverse",
        "attention.positional_encoding.pe",
        "attention.multihead_attn.in_proj_weight",
        "attention.multihead_attn.out_proj.bias",
        "attention.norm.weight",
        "fc1.weight",
        "fc2.bias",
    ):
        assert key in keys, key
    assert AttentionDetector().state_dict()["attention.positional_encoding.pe"].shape == (1, 200, 1024)


def test_positional_table_is_the_standard_sinusoid():
    table = sinusoidal_table(200, 1024)[0]
    assert torch.allclose(table[5, 0], torch.sin(torch.tensor(5.0)))
    assert torch.allclose(table[5, 1], torch.cos(torch.tensor(5.0)))
    assert torch.allclose(table[7, 10], torch.sin(torch.tensor(7.0 / 10000 ** (10 / 1024))))


def test_legacy_head_gives_each_stacked_clip_its_batch_one_result():
    torch.manual_seed(0)
    detector = LegacyDetector().eval()
    clips = torch.randn(3, 6, 2048)
    with torch.no_grad():
        alone = torch.cat([detector.original_head(clip[None]) for clip in clips])
        stacked = detector.temporal(clips)
        naive = detector.original_head(clips)  # the original's axis quirk, batched: clips leak
    assert torch.allclose(stacked, alone, atol=1e-6)
    assert not torch.allclose(naive, alone, atol=1e-6)
