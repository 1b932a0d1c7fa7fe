"""Export merges LoRA and leaves no links, and the result computes what the model did."""

import os

import torch

from diffa.bin.export import main
from diffa.model.diffa import DIFFA, tiny_config
from diffa.nnet.lora import LoRAConfig


def test_export_is_self_contained(tmp_path):
    torch.manual_seed(0)
    model = DIFFA(tiny_config()).eval()
    model.add_lora(LoRAConfig(r=2, alpha=4, dropout=0.0, targets=["v_proj"]))
    with torch.no_grad():
        for name, p in model.llm.named_parameters():
            if "lora_B" in name:
                p.normal_()
    model.save_pretrained(tmp_path / "trained")
    main(["--model_dir", str(tmp_path / "trained"), "--out_dir", str(tmp_path / "export")])
    out = tmp_path / "export"
    assert not any(os.path.islink(out / p) for p in os.listdir(out))
    assert not (out / "lora.safetensors").exists()
    exported = DIFFA.from_pretrained(out).eval()
    feats, lens, ids, pos = torch.randn(1, 40, 16), torch.tensor([40]), torch.randint(0, 90, (1, 6)), torch.tensor([2])
    with torch.no_grad():
        torch.testing.assert_close(exported(feats, lens, ids, pos), model(feats, lens, ids, pos), atol=1e-4, rtol=1e-4)


def test_an_output_directory_that_would_replace_the_model_is_refused(tmp_path, capsys):
    DIFFA(tiny_config()).save_pretrained(tmp_path / "exp" / "final")
    before = sorted(os.listdir(tmp_path / "exp" / "final"))
    for out in ("exp/final", "exp", "exp/final/merged"):
        assert main(["--model_dir", str(tmp_path / "exp"), "--out_dir", str(tmp_path / out)]) == 1
        assert "would replace the model" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "exp" / "final")) == before


def test_a_missing_model_is_one_error_line(tmp_path, capsys):
    assert main(["--model_dir", str(tmp_path / "nomodel"), "--out_dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: no DIFFA model in ") and "Traceback" not in err


def test_the_export_answers_like_the_model_with_its_own_tokenizer(toy, tmp_path):
    """The tokenizer travels into the export, and infer on the export gives the model's answer."""
    import numpy as np
    import soundfile as sf

    from diffa.decode.config import DecodeConfig
    from diffa.decode.infer import answer
    from diffa.decode.loading import load_for_decoding

    wav = tmp_path / "clip.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    assert main(["--model_dir", str(toy.model_dir), "--out_dir", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "tokenizer" / "spm.model").read_bytes() == (toy.model_dir / "tokenizer" / "spm.model").read_bytes()
    config = DecodeConfig(gen_length=8, block_length=8, steps=8)
    answers = [answer(*load_for_decoding(d, device="cpu"), str(wav), "What do you hear?", config=config).text
               for d in (toy.model_dir, tmp_path / "export")]
    assert answers[0] == answers[1] and answers[0]
