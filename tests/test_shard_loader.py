"""webdataset shards written by webdataset's own ShardWriter: two gloo ranks with two workers each see every sample
once per epoch, disjoint, in a new order each epoch; batch k of an epoch is the same whether read from the start or
resumed there (without decoding what comes before); sources by pattern, folder, `::` and `pipe:`; sample counts
from sizes.json or img2dataset's stats; every malformed source a one-line error naming the shard and the key."""
import io
import json
import tarfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import webdataset as wds

import dataloader.train.shard_loader
from caption_fixtures import caption, encoded_image, image_numbers, write_shards
from dataloader.config import DataConfig
from dataloader.image_io import load_rgb_image
from dataloader.train.train_data import build_train_loader, infer_format
from dataloader.train.train_loader import TOKEN_LENGTH_MULTIPLE
from utils.errors import UserError
from utils.tokenizer import tokenize, trim_padding

CONTEXT = 12


def shard_loader(train_data, batch_size=3, rank=0, world_size=1, seed=0, **changes):
    config = DataConfig(**{"train_data": str(train_data), "num_workers": 0, **changes})
    return build_train_loader(config, image_size=16, mean=(0, 0, 0), std=(1, 1, 1), context_length=CONTEXT,
                              batch_size=batch_size, rank=rank, world_size=world_size, seed=seed, pin_memory=False)


def sample_numbers(tokens, count):
    """Which sample each row of tokens is, from its caption (padding left out: the loader cuts it)."""
    by_tokens = {without_padding(tokenize(caption(n, 0), CONTEXT)[0]): n for n in range(count)}
    return [by_tokens[without_padding(row)] for row in tokens]


def without_padding(row):
    return tuple(token for token in row.tolist() if token)


def count_samples_per_rank(rank, folder, result_file):
    dist.init_process_group("gloo", init_method=f"file://{result_file}.rendezvous", rank=rank, world_size=2)
    loader = shard_loader(folder, rank=dist.get_rank(), world_size=dist.get_world_size(), num_workers=2,
                          shuffle_buffer=4)
    seen = [[n for batch in loader.epoch(epoch) for n in sample_numbers(batch["tokens"], 48)] for epoch in range(2)]
    gathered = [None, None]
    dist.all_gather_object(gathered, seen)
    if rank == 0:
        torch.save(gathered, result_file)
    dist.destroy_process_group()


def test_two_gloo_ranks_with_two_workers_see_every_sample_once_per_epoch(tmp_path):
    write_shards(tmp_path / "shards", 48, per_shard=6)  # 8 shards: two for each (rank, worker)
    mp.start_processes(count_samples_per_rank, args=(tmp_path / "shards", tmp_path / "seen.pt"), nprocs=2,
                       start_method="fork")  # fork: the ranks need not import torch again
    (rank0, rank1) = torch.load(tmp_path / "seen.pt")
    for epoch in range(2):
        assert len(rank0[epoch]) == len(rank1[epoch]) == 24
        assert not set(rank0[epoch]) & set(rank1[epoch])
        assert sorted(rank0[epoch] + rank1[epoch]) == list(range(48))
    assert rank0[0] != rank0[1] and set(rank0[0]) != set(rank0[1])  # new shard split and order each epoch


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    write_shards(folder, 24, per_shard=8)
    return folder


def test_images_come_with_their_own_captions_from_txt_and_json(shards):
    seen = []
    for batch in shard_loader(shards, shuffle_buffer=5).epoch(0):
        numbers = image_numbers(batch["images"])
        assert numbers == sample_numbers(batch["tokens"], 24)
        seen += numbers
    assert sorted(seen) == list(range(24))


@pytest.mark.parametrize("workers, resampled", [(0, False), (2, False), (2, True)])
def test_resuming_at_batch_k_gives_the_tail_of_the_epoch(shards, workers, resampled):
    loader = shard_loader(shards, num_workers=workers, shuffle_buffer=5, resampled=resampled)
    whole = list(loader.epoch(1))
    assert len(whole) == len(loader) == 8
    for start in (1, 6):
        resumed = list(loader.epoch(1, start_batch=start))
        assert len(resumed) == 8 - start
        for a, b in zip(resumed, whole[start:]):
            assert torch.equal(a["images"], b["images"]) and torch.equal(a["tokens"], b["tokens"])
    again = list(shard_loader(shards, num_workers=workers, shuffle_buffer=5, resampled=resampled).epoch(1))
    assert all(torch.equal(a["images"], b["images"]) for a, b in zip(again, whole))
    other_seed = list(shard_loader(shards, num_workers=workers, shuffle_buffer=5, resampled=resampled,
                                   seed=1).epoch(1))
    assert not all(torch.equal(a["tokens"], b["tokens"]) for a, b in zip(other_seed, whole))


def test_resuming_decodes_nothing_before_start_batch(shards, monkeypatch):
    decoded = []
    monkeypatch.setattr(dataloader.train.shard_loader, "load_rgb_image",
                        lambda file, min_side: decoded.append(file) or load_rgb_image(file, min_side))
    assert len(list(shard_loader(shards).epoch(0, start_batch=6))) == 2
    assert len(decoded) == 6


def test_sources_by_pattern_list_pipe_and_folder_read_the_same_samples(shards):
    def samples(source, **changes):
        return sorted(n for batch in shard_loader(source, num_samples=24, **changes).epoch(0)
                      for n in sample_numbers(batch["tokens"], 24))
    assert samples(shards) == list(range(24))
    assert samples(f"{shards}/{{00000..00002}}.tar") == list(range(24))
    assert samples(f"{shards}/00000.tar::{shards}/{{00001..00002}}.tar") == list(range(24))
    assert samples(f"pipe:cat {shards}/00000.tar::pipe:cat {shards}/00001.tar::pipe:cat {shards}/00002.tar",
                   format="webdataset") == list(range(24))
    assert [infer_format(source) for source in (str(shards), "a/{0..9}.tar", "a.tar::b.tar", "pipe:cat a")] == \
        ["webdataset"] * 4


def test_resampled_mode_is_deterministic_and_draws_from_the_shards(shards):
    first = [batch["tokens"] for batch in shard_loader(shards, resampled=True, num_samples=30).epoch(0)]
    second = [batch["tokens"] for batch in shard_loader(shards, resampled=True, num_samples=30).epoch(0)]
    assert len(first) == 10 and all(torch.equal(a, b) for a, b in zip(first, second))
    assert set(n for tokens in first for n in sample_numbers(tokens, 24)) <= set(range(24))


def test_samples_per_epoch_from_sizes_json_or_img2dataset_stats(tmp_path):
    shards = write_shards(tmp_path, 24, per_shard=8, sizes=False)
    with pytest.raises(UserError, match=r"set data\.num_samples \(samples per epoch, over all ranks\): no sizes"):
        shard_loader(tmp_path)
    for shard in shards:  # img2dataset writes 00000_stats.json beside 00000.tar
        shard.with_name(shard.stem + "_stats.json").write_text(json.dumps({"count": 9, "successes": 8}))
    assert shard_loader(tmp_path).num_samples == 24
    assert shard_loader(tmp_path, num_samples=12).num_samples == 12


def with_new_bytes(shard, target, new_bytes):
    """A copy of `shard` in which each file named in `new_bytes` holds new_bytes[name](its bytes) instead."""
    with tarfile.open(shard) as source, tarfile.open(target, "w") as out:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name in new_bytes:
                data = new_bytes[member.name](data)
                member.size = len(data)
            out.addfile(member, io.BytesIO(data))
    return target


def truncated(data):
    return data[:40]


def garbage(data):
    return b"garbage bytes, not an image"


@pytest.mark.parametrize("unreadable, expected", [
    ({"000001.jpg": truncated}, [0, 2, 2, 3]),
    ({"000000.jpg": garbage}, [1, 1, 2, 3]),  # the first sample of the stream: nothing was read before it
    ({"000001.jpg": truncated, "000002.png": garbage}, [0, 3, 3, 3]),
])
def test_an_unreadable_image_is_replaced_by_the_next_readable_sample_and_counted(tmp_path, unreadable, expected):
    shard = with_new_bytes(write_shards(tmp_path / "good", 4, per_shard=4)[0], tmp_path / "bad.tar", unreadable)
    (batch,) = shard_loader(shard, batch_size=4, num_samples=4, shuffle_buffer=1).epoch(0)
    assert image_numbers(batch["images"]) == expected
    assert sample_numbers(batch["tokens"], 4) == expected  # each with its own caption
    assert int(batch["skipped"]) == len(unreadable)
    strict = shard_loader(shard, batch_size=4, num_samples=4, shuffle_buffer=1, strict_images=True)
    with pytest.raises(UserError, match=rf"^{shard}/{min(unreadable)[:6]}: cannot read this image"):
        list(strict.epoch(0))


def test_a_stream_with_no_readable_image_is_one_line_naming_the_sample(tmp_path):
    with wds.ShardWriter(str(tmp_path / "%05d.tar"), maxcount=4, verbose=0) as writer:
        for n in range(4):
            writer.write({"__key__": f"{n:06d}", "jpg": garbage(b""), "txt": caption(n, 0)})
    shard = tmp_path / "00000.tar"
    loader = shard_loader(shard, batch_size=4, num_samples=4, shuffle_buffer=1)
    with pytest.raises(UserError, match=rf"^{shard}/000000: neither this image nor the 1000 after it in its stream "
                                        r"can be read$"):
        list(loader.epoch(0))  # the stream repeats its shard without end: the search for a replacement is bounded


def test_flipped_shard_samples_swap_the_sides_their_captions_name_or_stay_unflipped(tmp_path):
    with wds.ShardWriter(str(tmp_path / "%05d.tar"), maxcount=4, verbose=0) as writer:
        for n in range(4):
            data, extension = encoded_image(n)
            writer.write({"__key__": f"{n:06d}", extension: data, "txt": f"image {n} on the left"})

    def batch(sided_captions):
        (first,) = shard_loader(tmp_path / "00000.tar", batch_size=4, num_samples=4, shuffle_buffer=1,
                                horizontal_flip=1.0, sided_captions=sided_captions).epoch(0)
        return first
    def tokens(side):
        return trim_padding(tokenize([f"image {n} on the {side}" for n in range(4)], CONTEXT),
                            multiple=TOKEN_LENGTH_MULTIPLE)
    swapped, unflipped = batch("swap"), batch("no_flip")
    assert torch.equal(swapped["tokens"], tokens("right")) and torch.equal(unflipped["tokens"], tokens("left"))
    # the flip is drawn in both runs (only no_flip declines it), so the crops are the same but mirrored
    assert torch.equal(swapped["images"], unflipped["images"].flip(3))
    assert not torch.equal(swapped["images"], unflipped["images"])


def rewrite_without(shard, target, leave_out):
    with tarfile.open(shard) as source, tarfile.open(target, "w") as out:
        for member in source.getmembers():
            if member.name not in leave_out:
                out.addfile(member, source.extractfile(member))


def test_malformed_sources_are_one_line_errors_naming_the_shard_and_key(tmp_path):
    good = write_shards(tmp_path / "good", 16, per_shard=8)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "00000.tar").write_bytes(b"")
    with tarfile.open(tmp_path / "empty" / "00001.tar", "w"):
        pass
    (tmp_path / "no_shards").mkdir()
    rewrite_without(good[0], tmp_path / "first_captionless.tar", {"000000.txt"})
    rewrite_without(good[1], tmp_path / "later_captionless.tar", {"000012.txt"})
    (tmp_path / "not_a_tar.tar").write_text("hello")
    cases = {
        f"{tmp_path}/empty/00000.tar": r"empty/00000\.tar: empty shard \(0 bytes\)",
        f"{tmp_path}/empty/00001.tar": r"empty/00001\.tar: empty shard \(a tar with no samples\)",
        str(tmp_path / "no_shards"): r"no_shards: no \.tar shards in this folder",
        f"{tmp_path}/good/{{00000..00009}}.tar": r"shard not found: .*good/00002\.tar \(from the pattern ",
        str(tmp_path / "first_captionless.tar"): r"first_captionless\.tar: sample '000000' has no caption "
                                                 r"\(expected a \.txt or a \.json with 'caption'; found jpg\)",
        str(tmp_path / "not_a_tar.tar"): r"not_a_tar\.tar: not a readable tar file",
    }
    for source, message in cases.items():
        with pytest.raises(UserError, match=message):
            shard_loader(source, num_samples=8)
    with pytest.raises(UserError, match=r"2 shards cannot give each of 1 ranks x 4 workers a shard of its own"):
        shard_loader(tmp_path / "good", num_workers=4)
    for several in ({"all_captions": True}, {"captions_per_image": 2}):
        with pytest.raises(UserError, match=rf"good: data\.{next(iter(several))} applies to COCO, CSV and JSONL; "
                                            r"shard samples draw one caption each$"):
            shard_loader(tmp_path / "good", **several)
    failing = shard_loader(f"pipe:cat {tmp_path}/nothing.tar", format="webdataset", num_samples=8)
    with pytest.raises(UserError, match=rf"^pipe:cat {tmp_path}/nothing\.tar: the command failed \(.*exit 1"):
        list(failing.epoch(0))
    later = shard_loader(tmp_path / "later_captionless.tar", batch_size=8, num_samples=8, num_workers=1)
    with pytest.raises(UserError) as error:  # found by a worker, raised here as one line
        list(later.epoch(0))
    assert str(error.value).startswith(f"{tmp_path / 'later_captionless.tar'}: sample '000012' has no caption")
    assert "\n" not in str(error.value)
