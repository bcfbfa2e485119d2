"""Strings packed into numpy arrays read back exactly, whatever their length or script."""
from dataloader.train.packed_strings import PackedStrings


def test_strings_read_back_exactly():
    strings = ["A man riding a wave.", "", "Ein Bär im Schnee", "咖啡杯", "x" * 1000, ""]
    packed = PackedStrings(iter(strings))
    assert len(packed) == len(strings)
    assert [packed[index] for index in range(len(strings))] == strings
    assert len(PackedStrings([])) == 0
