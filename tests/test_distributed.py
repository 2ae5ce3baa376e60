"""N processes, each with a shard of the global batch, compute what one process computes."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from crossfuse.parallel import (
    ShardDropout,
    batch_shard,
    current_shard,
    draw_for_shard,
    gather_shards,
    global_sum,
)

TORCHRUN = Path(sys.executable).parent / "torchrun"


def test_outside_a_shard_the_batch_is_whole():
    assert current_shard() == (0, 1)
    with batch_shard(1, 3):
        assert current_shard() == (1, 3)
    assert current_shard() == (0, 1)
    x = torch.randn(4, 2)
    assert gather_shards(x) is x
    assert global_sum(x) == x.sum()


def test_a_rank_outside_the_world_is_refused():
    with pytest.raises(ValueError, match="rank 2 outside a world of 2"), batch_shard(2, 2):
        pass


def test_each_shard_draws_its_rows_of_the_global_draw():
    def draw(n: int) -> torch.Tensor:
        return torch.rand(n, 3)

    torch.manual_seed(5)
    whole = draw_for_shard(draw, 12)
    shards = []
    for rank in range(4):
        torch.manual_seed(5)
        with batch_shard(rank, 4):
            shards.append(draw_for_shard(draw, 3))
    for rank in range(4):
        assert torch.equal(shards[rank], whole[rank::4])


def test_shard_dropout_is_torch_dropout_in_one_process():
    x = torch.randn(32, 48)
    torch.manual_seed(0)
    expected = nn.Dropout(0.3).train()(x)
    torch.manual_seed(0)
    keep = torch.empty_like(x).bernoulli_(0.7)  # the maths written out: x * m / (1 - p)
    torch.manual_seed(0)
    got = ShardDropout(0.3).train()(x)
    assert torch.equal(got, expected)
    assert torch.allclose(got, x * keep / 0.7)
    assert torch.equal(ShardDropout(0.3).eval()(x), x)
    assert torch.equal(ShardDropout(0.0).train()(x), x)


def test_shard_dropout_masks_interleave_to_the_one_process_mask():
    x = torch.randn(12, 5, requires_grad=True)
    torch.manual_seed(1)
    whole = ShardDropout(0.5)(x)
    for rank in range(3):
        torch.manual_seed(1)
        with batch_shard(rank, 3):
            shard = ShardDropout(0.5)(x[rank::3])
        assert torch.equal(shard, whole[rank::3])
    whole.sum().backward()  # the gradient is the mask scaled by 1 / (1 - p)
    assert torch.allclose(x.grad, (whole != 0).float() * 2.0)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="no torchrun")
def test_two_processes_train_what_one_trains_with_dropout_for_every_method(tmp_path):
    """Dropout 0.3, mixup's random lambda, CORAL's covariances, MMD's kernel means, importance weights'
    normaliser, CDAN's entropy weights, the shuffled pairs of correspondence, the batch matrices of MCC,
    BNM and JAN, VADA's random directions, IWDAN's class-share estimate, the domain-generalisation
    methods' per-domain statistics: after six steps the 2-process model computes the 1-process model's logits.

    The models are compared by what they compute and by the domain classifiers' weights: a unit that
    never fires on this data gets no gradient, so its weights do not matter and are not compared.
    Drawing each process's own dropout masks (the bug this guards against) moves the logits by 12-84%
    of what training moved them; here they agree to about 1e-6 of it.
    """
    script = Path(__file__).with_name("distributed_steps.py")
    for n in (1, 2):
        (tmp_path / str(n)).mkdir()
        done = subprocess.run(
            [str(TORCHRUN), "--standalone", f"--nproc_per_node={n}", str(script), str(tmp_path / str(n))],
            capture_output=True,
            text=True,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    cases = sorted(p.name for p in (tmp_path / "1").iterdir())
    assert len(cases) == 25
    for case in cases:
        one = load_file(str(tmp_path / "1" / case))
        two = load_file(str(tmp_path / "2" / case))
        assert not torch.allclose(one["logits"], one["initial_logits"], atol=1e-3), f"{case}: did not train"
        assert torch.allclose(one["logits"], two["logits"], atol=1e-5, rtol=1e-4), case
        for key in (k for k in one if k.startswith("method.")):
            assert torch.allclose(one[key], two[key], atol=1e-5, rtol=1e-4), f"{case}: {key}"


def test_torchrun_exists_where_torch_does():
    assert shutil.which("torchrun", path=str(TORCHRUN.parent)) is not None
