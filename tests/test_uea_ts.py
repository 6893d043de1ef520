"""The .ts reader: the real JapaneseVowels files, small well-formed files of each kind, and
every rejection, each naming the file and the line."""

import re
from pathlib import Path

import numpy as np
import pytest
from data_paths import data_dir, missing

from rnnfast.tasks.uea_ts import TsData, read_ts

REPO = Path(__file__).resolve().parents[1]
VOWELS = data_dir("uea") / "JapaneseVowels"

needs_vowels = pytest.mark.skipif(not VOWELS.is_dir(), reason=missing("uea"))


def write(tmp_path, text, name="t.ts"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def ts(*data, head="@classLabel true a b c"):
    """A .ts file: a comment (line 1), @problemName (line 2), ``head`` (from line 3), @data,
    then ``data``. With a one-line head, @data is line 4 and the cases start on line 5."""
    return "\n".join(["# a comment", "@problemName Toy", *head.split("\n"), "@data", *data]) + "\n"


# --- the real archive files ---------------------------------------------------------------


@needs_vowels
@pytest.mark.parametrize(
    "split, n, first_len, first_values, max_len",
    [
        ("TRAIN", 270, 20, [1.860936, -0.207383, 0.261557], 26),
        ("TEST", 370, 19, [1.635533, 0.024848, 0.432087], 29),
    ],
)
def test_japanese_vowels(split, n, first_len, first_values, max_len):
    d = read_ts(VOWELS / f"JapaneseVowels_{split}.ts")
    assert isinstance(d, TsData)
    assert d.problem_name == "JapaneseVowels"
    assert len(d.series) == n and d.lengths.shape == (n,) and d.labels.shape == (n,)
    assert d.lengths.dtype == np.int64 and d.labels.dtype == np.int64
    assert all(x.dtype == np.float64 and x.ndim == 2 and x.shape[1] == 12 for x in d.series)
    assert [x.shape[0] for x in d.series] == d.lengths.tolist()
    assert d.lengths.min() == 7 and d.lengths.max() == max_len
    assert d.class_names == [str(k) for k in range(1, 10)]
    assert d.labels.min() >= 0 and d.labels.max() <= 8
    assert set(d.labels.tolist()) == set(range(9))
    assert d.labels[0] == 0  # the first case of both files is speaker "1"
    # Row 0 holds step 0 of every dimension: the first value of each ':'-field.
    first = d.series[0]
    assert first.shape == (first_len, 12)
    np.testing.assert_array_equal(first[0, :3], first_values)
    assert first.flags.c_contiguous
    p = d.padded(np.float32)
    assert p.shape == (n, max_len, 12) and p.dtype == np.float32
    np.testing.assert_array_equal(p[0, :first_len], first.astype(np.float32))
    assert not p[0, first_len:].any()


@needs_vowels
def test_japanese_vowels_train_details():
    d = read_ts(VOWELS / "JapaneseVowels_TRAIN.ts")
    # The file's own comment: 30 utterances per speaker in the training set.
    np.testing.assert_array_equal(np.bincount(d.labels), [30] * 9)
    # Dimension 1 of the first case, as written on the file's first data line.
    np.testing.assert_array_equal(d.series[0][:4, 0], [1.860936, 1.891651, 1.939205, 1.717517])
    # Against an independent split of that line.
    line = next(
        s for s in (VOWELS / "JapaneseVowels_TRAIN.ts").read_text().splitlines() if s[:1].isdigit()
    )
    *dims, label = line.split(":")
    assert label == "1"
    expect = np.array([[float(v) for v in f.split(",")] for f in dims]).T
    np.testing.assert_array_equal(d.series[0], expect)


@needs_vowels
def test_japanese_vowels_lengths_over_both_files():
    lengths = np.concatenate(
        [read_ts(VOWELS / f"JapaneseVowels_{s}.ts").lengths for s in ("TRAIN", "TEST")]
    )
    assert lengths.min() == 7 and lengths.max() == 29


# --- small well-formed files ---------------------------------------------------------------


def test_equal_length_univariate(tmp_path):
    text = ts(
        "1,2,3:b",
        "4.5,-5e-1,6:a",
        "0,0,1E2:c",
        "7,8,9:b",
        head="@timeStamps false\n@missing false\n@univariate true\n@equalLength true\n"
        "@seriesLength 3\n@classLabel true c b a",
    )
    d = read_ts(write(tmp_path, text))
    assert d.problem_name == "Toy"
    # Ids follow @classLabel's order (c b a), not the order labels first appear in.
    assert d.class_names == ["c", "b", "a"]
    np.testing.assert_array_equal(d.labels, [1, 2, 0, 1])
    assert d.labels.dtype == np.int64
    np.testing.assert_array_equal(d.lengths, [3, 3, 3, 3])
    assert [x.shape for x in d.series] == [(3, 1)] * 4
    np.testing.assert_array_equal(d.series[1][:, 0], [4.5, -0.5, 6])
    np.testing.assert_array_equal(
        d.padded()[:, :, 0], [[1, 2, 3], [4.5, -0.5, 6], [0, 0, 100], [7, 8, 9]]
    )


def test_multivariate_unequal(tmp_path):
    text = ts(
        "1,2,3:10,20,30:a",
        "4:40:c",
        "5,6:50,60:a",
        head="@univariate false\n@dimensions 2\n@equalLength false\n@classLabel true a b c",
    )
    d = read_ts(write(tmp_path, text))
    np.testing.assert_array_equal(d.lengths, [3, 1, 2])
    np.testing.assert_array_equal(d.labels, [0, 2, 0])
    np.testing.assert_array_equal(d.series[0], [[1, 10], [2, 20], [3, 30]])  # (T, D)
    np.testing.assert_array_equal(d.series[1], [[4, 40]])
    p = d.padded()
    assert p.shape == (3, 3, 2) and p.dtype == np.float64
    np.testing.assert_array_equal(p[1], [[4, 40], [0, 0], [0, 0]])
    np.testing.assert_array_equal(p[2], [[5, 50], [6, 60], [0, 0]])


def test_dimensions_inferred_from_first_case(tmp_path):
    d = read_ts(write(tmp_path, ts("1:2:3:a", "4:5:6:b")))
    assert [x.shape for x in d.series] == [(1, 3), (1, 3)]


def test_regression_targets(tmp_path):
    text = ts(
        "1,2:3,4:0.5",
        "5,6,7:8,9,10:-1.25e3",
        "1:1:42",
        head="@univariate false\n@classLabel false\n@targetLabel true",
    )
    d = read_ts(write(tmp_path, text))
    assert d.class_names is None
    assert d.labels.dtype == np.float64
    np.testing.assert_array_equal(d.labels, [0.5, -1250.0, 42.0])
    np.testing.assert_array_equal(d.lengths, [2, 3, 1])
    np.testing.assert_array_equal(d.series[1], [[5, 8], [6, 9], [7, 10]])


def test_regression_without_classlabel_header(tmp_path):
    d = read_ts(write(tmp_path, ts("1,2:3", head="@targetLabel true")))
    np.testing.assert_array_equal(d.labels, [3.0])


def test_comments_blank_lines_crlf_bom_case(tmp_path):
    text = (
        "\ufeff#comment\r\n"
        "\r\n"
        "@PROBLEMNAME Mixed Case Name\r\n"
        "   \r\n"
        "@TimeStamps FALSE\r\n"
        "@classlabel TRUE x y\r\n"
        "#another comment\r\n"
        "@DATA\r\n"
        "\r\n"
        "1, 2 ,3 : x \r\n"
        "# a comment among the cases\r\n"
        "\t\r\n"
        "4,5:y\r\n"
        "\r\n"
    )
    d = read_ts(write(tmp_path, text))
    assert d.problem_name == "Mixed Case Name"
    np.testing.assert_array_equal(d.labels, [0, 1])
    np.testing.assert_array_equal(d.series[0][:, 0], [1, 2, 3])
    np.testing.assert_array_equal(d.lengths, [3, 2])
    # The same file with unix line endings reads the same.
    unix = read_ts(write(tmp_path, text.replace("\r\n", "\n"), "unix.ts"))
    np.testing.assert_array_equal(unix.padded(), d.padded())


def test_no_trailing_newline_and_missing_true_header(tmp_path):
    # @missing true only announces missing values; a file without any reads fine.
    text = ts("1,2:a", "3:b", head="@missing true\n@classLabel true a b").rstrip("\n")
    d = read_ts(write(tmp_path, text))
    np.testing.assert_array_equal(d.lengths, [2, 1])


def test_path_as_str(tmp_path):
    d = read_ts(str(write(tmp_path, ts("1:a"))))
    assert d.problem_name == "Toy" and len(d.series) == 1


# --- rejections ------------------------------------------------------------------------------

H = "@classLabel true a b c"
UNI = "@univariate true\n@classLabel true a b c"
MULTI2 = "@dimensions 2\n@classLabel true a b c"
REG = "@targetLabel true"
EQ = "@equalLength true\n@seriesLength 3\n@classLabel true a b c"
EQ_NOLEN = "@equalLength true\n@classLabel true a b c"

# (file text, the message after "<path> ") -- each message names its line.
ERRORS = [
    pytest.param(
        ts("1,2:a", "1,abc,3:a"),
        "line 6: dimension 1, value 2: 'abc' is not a number",
        id="not a number",
    ),
    pytest.param(ts("0x10:a"), "line 5: dimension 1, value 1: '0x10' is not a number", id="hex"),
    pytest.param(
        ts("1_000:a"), "line 5: dimension 1, value 1: '1_000' is not a number", id="underscore"
    ),
    pytest.param(
        ts("1,\u0661:a"),
        "line 5: dimension 1, value 2: '\u0661' is not a number",
        id="non-ascii digit",
    ),
    pytest.param(ts("1,,3:a"), "line 5: dimension 1, value 2: empty value", id="empty value"),
    pytest.param(ts("1,2,:a"), "line 5: dimension 1, value 3: empty value", id="trailing comma"),
    pytest.param(
        ts("1:a", "2:d"),
        "line 6: class label 'd' is not in @classLabel's list \\(a b c\\)",
        id="label not listed",
    ),
    pytest.param(ts("1,2,3", head=UNI), "line 6: no class label", id="no label"),
    pytest.param(
        ts("1,2:3,4", head=MULTI2),
        "line 6: class label '3,4' is not in @classLabel's list \\(a b c\\)"
        " \\(a line without its label\\?\\)",
        id="no label multivariate",
    ),
    pytest.param(ts("1,2,3", head=REG), "line 5: no target", id="no target"),
    pytest.param(
        ts("1:2:a", "1:a", head=MULTI2),
        "line 7: expected 2 dimensions, got 1 \\(@dimensions 2\\)",
        id="dims vs @dimensions",
    ),
    pytest.param(
        ts("1:2:a", "# note", "1:2:3:b"),
        "line 7: expected 2 dimensions, got 3 \\(as the first case, line 5\\)",
        id="dims vs first case",
    ),
    pytest.param(
        ts("1:2:a", head=UNI),
        "line 6: expected 1 dimensions, got 2 \\(@univariate true\\)",
        id="dims vs @univariate",
    ),
    pytest.param(
        ts("1,2:3:a"),
        "line 5: dimensions of unequal length: dimension 1 has 2 values, dimension 2 has 1",
        id="unequal dims",
    ),
    pytest.param(ts(":a"), "line 5: dimension 1 is an empty series", id="empty series"),
    pytest.param(
        ts("1: :a"), "line 5: dimension 2 is an empty series", id="empty second dimension"
    ),
    pytest.param(
        ts("1,?,3:a"),
        "line 5: dimension 1, value 2: missing values are not supported; fill or drop them first",
        id="missing ?",
    ),
    pytest.param(
        ts("1:2:a", "1:NaN:b"),
        "line 6: dimension 2, value 1: missing values are not supported",
        id="missing NaN",
    ),
    pytest.param(
        ts("nan:a"),
        "line 5: dimension 1, value 1: missing values are not supported",
        id="missing nan",
    ),
    pytest.param(
        ts("1:?"), "line 5: class label: missing values are not supported", id="missing label"
    ),
    pytest.param(
        ts("1:?", head=REG), "line 5: target: missing values are not supported", id="missing target"
    ),
    pytest.param(ts("1,inf:a"), "line 5: dimension 1, value 2: non-finite value 'inf'", id="inf"),
    pytest.param(
        ts("1:-Infinity:a"),
        "line 5: dimension 2, value 1: non-finite value '-Infinity'",
        id="-Infinity",
    ),
    pytest.param(ts("1:inf", head=REG), "line 5: target: non-finite value 'inf'", id="inf target"),
    pytest.param(ts("1:x", head=REG), "line 5: target: 'x' is not a number", id="bad target"),
    pytest.param(
        ts("1:a", head="@timeStamps true\n" + H),
        "line 3: timestamped series are not supported",
        id="timestamps header",
    ),
    pytest.param(
        ts("1:a", "(2007-01-01 00:00:00,1.0),(2007-01-02 00:00:00,2.0):a"),
        "line 6: timestamped series are not supported",
        id="timestamp syntax",
    ),
    pytest.param(
        ts("(0,1),(1,2):a"),
        "line 5: timestamped series are not supported",
        id="timestamp syntax simple",
    ),
    pytest.param(
        ts("1,2,3:a", "1,2:b", head=EQ_NOLEN),
        "line 7: @equalLength true but the series has 2 steps",
        id="equalLength",
    ),
    pytest.param(
        ts("1,2,3:a", "1,2,3,4:b", head=EQ),
        "line 8: @equalLength true but the series has 4 steps, @seriesLength 3",
        id="seriesLength",
    ),
    pytest.param(
        ts("1:a", "@dimensions 1"),
        "line 6: header @dimensions after @data",
        id="header after @data",
    ),
    pytest.param(
        "@problemName X\n1,2:a\n@classLabel true a\n@data\n1:a\n",
        "line 2: data before @data",
        id="data before @data",
    ),
    pytest.param(
        "@classLabel true a\n@data 1:a\n", "line 2: @data takes no values", id="@data with values"
    ),
    pytest.param(
        ts("1:a", head="@frobnicate yes\n" + H),
        "line 3: unknown header @frobnicate",
        id="unknown header",
    ),
    pytest.param(
        ts("1:a", head="@univariate true\n@Univariate true\n" + H),
        "line 4: @Univariate given twice",
        id="duplicate header",
    ),
    pytest.param(
        ts("1:a", head="@univariate yes\n" + H),
        "line 3: @univariate needs true or false",
        id="bad boolean",
    ),
    pytest.param(
        ts("1:a", head="@missing false true\n" + H),
        "line 3: @missing takes one value",
        id="boolean extra",
    ),
    pytest.param(
        ts("1:a", head="@dimensions 0\n" + H),
        "line 3: @dimensions needs a positive integer",
        id="bad dimensions",
    ),
    pytest.param(
        ts("1:a", head="@seriesLength x\n" + H),
        "line 3: @seriesLength needs a positive integer",
        id="bad seriesLength",
    ),
    pytest.param(
        "@problemName\n@classLabel true a\n@data\n1:a\n",
        "line 1: @problemName needs a name",
        id="no problem name",
    ),
    pytest.param(
        ts("1:a", head="@classLabel true"),
        "line 3: @classLabel true needs the list",
        id="classLabel without list",
    ),
    pytest.param(
        ts("1:a", head="@classLabel true a b a"),
        "line 3: @classLabel lists a more than once",
        id="duplicate class",
    ),
    pytest.param(
        ts("1:a", head="@classLabel false a b"),
        "line 3: @classLabel false takes no labels",
        id="classLabel false with list",
    ),
    pytest.param(
        ts("1:a", head=H + "\n@targetLabel true"),
        "line 5: both @classLabel true and @targetLabel true",
        id="both labels",
    ),
    pytest.param(
        ts("1", head="@classLabel false"),
        "line 4: neither @classLabel true nor @targetLabel true",
        id="unlabelled",
    ),
    pytest.param(
        ts("1:a", head="@univariate true\n@dimensions 2\n" + H),
        "line 6: @univariate true but @dimensions 2",
        id="univariate vs dimensions",
    ),
]


@pytest.mark.parametrize("text, message", ERRORS)
def test_rejections(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(str(path)) + " " + message) as e:
        read_ts(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_rejection_line_numbers_with_crlf(tmp_path, crlf):
    text = ts("1:a", "", "1:x")
    if crlf:
        text = text.replace("\n", "\r\n")
    with pytest.raises(ValueError, match=r"line 7: class label 'x'"):
        read_ts(write(tmp_path, text))


def test_missing_file(tmp_path):
    path = tmp_path / "nope.ts"
    with pytest.raises(ValueError, match=re.escape(f"{path}: no such file")):
        read_ts(path)


def test_directory(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}: cannot read")):
        read_ts(tmp_path)


def test_not_utf8(tmp_path):
    text = ts("1:a", "2:b").encode().replace(b"2:b", b"2\xff:b")
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(f"{path} line 6: not UTF-8 (byte 0xff")):
        read_ts(path)


def test_no_data_line(tmp_path):
    path = write(tmp_path, "# only a header\n@problemName X\n@classLabel true a\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: no @data line")):
        read_ts(path)


def test_empty_file(tmp_path):
    path = write(tmp_path, "")
    with pytest.raises(ValueError, match=re.escape(f"{path}: no @data line")):
        read_ts(path)


@pytest.mark.parametrize("tail", ["", "\n\n# just comments\n  \n"], ids=["bare", "comments"])
def test_no_cases(tmp_path, tail):
    path = write(tmp_path, "@classLabel true a\n@data\n" + tail)
    with pytest.raises(ValueError, match=re.escape(f"{path}: no cases after @data (line 2)")):
        read_ts(path)


def test_long_file_is_fast_enough(tmp_path):
    # About 4 MB: 2000 cases of 3 dimensions x 100 steps; one numpy conversion per case.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 3, 100))
    lines = [":".join(",".join(f"{v:.6f}" for v in dim) for dim in case) + ":b" for case in x]
    path = write(
        tmp_path, ts(*lines, head="@dimensions 3\n@equalLength true\n@classLabel true a b")
    )
    assert path.stat().st_size > 3_000_000
    d = read_ts(path)
    np.testing.assert_allclose(d.padded(), x.transpose(0, 2, 1), atol=5e-7)
    np.testing.assert_array_equal(d.labels, np.ones(2000))
