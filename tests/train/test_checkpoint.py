import pytest
import torch

from flower_edge.common.errors import CheckpointError
from flower_edge.runtime import ModelCard, load_image, preprocess
from flower_edge.train import load_checkpoint, load_model, train
from flower_edge.train.checkpoint import model_from_checkpoint


def test_checkpoint_rebuilds_its_model_without_flags(tiny_checkpoint, synthetic_dir):
    model, card, ckpt = load_model(tiny_checkpoint)
    assert isinstance(card, ModelCard)
    assert card.arch == "efficientnet_lite0" and card.input_size == (3, 64, 64)
    assert card.labels[0] == "star daisy" and card.class_ids == ("1", "2", "3", "4", "5")
    assert 0.0 <= card.metrics["valid_top1"] <= 1.0 and "test_top1" in card.metrics
    assert card.provenance["tool"].startswith("flower-edge")
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 1
    # The file loads under weights_only: no pickled code anywhere.
    raw = torch.load(tiny_checkpoint, weights_only=True)
    assert raw["format"] == "flower-edge/checkpoint"
    # The model predicts, and again identically after a second load.
    img = load_image(next((synthetic_dir / "valid" / "2").iterdir()))
    x = torch.from_numpy(preprocess(img, card))[None]
    with torch.no_grad():
        a = model(x)
        b = load_model(tiny_checkpoint)[0](x)
    assert a.shape == (1, 5)
    assert torch.equal(a, b)


def test_best_weights_are_the_reported_ones(tiny_checkpoint):
    """The stored valid accuracy is what the stored weights score on the valid split."""
    from flower_edge.train.data import open_data
    from flower_edge.train.loaders import ImageDataset
    from flower_edge.train.steps import evaluate
    from flower_edge.train.transforms import eval_transform

    model, card, ckpt = load_model(tiny_checkpoint)
    source = open_data(ckpt["config"].data)
    loader = torch.utils.data.DataLoader(ImageDataset(source.splits["valid"], eval_transform(card)), batch_size=8)
    result = evaluate(model, 0, loader, torch.device("cpu"), {}, False)
    assert result["top1"] == pytest.approx(card.metrics["valid_top1"], abs=1e-6)


def test_missing_truncated_and_foreign_files(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, foreign)
    with pytest.raises(CheckpointError, match="not a flower-edge checkpoint"):
        load_checkpoint(foreign)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(text)


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"format": "flower-edge/checkpoint", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="refuses to load it without unpickling code"):
        load_checkpoint(path)


def test_failed_write_leaves_the_old_checkpoint(tmp_path, tiny_checkpoint, monkeypatch):
    from flower_edge.train import checkpoint as module

    target = tmp_path / "ckpt.pth"
    target.write_bytes(tiny_checkpoint.read_bytes())

    def broken_save(obj, f):
        f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(module.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        module.save_checkpoint(target, {"x": 1})
    assert target.read_bytes() == tiny_checkpoint.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_resume_continues_at_epoch_two_with_optimizer_state(synthetic_dir, tmp_path, make_config):
    out = tmp_path / "run.pth"
    train(make_config(synthetic_dir, out, epochs=1))
    first = load_checkpoint(out)
    steps = first["resume"]["optimizer"]["state"][0]["step"].item()
    assert first["epoch"] == 1 and steps > 0
    result = train(make_config(synthetic_dir, out, epochs=2), resume=str(out))
    second = load_checkpoint(out)
    assert second["epoch"] == 2
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert second["history"][0] == first["history"][0]
    # Adam's step count carried on from the first run instead of starting again.
    assert second["resume"]["optimizer"]["state"][0]["step"].item() == 2 * steps
    assert second["resume"]["scheduler"]["last_epoch"] == 2 * steps
    # Resuming a finished run says how to go on instead of silently doing nothing.
    from flower_edge.runtime import ConfigError

    with pytest.raises(ConfigError, match="already finished epoch 2"):
        train(make_config(synthetic_dir, out, epochs=2), resume=str(out))


def test_frozen_mode_trains_the_head_only(synthetic_dir, tmp_path, make_config):
    out = tmp_path / "frozen.pth"
    train(make_config(synthetic_dir, out, mode="freeze", hidden=(32,), dropout=0.25))
    ckpt = load_checkpoint(out)
    trained = model_from_checkpoint(ckpt)
    from flower_edge.train.model import build_model

    pretrained = build_model("efficientnet_lite0", 5, hidden=(32,), weights="imagenet")
    for (name, a), b in zip(trained.features.state_dict().items(), pretrained.features.state_dict().values()):
        assert torch.equal(a, b), name
    assert [type(m).__name__ for m in trained.head] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert trained.head[0].in_features == 1280 and trained.head[-1].out_features == 5


def test_same_seed_same_model(synthetic_dir, tmp_path, make_config):
    a = train(make_config(synthetic_dir, tmp_path / "a.pth", seed=3))
    b = train(make_config(synthetic_dir, tmp_path / "b.pth", seed=3))
    state_a = load_checkpoint(a.checkpoint)["model_state"]
    state_b = load_checkpoint(b.checkpoint)["model_state"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]


def test_ema_weights_are_validated_kept_and_resumed(synthetic_dir, tmp_path, make_config):
    out = tmp_path / "ema.pth"
    train(make_config(synthetic_dir, out, epochs=1, ema=0.9))
    first = load_checkpoint(out)
    averaged, raw = first["resume"]["ema_state"], first["resume"]["model_state"]
    # the checkpoint keeps (and validation saw) the average, not the last step's weights
    assert torch.equal(first["model_state"]["head.1.weight"], averaged["module.head.1.weight"])
    assert not torch.equal(first["model_state"]["head.1.weight"], raw["head.1.weight"])
    steps = int(averaged["n_averaged"])
    assert steps > 1
    train(make_config(synthetic_dir, out, epochs=2, ema=0.9), resume=str(out))
    assert int(load_checkpoint(out)["resume"]["ema_state"]["n_averaged"]) == 2 * steps


def test_default_depth_follows_the_training_set_and_resumes_as_begun(synthetic_dir, tmp_path, make_config):
    from flower_edge.runtime import ConfigError
    from flower_edge.train.config import SMALL_SET, auto_finetune_blocks

    assert auto_finetune_blocks(SMALL_SET) == 6 and auto_finetune_blocks(SMALL_SET + 1) == 4
    out = tmp_path / "auto.pth"
    train(make_config(synthetic_dir, out, finetune_blocks=None))
    ckpt = load_checkpoint(out)
    assert ckpt["config"].finetune_blocks == 6  # the checkpoint records the depth it was trained at
    trained = model_from_checkpoint(ckpt)
    fresh = build_model_like(trained)
    frozen = [k for k in fresh.state_dict() if k.startswith("features.") and int(k.split(".")[1]) < 12]
    assert frozen and all(torch.equal(trained.state_dict()[k], fresh.state_dict()[k]) for k in frozen)
    assert any(
        not torch.equal(p, fresh.state_dict()[k])
        for k, p in trained.state_dict().items()
        if k.startswith("features.12.")
    )  # the 6th block from the end was trained
    train(make_config(synthetic_dir, out, finetune_blocks=None, epochs=2), resume=str(out))
    assert load_checkpoint(out)["config"].finetune_blocks == 6
    with pytest.raises(ConfigError, match="finetune_blocks=6"):
        train(make_config(synthetic_dir, out, finetune_blocks=4, epochs=3), resume=str(out))


def build_model_like(model):
    from flower_edge.train.model import build_model

    return build_model("efficientnet_lite0", model.head[-1].out_features, weights="imagenet")


def test_a_killed_runs_half_written_checkpoint_is_removed(synthetic_dir, tmp_path, make_config):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    half = tmp_path / f".run.pth.{dead.pid}.k3j.tmp"
    half.write_bytes(b"PK\x03\x04half")
    train(make_config(synthetic_dir, tmp_path / "run.pth"))
    assert not half.exists() and (tmp_path / "run.pth").is_file()
    assert not list(tmp_path.glob(".*.tmp"))


def test_ctrl_c_during_the_checkpoint_write_waits_for_it(synthetic_dir, tmp_path, make_config, monkeypatch):
    """SIGINT in the middle of torch.save: the write finishes, then the run stops, and says so."""
    import os
    import signal

    from flower_edge.train import checkpoint, loop, run

    real = checkpoint.save_checkpoint
    saved = []

    def interrupted_save(path, payload):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the write is under way
        saved.append(real(path, payload))
        return saved[-1]

    monkeypatch.setattr(run, "save_checkpoint", interrupted_save)

    class Recorder(loop.Reporter):
        last = None

        def saved(self, path, epoch):
            Recorder.last = (path, epoch)

    out = tmp_path / "run.pth"
    with pytest.raises(KeyboardInterrupt):
        train(make_config(synthetic_dir, out, epochs=2), Recorder())
    assert saved and load_checkpoint(out)["epoch"] == 1  # whole, and holding the epoch reported
    assert Recorder.last == (str(out), 1)


def test_the_model_is_rebuilt_from_the_card_and_head_not_the_training_options(synthetic_dir, tmp_path, make_config):
    out = tmp_path / "head.pth"
    train(make_config(synthetic_dir, out, hidden=(24,), dropout=0.3))
    raw = torch.load(out, weights_only=True)
    assert raw["head"] == {"hidden": [24], "dropout": 0.3}
    expected = load_model(out)[0].state_dict()
    # Training options that no longer say how the model was built change nothing...
    raw["config"]["hidden"], raw["config"]["dropout"] = [999], 0.9
    torch.save(raw, tmp_path / "options.pth")
    model = load_model(tmp_path / "options.pth")[0]
    assert [m.out_features for m in model.head if isinstance(m, torch.nn.Linear)] == [24, 5]
    assert all(torch.equal(expected[k], v) for k, v in model.state_dict().items())
    # ...and a file written before checkpoints declared their head still loads from its options.
    del raw["head"]
    raw["config"]["hidden"], raw["config"]["dropout"] = [24], 0.3
    torch.save(raw, tmp_path / "older.pth")
    assert all(torch.equal(expected[k], v) for k, v in load_model(tmp_path / "older.pth")[0].state_dict().items())
    raw["head"] = "not a head"
    torch.save(raw, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="its head does not describe a model"):
        load_checkpoint(tmp_path / "odd.pth")
