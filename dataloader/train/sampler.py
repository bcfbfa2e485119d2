"""The randomness of an epoch, as pure functions of (seed, epoch, index): the sample order, sharded over ranks,
and one random generator per sample. Nothing depends on process, worker or global RNG state, so a run resumed at
any batch sees exactly the batches it would have seen."""
import numpy as np

ORDER_STREAM, SAMPLE_STREAM = 0, 1


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for sample `index` of `epoch`: its caption draw and its augmentation."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(epoch, SAMPLE_STREAM, index)))


class ShardedOrder:
    """A seeded permutation of the samples each epoch, cut into equal batches per rank (like DistributedSampler
    with drop_last): the first len(self) * world_size * batch_size samples of the permutation are used, and
    global batch b of the epoch is rank 0's batch b, then rank 1's batch b, and so on."""

    def __init__(self, dataset_size: int, batch_size: int, rank: int, world_size: int, seed: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.num_batches = dataset_size // (batch_size * world_size)
        self.num_samples = self.num_batches * batch_size * world_size  # per epoch, over all ranks
        self._cached_epoch, self._cached_permutation = None, None

    def __len__(self) -> int:
        return self.num_batches

    def batch(self, epoch: int, batch_index: int) -> list[int]:
        start = (batch_index * self.world_size + self.rank) * self.batch_size
        return self._permutation(epoch)[start:start + self.batch_size].tolist()

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._cached_epoch:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(epoch, ORDER_STREAM, 0)))
            self._cached_epoch, self._cached_permutation = epoch, rng.permutation(self.dataset_size)
        return self._cached_permutation
