"""Real two-process sync (torch.distributed, gloo): each rank sees half the data, compute() must
equal one process fed everything. Uneven shards exercise the "cat" states' padding in the gather."""
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from captum_qubo.metrics import (
    AverageDrop,
    ClassDisentanglement,
    CosineSilhouetteScore,
    DaviesBouldinIndex,
    DeletionAUC,
    GridPointingGame,
    IncreaseInConfidence,
)

WORLD_SIZE = 2
NUM_SAMPLES = 23  # rank 0 gets 9, rank 1 gets 14


def make_data():
    generator = torch.Generator().manual_seed(0)
    classes = torch.randint(0, 4, (NUM_SAMPLES,), generator=generator)
    images = torch.rand(NUM_SAMPLES, 2, 4, 4, generator=generator)
    return dict(
        selected=torch.rand(NUM_SAMPLES, 6, generator=generator) < 0.4,
        classes=classes,
        base=torch.rand(NUM_SAMPLES, generator=generator) * 0.9 + 0.1,
        masked=torch.rand(NUM_SAMPLES, generator=generator),
        images=images,
        saliency=torch.rand(NUM_SAMPLES, 1, 4, 4, generator=generator),
        cells=torch.randint(0, 4, (NUM_SAMPLES,), generator=generator),
        maps=images[:, :1] + classes[:, None, None, None],
    )


def metrics_and_updates(data, rows, model, **metric_kwargs):
    """(metric, update arguments) for every metric on the given rows of the data."""
    pick = {name: value[rows] for name, value in data.items()}
    return [
        (ClassDisentanglement(4, 6, **metric_kwargs), (pick["selected"], pick["classes"])),
        (AverageDrop(**metric_kwargs), (pick["base"], pick["masked"])),
        (IncreaseInConfidence(**metric_kwargs), (pick["base"], pick["masked"])),
        (DeletionAUC(steps=4, **metric_kwargs), (model, pick["images"], pick["saliency"], pick["classes"])),
        (GridPointingGame(**metric_kwargs), (pick["saliency"] - 0.5, pick["cells"])),
        (CosineSilhouetteScore(**metric_kwargs), (pick["maps"], pick["classes"])),
        (DaviesBouldinIndex(**metric_kwargs), (pick["maps"], pick["classes"])),
    ]


def as_tensor(value):
    return value["matrix"] if isinstance(value, dict) else value


def run_rank(rank, store_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{store_path}", rank=rank, world_size=WORLD_SIZE, timeout=timedelta(seconds=60)
    )
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(32, 4))
        data = make_data()
        shard = torch.arange(9) if rank == 0 else torch.arange(9, NUM_SAMPLES)
        sharded = metrics_and_updates(data, shard, model)
        whole = metrics_and_updates(data, torch.arange(NUM_SAMPLES), model, sync_on_compute=False)
        for (metric, arguments), (reference, reference_arguments) in zip(sharded, whole):
            metric.update(*arguments)
            reference.update(*reference_arguments)
            torch.testing.assert_close(
                as_tensor(metric.compute()).double(),
                as_tensor(reference.compute()).double(),
                equal_nan=True,
                msg=lambda message, name=type(metric).__name__: f"{name}: {message}",
            )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built into this torch")
def test_two_process_sync_equals_one_process(tmp_path):
    # spawn, not fork: a child forked after the parent ran OpenMP-parallel torch ops can deadlock.
    mp.start_processes(run_rank, args=(str(tmp_path / "store"),), nprocs=WORLD_SIZE, start_method="spawn")
