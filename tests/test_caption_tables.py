"""CSV/TSV and JSONL training tables on real files: delimiters found from the header, rows grouped per image,
paths resolved, every malformed file a one-line error naming the file, the line and the columns; and the loader
built from a table shows each image once per epoch with one of its own captions."""
import pytest

from caption_fixtures import (caption_number, caption_rows, image_name, image_numbers, write_csv, write_images,
                              write_jsonl)
from dataloader.config import DataConfig
from dataloader.train.caption_tables import read_csv_captions, read_jsonl_captions
from dataloader.train.train_data import build_train_loader, infer_format
from utils.errors import UserError

CONTEXT = 12


def read_csv(path, image_dir=None, image_key="filepath", caption_key="caption"):
    return read_csv_captions(path, image_dir, image_key, caption_key)


@pytest.mark.parametrize("delimiter", [",", "\t", ";"])
def test_delimiter_is_found_from_the_header_and_rows_group_per_image(tmp_path, delimiter):
    write_images(tmp_path, 3)
    rows = caption_rows(3, 2) + [(image_name(1), "a caption, with a comma; and a semicolon\tand a tab")]
    data = read_csv(write_csv(tmp_path / "train.tsv", rows, delimiter))
    assert data.image_paths == [str(tmp_path / image_name(n)) for n in range(3)]
    assert data.captions == [["image 0 caption 0", "image 0 caption 1"],
                             ["image 1 caption 0", "image 1 caption 1",
                              "a caption, with a comma; and a semicolon\tand a tab"],
                             ["image 2 caption 0", "image 2 caption 1"]]
    assert data.missing == []


def test_a_spreadsheet_export_with_a_byte_order_mark_and_crlf_lines_is_read(tmp_path):
    write_images(tmp_path, 2)
    path = tmp_path / "export.csv"
    path.write_bytes(f"\ufefffilepath;caption\r\n{image_name(0)};one\r\n{image_name(1)};\"two; three\"\r\n"
                     .encode("utf-8"))
    assert read_csv(path).captions == [["one"], ["two; three"]]


def test_relative_paths_resolve_against_train_img_dir_else_the_tables_folder(tmp_path):
    write_images(tmp_path / "images", 2)
    absolute = str(tmp_path / "images" / image_name(1))
    rows = [(image_name(0), "relative"), (absolute, "absolute"), ("not_there.jpg", "missing")]
    beside = read_csv(write_csv(tmp_path / "images" / "train.csv", rows))
    assert beside.image_paths == [str(tmp_path / "images" / image_name(0)), absolute]
    assert beside.missing == [str(tmp_path / "images" / "not_there.jpg")]
    elsewhere = read_csv(write_csv(tmp_path / "train.csv", rows), image_dir=str(tmp_path / "images"))
    assert elsewhere.image_paths == beside.image_paths


def test_open_clips_title_column_and_custom_keys_are_read(tmp_path):
    write_images(tmp_path, 1)
    titled = read_csv(write_csv(tmp_path / "a.csv", [(image_name(0), "t")], header=("filepath", "title")))
    assert titled.captions == [["t"]]
    custom = read_csv(write_csv(tmp_path / "b.csv", [("x", image_name(0), "c")], header=("id", "url", "text")),
                      image_key="url", caption_key="text")
    assert custom.captions == [["c"]]


def test_jsonl_reads_the_same_keys(tmp_path):
    write_images(tmp_path, 2)
    data = read_jsonl_captions(write_jsonl(tmp_path / "train.jsonl", caption_rows(2, 2)), None, "filepath", "caption")
    assert data.captions == [["image 0 caption 0", "image 0 caption 1"], ["image 1 caption 0", "image 1 caption 1"]]


def test_a_missing_column_names_the_file_the_columns_found_and_those_expected(tmp_path):
    # open_clip's tab default meets a comma file and fails with KeyError: 'filepath'; here the header decides
    path = write_csv(tmp_path / "train.csv", [("a.jpg", "x")], header=("image", "caption"))
    with pytest.raises(UserError) as error:
        read_csv(path)
    assert str(error.value) == (f"{path}: no 'filepath' column (columns found: image, caption); expected 'filepath' "
                                "and 'caption' or 'title' (set data.image_key / data.caption_key) in the header row")
    path = write_csv(tmp_path / "other.csv", [("a.jpg", "x")], header=("filepath", "text"))
    with pytest.raises(UserError, match=r"other\.csv: no 'caption' column \(columns found: filepath, text\)"):
        read_csv(path)


def test_a_bad_row_names_its_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('filepath,caption\na.jpg,fine\n"b.jpg","multi\nline caption"\nc.jpg\n')
    with pytest.raises(UserError, match=r"train\.csv, line 5: 1 fields, the header has 2 \(separated by ','"):
        read_csv(path)
    path.write_text("filepath\tcaption\na.jpg\t\n")
    with pytest.raises(UserError, match=r"train\.csv, line 2: 'caption' is '', expected a non-empty string"):
        read_csv(path)
    path.write_text("")
    with pytest.raises(UserError, match=r"train\.csv: empty file; expected a header row"):
        read_csv(path)
    path.write_bytes(b"filepath,caption\na.jpg,\xff\xfe\n")
    with pytest.raises(UserError, match=r"train\.csv: not UTF-8 text"):
        read_csv(path)


def test_a_bad_jsonl_line_names_its_number_and_keys(tmp_path):
    path = tmp_path / "train.jsonl"
    cases = {
        '{"filepath": "a.jpg", "caption": "x"}\n\n{"filepath": "b.jpg", "cap\n': r"line 3: not valid JSON",
        '["a.jpg", "x"]\n': r"line 1: a JSON list, expected an object with 'filepath' and 'caption'",
        '{"filepath": "a.jpg", "text": "x"}\n': r"line 1: keys found: filepath, text; expected 'filepath' and "
                                                r"'caption' or 'title'",
        '{"filepath": 7, "caption": "x"}\n': r"line 1: 'filepath' is 7, expected a non-empty string",
    }
    for content, message in cases.items():
        path.write_text(content)
        with pytest.raises(UserError, match=rf"train\.jsonl, {message}"):
            read_jsonl_captions(path, None, "filepath", "caption")


def test_format_is_inferred_from_the_name_or_asked_for(tmp_path):
    assert [infer_format(name) for name in ("a.json", "a.csv", "a.TSV", "a.jsonl")] == ["coco", "csv", "csv", "jsonl"]
    with pytest.raises(UserError, match=r"a\.txt: cannot tell the format from the name .* set data\.format"):
        infer_format("a.txt")


@pytest.mark.parametrize("table", ["csv", "jsonl"])
def test_loader_shows_each_image_once_per_epoch_with_one_of_its_captions(tmp_path, table):
    write_images(tmp_path / "images", 8)
    rows = caption_rows(8, 3, prefix="images/")
    path = write_csv(tmp_path / "t.csv", rows) if table == "csv" else write_jsonl(tmp_path / "t.jsonl", rows)
    config = DataConfig(train_data=str(path), num_workers=0)
    loader = build_train_loader(config, image_size=16, mean=(0, 0, 0), std=(1, 1, 1), context_length=CONTEXT,
                                batch_size=4, rank=0, world_size=1, seed=0, pin_memory=False)
    drawn = set()
    for epoch in range(3):
        batches = list(loader.epoch(epoch))
        seen = [n for batch in batches for n in image_numbers(batch["images"])]
        assert sorted(seen) == list(range(8))
        for batch in batches:
            for n, tokens in zip(image_numbers(batch["images"]), batch["tokens"]):
                k = caption_number(tokens, n, 3, CONTEXT)
                assert k is not None, f"image {n} came with a caption that is not its own"
                drawn.add((n, k))
    assert len(drawn) > 8  # captions are drawn anew each epoch
