"""The epoch order: a seeded permutation cut into equal, disjoint batches per rank, a pure function of its inputs."""
import numpy as np

from dataloader.train.sampler import ShardedOrder, sample_rng


def shards(dataset_size, batch_size, world_size, seed, epoch):
    orders = [ShardedOrder(dataset_size, batch_size, rank, world_size, seed) for rank in range(world_size)]
    return [[order.batch(epoch, b) for b in range(len(order))] for order in orders]


def test_ranks_get_equal_disjoint_full_batches_and_drop_only_the_remainder():
    for dataset_size, batch_size, world_size in [(10, 1, 3), (23, 2, 2), (64, 4, 4), (7, 3, 1)]:
        per_rank = shards(dataset_size, batch_size, world_size, seed=5, epoch=2)
        expected_batches = dataset_size // (batch_size * world_size)
        assert all(len(batches) == expected_batches for batches in per_rank)
        assert all(len(batch) == batch_size for batches in per_rank for batch in batches)
        used = [index for batches in per_rank for batch in batches for index in batch]
        assert len(set(used)) == len(used) == ShardedOrder(dataset_size, batch_size, 0, world_size, 5).num_samples
        assert dataset_size - len(used) < batch_size * world_size and set(used) <= set(range(dataset_size))


def test_order_depends_on_seed_and_epoch_only():
    assert shards(50, 5, 2, seed=1, epoch=3) == shards(50, 5, 2, seed=1, epoch=3)
    assert shards(50, 5, 2, seed=1, epoch=3) != shards(50, 5, 2, seed=1, epoch=4)
    assert shards(50, 5, 2, seed=1, epoch=3) != shards(50, 5, 2, seed=2, epoch=3)
    # the dropped remainder changes with the epoch, so no sample is left out every epoch
    dropped = [set(range(50)) - {i for rank in shards(50, 8, 2, 0, e) for b in rank for i in b} for e in range(10)]
    assert len(set().union(*dropped)) > 2


def test_sample_generators_are_independent_of_call_order():
    first = [sample_rng(7, 1, index).random() for index in range(5)]
    assert [sample_rng(7, 1, index).random() for index in reversed(range(5))] == first[::-1]
    assert len(set(first)) == 5 and sample_rng(7, 2, 0).random() != first[0]
    assert sample_rng(7, 1, 0).random() != np.random.default_rng(7).random()
